"""Trained detectors and what they found: model records and per-recording detections.

A recording's detections by one model are replaced as a whole in one transaction, and the
recording is marked as done (even when nothing was found), so a rerun neither duplicates events
nor confuses "nothing detected" with "never looked".
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path, PurePath
from typing import Any, Protocol

from homesound.workspace.core import Workspace, to_json, utc_now

COMPONENT = "classify"
MIGRATIONS = (
    """
    CREATE TABLE models (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL,
        sha256 TEXT NOT NULL UNIQUE,
        config_json TEXT NOT NULL,
        classes_json TEXT NOT NULL,
        thresholds_json TEXT NOT NULL,
        embedder_ids_json TEXT NOT NULL,
        metrics_json TEXT,
        created_at TEXT NOT NULL,
        run_id INTEGER REFERENCES runs(id)
    );
    CREATE TABLE detected_recordings (
        model_id INTEGER NOT NULL REFERENCES models(id),
        content_sha256 TEXT NOT NULL,
        frames INTEGER NOT NULL,
        events INTEGER NOT NULL,
        run_id INTEGER REFERENCES runs(id),
        detected_at TEXT NOT NULL,
        PRIMARY KEY (model_id, content_sha256)
    );
    CREATE TABLE detections (
        id INTEGER PRIMARY KEY,
        model_id INTEGER NOT NULL REFERENCES models(id),
        content_sha256 TEXT NOT NULL,
        label TEXT NOT NULL,
        start_seconds REAL NOT NULL,
        end_seconds REAL NOT NULL,
        peak_probability REAL NOT NULL,
        mean_probability REAL NOT NULL,
        run_id INTEGER REFERENCES runs(id),
        UNIQUE (model_id, content_sha256, label, start_seconds)
    );
    CREATE INDEX detections_by_content ON detections(content_sha256, model_id)
    """,
)


# Hex digits of a model's sha256 in its label ("stem@0123456789ab"), all an older workspace recorded of it.
LABEL_SHA256_DIGITS = 12


class EventLike(Protocol):
    label: str
    start: float
    end: float
    peak_probability: float
    mean_probability: float


def register_model(
    workspace: Workspace,
    *,
    path: str,
    sha256: str,
    config: Any,
    classes: Iterable[str],
    thresholds: dict[str, float],
    embedder_ids: Iterable[str],
    metrics: Any = None,
    run_id: int | None = None,
) -> int:
    """Record a model file (by content); the same file registered again keeps its id, path updated.

    A row an older workspace's text id became (only its 12-hex hash prefix known, see
    homesound.workspace.active_learning) is completed by the first full registration of that model."""
    described = (to_json(config), to_json(list(classes)), to_json(thresholds), to_json(list(embedder_ids)),
                 to_json(metrics) if metrics is not None else None)
    with workspace.transaction() as db:
        db.execute(
            "UPDATE models SET sha256=?, config_json=?, classes_json=?, thresholds_json=?, embedder_ids_json=?,"
            " metrics_json=? WHERE sha256=? AND NOT EXISTS (SELECT 1 FROM models WHERE sha256=?)",
            (sha256, *described, sha256[:LABEL_SHA256_DIGITS], sha256),
        )
        db.execute(
            """
            INSERT INTO models(path, sha256, config_json, classes_json, thresholds_json, embedder_ids_json,
                               metrics_json, created_at, run_id)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(sha256) DO UPDATE SET path=excluded.path
            """,
            (str(path), sha256, *described, utc_now(), run_id),
        )
        return int(db.execute("SELECT id FROM models WHERE sha256=?", (sha256,)).fetchone()["id"])


def register_detector(workspace: Workspace, model: str, sha256: str, detector: Any, run_id: int | None = None) -> int:
    """The model a job was given (`--model`: a file, or the built-in name `zero-shot`) as its models row, so
    everything the job writes refers to it by id. sha256: classify.detector.model_sha256 of it."""
    path = str(Path(model).resolve()) if Path(model).exists() else str(model)
    return register_model(
        workspace, path=path, sha256=sha256, config={"model": vars(detector.config)}, classes=detector.classes,
        thresholds=detector.thresholds, embedder_ids=detector.embedder_ids, metrics=detector.metrics, run_id=run_id,
    )


def model_label(path: str, sha256: str) -> str:
    """A registered model as people and Label Studio's "model_version" see it: file stem @ short hash."""
    return f"{PurePath(path).stem}@{sha256[:LABEL_SHA256_DIGITS]}"


def get_model(workspace: Workspace, model_id: int) -> dict | None:
    rows = workspace.query("SELECT * FROM models WHERE id=?", (model_id,))
    return _model(rows[0]) if rows else None


def list_models(workspace: Workspace) -> list[dict]:
    return [_model(row) for row in workspace.query("SELECT * FROM models ORDER BY id")]


def replace_detections(
    workspace: Workspace,
    model_id: int,
    content_sha256: str,
    events: Iterable[EventLike],
    frames: int,
    run_id: int | None = None,
) -> int:
    """This model's events in one recording, all at once: the old ones go, the new ones land."""
    events = list(events)
    with workspace.transaction() as db:
        db.execute("DELETE FROM detections WHERE model_id=? AND content_sha256=?", (model_id, content_sha256))
        db.executemany(
            "INSERT INTO detections(model_id, content_sha256, label, start_seconds, end_seconds,"
            " peak_probability, mean_probability, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(model_id, content_sha256, e.label, float(e.start), float(e.end), float(e.peak_probability),
              float(e.mean_probability), run_id) for e in events],
        )
        db.execute(
            "INSERT INTO detected_recordings(model_id, content_sha256, frames, events, run_id, detected_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(model_id, content_sha256) DO UPDATE SET"
            " frames=excluded.frames, events=excluded.events, run_id=excluded.run_id, detected_at=excluded.detected_at",
            (model_id, content_sha256, int(frames), len(events), run_id, utc_now()),
        )
    return len(events)


def detected_contents(workspace: Workspace, model_id: int) -> set[str]:
    rows = workspace.query("SELECT content_sha256 FROM detected_recordings WHERE model_id=?", (model_id,))
    return {row["content_sha256"] for row in rows}


def list_detections(
    workspace: Workspace, model_id: int | None = None, content_sha256: str | None = None
) -> list[dict]:
    conditions, parameters = [], []
    if model_id is not None:
        conditions.append("model_id=?")
        parameters.append(model_id)
    if content_sha256 is not None:
        conditions.append("content_sha256=?")
        parameters.append(content_sha256)
    where = (" WHERE " + " AND ".join(conditions)) if conditions else ""
    return [dict(row) for row in workspace.query(
        f"SELECT * FROM detections{where} ORDER BY content_sha256, start_seconds, label", tuple(parameters)
    )]


def _model(row) -> dict:
    result = dict(row)
    for column in ("config_json", "classes_json", "thresholds_json", "embedder_ids_json", "metrics_json"):
        value = result.pop(column)
        result[column[: -len("_json")]] = json.loads(value) if value is not None else None
    return result
