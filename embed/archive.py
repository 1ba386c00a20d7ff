"""`homesound embed --workspace`: a whole archive into the workspace, resumable and never twice.

Order of work, and why:
1. Hold the workspace's job lock (a second job refuses at once, naming the holder).
2. Walk the inputs; a file whose (path, size, mtime) match an embedded row of this embedder is
   skipped without being read, so a rerun with nothing new costs a walk and one query.
3. Hash the rest (a thread of the main process) and look the content up: content embedded
   before (a moved, touched or copied file) is linked to the new path without decoding; the
   same new content under several paths is decoded once, and all paths are written with it.
4. Worker processes decode, resample and compute log-mel examples (archive_worker); the main
   process runs the network on batches that span recordings, so batches stay full with short
   clips, and writes each recording (its rows and its embedding) in one transaction when its
   last example is through. A kill loses only the recordings in flight.
"""

from __future__ import annotations

import collections
import multiprocessing
import multiprocessing.connection
import os
import queue
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Iterator

import numpy as np

from embed.archive_worker import WorkerSettings, worker_main
from embed.discover import Discovery, FoundFile, discover
from embed.embedder import (
    ChunkFrames, Embedder, EmbedderConfig, build_embedder, embedder_identity, frames_of, locate_embedder,
)
from embed.pipeline import join_frames, put_until_stopped
from embed.vggish import takes_examples
from homesound.errors import HomesoundError
from homesound.hashing import file_sha256
from homesound.workspace import Workspace, recordings, runs
from homesound.workspace.lock import JobLock
from homesound.workspace.recordings import AudioFacts, FileIdentity, StoredEmbedding

if TYPE_CHECKING:
    from embed.ray_cluster import ClusterConfig

COMMAND = "embed"
HASH_AHEAD = 64  # hashed files waiting for a decoder
WORKER_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
SHOWN_FAILURES = 20


def default_workers() -> int:
    """The network is ~95 % of the work and runs in the main process; one decoder keeps up on 2 cores."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


@dataclass(frozen=True)
class ArchiveJobConfig:
    """Everything that decides what a run does; stored in the run's row."""

    inputs: tuple[str, ...]
    extensions: tuple[str, ...]
    embedder: EmbedderConfig
    workers: int | None = None  # decoding processes on this machine (None: default_workers(); not with a cluster)
    files_per_worker: int = 4  # files a worker interleaves, so a long one does not block the rest
    files_in_flight: int = 48  # files handed to workers at once; enough short clips to fill batches
    keep_raw: bool = False  # also store float32 raw embeddings (4x the space)
    retry_failed: bool = False  # try again files that failed before although unchanged
    cluster: ClusterConfig | None = None  # run decoding and the network on a Ray cluster (embed/ray_cluster.py)

    def __post_init__(self) -> None:
        if self.cluster is not None and self.workers is not None:
            raise HomesoundError("--workers sets decoding processes on this machine; with --ray the cluster decodes "
                                 "(one task per CPU that `ray start --num-cpus` gives each node)")


