"""The active-learning loop's memory: queued windows, Label Studio tasks, annotations, rounds.

A window's key (recording content hash + start + end) is its idempotency key everywhere: it is
unique in the queue, it travels inside the Label Studio task, and annotations are stored under
it, so a window is never queued, pushed or labeled twice, whatever crashed in between.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from homesound.workspace.classify import model_label
from homesound.workspace.core import Workspace, to_json, utc_now
from homesound.workspace.training_data import StrongLabel, write_strong_labels

COMPONENT = "active_learning"
_OLD_MODEL_ID = "*@" + "[0-9a-f]" * 12  # the text ids of older workspaces: "<file stem>@<sha256[:12]>"
MIGRATIONS = (
    """
    CREATE TABLE al_rounds (
        id INTEGER PRIMARY KEY,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL DEFAULT 'running',
        model_id TEXT,
        config_json TEXT NOT NULL,
        labels_added INTEGER,
        metrics_json TEXT,
        summary_json TEXT
    );
    CREATE TABLE al_queue (
        id INTEGER PRIMARY KEY,
        window_key TEXT NOT NULL UNIQUE,
        content_sha256 TEXT NOT NULL,
        recording_path TEXT NOT NULL,
        start_seconds REAL NOT NULL,
        end_seconds REAL NOT NULL,
        rank INTEGER,
        strategy TEXT NOT NULL,
        score REAL,
        reason TEXT NOT NULL,
        model_id TEXT,
        round_id INTEGER REFERENCES al_rounds(id),
        predictions_json TEXT,
        status TEXT NOT NULL DEFAULT 'ranked',
        clip_path TEXT,
        clip_start_seconds REAL,
        clip_end_seconds REAL,
        project_id INTEGER,
        task_id INTEGER,
        queued_at TEXT NOT NULL,
        pushed_at TEXT,
        labeled_at TEXT
    );
    CREATE INDEX al_queue_by_recording ON al_queue(content_sha256);
    CREATE INDEX al_queue_by_status ON al_queue(status);
    CREATE TABLE al_annotations (
        window_key TEXT PRIMARY KEY REFERENCES al_queue(window_key),
        content_sha256 TEXT NOT NULL,
        span_start_seconds REAL NOT NULL,
        span_end_seconds REAL NOT NULL,
        regions_json TEXT NOT NULL,
        classes_json TEXT NOT NULL,
        none_of_these INTEGER NOT NULL,
        project_id INTEGER NOT NULL,
        task_id INTEGER NOT NULL,
        annotation_id INTEGER NOT NULL,
        annotator TEXT,
        annotated_at TEXT,
        updated_at TEXT,
        pulled_at TEXT NOT NULL,
        round_id INTEGER REFERENCES al_rounds(id)
    );
    CREATE INDEX al_annotations_by_recording ON al_annotations(content_sha256);
    CREATE TABLE al_projects (
        server_url TEXT NOT NULL,
        title TEXT NOT NULL,
        project_id INTEGER NOT NULL,
        storage_id INTEGER,
        created_at TEXT NOT NULL,
        PRIMARY KEY (server_url, title)
    )
    """,
    # One model identity: queue and rounds refer to the registered model (models.id) instead of a text id.
    # An old id "<stem>@<12 hex>" maps to the registered model with that hash; a model never registered gets
    # a row from what the text says (path = stem, sha256 = the 12 hex digits, config = {"migrated_from": ...}),
    # which classify's register_model completes when that file is registered again. A round that failed
    # before loading its model held the --model text itself: it becomes NULL (the text is in its config_json).
    # Rounds also take the fixed run-status words and a link to their `runs` row.
    f"""
    INSERT INTO models(path, sha256, config_json, classes_json, thresholds_json, embedder_ids_json, created_at)
    SELECT substr(MIN(old), 1, length(MIN(old)) - 13), substr(old, -12), json_object('migrated_from', MIN(old)),
           '[]', '{{}}', '[]', strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')
    FROM (SELECT model_id AS old FROM al_queue UNION SELECT model_id FROM al_rounds)
    WHERE old GLOB '{_OLD_MODEL_ID}'
      AND NOT EXISTS (SELECT 1 FROM models WHERE substr(models.sha256, 1, 12) = substr(old, -12))
    GROUP BY substr(old, -12);
    ALTER TABLE al_queue ADD COLUMN model_ref INTEGER REFERENCES models(id);
    UPDATE al_queue SET model_ref = (SELECT id FROM models WHERE substr(models.sha256, 1, 12) = substr(model_id, -12))
    WHERE model_id GLOB '{_OLD_MODEL_ID}';
    ALTER TABLE al_queue DROP COLUMN model_id;
    ALTER TABLE al_queue RENAME COLUMN model_ref TO model_id;
    ALTER TABLE al_rounds ADD COLUMN model_ref INTEGER REFERENCES models(id);
    UPDATE al_rounds SET model_ref = (SELECT id FROM models WHERE substr(models.sha256, 1, 12) = substr(model_id, -12))
    WHERE model_id GLOB '{_OLD_MODEL_ID}';
    ALTER TABLE al_rounds DROP COLUMN model_id;
    ALTER TABLE al_rounds RENAME COLUMN model_ref TO model_id;
    ALTER TABLE al_rounds ADD COLUMN run_id INTEGER REFERENCES runs(id);
    UPDATE al_rounds SET status = 'completed' WHERE status = 'finished'
    """,
)

RANKED, PUSHED, LABELED = "ranked", "pushed", "labeled"


def window_key(content_sha256: str, start_seconds: float, end_seconds: float) -> str:
    return f"{content_sha256}@{start_seconds:.2f}-{end_seconds:.2f}"


@dataclass(frozen=True)
class QueuedWindow:
    """A ranked pick as the queue stores it (input of queue_windows)."""

    content_sha256: str
    recording_path: str
    start_seconds: float
    end_seconds: float
    rank: int
    strategy: str
    score: float
    reason: str
    predictions: dict | None = None  # the model's per-second probabilities around the window

    @property
    def key(self) -> str:
        return window_key(self.content_sha256, self.start_seconds, self.end_seconds)


@dataclass(frozen=True)
class QueueRow:
    key: str
    content_sha256: str
    recording_path: str
    start_seconds: float
    end_seconds: float
    rank: int | None
    strategy: str
    score: float | None
    reason: str
    model_id: int | None  # the registered model (models.id) that ranked it
    round_id: int | None
    predictions: dict | None
    status: str
    clip_path: str | None
    clip_start_seconds: float | None
    clip_end_seconds: float | None
    project_id: int | None
    task_id: int | None
    model_version: str | None = None  # that model's label ("stem@0123456789ab"), for Label Studio


@dataclass(frozen=True)
class Region:
    label: str
    start_seconds: float  # in the recording's time
    end_seconds: float


@dataclass(frozen=True)
class Annotation:
    """A person's finished labels for one window's clip, in the recording's time."""

    window_key: str
    content_sha256: str
    span_start_seconds: float  # the audio the person heard: everything in it is labeled
    span_end_seconds: float
    regions: tuple[Region, ...]
    classes: tuple[str, ...]  # what the person was asked about: every one of them is labeled in the span
    none_of_these: bool
    project_id: int
    task_id: int
    annotation_id: int
    annotator: str | None
    annotated_at: str | None
    updated_at: str | None


