"""Choosing and loading the VGGish network: TF Hub handle, local SavedModel, or Google's checkpoint.

All three give an Embedder (embed.embedder) that turns 16 kHz waveform chunks holding whole
examples into raw [K, 128] embeddings, then post-processes them the AudioSet way.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from embed.embedder import VGGISH_BACKENDS as BACKENDS
from embed.embedder import Embedder, EmbedderConfig, EmbedderSource, files_sha256, load_hub_savedmodel, resolve_hub_handle
from embed.frontend import waveform_to_examples
from embed.params import VGGISH
from embed.postprocess import PCAParams, postprocess
from homesound import __version__
from homesound.errors import ModelSourceError
from homesound.frames import VGGISH_FRAMES
from homesound.hashing import file_sha256

DEFAULT_HUB_HANDLE = "https://tfhub.dev/google/vggish/1"
DEFAULT_PCA_URL = "https://storage.googleapis.com/audioset/vggish_pca_params.npz"
SOURCE_ENV = "HOMESOUND_VGGISH"
BACKEND_ENV = "HOMESOUND_VGGISH_BACKEND"
# torch: a third of TF's start-up CPU time and half its memory, no TensorFlow once the weights are converted;
# the network alone per CPU second is faster in torch here, end to end with two threads TF-XLA was 15-35 %
# faster on this loaded 2-core AVX2 machine (README, benchmarks/embed_speed.py).
DEFAULT_BACKEND = "torch"
PCA_ENV = "HOMESOUND_VGGISH_PCA"
PCA_URL_ENV = "HOMESOUND_VGGISH_PCA_URL"
PCA_FILE_NAME = "vggish_pca_params.npz"
FRONTEND_DESCRIPTION = (
    "mono mean; resampy kaiser_best to 16 kHz; 25 ms periodic Hann, 10 ms hop, 512-point |FFT|; "
    "64 HTK mel 125-7500 Hz; log(mel + 0.01); 96x64 non-overlapping examples"
)
POSTPROCESS_DESCRIPTION = "PCA (pca_eigen_vectors, pca_means); clip [-2, 2]; uint8 by truncation"
FRAMES = VGGISH_FRAMES


@dataclass(frozen=True)
class Runtime:
    """How the VGGish network runs: the backend (same numbers either way), and for torch its device,
    precision (anything but float32 changes the numbers, hence the id) and converted weights."""

    backend: str = "tf"
    device: str = "cpu"
    precision: str = "float32"
    converted: object = None  # torch: embed.torch_weights.ConvertedWeights, once found or made


def resolve_runtime(config: EmbedderConfig) -> Runtime:
    backend = config.backend or os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND
    if backend not in BACKENDS:
        raise ModelSourceError(f"VGGish backend {backend!r}: choose one of {', '.join(BACKENDS)} "
                               f"(--backend or ${BACKEND_ENV})")
    if backend == "tf" and (config.device != "cpu" or config.precision != "float32"):
        raise ModelSourceError("--device and --precision choose how the torch network runs; add --backend torch")
    return Runtime(backend, config.device, config.precision)


class VGGishEmbedder(Embedder):
    """VGGish: aligned 16 kHz waveform chunks -> raw embeddings -> AudioSet uint8 features."""

    frames = VGGISH_FRAMES

    def __init__(self, source: str, weights_sha256: str, pca: PCAParams, pca_sha256: str, config: EmbedderConfig,
                 runtime: Runtime | None = None):
        self.pca = pca
        runtime = runtime or resolve_runtime(config)
        super().__init__(source, make_provenance(self.kind, source, weights_sha256, pca_sha256, runtime), config)

    def postprocess(self, raw: np.ndarray) -> np.ndarray:
        return postprocess(raw, self.pca)


class CheckpointEmbedder(VGGishEmbedder):
    """Google's vggish_model.ckpt: the reference front end in numpy, the network in TensorFlow."""

    kind = "checkpoint"

    def __init__(self, checkpoint: str, pca_path: str, config: EmbedderConfig):
        from embed.network import CheckpointWeights, build_network

        self.network = build_network(CheckpointWeights(checkpoint), jit_compile=config.jit_compile)
        super().__init__(checkpoint, source_sha256("checkpoint", checkpoint), PCAParams.load(pca_path),
                         file_sha256(pca_path), config)

    def raw_embeddings(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        examples = [waveform_to_examples(chunk) for chunk in chunks]
        return _split_like(self.run_network(np.concatenate(examples) if examples else np.zeros((0, 96, 64))), examples)

    def run_network(self, examples: np.ndarray) -> np.ndarray:
        """Batches padded to a power of two (at most batch_size): a compiled graph is traced for a
        handful of shapes only, and a 5 s clip does not pay for 64 examples."""
        size = self.config.batch_size
        outputs = []
        for start in range(0, len(examples), size):
            batch = examples[start : start + size].astype(np.float32)
            count = len(batch)
            padded = min(size, 1 << (count - 1).bit_length())
            if count < padded:
                batch = np.concatenate([batch, np.zeros((padded - count, *batch.shape[1:]), np.float32)])
            outputs.append(self.network(batch).numpy()[:count])
        return np.concatenate(outputs) if outputs else np.zeros((0, VGGISH.embedding_size), np.float32)


class SavedModelEmbedder(VGGishEmbedder):
    """A SavedModel with the Hub signature (local directory or resolved from a TF Hub handle)."""

    def __init__(self, kind: str, source: str, directory: str, pca_path: str, config: EmbedderConfig):
        self.kind = kind
        self.model = load_hub_savedmodel(directory, "VGGish", source)
        super().__init__(source, source_sha256(kind, directory), PCAParams.load(pca_path), file_sha256(pca_path),
                         config)

    def raw_embeddings(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        outputs = []
        for chunk in chunks:
            expected = (len(chunk) - VGGISH.example_overlap_samples) // VGGISH.example_samples
            result = self.model(np.asarray(chunk, dtype=np.float32))
            if isinstance(result, dict):
                result = next(iter(result.values()))
            raw = np.asarray(result, dtype=np.float32)
            if raw.ndim != 2 or raw.shape[1] != VGGISH.embedding_size or len(raw) < expected:
                raise ModelSourceError(
                    f"VGGish model {self.source} returned shape {raw.shape} for {expected} examples; "
                    "expected the Hub signature (waveform -> [N, 128])"
                )
            outputs.append(raw[:expected])
        return outputs


def locate(config: EmbedderConfig) -> EmbedderSource:
    """Resolve the --vggish option without loading the network; with the torch backend, find its converted weights.

    A Hub handle is fetched or found in the cache, except when the torch backend already has its
    weights converted: then neither TensorFlow nor the network is needed.
    """
    runtime = resolve_runtime(config)
    located = _locate_source(config, runtime)
    if runtime.backend != "torch" or located.runtime.converted is not None:
        return located
    from embed.torch_weights import find_converted

    converted = find_converted(located.kind, located.source, located.location)
    return replace(located, runtime=replace(runtime, converted=converted))


def _locate_source(config: EmbedderConfig, runtime: Runtime) -> EmbedderSource:
    source = config.source or os.environ.get(SOURCE_ENV) or DEFAULT_HUB_HANDLE
    pca = config.pca or os.environ.get(PCA_ENV)
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "saved_model.pb").exists():
            raise ModelSourceError(f"VGGish source {source} is a directory without saved_model.pb")
        return EmbedderSource("savedmodel", str(path), str(path), pca or _pca_beside(path, source), runtime=runtime)
    if _is_checkpoint(path):
        return EmbedderSource("checkpoint", str(path), str(path), pca or _pca_beside(path.parent, source),
                              runtime=runtime)
    if "://" in source or source.startswith(("tfhub.dev/", "www.kaggle.com/")):
        if runtime.backend == "torch":
            from embed.torch_weights import find_converted

            converted = find_converted("hub", source, None)
            if converted is not None:  # no TensorFlow, no network: the handle names immutable content
                return EmbedderSource("hub", source, str(converted.path), pca or download_pca(),
                                      runtime=replace(runtime, converted=converted))
        return EmbedderSource("hub", source, resolve_hub_handle(source, "VGGish", "--vggish"), pca or download_pca(),
                              runtime=runtime)
    raise ModelSourceError(
        f"VGGish source {source} not found: give a TF Hub handle, a SavedModel directory, or Google's "
        "vggish_model.ckpt (https://storage.googleapis.com/audioset/vggish_model.ckpt)"
    )


def build(located: EmbedderSource, config: EmbedderConfig) -> VGGishEmbedder:
    if (located.runtime or resolve_runtime(config)).backend == "torch":
        from embed.torch_embedder import TorchEmbedder

        return TorchEmbedder(located, config)
    if located.kind == "checkpoint":
        return CheckpointEmbedder(located.location, located.pca, config)
    return SavedModelEmbedder(located.kind, located.source, located.location, located.pca, config)


def provenance_of(located: EmbedderSource) -> dict:
    """The provenance build() would give, from file hashes alone (converted torch weights record theirs)."""
    runtime = located.runtime or Runtime()
    if runtime.converted is not None:
        weights_sha256 = runtime.converted.source_sha256
    else:
        weights_sha256 = source_sha256(located.kind, located.location)
    return make_provenance(located.kind, located.source, weights_sha256, file_sha256(located.pca), runtime)


def takes_examples(located: EmbedderSource) -> bool:
    """Whether archive decoders should send log-mel examples (for run_network) rather than 16 kHz waveforms:
    a SavedModel has its front end inside, and on a GPU the torch front end runs there, not in the decoders."""
    if located.model != "vggish":
        return False
    runtime = located.runtime or Runtime()
    if runtime.backend == "torch":
        return runtime.device == "cpu"
    return located.kind == "checkpoint"


def make_provenance(kind: str, source: str, weights_sha256: str, pca_sha256: str, runtime: Runtime | None = None
                    ) -> dict:
    """What made the numbers. The backend and device are recorded but stay out of the embedder id
    (embed.embedder.NOT_IN_ID): in float32 the torch and TF networks give equal embeddings; any other
    precision is recorded under "precision", which does enter the id."""
    runtime = runtime or Runtime()
    lower_precision = {"precision": runtime.precision} if runtime.precision != "float32" else {}
    return {
        "model": "vggish",
        "source_kind": kind,
        "source": source,
        "weights_sha256": weights_sha256,
        "pca_sha256": pca_sha256,
        "frontend": FRONTEND_DESCRIPTION if kind == "checkpoint" else f"inside the {kind} model",
        "postprocess": POSTPROCESS_DESCRIPTION,
        "hop_seconds": VGGISH.example_seconds,
        "quantized": True,
        "homesound_version": __version__,
        "backend": runtime.backend,
        "device": runtime.device,
        **lower_precision,
    }


def _is_checkpoint(path: Path) -> bool:
    return path.is_file() or Path(f"{path}.index").is_file()


def _pca_beside(directory: Path, source: str) -> str:
    for candidate in (directory / PCA_FILE_NAME, directory.parent / PCA_FILE_NAME):
        if candidate.is_file():
            return str(candidate)
    raise ModelSourceError(
        f"no PCA parameters for {source}: pass --pca vggish_pca_params.npz "
        f"(download it from {DEFAULT_PCA_URL}) or set {PCA_ENV}"
    )


def cache_dir() -> Path:
    base = os.environ.get("TFHUB_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "homesound")
    return Path(base)


def download_pca(url: str | None = None) -> str:
    """Google's PCA parameters, fetched once into the cache (resumable, renamed into place when whole)."""
    from homesound.download import DownloadError, RemoteFile, download

    url = url or os.environ.get(PCA_URL_ENV) or DEFAULT_PCA_URL
    folder = cache_dir() / "vggish_pca" / hashlib.sha256(url.encode()).hexdigest()[:16]
    try:
        return str(download(RemoteFile(PCA_FILE_NAME, url), folder, progress=False))
    except DownloadError as error:
        raise ModelSourceError(
            f"cannot download the VGGish PCA parameters: {error}; or download {PCA_FILE_NAME} yourself and pass --pca"
        ) from None


def _split_like(rows: np.ndarray, parts: list[np.ndarray]) -> list[np.ndarray]:
    bounds = np.cumsum([len(part) for part in parts])[:-1]
    return np.split(rows, bounds) if parts else []


def source_files(kind: str, location: str) -> tuple[list[Path], Path]:
    """The files of a checkpoint (one V1 file, or V2 index + data) or SavedModel, and the folder they are in."""
    path = Path(location)
    if kind != "checkpoint":
        return sorted(p for p in path.rglob("*") if p.is_file()), path
    if path.is_file():
        return [path], path.parent
    return sorted(path.parent.glob(f"{path.name}.index")) + sorted(path.parent.glob(f"{path.name}.data-*")), path.parent


def source_sha256(kind: str, location: str) -> str:
    """The weights_sha256 of a provenance: one V1 file's own hash, else names and hashes of all files."""
    files, root = source_files(kind, location)
    if kind == "checkpoint" and Path(location).is_file():
        return file_sha256(files[0])
    return files_sha256(files, root)
