"""Recordings found in the user's archive and their embeddings (VGGish, YAMNet).

Embeddings are keyed by (content hash, embedder), so the same audio under two paths is embedded
once, and a file whose content changed gets a new hash and is embedded again. Each embedder's
row holds its provenance and its frame facts (homesound.frames.FrameSpec: size, hop, encoding),
so whoever reads embeddings back knows their shape and timing from the workspace alone. An
embedder with class scores (YAMNet) stores them beside each embedding, and its class names once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from homesound.errors import HomesoundError
from homesound.frames import VGGISH_FRAMES, FrameSpec, class_scores_from_blob, class_scores_to_blob
from homesound.workspace.core import Workspace, to_json, utc_now

COMPONENT = "recordings"
MIGRATIONS = (
    """
    CREATE TABLE embedders (
        id TEXT PRIMARY KEY,
        provenance_json TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE recordings (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        size INTEGER,
        mtime_ns INTEGER,
        content_sha256 TEXT,
        duration_seconds REAL,
        sample_rate INTEGER,
        channels INTEGER,
        format TEXT,
        status TEXT NOT NULL,
        error TEXT,
        updated_at TEXT NOT NULL,
        run_id INTEGER REFERENCES runs(id)
    );
    CREATE INDEX recordings_by_content ON recordings(content_sha256);
    CREATE TABLE embeddings (
        content_sha256 TEXT NOT NULL,
        embedder_id TEXT NOT NULL REFERENCES embedders(id),
        frames INTEGER NOT NULL,
        hop_seconds REAL NOT NULL,
        embedding BLOB NOT NULL,
        raw_embedding BLOB,
        created_at TEXT NOT NULL,
        run_id INTEGER REFERENCES runs(id),
        PRIMARY KEY (content_sha256, embedder_id)
    )
    """,
    # Frame facts per embedder (NULL in rows written before: those are all VGGish), class names and
    # per-frame class scores for embedders that have them.
    """
    ALTER TABLE embedders ADD COLUMN frames_json TEXT;
    ALTER TABLE embedders ADD COLUMN class_names_json TEXT;
    ALTER TABLE embeddings ADD COLUMN class_scores BLOB
    """,
)


@dataclass(frozen=True)
class RecordingRow:
    id: int
    path: str
    size: int | None
    mtime_ns: int | None
    content_sha256: str | None
    duration_seconds: float | None
    sample_rate: int | None
    channels: int | None
    format: str | None
    status: str
    error: str | None


@dataclass(frozen=True)
class StoredEmbedding:
    content_sha256: str
    embedder_id: str
    embedding: np.ndarray  # [T, frames.dimension] in frames.encoding (VGGish: uint8, YAMNet: float16)
    raw_embedding: np.ndarray | None  # float32 [T, dimension], the network's output, if kept
    hop_seconds: float
    class_scores: np.ndarray | None = None  # float32 [T, classes] for embedders that have them
    frames: FrameSpec | None = None  # set when read back from the workspace

    @property
    def start_seconds(self) -> np.ndarray:
        return np.arange(len(self.embedding), dtype=np.float64) * self.hop_seconds

    def features(self) -> np.ndarray:
        """float32 [T, dimension]: the stored frames decoded the way their embedder says."""
        return (self.frames or VGGISH_FRAMES).dequantize(self.embedding)


def register_embedder(workspace: Workspace, embedder_id: str, provenance: Any, *,
                      frames: FrameSpec = VGGISH_FRAMES, class_names: Sequence[str] | None = None) -> None:
    """Record an embedder once (what made its numbers, its frame facts, its class names if any)."""
    if frames.class_count and (class_names is None or len(class_names) != frames.class_count):
        raise ValueError(f"{embedder_id}: {frames.class_count} class scores per frame need as many class names")
    names = to_json(list(class_names)) if class_names is not None else None
    with workspace.transaction() as db:
        db.execute(
            "INSERT OR IGNORE INTO embedders(id, provenance_json, created_at, frames_json, class_names_json)"
            " VALUES (?, ?, ?, ?, ?)",
            (embedder_id, to_json(provenance), utc_now(), to_json(frames.to_dict()), names),
        )
        db.execute("UPDATE embedders SET frames_json=? WHERE id=? AND frames_json IS NULL",
                   (to_json(frames.to_dict()), embedder_id))


def embedder_provenance(workspace: Workspace, embedder_id: str) -> dict | None:
    rows = workspace.query("SELECT provenance_json FROM embedders WHERE id=?", (embedder_id,))
    return json.loads(rows[0]["provenance_json"]) if rows else None


def frame_spec(workspace: Workspace, embedder_id: str) -> FrameSpec:
    """The frame facts of an embedder the workspace knows; rows from before frame facts were kept are VGGish."""
    rows = workspace.query("SELECT frames_json FROM embedders WHERE id=?", (embedder_id,))
    if not rows:
        raise HomesoundError(f"workspace {workspace.path} has no embedder {embedder_id}; "
                             "homesound status --workspace lists the embedders it has")
    return _frame_spec(rows[0]["frames_json"])


def class_names(workspace: Workspace, embedder_id: str) -> list[str] | None:
    """The names of an embedder's class scores, in score column order; None if it has none."""
    rows = workspace.query("SELECT class_names_json FROM embedders WHERE id=?", (embedder_id,))
    return json.loads(rows[0]["class_names_json"]) if rows and rows[0]["class_names_json"] else None


def load_class_scores(workspace: Workspace, content_sha256: str, embedder_id: str) -> np.ndarray | None:
    """float32 [T, classes] class scores of a content by an embedder that has them, else None."""
    rows = workspace.query(
        "SELECT e.frames, e.class_scores, d.frames_json FROM embeddings e JOIN embedders d ON d.id = e.embedder_id"
        " WHERE e.content_sha256=? AND e.embedder_id=?", (content_sha256, embedder_id))
    if not rows or rows[0]["class_scores"] is None:
        return None
    spec = _frame_spec(rows[0]["frames_json"])
    return class_scores_from_blob(rows[0]["class_scores"], rows[0]["frames"], spec.class_count)


def list_recordings(workspace: Workspace, status: str | None = None) -> list[RecordingRow]:
    sql = "SELECT * FROM recordings" + (" WHERE status=?" if status else "") + " ORDER BY path"
    return [_recording(row) for row in workspace.query(sql, (status,) if status else ())]


@dataclass(frozen=True)
class FileState:
    """What the workspace knows about a path, enough to skip an unchanged file without reading it."""

    size: int | None
    mtime_ns: int | None
    status: str
    content_sha256: str | None
    error: str | None
    embedded: bool  # its content has an embedding by the embedder asked about


@dataclass(frozen=True)
class FileIdentity:
    path: str
    size: int | None
    mtime_ns: int | None


@dataclass(frozen=True)
class AudioFacts:
    """What decoding a content found; the same for every path holding that content."""

    duration_seconds: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    format: str | None = None


def save_recording(
    workspace: Workspace,
    *,
    path: str,
    size: int | None,
    mtime_ns: int | None,
    content_sha256: str | None,
    status: str,
    error: str | None = None,
    duration_seconds: float | None = None,
    sample_rate: int | None = None,
    channels: int | None = None,
    audio_format: str | None = None,
    run_id: int | None = None,
    embedding: StoredEmbedding | None = None,
) -> None:
    """Write a recording's row, and its embedding if given, in one transaction."""
    save_recordings(
        workspace, [FileIdentity(path, size, mtime_ns)], content_sha256=content_sha256, status=status,
        error=error, audio=AudioFacts(duration_seconds, sample_rate, channels, audio_format), run_id=run_id,
        embedding=embedding,
    )


def save_recordings(
    workspace: Workspace,
    files: Sequence[FileIdentity],
    *,
    content_sha256: str | None,
    status: str,
    audio: AudioFacts = AudioFacts(),
    error: str | None = None,
    run_id: int | None = None,
    embedding: StoredEmbedding | None = None,
) -> None:
    """Rows for every path holding one content, and its embedding if given, in one transaction."""
    with workspace.transaction() as db:
        if embedding is not None:
            _insert_embedding(db, embedding, run_id)
        now = utc_now()
        db.executemany(
            """
            INSERT INTO recordings(path, size, mtime_ns, content_sha256, duration_seconds, sample_rate,
                                   channels, format, status, error, updated_at, run_id)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(path) DO UPDATE SET
                size=excluded.size, mtime_ns=excluded.mtime_ns, content_sha256=excluded.content_sha256,
                duration_seconds=excluded.duration_seconds, sample_rate=excluded.sample_rate,
                channels=excluded.channels, format=excluded.format, status=excluded.status,
                error=excluded.error, updated_at=excluded.updated_at, run_id=excluded.run_id
            """,
            [(file.path, file.size, file.mtime_ns, content_sha256, audio.duration_seconds, audio.sample_rate,
              audio.channels, audio.format, status, error, now, run_id) for file in files],
        )


def file_states(workspace: Workspace, embedder_id: str) -> dict[str, FileState]:
    """Every known path with its last seen size and mtime, and whether `embedder_id` embedded its content."""
    rows = workspace.query(
        "SELECT r.path, r.size, r.mtime_ns, r.status, r.content_sha256, r.error,"
        " e.content_sha256 IS NOT NULL AS embedded"
        " FROM recordings r LEFT JOIN embeddings e"
        " ON e.content_sha256 = r.content_sha256 AND e.embedder_id = ?",
        (embedder_id,),
    )
    return {row["path"]: FileState(row["size"], row["mtime_ns"], row["status"], row["content_sha256"],
                                   row["error"], bool(row["embedded"])) for row in rows}


def embedded_audio_facts(workspace: Workspace, content_sha256: str, embedder_id: str) -> AudioFacts | None:
    """The audio facts of a content `embedder_id` already embedded, or None if it has to be (re)done."""
    rows = workspace.query(
        "SELECT r.duration_seconds, r.sample_rate, r.channels, r.format FROM recordings r"
        " JOIN embeddings e ON e.content_sha256 = r.content_sha256 AND e.embedder_id = ?"
        " WHERE r.content_sha256 = ? AND r.status = 'embedded' LIMIT 1",
        (embedder_id, content_sha256),
    )
    if not rows:
        return None
    row = rows[0]
    return AudioFacts(row["duration_seconds"], row["sample_rate"], row["channels"], row["format"])


def _insert_embedding(db, embedding: StoredEmbedding, run_id: int | None) -> None:
    """Checked against the frame facts the embedder was registered with (register_embedder first)."""
    rows = db.execute("SELECT frames_json FROM embedders WHERE id=?", (embedding.embedder_id,)).fetchall()
    if not rows:
        raise ValueError(f"embedder {embedding.embedder_id} is not registered; call register_embedder first")
    spec = _frame_spec(rows[0]["frames_json"])
    stored = np.asarray(embedding.embedding)
    spec.check(stored)
    raw = scores = None
    if embedding.raw_embedding is not None:
        raw = np.ascontiguousarray(embedding.raw_embedding, dtype="<f4").tobytes()
    if embedding.class_scores is not None:
        if embedding.class_scores.shape != (len(stored), spec.class_count):
            raise ValueError(f"class scores must be [{len(stored)}, {spec.class_count}], "
                             f"got {embedding.class_scores.shape}")
        scores = class_scores_to_blob(embedding.class_scores)
    db.execute(
        "INSERT OR IGNORE INTO embeddings(content_sha256, embedder_id, frames, hop_seconds, embedding,"
        " raw_embedding, class_scores, created_at, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (embedding.content_sha256, embedding.embedder_id, len(stored), spec.hop_seconds,
         spec.to_blob(stored), raw, scores, utc_now(), run_id),
    )


