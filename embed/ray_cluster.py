"""`homesound embed --workspace --ray`: the same archive job, with the work spread over a Ray cluster.

The driver (the machine that runs the command) does everything it does without Ray, with the same
code (embed/archive.py): it holds the workspace lock, walks the inputs, skips unchanged files,
hashes the rest, links content embedded before, and writes each recording in one transaction
when its last embedding is back. Only decoding and the network move to the cluster:

- Decoding, resampling and the front end run as Ray tasks (one CPU each), a few files per task
  read in turn; a task cuts its files' examples into full network batches (so short clips fill
  batches, as on one machine) and streams them out as it goes.
- The network runs in a pool of actors, one per node (one per GPU on a node that has GPUs; a node
  started with no CPUs and no GPUs gets none). Each loads the model once, from the same path the
  driver found it at (a shared filesystem), and gets work only once its embedder id, computed from
  the files it loaded, equals the driver's.
- A batch goes from the decoding task's node to an actor's node through Ray's object store; the
  driver reads small headers and the finished embeddings only.

Faults: a node that dies costs the files it had in flight. The driver sends them again under new
ids (whatever the lost workers sent under the old ids is ignored, so nothing mixes or is written
twice); a file that was being decoded each of `max_attempts` times its worker died is recorded as
failed, so a file that crashes its decoder cannot stall the job. A driver killed mid-job takes its
Ray tasks and actors with it; rerunning the command skips what was written, as on one machine.

Ray is imported only here, and this module only when `--ray` is given.
"""

from __future__ import annotations

import collections
import os
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

import numpy as np

from embed.archive import ExampleBatcher, _ArchiveEmbedding, _Content
from embed.archive_worker import WorkerSettings, file_messages
from embed.discover import FoundFile
from embed.embedder import ChunkFrames, EmbedderConfig, EmbedderSource, build_embedder, frames_of
from homesound.errors import HomesoundError
from homesound.frames import FrameSpec
from homesound.workspace import recordings
from homesound.workspace.recordings import StoredEmbedding

CALLS_PER_ACTOR = 2  # batches sent to an actor at once: one running, one waiting, so it never idles
TASKS_PER_CPU = 2  # decoding tasks in flight per CPU of the cluster: one running, one queued
OBJECTS_AHEAD = 8  # outputs a decoding task may have ahead of the driver (4 batches of ~1.6 MB)
REFRESH_SECONDS = 2.0  # how often the driver looks for nodes that joined or died


@dataclass(frozen=True)
class ClusterConfig:
    """How the job uses the cluster; stored with the run like the rest of its configuration."""

    address: str = "auto"  # host:port of the head node, or "auto" (RAY_ADDRESS, or the cluster this machine is in)
    actors_per_node: int = 1  # network actors on a node without GPUs (cores shared); a GPU node has one per GPU
    files_per_task: int = 16  # files a decoding task reads in turn; their examples share network batches
    bytes_per_task: int = 64 << 20  # a task takes files up to this size in total (a bigger file goes alone)
    max_attempts: int = 3  # times a file's decoding may be lost with its worker before it is recorded as failed
    node_wait_seconds: float = 120.0  # how long the job waits for a node that can run the network

    def __post_init__(self) -> None:
        if self.actors_per_node < 1 or self.files_per_task < 1 or self.max_attempts < 1:
            raise HomesoundError("actors per node, files per task and attempts must be at least 1")


# -- what runs on the cluster -------------------------------------------------------------------


def decode_files(files: list[tuple[int, str]], settings: WorkerSettings, frames: FrameSpec) -> Iterator[Any]:
    """A decoding task (a Ray streaming generator): its files' messages and network batches.

    Yields small headers; a ("batch", [(file_id, count), ...]) header is followed by its payload
    (examples, or a 16 kHz waveform chunk for models with their own front end), which stays in
    the object store until an actor takes it. ("done", file_id, audio facts, examples) comes once
    a file is read to its end; its last examples may follow in a later batch.
    """
    import ray

    yield ("node", ray.get_runtime_context().get_node_id())
    batcher = ExampleBatcher()
    size = settings.examples_per_chunk
    for file_id, path in files:
        examples = 0
        for kind, _, _, value in file_messages(0, file_id, path, settings):
            if kind == "chunk":
                count = len(value) if settings.send_examples else _frames_in_chunk(value, frames)
                examples += count
                if not settings.send_examples:
                    yield from _batch(value, [(file_id, count)])
                    continue
                batcher.push(file_id, value)
                while batcher.pending >= size:
                    yield from _batch(*batcher.pop(size))
            elif kind == "done":
                yield ("done", file_id, value, examples)
            elif kind == "failed":
                batcher.discard(file_id)
                yield ("failed", file_id, value)
            else:
                yield (kind, file_id, value)  # "started", with the expected duration
    while batcher.pending:
        yield from _batch(*batcher.pop(size))


