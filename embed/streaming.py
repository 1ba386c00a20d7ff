"""Incremental embedding: samples as they arrive -> one embedding (VGGish or YAMNet) per 0.96 s hop.

The same exact steps as a whole-file pass (StreamingResampler, then ExampleChunker), cut to one
example per chunk, so the n-th embedding of a stream equals the n-th embedding of the same
audio embedded as a file. Each embedding is computed as soon as its example's last sample
(plus the resampler's look-ahead) has arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from embed.frontend import ExampleChunker
from embed.params import VGGISH
from embed.resample import StreamingResampler
from homesound.frames import FrameSpec


class HopEmbedder(Protocol):
    """What streaming needs of an embedder: embed.embedder.Embedder and the hub's TFLite VGGish both fit."""

    embedder_id: str
    frames: FrameSpec

    def embed_chunks(self, chunks: list[np.ndarray]) -> list: ...  # list[embed.embedder.ChunkFrames]

    def postprocess(self, raw: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class EmbeddedHop:
    index: int  # frame number since the stream started
    raw_embedding: np.ndarray  # float32 [D]
    embedding: np.ndarray  # [D] in the embedder's stored encoding (VGGish: AudioSet uint8)
    hop_seconds: float
    class_scores: np.ndarray | None = None  # float32 [classes] for embedders that classify

    @property
    def start_seconds(self) -> float:
        return self.index * self.hop_seconds

    @property
    def end_seconds(self) -> float:
        return (self.index + 1) * self.hop_seconds


class StreamingEmbedder:
    """One audio stream at `sample_rate`; `push` blocks of mono samples, get the hops they complete.

    `on_audio`, if given, sees every 16 kHz block the resampler produces (for clip pre-roll);
    `filter_table` is resampy's kaiser_best table when resampy itself is not installed (hubs).
    """

    def __init__(self, embedder: HopEmbedder, sample_rate: int,
                 on_audio: Callable[[np.ndarray], None] | None = None,
                 filter_table: tuple[np.ndarray, int] | None = None):
        self.embedder = embedder
        self.sample_rate = sample_rate
        self.on_audio = on_audio
        self._resampler = StreamingResampler(sample_rate, VGGISH.sample_rate, VGGISH.resample_filter, filter_table)
        self._chunker = ExampleChunker(1)
        self.samples_received = 0

    @property
    def seconds_received(self) -> float:
        return self.samples_received / self.sample_rate

    def push(self, samples: np.ndarray) -> list[EmbeddedHop]:
        self.samples_received += len(samples)
        return self._embed(self._resampler.push(samples), final=False)

    def finish(self) -> list[EmbeddedHop]:
        """The stream ended: the hops its last samples complete (a trailing partial hop is dropped)."""
        return self._embed(self._resampler.finish(), final=True)

    def _embed(self, resampled: np.ndarray, final: bool) -> list[EmbeddedHop]:
        if self.on_audio is not None and len(resampled):
            self.on_audio(resampled)
        chunks = self._chunker.push(resampled) + (self._chunker.finish() if final else [])
        hops = []
        for index, chunk in chunks:
            (frames,) = self.embedder.embed_chunks([chunk])
            scores = None if frames.class_scores is None else frames.class_scores[0]
            hops.append(EmbeddedHop(index, frames.raw[0].astype(np.float32), self.embedder.postprocess(frames.raw)[0],
                                    self.embedder.frames.hop_seconds, scores))
        return hops
