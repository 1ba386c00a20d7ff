"""The jobs behind `homesound embed` and `homesound vggish`, as library functions.

Each takes one frozen configuration and returns what it did as data, so the command line only parses
and prints and other programs call the same functions: audio files -> .npz files (`embed_files`), an
archive -> a workspace (`embed_archive`; the engine and its run record are in embed/archive.py), and the
VGGish model-file tools (`random_vggish_weights`, `export_savedmodel`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from embed.embedder import EmbedderConfig
from homesound.errors import AudioDecodeError, HomesoundError

if TYPE_CHECKING:
    from embed.archive import ArchiveJobConfig, JobSummary
    from embed.random_weights import RandomVGGishFiles

NPZ_SUFFIX = ".npz"


@dataclass(frozen=True)
class EmbedFilesConfig:
    """Audio files -> one .npz each: `out` names the file for a single input, or `out_dir` gets <stem>.npz."""

    inputs: tuple[str, ...]
    embedder: EmbedderConfig
    out: str | None = None
    out_dir: str | None = None

    def __post_init__(self) -> None:
        if (self.out is None) == (self.out_dir is None):
            raise HomesoundError("give either one output file (--out) or an output folder (--out-dir)")
        if self.out is not None and len(self.inputs) > 1:
            raise HomesoundError(f"{len(self.inputs)} input files but one --out file; use --out-dir DIR")


@dataclass(frozen=True)
class EmbeddedFile:
    source: str
    target: str
    embeddings: int
    seconds: float  # audio read
    window_seconds: float  # the shortest audio that gives one embedding (none when `seconds` is less)


@dataclass(frozen=True)
class FileFailure:
    source: str
    reason: str  # names the file and what to do


@dataclass(frozen=True)
class EmbedFilesResult:
    written: tuple[EmbeddedFile, ...]
    failures: tuple[FileFailure, ...]
    embedder_id: str

    @property
    def exit_status(self) -> int:
        """0 when every input is embedded; 1 when some file could not be read (the rest are written)."""
        return 1 if self.failures else 0


def embed_files(config: EmbedFilesConfig,
                on_file: Callable[[EmbeddedFile | FileFailure], None] | None = None) -> EmbedFilesResult:
    """Embed each input into its .npz (written whole or not at all); a file that cannot be read is reported
    and the others go on. `on_file` hears of each file as it is done (a long list shows its progress)."""
    import numpy as np

    from embed.embedder import load_embedder
    from embed.pipeline import embed_file
    from homesound.output_files import atomic_output, check_output_file, prepare_folder

    inputs = [Path(name) for name in config.inputs]
    if config.out_dir is not None:
        prepare_folder(config.out_dir, "--out-dir")
    targets = [check_output_file(config.out, "--out")] if config.out else output_names(inputs, Path(config.out_dir))
    embedder = load_embedder(config=config.embedder)
    written, failures = [], []
    for source, target in zip(inputs, targets):
        try:
            result = embed_file(source, embedder)
        except AudioDecodeError as error:
            done: EmbeddedFile | FileFailure = FileFailure(str(source), str(error))
            failures.append(done)
        else:
            scores = {} if result.class_scores is None else {
                "class_scores": result.class_scores, "class_names": np.array(result.class_names)}
            with atomic_output(target, what="embeddings") as partial:
                np.savez(partial, embedding=result.embedding, raw_embedding=result.raw_embedding,
                         start_seconds=result.start_seconds, embedder_id=np.array(result.embedder_id),
                         provenance=np.array(json.dumps(result.provenance, sort_keys=True)),
                         frames=np.array(json.dumps(embedder.frames.to_dict(), sort_keys=True)),
                         audio=np.array(json.dumps(result.audio, sort_keys=True)), **scores)
            done = EmbeddedFile(str(source), str(target), len(result), result.audio["seconds"],
                                embedder.frames.window_seconds)
            written.append(done)
        if on_file is not None:
            on_file(done)
    return EmbedFilesResult(tuple(written), tuple(failures), embedder.embedder_id)


def output_names(inputs: list[Path], directory: Path) -> list[Path]:
    """<stem>.npz in `directory` for each input; a stem seen before gets -2, -3, ... so nothing is overwritten."""
    seen: dict[str, int] = {}
    targets = []
    for source in inputs:
        seen[source.stem] = seen.get(source.stem, 0) + 1
        suffix = "" if seen[source.stem] == 1 else f"-{seen[source.stem]}"
        targets.append(directory / f"{source.stem}{suffix}{NPZ_SUFFIX}")
    return targets


def embed_archive(workspace: str, config: ArchiveJobConfig, *, progress: bool | None = None) -> JobSummary:
    """Files and folders -> the workspace, resumable (embed/archive.py). Paths are checked before the
    workspace is locked, and stored absolute, so a rerun from another folder finds the same rows."""
    from embed.archive import run_archive_job

    missing = [name for name in config.inputs if not os.path.lexists(name)]
    if missing:
        raise HomesoundError(f"no such file or folder: {', '.join(missing)}")
    config = replace(config, inputs=tuple(os.path.abspath(name) for name in config.inputs))
    return run_archive_job(workspace, config, progress=progress)


@dataclass(frozen=True)
class RandomWeightsConfig:
    out: str
    seed: int = 0
    force: bool = False  # write them again even if `out` already holds them


@dataclass(frozen=True)
class RandomWeightsResult:
    files: RandomVGGishFiles
    written: bool  # False: the folder already held these weights (same seed) and they were kept


def random_vggish_weights(config: RandomWeightsConfig) -> RandomWeightsResult:
    """Deterministic RANDOM VGGish weights in all three formats, for offline tests and demos."""
    from embed.random_weights import existing_random_vggish, write_random_vggish

    files = None if config.force else existing_random_vggish(config.out, seed=config.seed)
    if files is not None:
        return RandomWeightsResult(files, written=False)
    return RandomWeightsResult(write_random_vggish(config.out, seed=config.seed), written=True)


@dataclass(frozen=True)
class ExportSavedModelConfig:
    checkpoint: str  # Google's vggish_model.ckpt
    out: str  # SavedModel directory


def export_savedmodel(config: ExportSavedModelConfig) -> None:
    """Google's checkpoint -> a SavedModel with the TF Hub signature (16 kHz waveform -> [N, 128])."""
    from embed.network import CheckpointWeights
    from embed.savedmodel import export_hub_savedmodel

    export_hub_savedmodel(CheckpointWeights(config.checkpoint), config.out)
