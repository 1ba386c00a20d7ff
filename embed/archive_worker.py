"""Decoding worker processes of `homesound embed --workspace`: audio files -> model-ready chunks.

Each worker decodes, resamples and (for the checkpoint network) computes log-mel examples, and
sends them to the main process, which runs the network. A worker keeps several files open and
takes one chunk from each in turn, so one hours-long recording never holds up the short ones
behind it. It never imports TensorFlow, and it exits on its own when the main process dies
(kill -9 included), so no orphan is left behind.

Messages to the main process (tuples, first item the kind):
  ("started", worker, file_id, expected_seconds or None)
  ("chunk", worker, file_id, array)  examples [K, 96, 64] float32, or a 16 kHz waveform float32
  ("done", worker, file_id, audio facts dict)
  ("failed", worker, file_id, reason)
"""

from __future__ import annotations

import multiprocessing
import queue
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from embed.audio_io import AudioReader
from embed.frontend import waveform_to_examples
from embed.pipeline import waveform_chunks
from homesound.errors import AudioDecodeError

PARENT_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class WorkerSettings:
    examples_per_chunk: int
    send_examples: bool  # log-mel examples (checkpoint network) or 16 kHz waveform chunks (SavedModel/Hub)
    files_at_once: int  # files a worker interleaves


def file_messages(worker: int, file_id: int, path: str, settings: WorkerSettings) -> Iterator[tuple]:
    """Everything one file produces, as messages; a file that cannot be read ends with "failed"."""
    try:
        with AudioReader(path) as reader:
            info = reader.info
            yield ("started", worker, file_id, info.duration_seconds)
            for chunk in waveform_chunks(reader.blocks(), info.sample_rate, settings.examples_per_chunk):
                payload = waveform_to_examples(chunk) if settings.send_examples else chunk.astype(np.float32)
                yield ("chunk", worker, file_id, payload)
            audio = {"duration_seconds": reader.frames_read / info.sample_rate, "sample_rate": info.sample_rate,
                     "channels": info.channels, "format": info.format}
    except AudioDecodeError as error:
        yield ("failed", worker, file_id, error.reason)
        return
    except Exception as error:  # a decoder bug must cost one file, not the job
        yield ("failed", worker, file_id, f"unexpected {type(error).__name__} while decoding: {error}")
        return
    yield ("done", worker, file_id, audio)


def worker_main(worker: int, tasks: multiprocessing.Queue, results: multiprocessing.Queue,
                settings: WorkerSettings) -> None:
    """Take (file_id, path) tasks until a None arrives; interleave up to files_at_once files."""
    parent = multiprocessing.parent_process()
    open_files: dict[int, Iterator[tuple]] = {}
    stopping = False
    try:
        while open_files or not stopping:
            while not stopping and len(open_files) < settings.files_at_once:
                try:
                    task = tasks.get(timeout=PARENT_CHECK_SECONDS) if not open_files else tasks.get_nowait()
                except queue.Empty:
                    if not open_files and parent is not None and not parent.is_alive():
                        return
                    break
                if task is None:
                    stopping = True
                else:
                    file_id, path = task
                    open_files[file_id] = file_messages(worker, file_id, path, settings)
            for file_id, messages in list(open_files.items()):
                message = next(messages, None)
                if message is None:
                    del open_files[file_id]
                elif not _send(results, message, parent):
                    return
    except KeyboardInterrupt:
        return  # Ctrl-C reaches the whole process group; the main process reports it


def _send(results: multiprocessing.Queue, message: tuple, parent) -> bool:
    """Put with backpressure; give up when the main process is gone."""
    while True:
        try:
            results.put(message, timeout=PARENT_CHECK_SECONDS)
            return True
        except queue.Full:
            if parent is not None and not parent.is_alive():
                return False
