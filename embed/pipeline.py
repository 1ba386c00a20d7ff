"""Audio -> VGGish embeddings, block by block so memory stays flat for hours-long recordings.

Decoding, resampling and the log-mel front end run in a background thread while TensorFlow
computes the previous chunk, so both cores stay busy. Results equal whole-file processing.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, TypeVar

import numpy as np

from embed.audio_io import AudioReader
from embed.frontend import ExampleChunker, example_start_seconds
from embed.params import VGGISH
from embed.resample import StreamingResampler
from embed.vggish import Embedder

T = TypeVar("T")
PREFETCH_CHUNKS = 2


@dataclass(frozen=True)
class Embeddings:
    embedding: np.ndarray  # uint8 [N, 128], AudioSet's released format
    raw_embedding: np.ndarray  # float32 [N, 128], the network's output before PCA
    start_seconds: np.ndarray  # float64 [N], start of each 0.96 s example
    embedder_id: str
    provenance: dict
    audio: dict = field(default_factory=dict)  # what was decoded: rate, channels, seconds, ...

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
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    mono = np.where(np.isfinite(mono), mono, 0.0)
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
    return Embeddings(embeddings.embedding, embeddings.raw_embedding, embeddings.start_seconds,
                      embeddings.embedder_id, embeddings.provenance, audio)


def _embed_chunks(chunks: Iterable[np.ndarray], embedder: Embedder, audio: dict) -> Embeddings:
    raw_parts = [raw for chunk in chunks for raw in embedder.raw_embeddings([chunk])]
    raw = np.concatenate(raw_parts) if raw_parts else np.zeros((0, VGGISH.embedding_size), np.float32)
    return Embeddings(
        embedding=embedder.postprocess(raw), raw_embedding=raw.astype(np.float32),
        start_seconds=example_start_seconds(len(raw)), embedder_id=embedder.embedder_id,
        provenance=dict(embedder.provenance), audio=audio,
    )


def prefetch(items: Iterator[T], depth: int) -> Iterator[T]:
    """Run an iterator in a background thread, `depth` items ahead; its exceptions re-raise here."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    finished = object()
    stop = threading.Event()

    def offer(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                buffer.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer((item, None)):
                    return
            offer((finished, None))
        except BaseException as error:  # handed to the consumer, which re-raises it
            offer((finished, error))

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
