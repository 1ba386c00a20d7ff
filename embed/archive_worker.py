"""Decoding worker processes of `homesound embed --workspace`: audio files -> model-ready chunks.

Each worker decodes, resamples and (for the checkpoint network) computes log-mel examples, and
sends them to the main process, which runs the network. A worker keeps several files open and
takes one chunk from each in turn, so one hours-long recording never holds up the short ones
behind it. It never imports TensorFlow, and it exits on its own when the main process dies
(kill -9 included), so no orphan is left behind. Each worker has its own pipes: a worker that
crashes mid-message (a codec bug, the OOM killer) cannot garble what the others send.

Messages to the main process (tuples, first item the kind):
  ("started", worker, file_id, expected_seconds or None)
  ("chunk", worker, file_id, array)  examples [K, 96, 64] float32, or a 16 kHz waveform float32
  ("done", worker, file_id, audio facts dict)
  ("failed", worker, file_id, reason)
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Iterator

import numpy as np

from embed.audio_io import AudioReader
from embed.frontend import waveform_to_examples
from embed.pipeline import waveform_chunks
from homesound.errors import AudioDecodeError

RESULTS_AHEAD = 8  # messages a worker may have ready before the main process takes them (each <= ~1.6 MB)


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


def worker_main(worker: int, tasks: Connection, results: Connection, settings: WorkerSettings) -> None:
    """Take (file_id, path) tasks until None arrives; interleave up to files_at_once files.

    Both pipes are private to this worker and the main process holds their other ends alone, so
    if the main process dies, reading a task or sending a result fails at once and this process
    exits; if this process dies, the main process sees the end of its pipe and nothing else is hurt.
    """
    outbox: queue.Queue = queue.Queue(maxsize=RESULTS_AHEAD)
    threading.Thread(target=_send_all, args=(outbox, results), name="homesound-send", daemon=True).start()
    open_files: dict[int, Iterator[tuple]] = {}
    stopping = False
    try:
        while open_files or not stopping:
            while not stopping and len(open_files) < settings.files_at_once and (
                    not open_files or tasks.poll()):  # wait for work only when there is nothing else to do
                task = _receive(tasks)
                if task is None:
                    stopping = True
                else:
                    file_id, path = task
                    open_files[file_id] = file_messages(worker, file_id, path, settings)
            for file_id, messages in list(open_files.items()):
                message = next(messages, None)
                if message is None:
                    del open_files[file_id]
                else:
                    outbox.put(message)  # blocks while the main process is behind: backpressure
        outbox.put(None)
        outbox.join()  # everything sent before this process ends
    except KeyboardInterrupt:
        return  # Ctrl-C reaches the whole process group; the main process reports it


def _receive(tasks: Connection):
    try:
        return tasks.recv()
    except (EOFError, OSError):
        os._exit(0)  # the main process is gone: nobody wants the rest


def _send_all(outbox: queue.Queue, results: Connection) -> None:
    while True:
        message = outbox.get()
        try:
            if message is not None:
                results.send(message)
        except OSError:  # broken pipe: the main process is gone
            os._exit(0)
        finally:
            outbox.task_done()