# ---- rounds -----------------------------------------------------------------------------------------

def start_round(workspace: Workspace, config: Any, run_id: int) -> int:
    """A new round, part of the run `run_id` (its `runs` row holds its status, times and summary)."""
    with workspace.transaction() as db:
        cursor = db.execute(
            "INSERT INTO al_rounds(started_at, config_json, run_id) VALUES (?, ?, ?)",
            (utc_now(), to_json(config), run_id),
        )
        return int(cursor.lastrowid)


def finish_round(
    workspace: Workspace, round_id: int, *, model_id: int | None = None,
    labels_added: int | None = None, metrics: Any = None,
) -> None:
    """Close the round once its run is recorded: status, end time and summary are the run's own."""
    with workspace.transaction() as db:
        db.execute(
            "UPDATE al_rounds SET (finished_at, status, summary_json) = (SELECT finished_at, status, summary_json"
            " FROM runs WHERE runs.id = al_rounds.run_id), model_id=COALESCE(?, model_id), labels_added=?,"
            " metrics_json=? WHERE id=?",
            (model_id, labels_added, _json_or_none(metrics), round_id),
        )


def list_rounds(workspace: Workspace) -> list[dict]:
    """Every round, with its model's label (`model`, as in "stem@0123456789ab") beside its id."""
    rounds = []
    for row in workspace.query(
        "SELECT al_rounds.*, models.path AS model_path, models.sha256 AS model_sha256 FROM al_rounds"
        " LEFT JOIN models ON models.id = al_rounds.model_id ORDER BY al_rounds.id"
    ):
        entry = dict(row)
        for column in ("config_json", "metrics_json", "summary_json"):
            value = entry.pop(column)
            entry[column.removesuffix("_json")] = json.loads(value) if value else None
        entry["model"] = _model_label(entry.pop("model_path"), entry.pop("model_sha256"))
        rounds.append(entry)
    return rounds