def load_embedding(
    workspace: Workspace, content_sha256: str, embedder_id: str, *, with_raw: bool = False,
    with_class_scores: bool = False,
) -> StoredEmbedding | None:
    columns = _embedding_columns(with_raw, with_class_scores)
    rows = workspace.query(
        f"SELECT {columns} FROM embeddings e JOIN embedders d ON d.id = e.embedder_id"
        " WHERE e.content_sha256=? AND e.embedder_id=?",
        (content_sha256, embedder_id),
    )
    if not rows:
        return None
    return _stored(rows[0], content_sha256, embedder_id, with_raw, with_class_scores)


def iter_embedded_recordings(
    workspace: Workspace, embedder_id: str | None = None, *, with_raw: bool = False,
    with_class_scores: bool = False,
) -> Iterator[tuple[RecordingRow, StoredEmbedding]]:
    """Each embedded recording with its embedding; one row per path, read lazily."""
    sql = (
        f"SELECT r.*, {_embedding_columns(with_raw, with_class_scores)} FROM recordings r"
        " JOIN embeddings e ON e.content_sha256 = r.content_sha256 JOIN embedders d ON d.id = e.embedder_id"
        " WHERE r.status='embedded'" + (" AND e.embedder_id=?" if embedder_id else "") + " ORDER BY r.path"
    )
    cursor = workspace.connection.execute(sql, (embedder_id,) if embedder_id else ())
    for row in cursor:
        yield _recording(row), _stored(row, row["content_sha256"], row["embedder_id"], with_raw, with_class_scores)


