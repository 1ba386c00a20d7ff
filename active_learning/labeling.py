"""What a Label Studio task looks like, and how a person's regions become per-second labels.

Pure data in and out (no server, no files): the labeling config, the task with the model's
guess as pre-annotation, and the way back from an annotation to labels in recording time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from active_learning.ranking import format_clock
from homesound.workspace.active_learning import (
    Annotation,
    QueueRow,
    Region,
    strong_label_task,
)
from homesound.sequences import mask_runs
from homesound.workspace.training_data import HOP_SECONDS, StrongLabel

NONE_OF_THESE = "none of these"
REGIONS_NAME = "event"  # the <Labels> control: time regions on the audio
AUDIO_NAME = "audio"
PICTURE_NAME = "spectrogram"  # the clip's spectrogram with the model's guess (active_learning.spectrogram)
CLIP_CHOICE_NAME = "clip"  # the clip-level <Choices> control
WINDOW_KEY_FIELD = "homesound_window"  # task data field carrying the idempotency key
DEFAULT_THRESHOLD = 0.5
_COLORS = ("#2ca02c", "#d62728", "#1f77b4", "#ff7f0e", "#9467bd")


def label_config(classes: Sequence[str]) -> str:
    """See the clip's spectrogram and the model's guess, play it, mark time regions per class, or say the
    clip holds none of them."""
    labels = "\n".join(
        f"    <Label value={quoteattr(name)} background={quoteattr(_COLORS[i % len(_COLORS)])}/>"
        for i, name in enumerate(classes)
    )
    return (
        "<View>\n"
        '  <Header value="$title"/>\n'
        f'  <Image name="{PICTURE_NAME}" value="${PICTURE_NAME}"/>\n'
        f'  <Labels name="{REGIONS_NAME}" toName="{AUDIO_NAME}">\n{labels}\n  </Labels>\n'
        f'  <Audio name="{AUDIO_NAME}" value="$audio"/>\n'
        f'  <Choices name="{CLIP_CHOICE_NAME}" toName="{AUDIO_NAME}" choice="single" showInline="true">\n'
        f"    <Choice value={quoteattr(NONE_OF_THESE)}/>\n"
        "  </Choices>\n"
        "</View>\n"
    )


def prediction_regions(
    predictions: Mapping[str, Any], clip_start: float, clip_end: float
) -> list[dict]:
    """The model's guess as Label Studio regions in clip time: runs of seconds above threshold.

    predictions: {"classes", "hop_seconds", "start_seconds", "probabilities" [T][C], "thresholds"}
    as stored with the queued window.
    """
    classes = predictions["classes"]
    hop = float(predictions["hop_seconds"])
    first = float(predictions["start_seconds"])
    probabilities = np.asarray(predictions["probabilities"], dtype=np.float64).reshape(-1, len(classes))
    thresholds = predictions.get("thresholds") or {}
    results = []
    for column, name in enumerate(classes):
        above = probabilities[:, column] >= float(thresholds.get(name, DEFAULT_THRESHOLD))
        for run_start, run_end in mask_runs(above):
            start = max(first + run_start * hop, clip_start) - clip_start
            end = min(first + run_end * hop, clip_end) - clip_start
            if end <= start:
                continue
            score = float(probabilities[run_start:run_end, column].mean())
            results.append({
                "id": f"{name[:4]}{run_start}",
                "from_name": REGIONS_NAME,
                "to_name": AUDIO_NAME,
                "type": "labels",
                "value": {"start": round(start, 3), "end": round(end, 3), "labels": [name]},
                "score": round(score, 4),
            })
    return results


def task_payload(window: QueueRow, audio_url: str, model_version: str | None, classes: Sequence[str],
                 picture_url: str) -> dict:
    """One task per clip (its audio and its picture); the window key rides along so a rerun can find what
    is already there."""
    assert window.clip_start_seconds is not None and window.clip_end_seconds is not None
    name = window.recording_path.rsplit("/", 1)[-1]
    title = (
        f"{name}: {format_clock(window.start_seconds)}-{format_clock(window.end_seconds)} "
        f"(clip starts at {format_clock(window.clip_start_seconds)}) - {window.reason}"
    )
    task: dict = {
        "data": {
            AUDIO_NAME: audio_url,
            PICTURE_NAME: picture_url,
            "title": title,
            WINDOW_KEY_FIELD: window.key,
            "recording": window.recording_path,
            "recording_sha256": window.content_sha256,
            "window_start": window.start_seconds,
            "window_end": window.end_seconds,
            "clip_start": window.clip_start_seconds,
            "clip_end": window.clip_end_seconds,
            "classes": list(classes),
        }
    }
    if window.predictions:
        regions = prediction_regions(window.predictions, window.clip_start_seconds, window.clip_end_seconds)
        task["predictions"] = [{
            "model_version": model_version or "unknown",
            "score": round(float(window.score), 4) if window.score is not None else 0.0,
            "result": regions,
        }]
    return task


def annotation_from_task(
    task: Mapping[str, Any], window: QueueRow, default_classes: Sequence[str],
    annotators: Mapping[int, str] | None = None,
) -> Annotation | None:
    """The latest finished (not skipped) annotation of a task, in recording time; None if there is none.

    Everything the person heard (the whole clip) counts as labeled: a clip without regions says
    its seconds hold none of the classes.
    """
    finished = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if not finished:
        return None
    latest = max(finished, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a["id"]))
    offset = float(window.clip_start_seconds)
    span_end = float(window.clip_end_seconds)
    regions = []
    none_of_these = False
    for result in latest.get("result") or []:
        value = result.get("value") or {}
        if result.get("from_name") == REGIONS_NAME and result.get("type") == "labels":
            for label in value.get("labels") or []:
                start = min(max(offset + float(value["start"]), offset), span_end)
                end = min(max(offset + float(value["end"]), offset), span_end)
                if end > start:
                    regions.append(Region(label, round(start, 3), round(end, 3)))
        elif result.get("from_name") == CLIP_CHOICE_NAME:
            none_of_these = none_of_these or NONE_OF_THESE in (value.get("choices") or [])
    regions.sort(key=lambda r: (r.start_seconds, r.end_seconds, r.label))
    return Annotation(
        window_key=window.key,
        content_sha256=window.content_sha256,
        span_start_seconds=offset,
        span_end_seconds=span_end,
        regions=tuple(regions),
        classes=tuple((task.get("data") or {}).get("classes") or default_classes),
        none_of_these=none_of_these,
        project_id=int(task.get("project") or window.project_id or 0),
        task_id=int(task["id"]),
        annotation_id=int(latest["id"]),
        annotator=_annotator(latest, annotators or {}),
        annotated_at=_text(latest.get("created_at")),
        updated_at=_text(latest.get("updated_at")),
    )


def frame_labels(annotations: Sequence[Annotation], classes: Sequence[str], frames: int, hop_seconds: float) -> np.ndarray:
    """[frames, C] per-second labels of one recording: 1/0 where a person listened, NaN elsewhere.

    A second (embedding frame) counts as heard when at least half of it lies in an annotated
    span, and as a class when regions of that class cover at least half of it. Later annotations
    win over earlier ones.
    """
    labels = np.full((frames, len(classes)), np.nan, dtype=np.float32)
    starts = np.arange(frames) * hop_seconds
    ends = starts + hop_seconds
    half = hop_seconds / 2.0
    for annotation in annotations:
        heard = _overlap(starts, ends, annotation.span_start_seconds, annotation.span_end_seconds) >= half - 1e-9
        for column, name in enumerate(classes):
            if name not in annotation.classes:
                continue
            covered = np.zeros(frames)
            for region in _merged(r for r in annotation.regions if r.label == name):
                covered += _overlap(starts, ends, *region)
            labels[heard, column] = (covered[heard] >= half - 1e-9).astype(np.float32)
    return labels


def strong_labels(annotation: Annotation, hop_seconds: float = HOP_SECONDS) -> list[StrongLabel]:
    """The annotation as the workspace's per-second strong labels (every heard second, every asked class)."""
    frames = int(np.ceil(annotation.span_end_seconds / hop_seconds)) + 1
    labels = frame_labels([annotation], annotation.classes, frames, hop_seconds)
    task = strong_label_task(annotation.project_id, annotation.task_id)
    heard = np.flatnonzero(~np.isnan(labels).all(axis=1))
    return [
        StrongLabel(
            content_sha256=annotation.content_sha256, second=int(second), target=name, value=float(labels[second, c]),
            origin="label-studio", task_id=task, annotator=annotation.annotator,
            annotated_at=annotation.updated_at or annotation.annotated_at,
        )
        for second in heard
        for c, name in enumerate(annotation.classes)
    ]


def _overlap(starts: np.ndarray, ends: np.ndarray, span_start: float, span_end: float) -> np.ndarray:
    return np.clip(np.minimum(ends, span_end) - np.maximum(starts, span_start), 0.0, None)


def _merged(regions) -> list[tuple[float, float]]:
    """Union of possibly overlapping regions, so a doubly marked second is not counted twice."""
    merged: list[list[float]] = []
    for region in sorted(regions, key=lambda r: r.start_seconds):
        if merged and region.start_seconds <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], region.end_seconds)
        else:
            merged.append([region.start_seconds, region.end_seconds])
    return [(start, end) for start, end in merged]


def annotator_id(annotation: Mapping[str, Any]) -> int | None:
    who = annotation.get("completed_by")
    if isinstance(who, Mapping):
        who = who.get("id")
    return int(who) if isinstance(who, (int, str)) and str(who).isdigit() else None


def _annotator(annotation: Mapping[str, Any], annotators: Mapping[int, str]) -> str | None:
    """The person's email when known, else the server's display name, else their user id."""
    user_id = annotator_id(annotation)
    if user_id in annotators:
        return annotators[user_id]
    shown = str(annotation.get("created_username") or "").strip()
    return shown or (str(user_id) if user_id is not None else None)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
