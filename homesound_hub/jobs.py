"""The hub's jobs as library functions: `listen` (live detection) and `export_hub` (the light runtime).

Each takes one frozen configuration and returns what it did as data; `homesound listen` and
`homesound export --hub` only parse, call one of them and print. Nothing heavy is imported here at
module level: a hub box runs `listen` with a hub directory and has neither TensorFlow nor torch.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from classify.config import EventSettings
from homesound.errors import HomesoundError
from homesound_hub.clips import ClipSettings
from homesound_hub.listen import ListenSummary
from homesound_hub.notify import MqttSettings
from homesound_hub.sources import SourceOptions

LISTEN_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)  # each ends listening cleanly

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DetectorEmbedder:
    """Which embedder feeds a detector: what the options name, the rest as the detector was trained (its
    model, and the source of its training embeddings if that is still there). The names are those of the
    command-line options, which embed.options reads."""

    embedder: str | None = None  # "vggish" or "yamnet"; None: the detector's model
    vggish: str | None = None
    yamnet: str | None = None
    pca: str | None = None
    backend: str | None = None  # VGGish: "tf" or "torch"; None: $HOMESOUND_VGGISH_BACKEND or torch
    jit_compile: bool = True  # XLA for VGGish with the tf backend


@dataclass(frozen=True)
class ListenConfig:
    """One listening session: where the audio comes from, what detects, and where the events go."""

    model: str | None = None  # a causal detector file (full install: TensorFlow or torch for the embedder) ...
    hub: str | None = None  # ... or a directory from export --hub (numpy and a TFLite runtime only)
    variant: str | None = None  # VGGish variant of the hub directory (None: float32)
    threads: int = 2  # TFLite threads with a hub directory
    embedder: DetectorEmbedder = field(default_factory=DetectorEmbedder)  # with `model` only
    source: str = "mic"  # mic, mic:NAME, mic:INDEX, "-" (raw PCM on stdin), a URL or an audio file
    audio: SourceOptions = field(default_factory=SourceOptions)
    stall_seconds: float = 10.0  # no audio this long: close events, mark sensors unavailable, reconnect
    events: EventSettings = field(default_factory=EventSettings)
    probabilities: bool = False  # every hop's probabilities on the JSON lines too
    mqtt: MqttSettings | None = None  # Home Assistant over MQTT
    webhook: str | None = None  # POST each event's start and end here
    clips: ClipSettings | None = None  # save each event as a clip into clips.workspace (recorded as a run)

    def __post_init__(self) -> None:
        if (self.model is None) == (self.hub is None):
            raise ValueError("ListenConfig needs exactly one of model (a detector file) or hub (a hub directory)")


@dataclass(frozen=True)
class ListenResult:
    summary: ListenSummary  # how long, how many events, latency; exit_status "ended" or "stopped"
    undelivered: bool  # an output never delivered anything (e.g. the MQTT broker was never reached)
    run_id: int | None  # the workspace run, when clips were saved


class ListenError(HomesoundError):
    """The audio source failed for good; the summary says how far listening got."""

    def __init__(self, summary: ListenSummary):
        super().__init__(summary.error)
        self.summary = summary


@dataclass(frozen=True)
class ExportHubConfig:
    model: str  # the causal detector to run on the hub
    directory: str  # the hub directory to write
    quantizations: tuple[str, ...] = ()  # extra VGGish variants besides float32 (embed.tflite.QUANTIZATIONS)
    calibration_audio: tuple[str, ...] = ()  # home audio to calibrate int8 and measure errors on (default synthetic)
    embedder: DetectorEmbedder = field(default_factory=DetectorEmbedder)


# --- listen -----------------------------------------------------------------------------------------------


def listen(config: ListenConfig, *, out: TextIO | None = None, progress: Progress | None = None,
           stop: threading.Event | None = None) -> ListenResult:
    """Listen until the source ends, `stop` is set, or SIGTERM, SIGINT or SIGHUP arrives (when called from the
    main thread: Python lets no other thread set signal handlers), writing events as JSON lines to `out`
    (default stdout) and to every configured output. Raises ListenError, with the summary, when the source
    fails for good."""
    from classify.stream import LiveDetector
    from homesound_hub.listen import JsonLinesSink, Listener
    from homesound_hub.sources import SourceReader, open_source

    source = open_source(config.source, config.audio)
    runtime = _hub_runtime(config, progress) if config.hub else _full_runtime(config)
    rules = config.events.rules(runtime.detector.thresholds)
    live = LiveDetector(runtime.detector.stream(), runtime.detector.classes, rules, runtime.embedder.embedder_id,
                        runtime.detector.input_encoding, runtime.detector.frames.hop_seconds)
    sinks = [JsonLinesSink(out or sys.stdout, config.probabilities)]
    if config.mqtt:
        from homesound_hub.notify import HomeAssistantMqtt

        sinks.append(HomeAssistantMqtt(config.mqtt, source.description))
    if config.webhook:
        from homesound_hub.notify import Webhook

        sinks.append(Webhook(config.webhook))
    with _clip_run(config, source.description, runtime) as clip_run:
        if clip_run is not None:
            sinks.append(clip_run.recorder)
        listener = Listener(SourceReader(source, stall_seconds=config.stall_seconds), runtime.embedder_factory,
                            live, sinks)
        if clip_run is not None:
            clip_run.run.summary = lambda: clip_run.summary(listener.summary)
        stop = stop or threading.Event()
        with _stopped_by_signals(stop), single_blas_thread():
            summary = listener.run(stop)
        if summary.exit_status == "error":
            raise ListenError(summary)  # inside the run: it is recorded as failed, with the summary so far
    return ListenResult(summary, any(getattr(sink, "undelivered", False) for sink in sinks),
                        clip_run.run.id if clip_run is not None else None)


@dataclass(frozen=True)
class _ClipRun:
    run: Any  # homesound.workspace.runs.RecordedRun
    recorder: Any  # homesound_hub.clips.ClipRecorder

    def summary(self, listened: ListenSummary) -> dict[str, Any]:
        return {"seconds": listened.seconds, "events": listened.events, "clips_saved": self.recorder.saved,
                "clips_dropped": self.recorder.dropped, "ended": listened.exit_status, "error": listened.error}


@contextmanager
def _clip_run(config: ListenConfig, source: str, runtime: _Runtime) -> Iterator[_ClipRun | None]:
    """With clips asked for: the session as one recorded run of the workspace, and the sink saving the clips."""
    if config.clips is None:
        yield None
        return
    from homesound.workspace import Workspace
    from homesound.workspace.runs import recorded
    from homesound_hub.clips import ClipRecorder

    clips = replace(config.clips, store_embeddings=runtime.exact_embeddings)
    run_config = {"source": source, "detector": runtime.name, "events": config.events, "clips": clips}
    with Workspace(clips.workspace) as workspace, recorded(workspace, "listen", run_config) as run:
        yield _ClipRun(run, ClipRecorder(clips, detector=runtime.name, embedder_id=runtime.embedder.embedder_id,
                                         embedder_provenance=runtime.embedder.provenance,
                                         frames=runtime.embedder.frames, class_names=runtime.embedder.class_names,
                                         run_id=run.id, model_id=runtime.register_model(workspace)))


@contextmanager
def single_blas_thread() -> Iterator[None]:
    """numpy's BLAS threads would fight the embedder for the cores over matrices too small to gain from them
    (3-4x slower on two busy cores). numpy is loaded long before listening starts, so an environment
    variable set now would do nothing: the running BLAS is limited instead. A user's own setting wins."""
    if any(name in os.environ for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")):
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@contextmanager
def _stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM, SIGINT and SIGHUP set `stop` while the block runs, so listening ends with every output closed
    (only from the main thread; elsewhere the embedding application keeps its own handling)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, lambda *_: stop.set()) for number in LISTEN_STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@dataclass(frozen=True)