def status_section(workspace: Workspace) -> dict:
    """Counts by status, hours, failures with reasons, and what each embedder has done."""
    counts = {row["status"]: row["n"] for row in workspace.query(
        "SELECT status, COUNT(*) AS n FROM recordings GROUP BY status ORDER BY status")}
    # One hour figure everywhere: the audio of each distinct content once (copies are not more audio).
    totals = workspace.query(
        "SELECT COUNT(*) AS contents, COALESCE(SUM(seconds), 0) / 3600.0 AS hours FROM ("
        " SELECT MAX(duration_seconds) AS seconds FROM recordings WHERE status='embedded'"
        " GROUP BY content_sha256)")[0]
    failures = [{"path": row["path"], "error": row["error"]} for row in workspace.query(
        "SELECT path, error FROM recordings WHERE status='failed' ORDER BY path")]
    embedders = [
        {"embedder_id": row["id"], "source": json.loads(row["provenance_json"]).get("source"),
         "model": _frame_spec(row["frames_json"]).model, "dimension": _frame_spec(row["frames_json"]).dimension,
         "contents": row["contents"], "hours": row["seconds"] / 3600.0,
         "stored_bytes": row["bytes"], "shorter_than_one_example": row["empty"], "created_at": row["created_at"]}
        for row in workspace.query(
            "SELECT d.id, d.provenance_json, d.frames_json, d.created_at, COUNT(e.content_sha256) AS contents,"
            " COALESCE(SUM((SELECT MAX(r.duration_seconds) FROM recordings r"
            "  WHERE r.content_sha256 = e.content_sha256)), 0) AS seconds,"
            " COALESCE(SUM(e.frames = 0), 0) AS empty,"
            " COALESCE(SUM(LENGTH(e.embedding) + COALESCE(LENGTH(e.raw_embedding), 0)"
            " + COALESCE(LENGTH(e.class_scores), 0)), 0) AS bytes"
            " FROM embedders d LEFT JOIN embeddings e ON e.embedder_id = d.id GROUP BY d.id ORDER BY d.created_at")
    ]
    return {
        "paths": sum(counts.values()),
        "by_status": counts,
        "distinct_embedded_contents": totals["contents"],
        "embedded_hours": totals["hours"],
        "failures": failures,
        "embedders": embedders,
    }


