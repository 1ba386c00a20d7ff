"""Push queued windows to Label Studio as clips with the model's guess; pull back what people labeled.

Both directions are safe to rerun at any point. Push first adopts tasks the server already holds
for queued windows (created by a run that died before it could note them), then imports the
rest in small batches, noting each batch in one transaction as soon as the server confirms it.
Pull reads every annotation first and writes them all in one transaction, so a server that
dies mid-pull leaves the workspace as it was.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from active_learning.clips import clip_name, cut_clip
from active_learning.config import DEFAULT_CLASSES, PushConfig
from active_learning.spectrogram import write_clip_picture
from active_learning.label_studio import LabelStudio
from active_learning.labeling import (
    NONE_OF_THESE,
    WINDOW_KEY_FIELD,
    annotation_from_task,
    annotator_id,
    label_config,
    strong_labels,
    task_payload,
)
from homesound.errors import HomesoundError
from homesound.workspace import Workspace
from homesound.workspace import active_learning as queue

log = logging.getLogger(__name__)

@dataclass
class PushSummary:
    project_id: int
    pushed: int = 0
    adopted: int = 0  # already on the server from an interrupted run, now noted
    failed: list[str] = field(default_factory=list)  # windows whose clip could not be cut; retried next time


@dataclass
class PullSummary:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    waiting: int = 0  # pushed tasks nobody has finished yet
    recordings: tuple[str, ...] = ()  # content hashes whose labels changed


def ensure_project(workspace: Workspace, server: LabelStudio, config: PushConfig) -> tuple[int, int]:
    """The project (created once, then reused by id or title) and its local-files storage for the clips."""
    clip_dir = str(Path(config.clip_dir).resolve())
    Path(clip_dir).mkdir(parents=True, exist_ok=True)
    remembered = queue.remembered_project(workspace, server.url, config.project_title)
    project_id = remembered[0] if remembered and server.project_exists(remembered[0]) else None
    if project_id is None:
        project_id = server.find_project(config.project_title) or server.create_project(
            config.project_title,
            label_config(config.classes),
            "Windows homesound's detector is unsure about. Mark every laugh or cry as a region; "
            f"if the clip holds none, choose '{NONE_OF_THESE}'.",
        )
    storage_id = server.local_storage_for(project_id, clip_dir) or server.add_local_storage(project_id, clip_dir)
    queue.remember_project(workspace, server.url, config.project_title, project_id, storage_id)
    return project_id, storage_id


def push(workspace: Workspace, server: LabelStudio, config: PushConfig, *, progress: bool = True) -> PushSummary:
    project_id, _ = ensure_project(workspace, server, config)
    summary = PushSummary(project_id)
    pending = queue.queued_windows(workspace, queue.RANKED)
    if not pending:
        return summary
    on_server = _task_ids_by_window(server.tasks(project_id))
    adopted = [(window.key, on_server[window.key]) for window in pending if window.key in on_server]
    queue.mark_pushed(workspace, project_id, adopted)
    summary.adopted = len(adopted)
    todo = [window for window in pending if window.key not in on_server]
    served = False
    with tqdm(total=len(todo), unit="clip", desc="push", disable=not progress) as bar:
        for batch in _chunks(todo, config.batch_size):
            ready = []
            for window in batch:
                try:
                    ready.append(_with_clip(workspace, window, config))
                except HomesoundError as error:
                    log.warning("skipping window %s: %s", window.key, error)
                    summary.failed.append(f"{window.recording_path} {window.start_seconds:.1f}-"
                                          f"{window.end_seconds:.1f} s: {error}")
            if ready and not served:
                server.check_serves(server.local_file_url(ready[0].clip_path), ready[0].clip_path)
                served = True
            if ready:
                payloads = [
                    task_payload(w, server.local_file_url(w.clip_path), w.model_version, config.classes,
                                 server.local_file_url(picture_path(w.clip_path)))
                    for w in ready
                ]
                task_ids = server.import_tasks(project_id, payloads)
                if task_ids is None:  # the server did not list the new ids: find them by window key
                    found = _task_ids_by_window(server.tasks(project_id))
                    task_ids = [found[w.key] for w in ready]
                queue.mark_pushed(workspace, project_id, zip((w.key for w in ready), task_ids))
                summary.pushed += len(ready)
            bar.update(len(batch))
    return summary


def pull(
    workspace: Workspace, server: LabelStudio, round_id: int | None = None, classes: Sequence[str] = DEFAULT_CLASSES
) -> PullSummary:
    """Finished annotations of every pushed window -> annotations and per-second strong labels in the
    workspace, all in one transaction. classes: what tasks pushed without a class list asked about."""
    windows = {w.key: w for w in queue.queued_windows(workspace) if w.status in (queue.PUSHED, queue.LABELED)}
    project_ids = sorted({w.project_id for w in windows.values() if w.project_id is not None})
    ours = []  # (task, window): everything is read before anything is written
    for project_id in project_ids:
        for task in server.tasks(project_id, with_annotations=True):
            window = windows.get((task.get("data") or {}).get(WINDOW_KEY_FIELD))
            if window is not None and window.project_id == project_id:
                ours.append((task, window))
    annotators = server.user_names(
        user_id for task, _ in ours for a in task.get("annotations") or [] if (user_id := annotator_id(a)) is not None
    )
    annotations = []
    waiting = 0
    for task, window in ours:
        annotation = annotation_from_task(task, window, classes, annotators)
        if annotation is None:
            waiting += 1
        else:
            annotations.append(annotation)
    labels = {annotation.window_key: strong_labels(annotation) for annotation in annotations}
    counts = queue.save_annotations(workspace, annotations, labels, round_id)
    return PullSummary(
        counts["added"], counts["updated"], counts["unchanged"], waiting, tuple(counts["changed_recordings"])
    )


def _with_clip(workspace: Workspace, window: queue.QueueRow, config: PushConfig) -> queue.QueueRow:
    """The window with its clip and the clip's picture on disk, made now unless an earlier run already did."""
    path = Path(config.clip_dir).resolve() / clip_name(window.content_sha256, window.start_seconds, window.end_seconds)
    if not (window.clip_path == str(path) and path.is_file()):
        clip_start, clip_end = cut_clip(
            window.recording_path, window.start_seconds, window.end_seconds, config.context_seconds, path
        )
        queue.set_clip(workspace, window.key, str(path), clip_start, clip_end)
        window = dataclasses.replace(window, clip_path=str(path), clip_start_seconds=clip_start,
                                     clip_end_seconds=clip_end)
    if not picture_path(path).is_file():
        write_clip_picture(path, picture_path(path), window.clip_start_seconds,
                           (window.start_seconds, window.end_seconds), window.predictions)
    return window


def picture_path(clip_path: str | Path) -> Path:
    """Where a clip's spectrogram picture is: beside it, same name, .png."""
    return Path(clip_path).with_suffix(".png")


def _task_ids_by_window(tasks: Iterable[dict]) -> dict[str, int]:
    found: dict[str, int] = {}
    for task in tasks:
        key = (task.get("data") or {}).get(WINDOW_KEY_FIELD)
        if key is not None:
            found.setdefault(key, int(task["id"]))
    return found


def _chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), max(1, size)):
        yield items[start:start + size]

