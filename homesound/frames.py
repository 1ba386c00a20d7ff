"""The frame facts of an embedder: how long each embedding frame is, its size and how it is stored.

Every stage that turns frames into seconds or decodes stored embeddings reads these facts from
the embedder (or from the workspace / model file that recorded them), never a literal 0.96 or
128. This module lives in homesound/ (not embed/) because the workspace and the hub runtime read
it without importing the embedding stage; `embed.frames` re-exports it.

Both embedders put one frame every 0.96 s (15360 samples at 16 kHz) and each frame reads 0.975 s
(15600 samples: 96 STFT frames of 25 ms, 10 ms apart), so their frames share one time grid.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import zlib

import numpy as np

from homesound.errors import ProvenanceMismatchError

SAMPLE_RATE = 16000
UINT8_AUDIOSET = "uint8-audioset"  # AudioSet's released format: float = uint8 / 255 * 4 - 2
FLOAT16 = "float16"  # IEEE half precision, little endian
ENCODINGS = {UINT8_AUDIOSET: np.dtype("u1"), FLOAT16: np.dtype("<f2")}
CLASS_SCORE_DTYPE = np.dtype("<f2")  # class scores in [0, 1] are stored as float16 (error < 2.5e-4), zlib'd
ZLIB_LEVEL = 1  # YAMNet's frames are ~85 % zeros (ReLU features): level 1 gives 4x in ~40 us per frame
# The 256 dequantized values, computed in float64 so that each is the nearest float32.
_AUDIOSET_UINT8 = ((np.arange(256, dtype=np.float64) / 255.0) * 4.0 - 2.0).astype(np.float32)


def audioset_uint8_to_float(stored: np.ndarray) -> np.ndarray:
    """AudioSet-quantized uint8 frames (any shape) -> float32 in [-2, 2]: uint8 / 255 * 4 - 2."""
    return _AUDIOSET_UINT8[np.asarray(stored)]


@dataclass(frozen=True)
class FrameSpec:
    """What one embedding frame is: saved with the embedder in the workspace and in model files."""

    model: str  # "vggish" or "yamnet": which network's space the vectors live in
    dimension: int  # values per frame (128 VGGish, 1024 YAMNet)
    hop_seconds: float  # between frame starts
    window_seconds: float  # audio one frame reads
    encoding: str  # how stored frames are encoded (UINT8_AUDIOSET or FLOAT16)
    class_count: int = 0  # class scores per frame the embedder also gives (YAMNet: 521), 0 = none
    compressed: bool = False  # stored blobs are zlib-compressed (worth it for sparse float frames)

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ValueError(f"unknown embedding encoding {self.encoding!r}; known: {', '.join(ENCODINGS)}")

    @property
    def stored_dtype(self) -> np.dtype:
        return ENCODINGS[self.encoding]

    @property
    def hop_samples(self) -> int:
        return int(round(self.hop_seconds * SAMPLE_RATE))

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * SAMPLE_RATE))

    def start_seconds(self, frames: int, first: int = 0) -> np.ndarray:
        """Start time of each of `frames` frames, counted from frame `first`."""
        return (first + np.arange(frames, dtype=np.float64)) * self.hop_seconds

    def seconds(self, frames: int) -> float:
        """Audio covered by `frames` consecutive frames, on the hop grid."""
        return frames * self.hop_seconds

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Float frames -> the stored encoding; uint8 frames (already AudioSet-quantized) pass through."""
        values = np.asarray(values)
        if self.encoding == UINT8_AUDIOSET:
            if values.dtype != np.uint8:
                raise ValueError("uint8-audioset frames come quantized from the embedder's post-processing")
            return values
        return values.astype(self.stored_dtype)

    def dequantize(self, stored: np.ndarray) -> np.ndarray:
        """Stored frames -> float32 [T, dimension], the values a detector reads."""
        stored = np.asarray(stored)
        if self.encoding == UINT8_AUDIOSET:
            return audioset_uint8_to_float(stored)
        return stored.astype(np.float32)

    def check(self, stored: np.ndarray, what: str = "embedding") -> None:
        if stored.ndim != 2 or stored.shape[1] != self.dimension or stored.dtype != self.stored_dtype:
            raise ValueError(f"{what} must be {self.stored_dtype} [T, {self.dimension}] ({self.model}, "
                             f"{self.encoding}), got {stored.dtype} {stored.shape}")

    def to_blob(self, stored: np.ndarray) -> bytes:
        data = np.ascontiguousarray(stored, dtype=self.stored_dtype).tobytes()
        return zlib.compress(data, ZLIB_LEVEL) if self.compressed else data

    def from_blob(self, blob: bytes, frames: int) -> np.ndarray:
        data = zlib.decompress(blob) if self.compressed else blob
        return np.frombuffer(data, dtype=self.stored_dtype).reshape(frames, self.dimension)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "FrameSpec":
        known = {key: values[key] for key in cls.__dataclass_fields__ if key in values}
        return cls(**known)


def class_scores_to_blob(scores: np.ndarray) -> bytes:
    return zlib.compress(np.ascontiguousarray(scores, dtype=CLASS_SCORE_DTYPE).tobytes(), ZLIB_LEVEL)


def class_scores_from_blob(blob: bytes, frames: int, classes: int) -> np.ndarray:
    """float32 [T, classes] from what class_scores_to_blob stored."""
    return np.frombuffer(zlib.decompress(blob), dtype=CLASS_SCORE_DTYPE).reshape(frames, classes).astype(np.float32)


def check_embedder_id(accepted: tuple[str, ...] | list[str], frames: FrameSpec, embedder_id: str) -> None:
    """A detector reads only the embedders it was trained on; say which model and option that takes."""
    if embedder_id in accepted:
        return
    expected = ", ".join(accepted)
    given = embedder_id.split("-", 1)[0]
    if given in ("vggish", "yamnet") and given != frames.model:
        advice = (f"these are {given} embeddings; embed with --embedder {frames.model} "
                  f"(the same {frames.model} source as the training data), or retrain on {given} embeddings")
    else:
        advice = f"embed with the same {frames.model} source as the training data (and its files), or retrain"
    if "audioset-release" in accepted and given == "vggish":
        advice += ("; if this archive was embedded with Google's VGGish checkpoint and official PCA file, train with "
                   "--accept-embedder audioset-release --official-pca vggish_pca_params.npz")
    raise ProvenanceMismatchError(f"the detector was trained on embeddings from {expected} ({frames.model}) "
                                  f"but these come from {embedder_id}; {advice}")


# VGGish (and AudioSet's released features, computed by it): 0.96 s examples that read 15600 samples.
VGGISH_FRAMES = FrameSpec(model="vggish", dimension=128, hop_seconds=0.96, window_seconds=0.975,
                          encoding=UINT8_AUDIOSET)
# YAMNet on the same grid (every other patch of its native 0.48 s hop), stored as zlib'd float16.
YAMNET_FRAMES = FrameSpec(model="yamnet", dimension=1024, hop_seconds=0.96, window_seconds=0.975,
                          encoding=FLOAT16, class_count=521, compressed=True)
