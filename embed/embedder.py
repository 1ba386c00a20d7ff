"""What every embedder is, and choosing one: VGGish (the default) or YAMNet.

An Embedder turns aligned 16 kHz waveform chunks (K * 15360 + 240 samples: K whole frames on the
shared 0.96 s grid) into K raw float32 embeddings, plus K rows of class scores when the model has
them (YAMNet), and encodes them for storage. It carries its frame facts (`frames`, a
homesound.frames.FrameSpec), the provenance of what it computes, and an id that summarises
what determines the numbers; embeddings of different ids are never mixed.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from homesound.errors import ModelSourceError
from homesound.frames import FrameSpec
from homesound.hashing import file_sha256

EMBEDDER_MODELS = ("vggish", "yamnet")
VGGISH_BACKENDS = ("tf", "torch")  # the same embeddings (and embedder id) from either
VGGISH_PRECISIONS = ("float32", "tf32", "bf16")  # torch backend; all but float32 change the embedder id


@dataclass(frozen=True)
class EmbedderConfig:
    source: str | None = None  # the model's files or Hub handle; None = its environment variable or default
    pca: str | None = None  # VGGish only: vggish_pca_params.npz; None = env, beside the source, or downloaded
    batch_size: int = 64  # frames per network call
    jit_compile: bool = True  # XLA for the VGGish checkpoint network (same results, faster on CPU)
    model: str = "vggish"  # "vggish" or "yamnet"
    threads: int | None = None  # TFLite interpreter threads (None: the runtime's default)
    backend: str | None = None  # VGGish: "tf" or "torch"; None = $HOMESOUND_VGGISH_BACKEND or torch
    device: str = "cpu"  # VGGish torch backend: "cpu", "cuda" or "cuda:N"
    precision: str = "float32"  # VGGish torch backend: "tf32" (CUDA) and "bf16" are opt-in and change the id


@dataclass(frozen=True)
class EmbedderSource:
    """Where an embedder's files are, once its source option is resolved (nothing loaded yet)."""

    kind: str  # VGGish: "checkpoint", "savedmodel", "hub"; YAMNet: "tflite", "savedmodel", "hub"
    source: str  # as the user gave it
    location: str  # the file, or the SavedModel directory (a Hub handle's cached copy)
    pca: str | None = None  # VGGish: vggish_pca_params.npz
    model: str = "vggish"
    class_map: str | None = None  # YAMNet: yamnet_class_map.csv
    runtime: object = None  # VGGish: how its network runs (embed.vggish.Runtime: backend, device, converted weights)


@dataclass(frozen=True)
class ChunkFrames:
    """What an embedder computes for one chunk of K frames."""

    raw: np.ndarray  # float32 [K, dimension]
    class_scores: np.ndarray | None = None  # float32 [K, classes], for models that classify


class Embedder(ABC):
    """Aligned 16 kHz waveform chunks -> per-frame raw embeddings (and class scores) -> stored encoding."""

    kind: str
    frames: FrameSpec
    class_names: tuple[str, ...] | None = None  # names of the class score columns, if any

    def __init__(self, source: str, provenance: dict, config: EmbedderConfig):
        self.source = source
        self.config = config
        self.provenance = provenance
        self.embedder_id = embedder_id_of(provenance)

    @abstractmethod
    def raw_embeddings(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        """For each chunk of K * 15360 + 240 samples, its K raw float32 embeddings."""

    def embed_chunks(self, chunks: list[np.ndarray]) -> list[ChunkFrames]:
        """Raw embeddings and class scores of each chunk; models without class scores give None."""
        return [ChunkFrames(raw) for raw in self.raw_embeddings(chunks)]

    @abstractmethod
    def postprocess(self, raw: np.ndarray) -> np.ndarray:
        """[N, dimension] raw embeddings -> the stored encoding of `frames`."""


# Recorded in a provenance but not part of the id: where the files are, the program version, and which of
# two backends that give the same numbers ran where (VGGish's tf and torch).
NOT_IN_ID = ("source", "homesound_version", "backend", "device")


def embedder_id_of(provenance: dict) -> str:
    """What determines the numbers (not where the files are, nor the homesound version, nor the backend)."""
    identity = {key: value for key, value in provenance.items() if key not in NOT_IN_ID}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return f"{provenance['model']}-{provenance['source_kind']}-{digest[:16]}"


def _module(model: str):
    if model == "vggish":
        from embed import vggish

        return vggish
    if model == "yamnet":
        from embed import yamnet

        return yamnet
    raise ModelSourceError(f"unknown embedder {model!r}: choose one of {', '.join(EMBEDDER_MODELS)}")


def locate_embedder(config: EmbedderConfig) -> EmbedderSource:
    """Resolve the source option without loading the network (a Hub handle is fetched or found in the cache)."""
    return _module(config.model).locate(config)


def build_embedder(located: EmbedderSource, config: EmbedderConfig) -> Embedder:
    return _module(located.model).build(located, config)


def embedder_identity(located: EmbedderSource) -> tuple[str, dict]:
    """(embedder_id, provenance) of what build_embedder would build, from file hashes alone.

    Lets a job decide what is already done without starting TensorFlow.
    """
    provenance = _module(located.model).provenance_of(located)
    return embedder_id_of(provenance), provenance


def frames_of(model: str) -> FrameSpec:
    """The frame facts of a model, known before anything is loaded."""
    return _module(model).FRAMES


def load_embedder(source: str | None = None, pca: str | None = None, config: EmbedderConfig | None = None
                  ) -> Embedder:
    config = config or EmbedderConfig()
    config = replace(config, source=source or config.source, pca=pca or config.pca)
    return build_embedder(locate_embedder(config), config)


def resolve_hub_handle(handle: str, model: str, option: str) -> str:
    """A TF Hub handle's local directory (downloaded once into $TFHUB_CACHE_DIR by tensorflow_hub)."""
    try:
        import tensorflow_hub as hub

        return hub.resolve(handle)
    except Exception as error:  # tensorflow_hub raises many kinds for network and format problems
        raise ModelSourceError(
            f"cannot fetch {model} from TF Hub handle {handle} ({type(error).__name__}: "
            f"{str(error).splitlines()[0]}); check the network, or download the model once and pass its "
            f"directory or file with {option}"
        ) from None


def load_hub_savedmodel(directory: str, model: str, source: str):
    """A SavedModel with a TF Hub module's signature, as a callable (its serving signature when the object
    itself is not); a directory that is not one is the user's to fix, in one line."""
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(directory)
    except (OSError, ValueError, tf.errors.OpError) as error:
        raise ModelSourceError(f"{model} SavedModel {source}: cannot load ({str(error).splitlines()[0]})") from None
    return loaded if callable(loaded) else loaded.signatures["serving_default"]


def directory_sha256(directory: str) -> str:
    root = Path(directory)
    return files_sha256(sorted(p for p in root.rglob("*") if p.is_file()), root)


def files_sha256(files: list[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(root)).encode())
        digest.update(file_sha256(file).encode())
    return digest.hexdigest()
