"""Choosing and loading the VGGish network: TF Hub handle, local SavedModel, or Google's checkpoint.

All three give an Embedder that turns 16 kHz waveform chunks holding whole examples into raw
[K, 128] embeddings, then post-processes them the AudioSet way. Every Embedder carries the
provenance of what it computes; embeddings from different provenance are never mixed.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from embed.frontend import waveform_to_examples
from embed.params import VGGISH
from embed.postprocess import PCAParams, postprocess
from homesound import __version__
from homesound.errors import ModelSourceError

DEFAULT_HUB_HANDLE = "https://tfhub.dev/google/vggish/1"
DEFAULT_PCA_URL = "https://storage.googleapis.com/audioset/vggish_pca_params.npz"
SOURCE_ENV = "HOMESOUND_VGGISH"
BACKEND_ENV = "HOMESOUND_VGGISH_BACKEND"
BACKENDS = ("tf", "torch")
# torch with channels-last oneDNN convolutions: ~25 % less CPU per example than TF with XLA on this
# AVX2 machine, and a start-up without TensorFlow once the weights are converted (benchmarks/embed_speed.py).
DEFAULT_BACKEND = "torch"
PCA_ENV = "HOMESOUND_VGGISH_PCA"
PCA_URL_ENV = "HOMESOUND_VGGISH_PCA_URL"
PCA_FILE_NAME = "vggish_pca_params.npz"
FRONTEND_DESCRIPTION = (
    "mono mean; resampy kaiser_best to 16 kHz; 25 ms periodic Hann, 10 ms hop, 512-point |FFT|; "
    "64 HTK mel 125-7500 Hz; log(mel + 0.01); 96x64 non-overlapping examples"
)
POSTPROCESS_DESCRIPTION = "PCA (pca_eigen_vectors, pca_means); clip [-2, 2]; uint8 by truncation"


@dataclass(frozen=True)
class EmbedderConfig:
    source: str | None = None  # Hub handle, SavedModel dir or vggish_model.ckpt; None = env or default
    pca: str | None = None  # vggish_pca_params.npz; None = env, beside the source, or downloaded
    batch_size: int = 64  # examples per network call
    jit_compile: bool = True  # XLA for the checkpoint network (same results, faster on CPU)
    backend: str | None = None  # "tf" or "torch"; None = $HOMESOUND_VGGISH_BACKEND or DEFAULT_BACKEND
    device: str = "cpu"  # torch backend: "cpu", "cuda" or "cuda:N"
    precision: str = "float32"  # torch backend: "tf32" (CUDA) and "bf16" are opt-in and change the embedder id


def resolve_backend(config: EmbedderConfig) -> str:
    backend = config.backend or os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND
    if backend not in BACKENDS:
        raise ModelSourceError(f"VGGish backend {backend!r}: choose one of {', '.join(BACKENDS)} "
                               f"(--backend or ${BACKEND_ENV})")
    if backend == "tf" and (config.device != "cpu" or config.precision != "float32"):
        raise ModelSourceError("--device and --precision choose how the torch network runs; add --backend torch")
    return backend


class Embedder(ABC):
    """VGGish: aligned 16 kHz waveform chunks -> raw embeddings -> AudioSet uint8 features."""

    kind: str

    def __init__(self, source: str, weights_sha256: str, pca: PCAParams, pca_sha256: str, config: EmbedderConfig):
        self.source = source
        self.pca = pca
        self.config = config
        self.provenance = make_provenance(self.kind, source, weights_sha256, pca_sha256, config)
        self.embedder_id = embedder_id_of(self.provenance)

    @abstractmethod
    def raw_embeddings(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        """For each chunk of K * 15360 + 240 samples, its K raw float32 embeddings."""

    def postprocess(self, raw: np.ndarray) -> np.ndarray:
        return postprocess(raw, self.pca)


class CheckpointEmbedder(Embedder):
    """Google's vggish_model.ckpt: the reference front end in numpy, the network in TensorFlow."""

    kind = "checkpoint"

    def __init__(self, checkpoint: str, pca_path: str, config: EmbedderConfig):
        from embed.network import CheckpointWeights, build_network

        self.network = build_network(CheckpointWeights(checkpoint), jit_compile=config.jit_compile)
        super().__init__(checkpoint, source_sha256("checkpoint", checkpoint), PCAParams.load(pca_path),
                         _file_sha256(pca_path), config)

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