class _Runtime:
    """What listen runs: an embedder for hops, the detector (torch or numpy), and how to name them."""

    embedder: Any
    detector: Any
    name: str
    model_path: str  # the detector's identity in the workspace's models table: its file (or zero-shot) ...
    model_sha256: str  # ... and content; a hub runs the model it was exported from, so it shares that row
    filter_table: Any = None  # resampy's filter, from the hub directory
    exact_embeddings: bool = True  # the embeddings are those of the embedder id they carry

    def register_model(self, workspace) -> int:
        """The detector's models row (the same one `detect --model` with that file uses)."""
        from homesound.workspace.classify import register_model

        config = getattr(self.detector, "config", None)  # the hub's numpy detector carries its metadata instead
        return register_model(
            workspace, path=self.model_path, sha256=self.model_sha256,
            config={"model": vars(config) if config is not None else self.detector.metadata},
            classes=self.detector.classes, thresholds=self.detector.thresholds,
            embedder_ids=self.detector.embedder_ids, metrics=getattr(self.detector, "metrics", None))

    def embedder_factory(self, sample_rate: int, on_audio):
        from embed.streaming import StreamingEmbedder

        return StreamingEmbedder(self.embedder, sample_rate, on_audio, self.filter_table)


def _hub_runtime(config: ListenConfig, progress: Progress | None) -> _Runtime:
    from homesound_hub.bundle import load_hub

    hub = load_hub(config.hub, config.variant, threads=config.threads)
    if progress:
        progress(f"listening with {hub.description}")
    exported = hub.manifest["detector"]
    name = f"hub:{Path(config.hub).resolve()} (detector sha256 {exported['sha256'][:12]})"
    return _Runtime(hub.embedder, hub.detector, name, exported["source"], exported["sha256"], hub.filter_table,
                    exact_embeddings=hub.exact)


