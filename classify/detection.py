"""Detection over whole recordings: probabilities -> events, and the events table in CSV/JSON/Parquet."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classify.config import EventSettings
from classify.detector import Detector
from classify.events import Event, extract_events
from homesound.errors import HomesoundError

EVENT_COLUMNS = (
    "recording", "content_sha256", "label", "start", "end", "duration", "peak_probability", "mean_probability",
)
EVENT_FORMATS = (".csv", ".json", ".parquet")


@dataclass(frozen=True)
class RecordingDetection:
    recording: str  # the file path as given, or the recording's path in the workspace
    content_sha256: str | None
    probabilities: np.ndarray  # [T, C]
    events: list[Event]


def detect_events(
    detector: Detector,
    embeddings: Sequence[np.ndarray],
    embedder_id: str,
    settings: EventSettings,
    hop_seconds: Sequence[float] | None = None,
) -> list[tuple[np.ndarray, list[Event]]]:
    """(probabilities [T, C], events) of each recording; recordings are batched through the model."""
    rules = settings.rules(detector.thresholds)
    hops = hop_seconds or [detector.frames.hop_seconds] * len(embeddings)
    return [
        (probabilities, extract_events(probabilities, detector.classes, rules, hop))
        for probabilities, hop in zip(detector.probabilities_many(embeddings, embedder_id), hops)
    ]


def check_output_path(path: str | Path) -> Path:
    """Fail before any work when the events file could not be written."""
    path = Path(path)
    if path.suffix.lower() not in EVENT_FORMATS:
        raise HomesoundError(f"--out {path}: use a .csv, .json or .parquet file name")
    if path.is_dir():
        raise HomesoundError(f"--out {path} is a directory; give a file name such as events.csv")
    return path


def events_table(detections: Iterable[RecordingDetection]):
    import pandas as pd

    rows = [
        (d.recording, d.content_sha256, e.label, e.start, e.end, e.duration, e.peak_probability, e.mean_probability)
        for d in detections for e in d.events
    ]
    return pd.DataFrame(rows, columns=list(EVENT_COLUMNS))


def write_events(table, path: str | Path) -> Path:
    """Atomically write the events table in the format the extension names."""
    import os

    path = check_output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        table.to_csv(partial, index=False, float_format="%.3f")
    elif suffix == ".json":
        table.to_json(partial, orient="records", indent=2, double_precision=4)
    else:
        table.to_parquet(partial, index=False)
    os.replace(partial, path)
    return path


def events_per_class(detections: Sequence[RecordingDetection], classes: Sequence[str]) -> dict[str, int]:
    counts = {label: 0 for label in classes}
    for detection in detections:
        for event in detection.events:
            counts[event.label] += 1
    return counts