# ---- queue ------------------------------------------------------------------------------------------

def queue_windows(
    workspace: Workspace, windows: Sequence[QueuedWindow], *, model_id: int | None, round_id: int | None = None
) -> int:
    """Add picks to the queue in one transaction; a window already queued is left alone.
    model_id: the registered model (models.id) that ranked them."""
    added = 0
    with workspace.transaction() as db:
        for window in windows:
            cursor = db.execute(
                "INSERT OR IGNORE INTO al_queue(window_key, content_sha256, recording_path, start_seconds,"
                " end_seconds, rank, strategy, score, reason, model_id, round_id, predictions_json, queued_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (window.key, window.content_sha256, window.recording_path, window.start_seconds,
                 window.end_seconds, window.rank, window.strategy, window.score, window.reason, model_id,
                 round_id, _json_or_none(window.predictions), utc_now()),
            )
            added += cursor.rowcount
    return added


def queued_windows(workspace: Workspace, status: str | None = None) -> list[QueueRow]:
    sql = ("SELECT al_queue.*, models.path AS model_path, models.sha256 AS model_sha256 FROM al_queue"
           " LEFT JOIN models ON models.id = al_queue.model_id"
           + (" WHERE al_queue.status=?" if status else "") + " ORDER BY al_queue.id")
    return [_queue_row(row) for row in workspace.query(sql, (status,) if status else ())]


def taken_spans(workspace: Workspace) -> dict[str, list[tuple[float, float]]]:
    """Per recording, the spans already queued (any status) or labeled: never rank them again."""
    spans: dict[str, list[tuple[float, float]]] = {}
    rows = workspace.query(
        "SELECT content_sha256, start_seconds AS s, end_seconds AS e FROM al_queue"
        " UNION ALL SELECT content_sha256, span_start_seconds, span_end_seconds FROM al_annotations"
    )
    for row in rows:
        spans.setdefault(row["content_sha256"], []).append((row["s"], row["e"]))
    return spans


def set_clip(workspace: Workspace, key: str, clip_path: str, clip_start: float, clip_end: float) -> None:
    with workspace.transaction() as db:
        db.execute(
            "UPDATE al_queue SET clip_path=?, clip_start_seconds=?, clip_end_seconds=? WHERE window_key=?",
            (clip_path, clip_start, clip_end, key),
        )


def mark_pushed(workspace: Workspace, project_id: int, tasks: Iterable[tuple[str, int]]) -> None:
    """Record (window key, task id) pairs after Label Studio holds the tasks, all in one transaction."""
    now = utc_now()
    with workspace.transaction() as db:
        for key, task_id in tasks:
            db.execute(
                "UPDATE al_queue SET status=?, project_id=?, task_id=?, pushed_at=? WHERE window_key=? AND status=?",
                (PUSHED, project_id, task_id, now, key, RANKED),
            )