@dataclass
class JobSummary:
    run_id: int
    embedder_id: str
    found: int = 0
    unchanged: int = 0  # skipped by (path, size, mtime)
    embedded: int = 0  # paths written with a newly computed embedding
    embedded_contents: int = 0  # distinct contents among them (copies found in this run count once)
    linked: int = 0  # paths whose content was embedded before (elsewhere or earlier): not decoded
    embedded_seconds: float = 0.0  # audio decoded and embedded by this run
    failed: list[tuple[str, str]] = field(default_factory=list)
    failed_before: list[tuple[str, str]] = field(default_factory=list)  # unchanged, skipped
    folder_problems: list[tuple[str, str]] = field(default_factory=list)
    skipped_by_extension: int = 0
    elapsed_seconds: float = 0.0

    @property
    def exit_status(self) -> int:
        """0 when every input is embedded; 1 when any file or folder failed (now or before, unchanged)."""
        return 1 if self.failed or self.failed_before or self.folder_problems else 0

    def as_dict(self) -> dict:
        return asdict(self)

    def report(self) -> str:
        rate = self.embedded_seconds / 3600 / (self.elapsed_seconds / 60) if self.elapsed_seconds > 0 else 0.0
        lines = [
            f"{self.found} recordings found ({self.skipped_by_extension} other files ignored by extension)",
            f"  embedded   {self.embedded:>6}  ({self.embedded_contents} distinct contents, "
            f"{self.embedded_seconds / 3600:.2f} h of audio, {rate:.1f} h/min)",
            f"  linked     {self.linked:>6}  (content embedded before under another path or date: not decoded)",
            f"  unchanged  {self.unchanged:>6}  (same path, size and time as an embedded row: not read)",
            f"  failed     {len(self.failed) + len(self.failed_before):>6}"
            + (f"  ({len(self.failed_before)} failed before and unchanged: --retry-failed to try again)"
               if self.failed_before else ""),
        ]
        problems = self.failed + self.failed_before + self.folder_problems
        for path, reason in problems[:SHOWN_FAILURES]:
            lines.append(f"    {path}: {reason}")
        if len(problems) > SHOWN_FAILURES:
            lines.append(f"    ... and {len(problems) - SHOWN_FAILURES} more (homesound status --workspace lists all)")
        lines.append(f"run {self.run_id}, embedder {self.embedder_id}, {self.elapsed_seconds:.1f} s")
        return "\n".join(lines)


@dataclass(frozen=True)
class WorkPlan:
    todo: list[FoundFile]
    unchanged: int
    failed_before: list[tuple[str, str]]


def plan_work(files: list[FoundFile], known: dict[str, recordings.FileState], retry_failed: bool) -> WorkPlan:
    """Which files need reading: new, changed, or not embedded by this embedder (pure)."""
    todo, unchanged, failed_before = [], 0, []
    for found in files:
        state = known.get(found.path)
        if state is not None and (state.size, state.mtime_ns) == (found.size, found.mtime_ns):
            if state.status == "embedded" and state.embedded:
                unchanged += 1
                continue
            if state.status == "failed" and not retry_failed:
                failed_before.append((found.path, state.error or "failed"))
                continue
        todo.append(found)
    return WorkPlan(todo, unchanged, failed_before)


def run_archive_job(workspace_path: str, config: ArchiveJobConfig, *, progress: bool | None = None) -> JobSummary:
    """The whole job; raises HomesoundError for what the user must fix before it can start.

    The run is recorded through `runs.recorded`: completed, completed_with_failures when some file or
    folder could not be used, failed with the error, or interrupted (Ctrl-C, a stop signal; a run killed
    outright is marked interrupted by the next job, which holds the lock)."""
    started = time.perf_counter()
    if config.cluster is None and config.workers is None:
        config = replace(config, workers=default_workers())
    with JobLock(workspace_path, COMMAND), Workspace(workspace_path) as workspace:
        runs.mark_interrupted(workspace, COMMAND)
        located = locate_embedder(config.embedder)
        embedder_id, provenance = embedder_identity(located)
        found = discover(config.inputs, config.extensions)
        plan = plan_work(found.files, recordings.file_states(workspace, embedder_id), config.retry_failed)
        run_config = {**asdict(config), "embedder_id": embedder_id, "embedder_source_kind": located.kind}
        with runs.recorded(workspace, COMMAND, run_config) as run:
            summary = JobSummary(run.id, embedder_id, found=len(found.files), unchanged=plan.unchanged,
                                 failed_before=plan.failed_before, skipped_by_extension=found.skipped_by_extension)

            def elapsed_summary() -> dict:
                summary.elapsed_seconds = time.perf_counter() - started
                return summary.as_dict()

            run.summary = elapsed_summary
            _record_problems(workspace, found, run.id, summary)
            if plan.todo:
                with _engine(config)(workspace, config, plan.todo, summary, located, progress) as job:
                    job.run()
            if summary.exit_status != 0:
                run.status = runs.RunStatus.COMPLETED_WITH_FAILURES
        return summary


def _engine(config: ArchiveJobConfig) -> type["_ArchiveEmbedding"]:
    """Who decodes and runs the network: this machine, or a Ray cluster (imported only when asked for)."""
    if config.cluster is None:
        return _ArchiveEmbedding
    from embed.ray_cluster import ClusterEmbedding

    return ClusterEmbedding