def _batch(payload: np.ndarray, owners: list[tuple[int, int]]) -> Iterator[Any]:
    yield ("batch", owners)
    yield payload


def _frames_in_chunk(chunk: np.ndarray, frames: FrameSpec) -> int:
    """Whole frames in a waveform chunk: each needs its window, and they start a hop apart."""
    return (len(chunk) - (frames.window_samples - frames.hop_samples)) // frames.hop_samples


class NetworkActor:
    """Holds the model once (built from the driver's embedder configuration); turns batches into stored
    embeddings, with their raw values when they are kept and class scores when the model has them."""

    def __init__(self, located: EmbedderSource, config: EmbedderConfig, send_examples: bool, keep_raw: bool,
                 actors_on_node: int):
        self.send_examples, self.keep_raw = send_examples, keep_raw
        self.embedder = None
        self.error: str | None = None
        try:
            located, config = _fit_to_node(located, config, actors_on_node)
            self.embedder = build_embedder(located, config)
        except Exception as error:  # reported by identity(): the driver refuses this node, the job goes on
            self.error = f"{type(error).__name__}: {error}".splitlines()[0]

    def identity(self) -> dict:
        import socket

        import ray

        identity = {"node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(), "error": self.error}
        if self.embedder is not None:
            identity.update(embedder_id=self.embedder.embedder_id, provenance=self.embedder.provenance,
                            frames=self.embedder.frames, class_names=self.embedder.class_names)
        return identity

    def embed(self, payload: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(stored encoding, raw float32 if kept, class scores if any) of a batch's frames."""
        if self.send_examples:
            frames = ChunkFrames(self.embedder.run_network(payload))
        else:
            frames = self.embedder.embed_chunks([payload])[0]
        raw = np.asarray(frames.raw, np.float32)
        return self.embedder.postprocess(raw), raw if self.keep_raw else None, frames.class_scores


def _fit_to_node(located: EmbedderSource, config: EmbedderConfig, actors_on_node: int
                 ) -> tuple[EmbedderSource, EmbedderConfig]:
    """The driver's embedder, run the way this node allows (none of it changes the numbers or the id).

    Threads: Ray starts an actor with OMP_NUM_THREADS=1, which torch obeys; the network gets the
    node's cores instead, shared between its actors. A GPU Ray gave this actor: VGGish's torch
    backend runs there (TensorFlow finds it by itself).
    """
    import ray

    share = max(1, len(os.sched_getaffinity(0)) // actors_on_node)
    runtime = located.runtime
    if getattr(runtime, "backend", None) == "torch":
        import torch

        torch.set_num_threads(share)
        if ray.get_gpu_ids() and runtime.device == "cpu":
            located = replace(located, runtime=replace(runtime, device="cuda"))
            config = replace(config, device="cuda")
    elif located.kind != "tflite":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(share)
    return located, replace(config, threads=config.threads or share)  # a TFLite interpreter's threads


# -- the driver ---------------------------------------------------------------------------------


@dataclass
class _Task:
    """A decoding task in flight."""

    files: list[int]
    node: str | None = None
    batch_owners: list[tuple[int, int]] | None = None  # a batch header read; its payload comes next
    file_offsets: collections.Counter = field(default_factory=collections.Counter)  # examples seen per file


@dataclass
class _Batch:
    payload: Any  # ray.ObjectRef
    owners: list[tuple[int, int, int]]  # (file_id, first frame in the file, count), in payload order
    tries: int = 0
    actor: "_Actor | None" = None


@dataclass
class _Actor:
    handle: Any  # ray.actor.ActorHandle
    node: str
    identity: Any  # ray.ObjectRef of identity() until the actor is ready, then None
    calls: int = 0

    @property
    def ready(self) -> bool:
        return self.identity is None


class ClusterEmbedding(_ArchiveEmbedding):
    """The archive job's engine with decoding and the network on a Ray cluster (see the module docstring)."""

    def __init__(self, workspace, config, todo: list[FoundFile], summary, located, progress):
        # Files in flight are bounded by the tasks in flight (TASKS_PER_CPU per CPU of the cluster), not by
        # the single-machine default, which would starve a cluster.
        super().__init__(workspace, replace(config, files_in_flight=sys.maxsize), todo, summary, located, progress)
        self.cluster: ClusterConfig = config.cluster
        self.ray = _import_ray()
        self.connected_here = False
        self.tasks: dict[Any, _Task] = {}  # ObjectRefGenerator -> task
        self.calls: dict[Any, _Batch] = {}  # ObjectRef of an actor call -> its batch
        self.waiting: collections.deque[_Batch] = collections.deque()
        self.actors: list[_Actor] = []
        self.refused_nodes: dict[str, str] = {}
        self.max_tasks = TASKS_PER_CPU
        self.bundle: list[tuple[int, str]] = []
        self.bundle_bytes = 0
        self.attempts: collections.Counter[str] = collections.Counter()
        self.frames: FrameSpec = frames_of(self.located.model)  # then as the first actor ready states them
        self.parts: dict[int, list[tuple]] = collections.defaultdict(list)  # (first frame, encoded, raw, scores)
        self.example_totals: dict[int, int] = {}
        self.last_refresh = 0.0
        self.no_actor_since: float | None = None
        self.first_identity: dict | None = None

    def __enter__(self) -> "ClusterEmbedding":
        self._connect()
        self.hasher.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        if self.connected_here:
            self.ray.shutdown()  # the driver's job ends: Ray stops its tasks and actors on every node
        else:
            for actor in self.actors:
                self.ray.kill(actor.handle)
        self.hasher.join(timeout=5)
        self.progress.close()

    def run(self) -> None:
        self._wait_for_first_actor()
        self.progress.model_ready()
        while True:
            self._dispatch()
            if self.bundle and (self.hashing_done or self.hashed.empty()):
                self._submit_bundle()
            if self.hashing_done and not self.contents:
                return
            self._submit_batches()
            self._receive()
            self._refresh_cluster()

    # -- connecting and the actor pool ---------------------------------------------------------

    def _connect(self) -> None:
        if self.ray.is_initialized():  # a caller that connected already (a notebook, a test)
            return
        import logging

        import embed
        import homesound

        runtime_env = {  # the workers run the driver's homesound, whatever the nodes have installed
            "py_modules": [os.path.dirname(embed.__file__), os.path.dirname(homesound.__file__)],
            "env_vars": {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")},
        }
        try:
            self.ray.init(address=self.cluster.address, runtime_env=runtime_env, logging_level=logging.WARNING,
                          log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise HomesoundError(
                f"cannot connect to a Ray cluster at {self.cluster.address!r} ({str(error).splitlines()[0]}); "
                "start one with `ray start --head` (and `ray start --address HEAD:6379` on the other nodes), "
                "or give the head's address: --ray HOST:6379") from None
        self.connected_here = True

    def _wait_for_first_actor(self) -> None:
        """The model loads on the nodes while the driver hashes; work starts once one actor is ready, and
        the embedder is recorded in the workspace as that actor describes it (as one machine does)."""
        while self.first_identity is None:
            self._refresh_cluster()
            pending = [actor.identity for actor in self.actors if not actor.ready]
            if pending:
                self.ray.wait(pending, num_returns=1, timeout=0.5)
                self._check_identities()
            else:
                time.sleep(0.5)
        identity = self.first_identity
        self.frames = identity["frames"]
        recordings.register_embedder(self.workspace, identity["embedder_id"], identity["provenance"],
                                     frames=identity["frames"], class_names=identity["class_names"])

    def _refresh_cluster(self) -> None:
        """Actors for nodes that joined, none for nodes that died; decoding capacity from the CPUs there are."""
        now = time.monotonic()
        if now - self.last_refresh >= REFRESH_SECONDS:
            self.last_refresh = now
            nodes = [node for node in self.ray.nodes() if node["Alive"] and _offers_work(node)]
            alive = {node["NodeID"] for node in nodes}
            self.actors = [actor for actor in self.actors if actor.node in alive]
            staffed = {actor.node for actor in self.actors}
            for node in nodes:
                if node["NodeID"] not in staffed and node["NodeID"] not in self.refused_nodes:
                    self._start_actors(node)
            cpus = sum(node["Resources"].get("CPU", 0) for node in nodes)
            self.max_tasks = max(TASKS_PER_CPU, int(TASKS_PER_CPU * cpus))
            if nodes and alive <= self.refused_nodes.keys():
                self._fail_without_nodes("every node was refused")
        if any(actor.ready for actor in self.actors):
            self.no_actor_since = None
        elif self.no_actor_since is None:
            self.no_actor_since = now
        elif now - self.no_actor_since > self.cluster.node_wait_seconds:
            self._fail_without_nodes(f"waited {self.cluster.node_wait_seconds:.0f} s")
        self._note_busy_nodes()

    def _fail_without_nodes(self, why: str) -> None:
        refused = "".join(f"\n  node {node[:12]} {reason}" for node, reason in self.refused_nodes.items())
        raise HomesoundError(
            f"no node of the Ray cluster can run the network ({why}){refused}\n"
            "the model files must be at the same path on every node (a shared filesystem); rerun the command "
            "once that is fixed: what was embedded is kept")

    def _start_actors(self, node: dict) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        gpus = int(node["Resources"].get("GPU", 0))
        count = gpus or self.cluster.actors_per_node
        actor_class = self.ray.remote(NetworkActor).options(
            num_cpus=0, num_gpus=1 if gpus else 0, max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
        located = self.located
        if getattr(located.runtime, "converted", None) is not None:  # weights in memory: each actor reads the file
            located = replace(located, runtime=replace(located.runtime, converted=None))
        for _ in range(count):
            handle = actor_class.remote(located, self.config.embedder, self.send_examples, self.config.keep_raw,
                                        1 if gpus else count)
            self.actors.append(_Actor(handle, node["NodeID"], handle.identity.remote()))

    def _check_identities(self, ready: set | None = None) -> None:
        for actor in [actor for actor in self.actors if not actor.ready]:
            if ready is not None and actor.identity not in ready:
                continue
            found, _ = self.ray.wait([actor.identity], timeout=0)
            if not found:
                continue
            try:
                identity = self.ray.get(actor.identity)
            except self.ray.exceptions.RayError:
                self.actors.remove(actor)  # its node died while it loaded; the next refresh replaces it
                continue
            if identity["error"] or identity["embedder_id"] != self.summary.embedder_id:
                reason = identity["error"] or (f"its model files give embedder {identity['embedder_id']}, "
                                               f"not the driver's {self.summary.embedder_id}")
                self._refuse(actor, f"{identity['host']}: {reason}")
            else:
                actor.identity = None
                self.first_identity = self.first_identity or identity

    def _refuse(self, actor: _Actor, reason: str) -> None:
        self.refused_nodes[actor.node] = reason
        for other in [other for other in self.actors if other.node == actor.node]:
            self.actors.remove(other)
            self.ray.kill(other.handle)
        _warn(f"not using Ray node {actor.node[:12]} ({reason})")

    def _note_busy_nodes(self) -> None:
        nodes = {actor.node for actor in self.actors if actor.ready}
        busy = {actor.node for actor in self.actors if actor.calls} | {task.node for task in self.tasks.values()}
        self.progress.note(f"{len(busy & nodes)}/{len(nodes)} nodes busy")

    # -- sending work --------------------------------------------------------------------------

    def _worker_with_room(self) -> int | None:
        """Room for another file while the tasks in flight are fewer than the cluster can run."""
        return 0 if len(self.tasks) < self.max_tasks else None

    def _send_to_worker(self, found: FoundFile, sha256: str, worker: int | None = None) -> None:
        file_id, self.next_id = self.next_id, self.next_id + 1
        self.contents[file_id] = _Content(sha256, [found], worker=-1)
        self.by_sha[sha256] = file_id
        if self.bundle and self.bundle_bytes + found.size > self.cluster.bytes_per_task:
            self._submit_bundle()
        self.bundle.append((file_id, found.path))
        self.bundle_bytes += found.size
        if len(self.bundle) >= self.cluster.files_per_task:
            self._submit_bundle()

    def _submit_bundle(self) -> None:
        task = self.ray.remote(decode_files).options(
            num_cpus=1, max_retries=0, _generator_backpressure_num_objects=OBJECTS_AHEAD)
        self.tasks[task.remote(self.bundle, self.settings, self.frames)] = _Task([file_id for file_id, _ in self.bundle])
        self.bundle, self.bundle_bytes = [], 0

    def _submit_batches(self) -> None:
        while self.waiting:
            actor = min((actor for actor in self.actors if actor.ready and actor.calls < CALLS_PER_ACTOR),
                        key=lambda candidate: candidate.calls, default=None)
            if actor is None:
                return
            batch = self.waiting.popleft()
            if not any(file_id in self.contents for file_id, _, _ in batch.owners):
                continue  # every file in it was given up or sent again
            batch.actor = actor
            actor.calls += 1
            self.calls[actor.handle.embed.remote(batch.payload)] = batch

    # -- results -------------------------------------------------------------------------------

    def _receive(self) -> None:
        """Whatever is ready among task outputs, actor results and actors loading the model."""
        reading = len(self.waiting) < CALLS_PER_ACTOR * max(1, len(self.actors))  # else: let actors catch up
        waitables = [*(self.tasks if reading else ()), *self.calls,
                     *(actor.identity for actor in self.actors if not actor.ready)]
        if not waitables:
            time.sleep(0.1)
            return
        ready, _ = self.ray.wait(waitables, num_returns=1, timeout=0.5, fetch_local=False)
        if not ready:
            return
        ready, _ = self.ray.wait(waitables, num_returns=len(waitables), timeout=0, fetch_local=False)
        ready_set = set(ready)
        for item in ready:
            if isinstance(item, self.ray.ObjectRefGenerator):
                self._read_task(item)
            elif item in self.calls:
                self._finish_call(item)
        self._check_identities(ready_set)

    def _read_task(self, generator) -> None:
        task = self.tasks[generator]
        while generator.next_ready() or generator.is_finished():
            try:
                ref = next(generator)
            except StopIteration:
                self._task_ended(generator)
                return
            if task.batch_owners is not None:
                self._queue_batch(task, ref)
                continue
            try:
                header = self.ray.get(ref)
            except self.ray.exceptions.RayError as error:
                self._task_ended(generator, error)
                return
            self._handle_header(task, header)

    def _handle_header(self, task: _Task, header: tuple) -> None:
        kind = header[0]
        if kind == "node":
            task.node = header[1]
        elif kind == "batch":
            task.batch_owners = header[1]
        elif (content := self.contents.get(header[1])) is None:
            return  # a file given up or sent again since
        elif kind == "started":
            content.started, content.expected_seconds = True, header[2]
        elif kind == "done":
            content.audio = header[2]
            self.example_totals[header[1]] = header[3]
            self._finish_if_complete(header[1])
        elif kind == "failed":
            self._withdraw(header[1])
            self._give_up(header[1], header[2])

    def _queue_batch(self, task: _Task, payload) -> None:
        owners = []
        for file_id, count in task.batch_owners:
            owners.append((file_id, task.file_offsets[file_id], count))
            task.file_offsets[file_id] += count
        task.batch_owners = None
        self.waiting.append(_Batch(payload, owners))

    def _finish_call(self, ref) -> None:
        batch = self.calls.pop(ref)
        batch.actor.calls -= 1
        exceptions = self.ray.exceptions
        try:
            encoded, raw, scores = self.ray.get(ref)
        except exceptions.RayActorError:  # the actor (its node) died: another actor takes the batch
            if batch.actor in self.actors:
                self.actors.remove(batch.actor)
                _warn(f"the network actor on node {batch.actor.node[:12]} was lost; its batches go to the others")
            batch.tries += 1
            if batch.tries < self.cluster.max_attempts:
                self.waiting.appendleft(batch)
            else:
                self._lost(batch.owners, "the network actors running it died")
            return
        except exceptions.RayTaskError as error:
            if isinstance(error, exceptions.ObjectLostError) or isinstance(error.cause, exceptions.RayError):
                # Ray's failure, not the network's: the actor could not fetch the batch (its examples died
                # with the node that decoded them, ObjectLostError and kin) or that node died (NodeDiedError)
                self._lost(batch.owners, type(error.cause or error).__name__)
                return
            # the network itself failed on this batch
            reason = f"the network failed: {str(error.cause or error).splitlines()[0]}"
            for file_id, _, _ in batch.owners:
                if file_id in self.contents:
                    self._withdraw(file_id)
                    self._give_up(file_id, reason)
            return
        except exceptions.RayError as error:  # its examples were lost with the node that decoded them
            self._lost(batch.owners, type(error).__name__)
            return
        offset = 0
        for file_id, first, count in batch.owners:
            rows = slice(offset, offset + count)
            offset += count
            content = self.contents.get(file_id)
            if content is None:
                continue
            self.parts[file_id].append((first, encoded[rows], *(None if part is None else part[rows]
                                                                for part in (raw, scores))))
            content.examples_done += count
            self.progress.embedded(file_id, content, count * self.hop_seconds)
            self._finish_if_complete(file_id)

    def _finish_if_complete(self, file_id: int) -> None:
        content = self.contents[file_id]
        total = self.example_totals.get(file_id)
        if content.audio is None or total is None or content.examples_done < total:
            return
        parts = sorted(self.parts.pop(file_id, []), key=lambda part: part[0])
        del self.example_totals[file_id]
        spec = self.frames
        encoded = _joined([part[1] for part in parts], (spec.dimension,), spec.stored_dtype)
        raw = _joined([part[2] for part in parts], (spec.dimension,), np.float32) if self.config.keep_raw else None
        scores = _joined([part[3] for part in parts], (spec.class_count,), np.float32) if spec.class_count else None
        self._write_embedded(file_id, StoredEmbedding(content.sha256, self.summary.embedder_id, encoded, raw,
                                                      self.hop_seconds, scores))

    # -- losing workers ------------------------------------------------------------------------

    def _task_ended(self, generator, error: Exception | None = None) -> None:
        """A decoding task ended, or died with its node or worker process: its files whose examples did
        not all come out are sent again; one it was reading is charged an attempt (it may be the cause)."""
        task = self.tasks.pop(generator)
        why = f"its decoding worker died ({type(error).__name__})" if error else "its decoding task ended early"
        again = 0
        for file_id in task.files:
            content = self.contents.get(file_id)
            if content is None:
                continue
            if content.audio is None:
                self._send_again(file_id, charge=content.started, why=why)
            elif task.file_offsets[file_id] < self.example_totals[file_id]:
                self._send_again(file_id, charge=False, why=why)  # its last examples were still in the task
            else:
                continue
            again += 1
        if again:
            _warn(f"a decoding task on node {(task.node or '?')[:12]} was lost ({type(error).__name__}): "
                  f"{again} files sent again")

    def _lost(self, owners: list[tuple[int, int, int]], why: str) -> None:
        for file_id, _, _ in owners:
            if file_id in self.contents:
                self._send_again(file_id, charge=True, why=why)

    def _send_again(self, file_id: int, charge: bool, why: str) -> None:
        """Under a new id, so nothing the lost workers sent for the old one can mix in."""
        content = self.contents[file_id]
        self._withdraw(file_id)
        if charge:
            self.attempts[content.sha256] += 1
            if self.attempts[content.sha256] >= self.cluster.max_attempts:
                self._give_up(file_id, f"lost {self.attempts[content.sha256]} times while being embedded: {why}; "
                                       "try --retry-failed")
                return
        self._forget(file_id)
        self._send_to_worker(content.files[0], content.sha256)
        self.contents[self.by_sha[content.sha256]].files.extend(content.files[1:])

    def _withdraw(self, file_id: int) -> None:
        """Forget what arrived for a file that will not be written from it."""
        self.parts.pop(file_id, None)
        self.example_totals.pop(file_id, None)
        self.progress.withdrawn(file_id, self.contents[file_id].examples_done * self.hop_seconds)


def _joined(parts: list[np.ndarray], row_shape: tuple[int, ...], dtype) -> np.ndarray:
    """A file's frames in order; a file shorter than one frame has none."""
    return np.concatenate(parts) if parts else np.zeros((0, *row_shape), dtype)


def _warn(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"homesound embed: {message}", file=sys.stderr)  # above the progress bar, not through it


def _offers_work(node: dict) -> bool:
    """A node started with no CPUs and no GPUs (a head kept for coordination) gets no actor."""
    return bool(node["Resources"].get("GPU", 0) or node["Resources"].get("CPU", 0))


def _import_ray():
    try:
        import ray
    except ImportError:
        raise HomesoundError("--ray needs the ray package: pip install 'homesound[ray]'") from None
    return ray
