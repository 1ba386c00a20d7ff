"""AudioSet segments imported from the released VGGish features, as weakly labeled training data.

A segment is keyed by (YouTube id, start in ms), so importing the same release again adds nothing.
The workspace holds segments under one target mapping (target name -> AudioSet mids) at a time:
importing with another mapping relabels the stored segments from their AudioSet labels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from homesound.frames import VGGISH_FRAMES
from homesound.sequences import LabeledSequence
from homesound.workspace.core import Workspace, utc_now

COMPONENT = "audioset"
MIGRATIONS = (
    """
    CREATE TABLE audioset_target_mappings (
        id TEXT PRIMARY KEY,
        mapping_json TEXT NOT NULL,
        class_names_json TEXT NOT NULL,
        use_order INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE audioset_segments (
        id INTEGER PRIMARY KEY,
        ytid TEXT NOT NULL,
        start_ms INTEGER NOT NULL,
        start_seconds REAL NOT NULL,
        end_seconds REAL NOT NULL,
        split TEXT NOT NULL CHECK (split IN ('train', 'eval')),
        source_list TEXT NOT NULL,
        selection_role TEXT NOT NULL,
        label_mids TEXT NOT NULL,
        targets_json TEXT NOT NULL,
        target_mapping_id TEXT NOT NULL REFERENCES audioset_target_mappings(id),
        embedder_id TEXT NOT NULL REFERENCES embedders(id),
        frames INTEGER NOT NULL,
        embedding BLOB NOT NULL,
        run_id INTEGER REFERENCES runs(id),
        imported_at TEXT NOT NULL,
        UNIQUE (ytid, start_ms)
    );
    CREATE INDEX audioset_segments_by_split ON audioset_segments(split, ytid)
    """,
)

EMBEDDER_ID = "audioset-release"
EMBEDDING_SIZE = VGGISH_FRAMES.dimension  # the release is VGGish by definition
HOP_SECONDS = VGGISH_FRAMES.hop_seconds  # the release calls its 0.96 s frames "1 per second"
EMBEDDER_PROVENANCE = {
    "source": "AudioSet released features (audioset_v1_embeddings)",
    "model": "VGGish, as run by Google on the YouTube audio",
    "postprocess": "PCA + whitening to 128 dims, clipped to [-2, 2], quantized to 8 bits",
    "dequantize": "float = uint8 / 255 * 4 - 2",
    "hop_seconds": HOP_SECONDS,
    "url": "https://research.google.com/audioset/download.html",
}


@dataclass(frozen=True)
class AudioSetSegment:
    ytid: str
    start_ms: int
    start_seconds: float
    end_seconds: float
    split: str  # "train" or "eval", as AudioSet assigned it
    source_list: str  # the segment list it came from, e.g. "balanced_train_segments"
    selection_role: str  # "positive", "hard_negative", "random_negative"
    label_mids: tuple[str, ...]  # AudioSet labels of the segment
    targets: tuple[int, ...]  # multi-hot over the target mapping's class names
    embedding: np.ndarray  # uint8 [T <= 10, 128]


def use_target_mapping(
    workspace: Workspace,
    mapping_id: str,
    mapping_json: str,
    class_names: Sequence[str],
    relabel: Callable[[tuple[str, ...]], tuple[int, ...]],
) -> int:
    """Make this mapping the current one; segments stored under another are relabeled with `relabel`.

    Returns how many segments were relabeled. One transaction: all or nothing.
    """
    with workspace.transaction() as db:
        next_order = db.execute("SELECT COALESCE(MAX(use_order), 0) + 1 FROM audioset_target_mappings").fetchone()[0]
        db.execute(
            "INSERT INTO audioset_target_mappings(id, mapping_json, class_names_json, use_order, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET use_order=excluded.use_order",
            (mapping_id, mapping_json, json.dumps(list(class_names)), next_order, utc_now()),
        )
        stale = db.execute(
            "SELECT id, label_mids FROM audioset_segments WHERE target_mapping_id != ?", (mapping_id,)
        ).fetchall()
        db.executemany(
            "UPDATE audioset_segments SET targets_json=?, target_mapping_id=? WHERE id=?",
            [(json.dumps(list(relabel(_mids(row["label_mids"])))), mapping_id, row["id"]) for row in stale],
        )
        return len(stale)


def current_target_mapping(workspace: Workspace) -> tuple[str, str, tuple[str, ...]] | None:
    """(id, mapping_json, class names) of the mapping used by the latest import, if any."""
    rows = workspace.query(
        "SELECT id, mapping_json, class_names_json FROM audioset_target_mappings ORDER BY use_order DESC LIMIT 1"
    )
    if not rows:
        return None
    return rows[0]["id"], rows[0]["mapping_json"], tuple(json.loads(rows[0]["class_names_json"]))


def save_segments(
    workspace: Workspace, segments: Sequence[AudioSetSegment], mapping_id: str, run_id: int | None
) -> int:
    """Store a batch in one transaction; segments already present are left alone. Returns rows added."""
    now = utc_now()
    rows = []
    for segment in segments:
        embedding = np.ascontiguousarray(segment.embedding, dtype=np.uint8)
        if embedding.ndim != 2 or embedding.shape[1] != EMBEDDING_SIZE:
            raise ValueError(f"{segment.ytid}: embedding must be [T, {EMBEDDING_SIZE}], got {embedding.shape}")
        rows.append((
            segment.ytid, segment.start_ms, segment.start_seconds, segment.end_seconds, segment.split,
            segment.source_list, segment.selection_role, ",".join(segment.label_mids),
            json.dumps(list(segment.targets)), mapping_id, EMBEDDER_ID, len(embedding), embedding.tobytes(),
            run_id, now,
        ))
    with workspace.transaction() as db:
        before = db.total_changes
        db.executemany(
            "INSERT INTO audioset_segments(ytid, start_ms, start_seconds, end_seconds, split, source_list,"
            " selection_role, label_mids, targets_json, target_mapping_id, embedder_id, frames, embedding,"
            " run_id, imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(ytid, start_ms) DO NOTHING",
            rows,
        )
        return db.total_changes - before


def segment_counts(workspace: Workspace) -> dict[str, dict[str, int]]:
    """Stored segments per split, and per target (positives) within each split."""
    current = current_target_mapping(workspace)
    names = current[2] if current else ()
    counts: dict[str, dict[str, int]] = {}
    rows = workspace.query(
        "SELECT split, targets_json, COUNT(*) AS n FROM audioset_segments GROUP BY split, targets_json")
    for row in rows:
        split_counts = counts.setdefault(row["split"], {"segments": 0, **{name: 0 for name in names}})
        split_counts["segments"] += row["n"]
        for name, value in zip(names, json.loads(row["targets_json"])):
            split_counts[name] += row["n"] * value
    return counts


def audioset_sequences(workspace: Workspace, split: str | None = None) -> Iterator[LabeledSequence]:
    """Stored AudioSet segments as weakly (clip-level) labeled sequences; group = YouTube id.

    `split` is "train" (balanced/unbalanced train lists) or "eval" (AudioSet's eval list); None: both.
    """
    current = current_target_mapping(workspace)
    if current is None:
        return
    mapping_id, _, class_names = current
    sql = (
        "SELECT ytid, start_ms, start_seconds, split, targets_json, frames, embedding FROM audioset_segments"
        " WHERE target_mapping_id=?" + (" AND split=?" if split else "") + " ORDER BY split, ytid, start_ms"
    )
    cursor = workspace.connection.execute(sql, (mapping_id, split) if split else (mapping_id,))
    for row in cursor:
        embedding = np.frombuffer(row["embedding"], dtype=np.uint8).reshape(row["frames"], EMBEDDING_SIZE).copy()
        yield LabeledSequence(
            key=f"audioset:{row['ytid']}:{row['start_ms'] / 1000:.3f}",
            group=row["ytid"],
            split=row["split"],
            embedding=embedding,
            embedder_id=EMBEDDER_ID,
            classes=class_names,
            clip_labels=np.asarray(json.loads(row["targets_json"]), dtype=np.float32),
            start_seconds=row["start_seconds"],
            hop_seconds=HOP_SECONDS,
        )


def _mids(label_mids: str) -> tuple[str, ...]:
    return tuple(label_mids.split(",")) if label_mids else ()
