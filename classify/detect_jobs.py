"""Detection jobs: the library functions behind `homesound detect`, in a workspace's recordings or in audio
files. Each takes one frozen configuration, writes the events (and optional probabilities and timelines),
and returns what it found as data; the command line only parses and prints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from classify.config import EventSettings
from classify.detection import (
    PROBABILITY_FORMATS,
    RecordingDetection,
    check_output_path,
    detect_events,
    events_per_class,
    events_table,
    probabilities_table,
    write_events,
    write_table,
)
from embed.embedder import EmbedderConfig
from homesound.errors import AudioDecodeError, HomesoundError
from homesound.workspace.runs import recorded

WORKSPACE_BATCH = 16  # recordings run through the model together (memory: a few MB per hour each)


@dataclass(frozen=True)
class DetectionOutputs:
    """Where detection writes; the names are checked when the outputs are chosen, before any work."""

    events: str  # events.csv, events.json or events.parquet
    probabilities: str | None = None  # per-frame probabilities, .csv or .parquet
    timeline: str | None = None  # a directory for one PNG per recording (probabilities and events)

    def __post_init__(self) -> None:
        check_output_path(self.events)
        if self.probabilities:
            check_output_path(self.probabilities, PROBABILITY_FORMATS, "--probabilities")


@dataclass(frozen=True)
class DetectInWorkspaceJob:
    workspace: str
    model: str  # a detector file, a zero-shot detector file, or "zero-shot"
    outputs: DetectionOutputs
    events: EventSettings = field(default_factory=EventSettings)


@dataclass(frozen=True)
class DetectInFilesJob:
    files: tuple[str, ...]
    model: str  # a detector file, a zero-shot detector file, or "zero-shot"
    outputs: DetectionOutputs
    embedder: EmbedderConfig  # embeds the files; its frames must be the ones the detector reads
    events: EventSettings = field(default_factory=EventSettings)


@dataclass(frozen=True)
class DetectResult:
    detections: tuple[RecordingDetection, ...]  # one per recording or file, in order
    classes: tuple[str, ...]
    events_per_class: dict[str, int]
    hours: float  # audio detected in
    failures: tuple[tuple[str, str], ...] = ()  # (file, why) for each file that could not be read
    run_id: int | None = None  # the workspace run (detection in files records none)


def detect_in_workspace(job: DetectInWorkspaceJob) -> DetectResult:
    """Detect in every recording the workspace has embedded for the detector (each content once), store the
    detections under the registered model (a rerun replaces them), record the run, and write the outputs."""
    from tqdm.auto import tqdm

    from classify.detector import load_detector, model_sha256
    from classify.frame_inputs import (
        expected_inputs,
        pick_input,
        reads_class_scores,
        reads_raw_embeddings,
        workspace_embedders,
    )
    from homesound.workspace import Workspace
    from homesound.workspace.classify import register_detector, replace_detections
    from homesound.workspace.recordings import iter_embedded_recordings

    detector = load_detector(job.model)
    raw, scores = reads_raw_embeddings(detector), reads_class_scores(detector)
    draw = _timeline_writer(job.outputs.timeline, detector, job.events)
    detections = []
    # Embeddings are read lazily through a second connection, so committing detections never
    # touches the open SELECT; with WAL the reader keeps its snapshot.
    with Workspace(job.workspace, create=False) as workspace, Workspace(job.workspace, create=False) as reader:
        model_id = register_detector(workspace, job.model, model_sha256(job.model, detector), detector)
        done: dict[str, RecordingDetection] = {}  # by content: the same audio under two paths is done once
        with recorded(workspace, "detect", {"model_id": model_id, "events": dataclasses.asdict(job.events)}) as run:
            run.summary = lambda: {"recordings": len(done), "events": sum(len(d.events) for d in done.values())}
            for embedder_id in workspace_embedders(reader, detector):
                rows = iter(tqdm(iter_embedded_recordings(reader, embedder_id, with_raw=raw, with_class_scores=scores),
                                 desc="detect", unit="recording"))  # one iterator: islice on the bar itself restarts it
                while batch := list(islice(rows, WORKSPACE_BATCH)):
                    fresh = {stored.content_sha256: (recording, stored) for recording, stored in batch
                             if stored.content_sha256 not in done}
                    embeddings = [pick_input(detector, embedding=stored.embedding, raw_embedding=stored.raw_embedding,
                                             class_scores=stored.class_scores, what=recording.path)
                                  for recording, stored in fresh.values()]
                    hops = [stored.hop_seconds for _, stored in fresh.values()]
                    results = detect_events(detector, embeddings, embedder_id, job.events, hops)
                    for (content, (recording, stored)), (probabilities, events) in zip(fresh.items(), results):
                        replace_detections(workspace, model_id, content, events, len(probabilities), run.id)
                        done[content] = RecordingDetection(recording.path, content, probabilities, events,
                                                           stored.hop_seconds)
                        draw(done[content])
                    for recording, stored in batch:
                        detections.append(dataclasses.replace(done[stored.content_sha256], recording=recording.path))
    if not detections:
        raise HomesoundError(f"workspace {job.workspace} has no recordings with {expected_inputs(detector)}; "
                             f"run homesound embed with the same embedder first (--embedder {detector.frames.model})")
    return _written(detections, detector, job.outputs, run_id=run.id)


def detect_in_files(job: DetectInFilesJob, detector=None,
                    on_failure: Callable[[str, str], None] | None = None) -> DetectResult:
    """Embed each file and detect in it; a file that cannot be read is reported in the result's failures (and
    to `on_failure(path, reason)` at once, so a long list shows it while going on) and the job goes on with
    the rest. `detector` is job.model already loaded, where the caller has it (the command line loads it
    to choose the embedder the detector was trained on)."""
    from tqdm.auto import tqdm

    from classify.detector import load_detector
    from classify.frame_inputs import check_source, pick_input
    from embed.embedder import load_embedder
    from embed.pipeline import embed_file

    detector = detector if detector is not None else load_detector(job.model)
    embedder = load_embedder(config=job.embedder)
    check_source(detector, embedder.embedder_id, embedder.class_names)  # before any audio is decoded
    draw = _timeline_writer(job.outputs.timeline, detector, job.events)
    detections, failures = [], []
    for name in tqdm(job.files, desc="detect", unit="file", disable=len(job.files) < 2):
        try:
            embeddings = embed_file(name, embedder)
        except AudioDecodeError as error:
            failures.append((error.path, error.reason))
            if on_failure is not None:
                on_failure(error.path, error.reason)
            continue
        embedding = pick_input(detector, embedding=embeddings.embedding, raw_embedding=embeddings.raw_embedding,
                               class_scores=embeddings.class_scores, what=str(name))
        ((probabilities, events),) = detect_events(detector, [embedding], embeddings.embedder_id, job.events)
        detections.append(RecordingDetection(str(name), None, probabilities, events, detector.frames.hop_seconds))
        draw(detections[-1])
    return _written(detections, detector, job.outputs, failures=tuple(failures))


def _written(detections: list[RecordingDetection], detector, outputs: DetectionOutputs, **result) -> DetectResult:
    """Write the events table (and the probabilities) and sum up what was found."""
    write_events(events_table(detections), outputs.events)
    if outputs.probabilities:
        write_table(probabilities_table(detections, detector.classes), outputs.probabilities)
    hours = detector.frames.seconds(sum(len(d.probabilities) for d in detections)) / 3600
    return DetectResult(tuple(detections), tuple(detector.classes), events_per_class(detections, detector.classes),
                        hours, **result)


def _timeline_writer(directory: str | None, detector, settings: EventSettings
                     ) -> Callable[[RecordingDetection], None]:
    """Draws each detection into its own PNG in `directory` (a name once taken gets -1, -2, ...), or nothing."""
    if not directory:
        return lambda detection: None
    from classify.plots import timeline

    thresholds = {label: rule.on_threshold for label, rule in settings.rules(detector.thresholds).items()}
    taken: set[str] = set()

    def draw(detection: RecordingDetection) -> None:
        stem = Path(detection.recording).stem + (f"-{detection.content_sha256[:8]}" if detection.content_sha256 else "")
        name = next(candidate for candidate in (stem if i == 0 else f"{stem}-{i}" for i in range(len(taken) + 1))
                    if candidate not in taken)
        taken.add(name)
        timeline(detection.probabilities, detector.classes, detection.events, thresholds,
                 str(detection.recording), Path(directory) / f"{name}.png", detection.hop_seconds)

    return draw