# ---- annotations ------------------------------------------------------------------------------------

def strong_label_task(project_id: int, task_id: int) -> str:
    """The task id a Label Studio task's strong labels carry: replacing them replaces exactly these rows."""
    return f"label-studio:{project_id}:{task_id}"


def save_annotations(
    workspace: Workspace,
    annotations: Sequence[Annotation],
    strong_labels: Mapping[str, Sequence[StrongLabel]],
    round_id: int | None = None,
) -> dict[str, Any]:
    """Store pulled annotations and their per-second labels in one transaction.

    New annotations are added, edited ones replace their earlier rows (annotation and strong
    labels both), unchanged ones are left alone. strong_labels maps window key -> that
    annotation's labels. Returns the counts and the recordings (content hashes) whose labels changed.
    """
    counts = {"added": 0, "updated": 0, "unchanged": 0}
    changed: set[str] = set()
    now = utc_now()
    with workspace.transaction() as db:
        for annotation in annotations:
            regions = to_json([[r.label, r.start_seconds, r.end_seconds] for r in annotation.regions])
            values = (
                annotation.content_sha256, annotation.span_start_seconds, annotation.span_end_seconds, regions,
                to_json(list(annotation.classes)), int(annotation.none_of_these), annotation.project_id,
                annotation.task_id,
                annotation.annotation_id, annotation.annotator, annotation.annotated_at, annotation.updated_at,
            )
            existing = db.execute(
                "SELECT content_sha256, span_start_seconds, span_end_seconds, regions_json, classes_json,"
                " none_of_these, project_id, task_id, annotation_id, annotator, annotated_at, updated_at"
                " FROM al_annotations WHERE window_key=?",
                (annotation.window_key,),
            ).fetchone()
            if existing is not None and tuple(existing) == values:
                counts["unchanged"] += 1
                continue
            db.execute(
                "INSERT INTO al_annotations(window_key, content_sha256, span_start_seconds, span_end_seconds,"
                " regions_json, classes_json, none_of_these, project_id, task_id, annotation_id, annotator,"
                " annotated_at, updated_at, pulled_at, round_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(window_key) DO UPDATE SET content_sha256=excluded.content_sha256,"
                " span_start_seconds=excluded.span_start_seconds, span_end_seconds=excluded.span_end_seconds,"
                " regions_json=excluded.regions_json, classes_json=excluded.classes_json,"
                " none_of_these=excluded.none_of_these,"
                " project_id=excluded.project_id, task_id=excluded.task_id,"
                " annotation_id=excluded.annotation_id, annotator=excluded.annotator,"
                " annotated_at=excluded.annotated_at, updated_at=excluded.updated_at,"
                " pulled_at=excluded.pulled_at, round_id=excluded.round_id",
                (annotation.window_key, *values, now, round_id),
            )
            replacing = {strong_label_task(annotation.project_id, annotation.task_id)}
            if existing is not None:
                replacing.add(strong_label_task(existing["project_id"], existing["task_id"]))
            write_strong_labels(db, strong_labels.get(annotation.window_key, ()), replacing_tasks=replacing)
            db.execute(
                "UPDATE al_queue SET status=?, labeled_at=COALESCE(labeled_at, ?) WHERE window_key=?",
                (LABELED, now, annotation.window_key),
            )
            counts["updated" if existing is not None else "added"] += 1
            changed.add(annotation.content_sha256)
            if existing is not None:
                changed.add(existing["content_sha256"])
    return {**counts, "changed_recordings": sorted(changed)}


def list_annotations(workspace: Workspace, content_sha256: str | None = None) -> list[Annotation]:
    sql = "SELECT * FROM al_annotations" + (" WHERE content_sha256=?" if content_sha256 else "") + " ORDER BY rowid"
    return [_annotation(row) for row in workspace.query(sql, (content_sha256,) if content_sha256 else ())]


# ---- Label Studio projects --------------------------------------------------------------------------

