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
from homesound import output_files

EVENT_COLUMNS = (
    "recording", "content_sha256", "label", "start", "end", "duration", "peak_probability", "mean_probability",
)
EVENT_FORMATS = (".csv", ".json", ".parquet")
PROBABILITY_FORMATS = (".csv", ".parquet")


@dataclass(frozen=True)
class RecordingDetection:
    recording: str  # the file path as given, or the recording's path in the workspace
    content_sha256: str | None
    probabilities: np.ndarray  # [T, C]
    events: list[Event]
    hop_seconds: float  # frame hop of the embeddings the probabilities came from


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


def check_output_path(path: str | Path, formats: Sequence[str] = EVENT_FORMATS, option: str = "--out") -> Path:
    """Fail before any work when the output file could not be written."""
    path = Path(path)
    if path.suffix.lower() not in formats:
        names = ", ".join(formats[:-1]) + f" or {formats[-1]}" if len(formats) > 1 else formats[0]
        raise HomesoundError(f"{option} {path}: use a {names} file name")
    if path.is_dir():
        raise HomesoundError(f"{option} {path} is a directory; give a file name such as {path.name}{formats[0]}")
    return path


def events_table(detections: Iterable[RecordingDetection]):
    import pandas as pd

    rows = [
        (d.recording, d.content_sha256, e.label, e.start, e.end, e.duration, e.peak_probability, e.mean_probability)
        for d in detections for e in d.events
    ]
    return pd.DataFrame(rows, columns=list(EVENT_COLUMNS))


def probabilities_table(detections: Iterable[RecordingDetection], classes: Sequence[str]):
    """One row per frame of every recording: path, content_sha256, start_seconds, one column per class."""
    import pandas as pd

    parts = []
    for d in detections:
        frames = len(d.probabilities)
        part = {"path": np.full(frames, d.recording, dtype=object),
                "content_sha256": np.full(frames, d.content_sha256, dtype=object),
                "start_seconds": np.arange(frames) * d.hop_seconds}
        part.update({name: d.probabilities[:, column].astype(np.float32) for column, name in enumerate(classes)})
        parts.append(pd.DataFrame(part))
    columns = ["path", "content_sha256", "start_seconds", *classes]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def write_events(table, path: str | Path) -> Path:
    """Atomically write the events table in the format the extension names."""
    return write_table(table, check_output_path(path))


def write_table(table, path: str | Path) -> Path:
    """Events and probabilities to three decimals in CSV (a second is 0.96 s: more digits say nothing)."""
    return output_files.write_table(table, path, what="detections", csv_float_format="%.3f", json_precision=4)


def events_per_class(detections: Sequence[RecordingDetection], classes: Sequence[str]) -> dict[str, int]:
    counts = {label: 0 for label in classes}
    for detection in detections:
        for event in detection.events:
            counts[event.label] += 1
    return counts
