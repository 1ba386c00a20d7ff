"""Google's VGGish weights converted once into a torch-native file, so later runs need no TensorFlow.

The file (`torch.save` of plain tensors and strings, read back with weights_only=True) holds the
weights in torch layout under Google's variable names, the source it came from, the sha256 of
that source as the provenance computes it, and the size and mtime of each source file. A later
run trusts the recorded sha256 while those stats are unchanged (hashing a 288 MB checkpoint
would cost more than the whole start-up otherwise), hashes again when they changed, and
converts again (with TensorFlow) only when the content changed.

Where: beside the source (`vggish_model.ckpt.torch.pt`, `vggish_savedmodel.torch.pt`), or,
when that folder is read-only or the source is a TF Hub handle, in the cache folder
($TFHUB_CACHE_DIR or ~/.cache/homesound)/vggish_torch. A Hub handle names immutable content
(Hub versions never change), so its file is found by the handle alone, without TensorFlow.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from homesound.errors import HomesoundError, ModelSourceError
from homesound.output_files import atomic_output

log = logging.getLogger(__name__)

FORMAT = "homesound-vggish-torch"
FORMAT_VERSION = 1
SUFFIX = ".torch.pt"
LAYOUT = "torch: conv [out, in, kh, kw], dense [out, in]; Google's variable names; fc1_1 rows in NHWC order"


@dataclass(frozen=True)
class ConvertedWeights:
    path: Path
    source_kind: str  # "checkpoint", "savedmodel" or "hub"
    source: str
    source_sha256: str  # the weights_sha256 of the source's provenance
    weights: dict  # Google's names -> torch tensors in torch layout
    source_stats: list  # [relative name, size, mtime_ns] of the source's files when converted


def beside_path(kind: str, location: str) -> Path | None:
    """The converted file next to a checkpoint or SavedModel (never inside it: that changes its sha256)."""
    return None if kind == "hub" else Path(f"{location}{SUFFIX}")


def cache_path(kind: str, source: str, location: str) -> Path:
    from embed.vggish import cache_dir

    key = source if kind == "hub" else str(Path(location).resolve())
    return cache_dir() / "vggish_torch" / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:16]}{SUFFIX}"


def source_stats(kind: str, location: str) -> list[list]:
    """[relative name, size, mtime_ns] of each file of a checkpoint or SavedModel (a Hub handle: none)."""
    from embed.vggish import source_files

    if kind == "hub":
        return []
    files, root = source_files(kind, location)
    return [[str(file.relative_to(root)), file.stat().st_size, file.stat().st_mtime_ns] for file in files]


def find_converted(kind: str, source: str, location: str | None) -> ConvertedWeights | None:
    """A converted file that still belongs to this source, or None (then convert_source makes one)."""
    candidates = [cache_path(kind, source, location or source)]
    if location is not None and beside_path(kind, location) is not None:
        candidates.insert(0, beside_path(kind, location))
    for path in candidates:
        converted = _read(path)
        if converted is None or converted.source_kind != kind:
            continue
        if kind == "hub":
            if converted.source == source:
                return converted
            continue
        converted = _revalidated(converted, kind, location)
        if converted is not None:
            return converted
    return None


def _read(path: Path) -> ConvertedWeights | None:
    if not path.is_file():
        return None
    import torch

    try:
        stored = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # a torn or foreign file is simply made again
        log.warning("ignoring %s (%s: %s); converting again", path, type(error).__name__, error)
        return None
    if not isinstance(stored, dict) or stored.get("format") != FORMAT or stored.get("format_version") != FORMAT_VERSION:
        return None
    return ConvertedWeights(path, stored["source_kind"], stored["source"], stored["source_sha256"],
                            stored["weights"], stored["source_stats"])


def _revalidated(converted: ConvertedWeights, kind: str, location: str) -> ConvertedWeights | None:
    """The file if it still belongs to the source: same stats, or else same content (then saved with the new stats)."""
    from embed.vggish import source_sha256

    try:
        stats = source_stats(kind, location)
        if converted.source_stats == stats:
            return converted
        if source_sha256(kind, location) != converted.source_sha256:
            return None
    except OSError:
        return None
    _save(converted.path, kind, converted.source, location, converted.source_sha256, converted.weights)
    return replace(converted, source_stats=stats)


def convert_source(kind: str, source: str, location: str, sha256: str) -> ConvertedWeights:
    """Read Google's variables with TensorFlow, convert them, and save the file (beside, else cached)."""
    from embed.torch_network import to_torch_layout

    weights = to_torch_layout(read_google_weights(kind, source, location))
    for path in ([beside_path(kind, location)] if beside_path(kind, location) else []) + [
            cache_path(kind, source, location)]:
        if _save(path, kind, source, location, sha256, weights):
            return ConvertedWeights(path, kind, source, sha256, weights, source_stats(kind, location))
    raise ModelSourceError(f"cannot write the converted VGGish weights for {source} beside it nor in "
                           f"{cache_path(kind, source, location).parent}; make one of them writable")


def read_google_weights(kind: str, source: str, location: str) -> dict[str, np.ndarray]:
    """Google's variables by their names, from a checkpoint (V1 or V2) or a SavedModel (needs TensorFlow)."""
    if kind == "checkpoint":
        from embed.network import CheckpointWeights

        checkpoint = CheckpointWeights(location)
        return {name: checkpoint[name] for name in checkpoint}
    import tensorflow as tf

    from embed.tflite import savedmodel_weights

    try:
        model = tf.saved_model.load(location)
    except (OSError, ValueError, tf.errors.OpError) as error:
        raise ModelSourceError(f"VGGish SavedModel {source}: cannot load ({str(error).splitlines()[0]})") from None
    return savedmodel_weights(model, source)


def _save(path: Path, kind: str, source: str, location: str, sha256: str, weights: dict) -> bool:
    """Write atomically; False when the folder is not writable."""
    import torch

    try:
        with atomic_output(path, what="converted weights") as partial:
            torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "source_kind": kind, "source": source,
                        "source_sha256": sha256, "source_stats": source_stats(kind, location), "layout": LAYOUT,
                        "weights": {name: value.contiguous() for name, value in weights.items()}}, partial)
        return True
    except (HomesoundError, RuntimeError) as error:  # torch.save reports an unwritable file as RuntimeError
        log.info("cannot write %s (%s)", path, error)
        return False
