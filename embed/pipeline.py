"""Audio -> embeddings (VGGish or YAMNet), block by block so memory stays flat for hours-long recordings.

Decoding, resampling and the log-mel front end run in a background thread while TensorFlow
computes the previous chunk, so both cores stay busy. Results equal whole-file processing.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, TypeVar

import numpy as np

from embed.audio_io import AudioReader, finite_mono
from embed.frontend import ExampleChunker
from embed.params import VGGISH
from embed.resample import StreamingResampler
from embed.embedder import ChunkFrames, Embedder

T = TypeVar("T")
PREFETCH_CHUNKS = 2


@dataclass(frozen=True)
class Embeddings:
    embedding: np.ndarray  # [N, D] in the embedder's stored encoding (VGGish: AudioSet uint8, YAMNet: float16)
    raw_embedding: np.ndarray  # float32 [N, D], the network's output (VGGish: before PCA)
    start_seconds: np.ndarray  # float64 [N], start of each frame (one per 0.96 s)
    embedder_id: str
    provenance: dict
    audio: dict = field(default_factory=dict)  # what was decoded: rate, channels, seconds, ...
    class_scores: np.ndarray | None = None  # float32 [N, classes] for embedders that classify (YAMNet)
    class_names: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.embedding)


def waveform_chunks(blocks: Iterable[np.ndarray], sample_rate: int, examples_per_chunk: int) -> Iterator[np.ndarray]:
    """Mono blocks at any rate -> 16 kHz chunks of whole examples, in order."""
    resampler = StreamingResampler(sample_rate, VGGISH.sample_rate, VGGISH.resample_filter)
    chunker = ExampleChunker(examples_per_chunk)
    for block in blocks:
        for _, chunk in chunker.push(resampler.push(block)):
            yield chunk
    for _, chunk in chunker.push(resampler.finish()) + chunker.finish():
        yield chunk


def embed_waveform(samples: np.ndarray, sample_rate: int, embedder: Embedder) -> Embeddings:
    """Samples [n] or [n, channels] at any rate (floats in [-1, 1]) -> embeddings."""
    samples = np.asarray(samples, dtype=np.float64)
    mono, _ = finite_mono(samples)
    chunks = waveform_chunks([mono], sample_rate, embedder.config.batch_size)
    audio = {"sample_rate": int(sample_rate), "channels": 1 if samples.ndim == 1 else int(samples.shape[1]),
             "seconds": len(mono) / sample_rate}
    return _embed_chunks(chunks, embedder, audio)


def embed_file(path: str | os.PathLike, embedder: Embedder, *, progress: Callable[[float], None] | None = None
               ) -> Embeddings:
    """A whole recording; raises AudioDecodeError (with the file named) if it cannot be read.

    `progress`, if given, is called with the seconds of audio decoded since its last call.
    """
    with AudioReader(path) as reader:
        info = reader.info

        def blocks() -> Iterator[np.ndarray]:
            for block in reader.blocks():
                if progress is not None:
                    progress(len(block) / info.sample_rate)
                yield block

        chunks = prefetch(waveform_chunks(blocks(), info.sample_rate, embedder.config.batch_size), PREFETCH_CHUNKS)
        embeddings = _embed_chunks(chunks, embedder, {})
        audio = {"sample_rate": info.sample_rate, "channels": info.channels, "format": info.format,
                 "decoder": info.decoder, "seconds": reader.frames_read / info.sample_rate,
                 "nonfinite_samples": reader.nonfinite_samples}
    return dataclasses.replace(embeddings, audio=audio)


def _embed_chunks(chunks: Iterable[np.ndarray], embedder: Embedder, audio: dict) -> Embeddings:
    parts = [frames for chunk in chunks for frames in embedder.embed_chunks([chunk])]
    raw, scores = join_frames(parts, embedder)
    return Embeddings(
        embedding=embedder.postprocess(raw), raw_embedding=raw, start_seconds=embedder.frames.start_seconds(len(raw)),
        embedder_id=embedder.embedder_id, provenance=dict(embedder.provenance), audio=audio, class_scores=scores,
        class_names=embedder.class_names,
    )


def join_frames(parts: list[ChunkFrames], embedder: Embedder) -> tuple[np.ndarray, np.ndarray | None]:
    """Consecutive chunks' frames as one float32 [N, D] array, and their class scores (None if the model has none)."""
    spec = embedder.frames
    raw = np.concatenate([part.raw for part in parts]) if parts else np.zeros((0, spec.dimension), np.float32)
    if not spec.class_count:
        return raw.astype(np.float32, copy=False), None
    scores = (np.concatenate([part.class_scores for part in parts]) if parts
              else np.zeros((0, spec.class_count), np.float32))
    return raw.astype(np.float32, copy=False), scores.astype(np.float32, copy=False)


STOP_POLL_SECONDS = 0.1  # how soon a producer blocked on a full queue notices that it should stop


def put_until_stopped(items: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put `item` on a bounded queue, waiting while it is full; False (not put) once `stop` is set.

    A producer thread must neither drop work nor block forever behind a consumer that has quit.
    """
    while not stop.is_set():
        try:
            items.put(item, timeout=STOP_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def prefetch(items: Iterator[T], depth: int) -> Iterator[T]:
    """Run an iterator in a background thread, `depth` items ahead; its exceptions re-raise here."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    finished = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if not put_until_stopped(buffer, (item, None), stop):
                    return
            put_until_stopped(buffer, (finished, None), stop)
        except BaseException as error:  # handed to the consumer, which re-raises it
            put_until_stopped(buffer, (finished, error), stop)

    worker = threading.Thread(target=produce, name="homesound-decode", daemon=True)
    worker.start()
    try:
        while True:
            item, error = buffer.get()
            if item is finished:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        worker.join()