def _recording(row) -> RecordingRow:
    return RecordingRow(
        id=row["id"], path=row["path"], size=row["size"], mtime_ns=row["mtime_ns"],
        content_sha256=row["content_sha256"], duration_seconds=row["duration_seconds"],
        sample_rate=row["sample_rate"], channels=row["channels"], format=row["format"],
        status=row["status"], error=row["error"],
    )


def _embedding_columns(with_raw: bool, with_class_scores: bool) -> str:
    return ("e.frames, e.hop_seconds, e.embedding, e.embedder_id, d.frames_json"
            + (", e.raw_embedding" if with_raw else "") + (", e.class_scores" if with_class_scores else ""))


def _frame_spec(frames_json: str | None) -> FrameSpec:
    return FrameSpec.from_dict(json.loads(frames_json)) if frames_json else VGGISH_FRAMES


def _stored(row, content_sha256: str, embedder_id: str, with_raw: bool, with_class_scores: bool = False
            ) -> StoredEmbedding:
    frames = row["frames"]
    spec = _frame_spec(row["frames_json"])
    raw = scores = None
    if with_raw and row["raw_embedding"] is not None:
        raw = np.frombuffer(row["raw_embedding"], dtype="<f4").reshape(frames, spec.dimension)
    if with_class_scores and row["class_scores"] is not None:
        scores = class_scores_from_blob(row["class_scores"], frames, spec.class_count)
    return StoredEmbedding(content_sha256, embedder_id, spec.from_blob(row["embedding"], frames), raw,
                           row["hop_seconds"], scores, spec)