def _full_runtime(config: ListenConfig) -> _Runtime:
    import numpy as np
    import torch

    from classify.detector import load_detector, model_sha256

    torch.set_num_threads(1)  # one small GRU step per second; the cores are for the embedder
    detector = load_detector(config.model)  # trained, or zero-shot (YAMNet's class scores)
    if not detector.streamable:
        raise HomesoundError(f"{config.model} is bidirectional (offline only); train a causal detector to listen")
    embedder = _detector_embedder(config.embedder, detector, batch_size=1)
    embedder.raw_embeddings([np.zeros(embedder.frames.window_samples)])  # compile now
    where = config.model if not Path(config.model).exists() else str(Path(config.model).resolve())
    digest = model_sha256(config.model, detector)
    return _Runtime(embedder, detector, f"model:{where} (sha256 {digest[:12]})", where, digest)


def _detector_embedder(choice: DetectorEmbedder, detector, **settings):
    """The embedder `choice` names, by default the model (and source, if still there) the detector was trained on."""
    from classify.frame_inputs import check_source
    from embed.embedder import load_embedder
    from embed.options import chosen_model, embedder_config_from_args

    model = chosen_model(choice, default=detector.frames.model)
    given = choice.yamnet if model == "yamnet" else choice.vggish
    source = given or (_trained_source(detector) if model == detector.frames.model else None)
    embedder = load_embedder(config=embedder_config_from_args(
        choice, model, source=source, **{"jit_compile": choice.jit_compile, **settings}))
    check_source(detector, embedder.embedder_id, embedder.class_names)
    return embedder


def _trained_source(detector) -> str | None:
    """The embedder source recorded with the detector's training embeddings, when it is still there."""
    for provenance in getattr(detector, "embedder_provenance", {}).values():  # a zero-shot detector has none
        source = (provenance or {}).get("source")
        if source and ("://" in source or any(Path(source).parent.glob(Path(source).name + "*"))):
            return source  # a Hub handle, a SavedModel directory, or a checkpoint prefix with its files
    return None


# --- export --hub -----------------------------------------------------------------------------------------


def export_hub(config: ExportHubConfig, *, progress: Progress | None = None) -> dict:
    """Write the hub directory for `config.model` (the embedder as TFLite, the detector for numpy) and return
    its manifest, with each variant's measured embedding error."""
    from classify.detector import Detector
    from homesound_hub.bundle import write_hub

    detector = Detector.load(config.model)
    embedder = _detector_embedder(config.embedder, detector, jit_compile=False)  # converted, never run by XLA
    return write_hub(config.model, embedder, config.directory, quantizations=config.quantizations,
                     calibration_audio=config.calibration_audio, progress=progress or (lambda text: None))