class SavedModelEmbedder(Embedder):
    """A SavedModel with the Hub signature (local directory or resolved from a TF Hub handle)."""

    def __init__(self, kind: str, source: str, directory: str, pca_path: str, config: EmbedderConfig):
        import tensorflow as tf

        self.kind = kind
        try:
            model = tf.saved_model.load(directory)
        except (OSError, ValueError, tf.errors.OpError) as error:
            raise ModelSourceError(f"VGGish SavedModel {source}: cannot load ({str(error).splitlines()[0]})") from None
        self.model = model if callable(model) else model.signatures["serving_default"]
        super().__init__(source, source_sha256(kind, directory), PCAParams.load(pca_path), _file_sha256(pca_path),
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


@dataclass(frozen=True)
class EmbedderSource:
    """Where an embedder's files are, once its source option is resolved (nothing loaded yet)."""

    kind: str  # "checkpoint", "savedmodel" or "hub"
    source: str  # as the user gave it
    location: str  # checkpoint path, or the SavedModel directory (a Hub handle's cached copy)
    pca: str  # vggish_pca_params.npz
    converted: object = None  # torch backend: its torch_weights.ConvertedWeights, when already converted


def locate_embedder(config: EmbedderConfig) -> EmbedderSource:
    """Resolve the source option without loading the network; with the torch backend, find its converted weights.

    A Hub handle is fetched or found in the cache, except when the torch backend already has its
    weights converted: then neither TensorFlow nor the network is needed.
    """
    located = _locate_source(config)
    if resolve_backend(config) != "torch" or located.converted is not None:
        return located
    from embed.torch_weights import find_converted

    return replace(located, converted=find_converted(located.kind, located.source, located.location))


def _locate_source(config: EmbedderConfig) -> EmbedderSource:
    source = config.source or os.environ.get(SOURCE_ENV) or DEFAULT_HUB_HANDLE
    pca = config.pca or os.environ.get(PCA_ENV)
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "saved_model.pb").exists():
            raise ModelSourceError(f"VGGish source {source} is a directory without saved_model.pb")
        return EmbedderSource("savedmodel", str(path), str(path), pca or _pca_beside(path, source))
    if _is_checkpoint(path):
        return EmbedderSource("checkpoint", str(path), str(path), pca or _pca_beside(path.parent, source))
    if "://" in source or source.startswith(("tfhub.dev/", "www.kaggle.com/")):
        if resolve_backend(config) == "torch":
            from embed.torch_weights import find_converted

            converted = find_converted("hub", source, None)
            if converted is not None:
                return EmbedderSource("hub", source, str(converted.path), pca or download_pca(), converted)
        return EmbedderSource("hub", source, _resolve_hub(source), pca or download_pca())
    raise ModelSourceError(
        f"VGGish source {source} not found: give a TF Hub handle, a SavedModel directory, or Google's "
        "vggish_model.ckpt (https://storage.googleapis.com/audioset/vggish_model.ckpt)"
    )


def load_embedder(source: str | None = None, pca: str | None = None, config: EmbedderConfig | None = None) -> Embedder:
    config = config or EmbedderConfig()
    config = replace(config, source=source or config.source, pca=pca or config.pca)
    return build_embedder(locate_embedder(config), config)


def build_embedder(located: EmbedderSource, config: EmbedderConfig) -> Embedder:
    if resolve_backend(config) == "torch":
        from embed.torch_embedder import TorchEmbedder

        return TorchEmbedder(located, config)
    if located.kind == "checkpoint":
        return CheckpointEmbedder(located.location, located.pca, config)
    return SavedModelEmbedder(located.kind, located.source, located.location, located.pca, config)


def embedder_identity(located: EmbedderSource, config: EmbedderConfig | None = None) -> tuple[str, dict]:
    """(embedder_id, provenance) of what load_embedder would build, from file hashes alone.

    Lets a job decide what is already done without starting TensorFlow.
    """
    config = config or EmbedderConfig()
    if located.converted is not None:
        weights_sha256 = located.converted.source_sha256
    else:
        weights_sha256 = source_sha256(located.kind, located.location)
    provenance = make_provenance(located.kind, located.source, weights_sha256, _file_sha256(located.pca), config)
    return embedder_id_of(provenance), provenance


def runs_on_examples(config: EmbedderConfig, located: EmbedderSource) -> bool:
    """Whether decoders should send log-mel examples (for run_network) rather than 16 kHz waveforms: a
    SavedModel has its front end inside, and on a GPU the torch front end runs there, not in the decoders."""
    if resolve_backend(config) == "torch":
        return config.device == "cpu"
    return located.kind == "checkpoint"


def make_provenance(kind: str, source: str, weights_sha256: str, pca_sha256: str,
                    config: EmbedderConfig | None = None) -> dict:
    """What made the numbers. The backend and device are recorded but stay out of the embedder id:
    the torch and TF networks give equal embeddings in float32; any other precision enters the id."""
    config = config or EmbedderConfig()
    backend = resolve_backend(config)
    lower_precision = {"precision": config.precision} if config.precision != "float32" else {}
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
        "backend": backend,
        "device": config.device if backend == "torch" else "cpu",
        **lower_precision,
    }


# Recorded, but not part of the id: where the files are, which program version, and which equal-output backend ran.
NOT_IN_ID = ("source", "homesound_version", "backend", "device")


def embedder_id_of(provenance: dict) -> str:
    """What determines the numbers (not where the files are, nor the homesound version, nor the backend)."""
    identity = {key: value for key, value in provenance.items() if key not in NOT_IN_ID}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return f"vggish-{provenance['source_kind']}-{digest[:16]}"


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


def _resolve_hub(handle: str) -> str:
    try:
        import tensorflow_hub as hub

        return hub.resolve(handle)
    except Exception as error:  # tensorflow_hub raises many kinds for network and format problems
        raise ModelSourceError(
            f"cannot fetch VGGish from TF Hub handle {handle} ({type(error).__name__}: {str(error).splitlines()[0]}); "
            "check the network, or download the model once and pass its directory (or vggish_model.ckpt) "
            "with --vggish"
        ) from None


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


def _file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


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
        return _file_sha256(files[0])
    return _files_sha256(files, root)


def _files_sha256(files: list[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(root)).encode())
        digest.update(_file_sha256(file).encode())
    return digest.hexdigest()