def _record_problems(workspace: Workspace, found: Discovery, run_id: int, summary: JobSummary) -> None:
    for problem in found.problems:
        if problem.is_file:
            recordings.save_recordings(workspace, [FileIdentity(problem.path, None, None)], content_sha256=None,
                                       status="failed", error=problem.reason, run_id=run_id)
            summary.failed.append((problem.path, problem.reason))
        else:
            summary.folder_problems.append((problem.path, problem.reason))


class ExampleBatcher:
    """A FIFO of (owner, examples) cut into model batches of a fixed size, across owners."""

    def __init__(self) -> None:
        self._parts: collections.deque[list] = collections.deque()
        self.pending = 0

    def push(self, owner: int, examples: np.ndarray) -> None:
        if len(examples):
            self._parts.append([owner, examples])
            self.pending += len(examples)

    def discard(self, owner: int) -> None:
        kept = [part for part in self._parts if part[0] != owner]
        self.pending = sum(len(examples) for _, examples in kept)
        self._parts = collections.deque(kept)

    def pop(self, size: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Up to `size` examples, oldest first, and (owner, count) for each piece in order."""
        pieces, owners = [], []
        while self._parts and size > 0:
            part = self._parts[0]
            taken = part[1][:size]
            pieces.append(taken)
            owners.append((part[0], len(taken)))
            if len(taken) == len(part[1]):
                self._parts.popleft()
            else:
                part[1] = part[1][len(taken):]
            size -= len(taken)
            self.pending -= len(taken)
        return np.concatenate(pieces), owners


@dataclass
class _Content:
    """One content being decoded: the file sent to a worker, and other paths found holding it."""

    sha256: str
    files: list[FoundFile]
    worker: int
    started: bool = False
    expected_seconds: float | None = None
    frame_parts: list[ChunkFrames] = field(default_factory=list)
    examples_done: int = 0
    examples_pending: int = 0  # in the batcher, not yet through the network
    audio: dict | None = None  # set when the worker has sent everything


_HASHING_DONE = object()


class _ArchiveEmbedding:
    """The main-process side: hashing thread, worker processes, network batches, one write per content."""

    def __init__(self, workspace: Workspace, config: ArchiveJobConfig, todo: list[FoundFile], summary: JobSummary,
                 located, progress: bool | None):
        self.workspace, self.config, self.summary = workspace, config, summary
        self.todo = todo
        self.send_examples = takes_examples(located)
        self.settings = WorkerSettings(config.embedder.batch_size, self.send_examples, config.files_per_worker)
        self.located = located
        self.hop_seconds = frames_of(located.model).hop_seconds
        self.embedder: Embedder | None = None
        self.hashed: queue.Queue = queue.Queue(maxsize=HASH_AHEAD)
        self.stop = threading.Event()
        self.hasher = threading.Thread(target=self._hash_all, name="homesound-hash", daemon=True)
        self.hashing_done = False
        self.context = multiprocessing.get_context("spawn")  # never fork a process that has TensorFlow
        self.workers: list[_Worker] = []
        self.contents: dict[int, _Content] = {}
        self.by_sha: dict[str, int] = {}
        self.failed_content: dict[str, str] = {}
        self.next_id = 0
        self.batcher = ExampleBatcher()
        self.progress = _Progress(len(todo), sum(found.size for found in todo), progress, self.hop_seconds)

    def __enter__(self) -> "_ArchiveEmbedding":
        self.hasher.start()
        self.workers = [self._start_worker(index) for index in range(self.config.workers)]
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        clean = exc_info[0] is None
        for worker in self.workers:
            if clean:
                worker.tasks.send(None)
            worker.tasks.close()  # an unclean end: the worker sees the pipe close and exits
        for worker in self.workers:
            worker.process.join(timeout=10 if clean else 1)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join()
            worker.results.close()
        self.hasher.join(timeout=5)
        self.progress.close()

    def run(self) -> None:
        self.embedder = build_embedder(self.located, self.config.embedder)  # workers start meanwhile
        if self.embedder.embedder_id != self.summary.embedder_id:
            raise HomesoundError(
                f"{self.located.model} files at {self.located.location} changed while the job started; run it again")
        recordings.register_embedder(self.workspace, self.embedder.embedder_id, self.embedder.provenance,
                                     frames=self.embedder.frames, class_names=self.embedder.class_names)
        self.progress.model_ready()
        while True:
            self._dispatch()
            if self.hashing_done and not self.contents:
                return
            self._receive()
            self._run_network()

    # -- hashing and dispatch ------------------------------------------------------------------

    def _hash_all(self) -> None:
        for found in self.todo:
            if not put_until_stopped(self.hashed, (found, *content_sha256(found.path)), self.stop):
                return
        put_until_stopped(self.hashed, _HASHING_DONE, self.stop)

    def _dispatch(self) -> None:
        while (not self.hashing_done and len(self.contents) < self.config.files_in_flight
               and self._worker_with_room() is not None):
            try:
                item = self.hashed.get(timeout=0.2) if not self.contents else self.hashed.get_nowait()
            except queue.Empty:
                return
            if item is _HASHING_DONE:
                self.hashing_done = True
                return
            found, sha256, reason = item
            if reason is not None:
                self._write_failed([found], sha256, reason)
            elif sha256 in self.by_sha:
                self.contents[self.by_sha[sha256]].files.append(found)  # written with it
            elif sha256 in self.failed_content:
                self._write_failed([found], sha256, self.failed_content[sha256])
            elif (facts := recordings.embedded_audio_facts(self.workspace, sha256, self.summary.embedder_id)):
                recordings.save_recordings(self.workspace, [_identity(found)], content_sha256=sha256,
                                           status="embedded", audio=facts, run_id=self.summary.run_id)
                self.summary.linked += 1
                self.progress.finished([found])
            else:
                self._send_to_worker(found, sha256)

    def _worker_with_room(self) -> int | None:
        """The worker with the fewest files not yet opened, if it can take one more.

        The bound keeps the tasks waiting in a worker's pipe far below the pipe's buffer, so
        sending a task never blocks (a worker blocked on sending results would never read it).
        """
        waiting = collections.Counter(content.worker for content in self.contents.values() if not content.started)
        index = min(range(self.config.workers), key=lambda candidate: waiting[candidate])
        return index if waiting[index] < 2 * self.config.files_per_worker else None

    def _send_to_worker(self, found: FoundFile, sha256: str, worker: int | None = None) -> None:
        worker = self._worker_with_room() if worker is None else worker
        file_id, self.next_id = self.next_id, self.next_id + 1
        self.contents[file_id] = _Content(sha256, [found], worker)
        self.by_sha[sha256] = file_id
        self.workers[worker].tasks.send((file_id, found.path))

    # -- worker messages and the network -------------------------------------------------------

    def _receive(self) -> None:
        """One message from each worker that has one ready; a worker that died is replaced."""
        if not self.contents:
            return
        by_handle = {}
        for worker in self.workers:
            by_handle[worker.results] = by_handle[worker.process.sentinel] = worker
        for ready in multiprocessing.connection.wait(list(by_handle), timeout=0.5):
            worker = by_handle[ready]
            if worker.crashed:
                continue  # both its handles were ready
            try:
                if ready is worker.results:
                    self._handle(*worker.results.recv())
                    continue
                while worker.results.poll():  # what it sent before it ended still counts
                    self._handle(*worker.results.recv())
            except (EOFError, OSError):
                pass  # it died in the middle of a message
            self._replace_crashed(worker)

    def _handle(self, kind: str, worker: int, file_id: int, value) -> None:
        content = self.contents.get(file_id)
        if content is None:
            return  # a file already given up
        if kind == "started":
            content.started, content.expected_seconds = True, value
        elif kind == "chunk":
            if self.send_examples:
                self.batcher.push(file_id, value)
                content.examples_pending += len(value)
            else:
                self._embedded(file_id, self.embedder.embed_chunks([value])[0])
        elif kind == "done":
            content.audio = value
            self._finish_if_complete(file_id)
        elif kind == "failed":
            self.batcher.discard(file_id)
            self._give_up(file_id, value)

    def _run_network(self) -> None:
        size = self.config.embedder.batch_size
        # A partial batch only when nothing more can come before the files in flight are complete.
        while self.batcher.pending >= size or (
                self.batcher.pending and all(content.audio is not None for content in self.contents.values())):
            batch, owners = self.batcher.pop(size)
            raw = self.embedder.run_network(batch)
            offset = 0
            for file_id, count in owners:
                self.contents[file_id].examples_pending -= count
                self._embedded(file_id, ChunkFrames(raw[offset : offset + count]))
                offset += count

    def _embedded(self, file_id: int, frames: ChunkFrames) -> None:
        content = self.contents[file_id]
        content.frame_parts.append(frames)
        content.examples_done += len(frames.raw)
        self.progress.embedded(file_id, content, len(frames.raw) * self.hop_seconds)
        self._finish_if_complete(file_id)

    def _finish_if_complete(self, file_id: int) -> None:
        content = self.contents[file_id]
        if content.audio is None or content.examples_pending:
            return
        raw, scores = join_frames(content.frame_parts, self.embedder)
        self._write_embedded(file_id, StoredEmbedding(
            content.sha256, self.summary.embedder_id, self.embedder.postprocess(raw),
            raw if self.config.keep_raw else None, self.hop_seconds, scores))

    def _write_embedded(self, file_id: int, embedding: StoredEmbedding) -> None:
        """Every path holding the content and its embedding, in one transaction; the content is done."""
        content = self.contents[file_id]
        facts = AudioFacts(**content.audio)
        recordings.save_recordings(self.workspace, [_identity(found) for found in content.files],
                                   content_sha256=content.sha256, status="embedded", audio=facts,
                                   run_id=self.summary.run_id, embedding=embedding)
        self._forget(file_id)
        self.summary.embedded += len(content.files)
        self.summary.embedded_contents += 1
        seconds = facts.duration_seconds or 0.0
        self.summary.embedded_seconds += seconds
        self.progress.finished(content.files, file_id, seconds - content.examples_done * self.hop_seconds)

    def _give_up(self, file_id: int, reason: str) -> None:
        content = self.contents[file_id]
        self.failed_content[content.sha256] = reason
        self._forget(file_id)
        self._write_failed(content.files, content.sha256, reason, file_id)

    def _forget(self, file_id: int) -> None:
        content = self.contents.pop(file_id)
        del self.by_sha[content.sha256]

    def _write_failed(self, files: list[FoundFile], sha256: str | None, reason: str, file_id: int | None = None
                      ) -> None:
        recordings.save_recordings(self.workspace, [_identity(found) for found in files], content_sha256=sha256,
                                   status="failed", error=reason, run_id=self.summary.run_id)
        self.summary.failed.extend((found.path, reason) for found in files)
        self.progress.finished(files, file_id)

    # -- worker processes ----------------------------------------------------------------------

    def _start_worker(self, index: int) -> "_Worker":
        task_reader, task_writer = self.context.Pipe(duplex=False)
        result_reader, result_writer = self.context.Pipe(duplex=False)
        process = self.context.Process(target=worker_main, args=(index, task_reader, result_writer, self.settings),
                                       name=f"homesound-decode-{index}", daemon=True)
        with _single_threaded_children():
            process.start()
        task_reader.close()  # the worker holds the only other ends: either side's death shows as a closed pipe
        result_writer.close()
        return _Worker(index, process, task_writer, result_reader)

    def _replace_crashed(self, worker: "_Worker") -> None:
        """A decoder that died (a crash in a codec library, the OOM killer) costs the files it had started."""
        worker.crashed = True
        worker.process.join()
        worker.tasks.close()
        worker.results.close()
        self.workers[worker.index] = self._start_worker(worker.index)
        for file_id in [file_id for file_id, content in self.contents.items() if content.worker == worker.index]:
            content = self.contents[file_id]
            if content.started:
                self.batcher.discard(file_id)
                self._give_up(file_id, f"the decoder process crashed (exit code {worker.process.exitcode}) while "
                                       "reading this file or one read at the same time; try --retry-failed")
            else:  # under a new id, so nothing the dead process sent can mix in
                self._forget(file_id)
                self._send_to_worker(content.files[0], content.sha256, worker.index)
                self.contents[self.by_sha[content.sha256]].files.extend(content.files[1:])


@dataclass
class _Worker:
    index: int
    process: multiprocessing.process.BaseProcess
    tasks: multiprocessing.connection.Connection
    results: multiprocessing.connection.Connection
    crashed: bool = False


def content_sha256(path: str) -> tuple[str | None, str | None]:
    """(sha256 hex digest, None), or (None, why the file cannot be read)."""
    try:
        return file_sha256(path), None
    except PermissionError:
        return None, "permission denied; make the file readable (chmod +r)"
    except FileNotFoundError:
        return None, "disappeared while the job ran"
    except OSError as error:
        return None, f"cannot read ({error.strerror or error})"


def _identity(found: FoundFile) -> FileIdentity:
    return FileIdentity(found.path, found.size, found.mtime_ns)


@contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Decoders get one BLAS thread each: the cores belong to the network in the main process."""
    saved = {name: os.environ.get(name) for name in WORKER_THREAD_ENV}
    os.environ.update({name: "1" for name in WORKER_THREAD_ENV})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _Progress:
    """tqdm bar over files, with hours of audio embedded, hours per minute, and an ETA from bytes done."""

    def __init__(self, files: int, total_bytes: int, enabled: bool | None, hop_seconds: float):
        from tqdm import tqdm

        self.hop_seconds = hop_seconds
        self.total_bytes = max(1, total_bytes)
        self.finished_bytes = 0
        self.partial_bytes: dict[int, float] = {}  # files in flight: size x share of their audio embedded
        self.seconds = 0.0
        self.started = time.perf_counter()
        self.last_refresh = 0.0
        self.detail = ""  # what the engine adds (a cluster: nodes busy)
        self.bar = tqdm(total=files, unit="file", file=sys.stderr, dynamic_ncols=True,
                        disable=(not sys.stderr.isatty()) if enabled is None else not enabled,
                        bar_format="{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} files [{elapsed}{postfix}]")

    def model_ready(self) -> None:
        """Rates and ETA count from here: loading the model is not part of the pace."""
        self.started = time.perf_counter()

    def embedded(self, file_id: int, content: _Content, seconds: float) -> None:
        self.seconds += seconds
        if content.expected_seconds:
            share = min(1.0, content.examples_done * self.hop_seconds / content.expected_seconds)
            self.partial_bytes[file_id] = content.files[0].size * share
        self._refresh()

    def withdrawn(self, file_id: int, seconds: float) -> None:
        """A file in flight that will be embedded again from the start (its worker was lost)."""
        self.partial_bytes.pop(file_id, None)
        self.seconds -= seconds

    def note(self, detail: str) -> None:
        if detail != self.detail:
            self.detail = detail
            self._refresh()

    def finished(self, files: list[FoundFile], file_id: int | None = None, remaining_seconds: float = 0.0) -> None:
        self.partial_bytes.pop(file_id, None)
        self.seconds += max(0.0, remaining_seconds)
        self.finished_bytes += sum(found.size for found in files)
        self.bar.update(len(files))
        self._refresh(force=True)

    def _refresh(self, force: bool = False) -> None:
        now = time.perf_counter()
        if self.bar.disable or (not force and now - self.last_refresh < 0.5):
            return
        self.last_refresh = now
        elapsed = now - self.started
        rate = self.seconds / 3600 / (elapsed / 60) if elapsed > 0 else 0.0
        done = (self.finished_bytes + sum(self.partial_bytes.values())) / self.total_bytes
        eta = time.strftime("%H:%M:%S", time.gmtime(elapsed * (1 - done) / done)) if done > 0 else "?"
        detail = f", {self.detail}" if self.detail else ""
        self.bar.set_postfix_str(f"{self.seconds / 3600:.2f} h audio, {rate:.1f} h/min, ETA {eta}{detail}",
                                 refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