def remembered_project(workspace: Workspace, server_url: str, title: str) -> tuple[int, int | None] | None:
    rows = workspace.query(
        "SELECT project_id, storage_id FROM al_projects WHERE server_url=? AND title=?", (server_url, title)
    )
    return (rows[0]["project_id"], rows[0]["storage_id"]) if rows else None


def remember_project(workspace: Workspace, server_url: str, title: str, project_id: int, storage_id: int | None) -> None:
    with workspace.transaction() as db:
        db.execute(
            "INSERT INTO al_projects(server_url, title, project_id, storage_id, created_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(server_url, title) DO UPDATE SET project_id=excluded.project_id,"
            " storage_id=excluded.storage_id",
            (server_url, title, project_id, storage_id, utc_now()),
        )


def status_section(workspace: Workspace) -> dict:
    """Queue by status, labeled windows, and the rounds so far: this component's `homesound status`."""
    queue = {row["status"]: row["n"] for row in workspace.query(
        "SELECT status, COUNT(*) AS n FROM al_queue GROUP BY status")}
    labeled = workspace.query(
        "SELECT COUNT(*) AS n, COALESCE(SUM(span_end_seconds - span_start_seconds), 0) AS seconds,"
        " SUM(regions_json != '[]') AS with_events FROM al_annotations"
    )[0]
    return {
        "queue": queue,
        "labeled_windows": labeled["n"],
        "labeled_seconds": labeled["seconds"],
        "labeled_windows_with_events": labeled["with_events"] or 0,
        "rounds": [_round_line(entry) for entry in list_rounds(workspace)],
    }


def _round_line(entry: dict) -> dict:
    """One round in a few fields (the full record, configuration included, is in list_rounds)."""
    summary = entry.get("summary") or {}
    metrics = entry.get("metrics") or {}
    line = {
        "id": entry["id"], "started_at": entry["started_at"], "status": entry["status"],
        "model": entry["model"], "labels_added": entry["labels_added"],
        "held_out_ap": metrics.get("average_precision") or metrics.get("skipped"),
        "pushed": summary.get("pushed"),
    }
    if metrics.get("warnings"):
        line["held_out_warnings"] = metrics["warnings"]  # too small to mean much yet
    if summary.get("model_source"):
        line["model_source"] = summary["model_source"]  # given, trained or zero-shot
    if summary.get("error"):
        line["error"] = summary["error"]
    return line


def _json_or_none(value: Any) -> str | None:
    return None if value is None else to_json(value)


def _queue_row(row) -> QueueRow:
    return QueueRow(
        key=row["window_key"], content_sha256=row["content_sha256"], recording_path=row["recording_path"],
        start_seconds=row["start_seconds"], end_seconds=row["end_seconds"], rank=row["rank"],
        strategy=row["strategy"], score=row["score"], reason=row["reason"], model_id=row["model_id"],
        round_id=row["round_id"],
        predictions=json.loads(row["predictions_json"]) if row["predictions_json"] else None,
        status=row["status"], clip_path=row["clip_path"], clip_start_seconds=row["clip_start_seconds"],
        clip_end_seconds=row["clip_end_seconds"], project_id=row["project_id"], task_id=row["task_id"],
        model_version=_model_label(row["model_path"], row["model_sha256"]),
    )


def _model_label(path: str | None, sha256: str | None) -> str | None:
    return None if path is None else model_label(path, sha256)


def _annotation(row) -> Annotation:
    return Annotation(
        window_key=row["window_key"], content_sha256=row["content_sha256"],
        span_start_seconds=row["span_start_seconds"], span_end_seconds=row["span_end_seconds"],
        regions=tuple(Region(label, start, end) for label, start, end in json.loads(row["regions_json"])),
        classes=tuple(json.loads(row["classes_json"])),
        none_of_these=bool(row["none_of_these"]), project_id=row["project_id"], task_id=row["task_id"],
        annotation_id=row["annotation_id"], annotator=row["annotator"], annotated_at=row["annotated_at"],
        updated_at=row["updated_at"],
    )
