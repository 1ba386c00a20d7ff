"""Events heard live by `homesound listen`, each with a saved clip, for active learning to ask about.

The clip itself is stored as an ordinary recording (recordings component), with the
embeddings the listener computed when they are those of the embedder it names, so the
active-learning loop ranks and queues it like any other recording; this table says when it
was heard, by which detector, and where in the clip the event lies.
"""

from __future__ import annotations

from dataclasses import dataclass

from homesound.workspace.core import Workspace, utc_now

COMPONENT = "listen"
MIGRATIONS = (
    """
    CREATE TABLE live_events (
        id INTEGER PRIMARY KEY,
        content_sha256 TEXT NOT NULL,
        clip_path TEXT NOT NULL,
        label TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT NOT NULL,
        event_start_in_clip REAL NOT NULL,
        event_end_in_clip REAL NOT NULL,
        peak_probability REAL NOT NULL,
        mean_probability REAL NOT NULL,
        source TEXT NOT NULL,
        detector TEXT NOT NULL,
        embedder_id TEXT NOT NULL,
        run_id INTEGER REFERENCES runs(id),
        created_at TEXT NOT NULL,
        UNIQUE (content_sha256, label, event_start_in_clip)
    );
    CREATE INDEX live_events_by_time ON live_events(started_at)
    """,
    # The detector as its registered models row, like detections and the active-learning queue; the
    # `detector` text stays as people read it (events heard before this version keep only that).
    """
    ALTER TABLE live_events ADD COLUMN model_id INTEGER REFERENCES models(id)
    """,
)


@dataclass(frozen=True)
class LiveEvent:
    content_sha256: str  # of the clip file
    clip_path: str
    label: str
    started_at: str  # wall clock, ISO 8601 UTC
    ended_at: str
    event_start_in_clip: float  # seconds from the clip's start
    event_end_in_clip: float
    peak_probability: float
    mean_probability: float
    source: str  # the audio source's description (passwords redacted)
    detector: str  # model file or hub directory, with its sha256
    embedder_id: str
    model_id: int | None = None  # the detector's models row


def save_live_event(workspace: Workspace, event: LiveEvent, run_id: int | None = None) -> None:
    """Idempotent: the same clip, label and start are recorded once."""
    with workspace.transaction() as db:
        db.execute(
            "INSERT OR IGNORE INTO live_events(content_sha256, clip_path, label, started_at, ended_at,"
            " event_start_in_clip, event_end_in_clip, peak_probability, mean_probability, source, detector,"
            " embedder_id, model_id, run_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (event.content_sha256, event.clip_path, event.label, event.started_at, event.ended_at,
             float(event.event_start_in_clip), float(event.event_end_in_clip), float(event.peak_probability),
             float(event.mean_probability), event.source, event.detector, event.embedder_id, event.model_id, run_id,
             utc_now()),
        )


def list_live_events(workspace: Workspace, label: str | None = None) -> list[LiveEvent]:
    sql = "SELECT * FROM live_events" + (" WHERE label=?" if label else "") + " ORDER BY started_at, label"
    rows = workspace.query(sql, (label,) if label else ())
    names = LiveEvent.__dataclass_fields__
    return [LiveEvent(**{name: row[name] for name in names}) for row in rows]
