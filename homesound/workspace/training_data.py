"""Where training sequences come from: strong per-second labels, whole-recording labels, the
source recording (group) of each labeled recording, and the registry of providers.

A *provider* is a function `(workspace, split) -> Iterator[LabeledSequence]` (split None = all).
`iter_labeled_sequences` chains every provider listed in LABELED_SEQUENCE_PROVIDERS, so a stage
that stores labeled data (AudioSet segments, Label Studio labels, ...) plugs in with one line and
the detector trains on all of it.

Strong labels live here, per embedding frame ("second": frame i covers [i * hop, (i + 1) * hop)
of the recording, hop = 0.96 s), one row per (recording content, second, target); labeling tools
upsert into them, so an edited annotation updates its rows instead of adding new ones.

Clip labels say what a whole recording holds (a file in a `crying/` folder, a row of a clips
spreadsheet): weak labels, one row per (recording content, target). Imported labels carry their
origin (the spreadsheet or folder they came from); importing the same origin again replaces what
it imported before, so a rerun never duplicates. A recording's group names the source recording
it was cut from: splits (held-out test, validation) go by group, so pieces of one recording are
never on both sides; without a group a recording is its own.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from homesound.frames import VGGISH_FRAMES
from homesound.sequences import LabeledSequence, mask_runs
from homesound.workspace.audioset import audioset_sequences
from homesound.workspace.core import Workspace, utc_now
from homesound.workspace.recordings import load_embedding

COMPONENT = "training_data"
MIGRATIONS = (
    """
    CREATE TABLE strong_labels (
        content_sha256 TEXT NOT NULL,
        second INTEGER NOT NULL CHECK (second >= 0),
        target TEXT NOT NULL,
        value REAL NOT NULL CHECK (value IN (0, 1)),
        origin TEXT NOT NULL,
        task_id TEXT,
        annotator TEXT,
        annotated_at TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (content_sha256, second, target)
    );
    CREATE INDEX strong_labels_by_task ON strong_labels(task_id)
    """,
    """
    CREATE TABLE clip_labels (
        content_sha256 TEXT NOT NULL,
        target TEXT NOT NULL,
        value REAL NOT NULL CHECK (value IN (0, 1)),
        origin TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (content_sha256, target)
    );
    CREATE INDEX clip_labels_by_origin ON clip_labels(origin);
    CREATE TABLE recording_groups (
        content_sha256 TEXT PRIMARY KEY,
        group_name TEXT NOT NULL,
        origin TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX recording_groups_by_origin ON recording_groups(origin)
    """,
)

# Strong labels are stored per frame of the grid every embedder shares (VGGish's 0.96 s; YAMNet's
# frames are taken on it too), so a label stays valid whichever embedder trains on it.
HOP_SECONDS = VGGISH_FRAMES.hop_seconds
CONTEXT_FRAMES = 5  # unlabeled seconds before a labeled stretch, so a causal model has warmed up
HELD_OUT_FRACTION = 0.2  # of labeled recordings (by content hash) kept as split "test"

Provider = Callable[[Workspace, "str | None"], Iterator[LabeledSequence]]


@dataclass(frozen=True)
class StrongLabel:
    content_sha256: str
    second: int  # embedding frame index
    target: str
    value: float  # 1 present, 0 absent
    origin: str  # e.g. "label-studio"
    task_id: str | None = None
    annotator: str | None = None
    annotated_at: str | None = None


@dataclass(frozen=True)
class ClipLabel:
    """What a whole recording holds for one target (weak: somewhere in it, or nowhere)."""

    content_sha256: str
    target: str
    value: float  # 1 present, 0 absent


@dataclass(frozen=True)
class ImportedLabels:
    """Everything one origin (a labels CSV, a folder tree) says, stored together."""

    origin: str  # e.g. "import:/home/me/labels.csv"
    clip_labels: tuple[ClipLabel, ...] = ()
    strong_labels: tuple[StrongLabel, ...] = ()
    groups: tuple[tuple[str, str], ...] = ()  # (content_sha256, group name)


@dataclass(frozen=True)
class ImportCounts:
    clip_labels: int
    strong_labels: int
    groups: int
    replaced: int  # rows this origin had stored before (a rerun replaces them)
    new: int  # rows that did not exist before (a rerun of an unchanged import: 0)


def seconds_to_frames(start: float, end: float, hop_seconds: float = HOP_SECONDS, min_overlap: float = 0.5) -> range:
    """Embedding frames covered by [start, end) for at least min_overlap of their length."""
    if end <= start:
        return range(0)
    first = max(0, math.floor(start / hop_seconds))
    last = math.ceil(end / hop_seconds)
    covered = [
        i for i in range(first, last)
        if min(end, (i + 1) * hop_seconds) - max(start, i * hop_seconds) >= min_overlap * hop_seconds - 1e-9
    ]
    return range(covered[0], covered[-1] + 1) if covered else range(0)


def write_strong_labels(db: sqlite3.Connection, labels: Iterable[StrongLabel], replacing_tasks: Iterable[str] = ()) -> int:
    """Inside the caller's transaction: drop the rows of `replacing_tasks`, then upsert `labels`."""
    for task_id in replacing_tasks:
        db.execute("DELETE FROM strong_labels WHERE task_id=?", (str(task_id),))
    now = utc_now()
    rows = [
        (label.content_sha256, int(label.second), label.target, float(label.value), label.origin,
         None if label.task_id is None else str(label.task_id), label.annotator, label.annotated_at, now)
        for label in labels
    ]
    db.executemany(
        """
        INSERT INTO strong_labels(content_sha256, second, target, value, origin, task_id, annotator,
                                  annotated_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT(content_sha256, second, target) DO UPDATE SET
            value=excluded.value, origin=excluded.origin, task_id=excluded.task_id,
            annotator=excluded.annotator, annotated_at=excluded.annotated_at, updated_at=excluded.updated_at
        """,
        rows,
    )
    return len(rows)


def upsert_strong_labels(workspace: Workspace, labels: Iterable[StrongLabel], replacing_tasks: Iterable[str] = ()) -> int:
    """Store labels in one transaction; re-pulling an edited annotation updates rows, never duplicates them."""
    with workspace.transaction() as db:
        return write_strong_labels(db, labels, replacing_tasks)


def replace_imported_labels(workspace: Workspace, labels: ImportedLabels) -> ImportCounts:
    """One transaction: drop what `labels.origin` imported before, store what it says now."""
    origin = labels.origin
    with workspace.transaction() as db:
        before = _imported_rows(db, origin)
        replaced = (db.execute("DELETE FROM clip_labels WHERE origin=?", (origin,)).rowcount
                    + db.execute("DELETE FROM strong_labels WHERE task_id=?", (origin,)).rowcount
                    + db.execute("DELETE FROM recording_groups WHERE origin=?", (origin,)).rowcount)
        now = utc_now()
        db.executemany(
            "INSERT INTO clip_labels(content_sha256, target, value, origin, updated_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(content_sha256, target) DO UPDATE SET value=excluded.value, origin=excluded.origin,"
            " updated_at=excluded.updated_at",
            [(label.content_sha256, label.target, float(label.value), origin, now) for label in labels.clip_labels],
        )
        strong = write_strong_labels(db, labels.strong_labels)
        db.executemany(
            "INSERT INTO recording_groups(content_sha256, group_name, origin, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(content_sha256) DO UPDATE SET group_name=excluded.group_name, origin=excluded.origin,"
            " updated_at=excluded.updated_at",
            [(content, group, origin, now) for content, group in labels.groups],
        )
        after = _imported_rows(db, origin)
    return ImportCounts(len(labels.clip_labels), strong, len(labels.groups), replaced, len(after - before))


def _imported_rows(db: sqlite3.Connection, origin: str) -> set[tuple]:
    """What an origin holds, as comparable rows (to tell new labels from re-imported ones)."""
    rows = {("clip", r[0], r[1], r[2]) for r in db.execute(
        "SELECT content_sha256, target, value FROM clip_labels WHERE origin=?", (origin,))}
    rows |= {("strong", r[0], r[1], r[2], r[3]) for r in db.execute(
        "SELECT content_sha256, second, target, value FROM strong_labels WHERE task_id=?", (origin,))}
    rows |= {("group", r[0], r[1]) for r in db.execute(
        "SELECT content_sha256, group_name FROM recording_groups WHERE origin=?", (origin,))}
    return rows


def recording_groups(workspace: Workspace) -> dict[str, str]:
    """content hash -> group (source recording) for recordings that have one."""
    return {row["content_sha256"]: row["group_name"]
            for row in workspace.query("SELECT content_sha256, group_name FROM recording_groups")}


def strong_label_summary(workspace: Workspace) -> list[dict]:
    return [dict(row) for row in workspace.query(
        "SELECT target, COUNT(*) AS seconds, SUM(value) AS positive_seconds,"
        " COUNT(DISTINCT content_sha256) AS recordings FROM strong_labels GROUP BY target ORDER BY target"
    )]


def clip_label_summary(workspace: Workspace) -> list[dict]:
    return [dict(row) for row in workspace.query(
        "SELECT target, COUNT(*) AS recordings, SUM(value) AS positive_recordings FROM clip_labels"
        " GROUP BY target ORDER BY target"
    )]


def split_of_recording(content_sha256: str) -> str:
    """A stable split per recording: the same recording is always train or always test."""
    return "test" if int(content_sha256[:8], 16) / 0x100000000 < HELD_OUT_FRACTION else "train"


def split_of_group(group: str) -> str:
    """The split of a source recording (a content hash, or any name a user gave): all its pieces share it."""
    is_content = len(group) == 64 and all(c in "0123456789abcdef" for c in group)
    return split_of_recording(group if is_content else hashlib.sha256(group.encode()).hexdigest())


def strong_label_sequences(workspace: Workspace, split: str | None = None) -> Iterator[LabeledSequence]:
    """One sequence per labeled stretch of each embedded recording (and embedder), with a little
    unlabeled context before it; unlabeled seconds and targets are NaN."""
    classes = tuple(row["target"] for row in workspace.query("SELECT DISTINCT target FROM strong_labels ORDER BY target"))
    for content, embedder_id, group, recording_split, stored in _labeled_embeddings(workspace, "strong_labels", split):
        labels = np.full((len(stored.embedding), len(classes)), np.nan, dtype=np.float32)
        for row in workspace.query(
            "SELECT second, target, value FROM strong_labels WHERE content_sha256=? AND second<?",
            (content, len(stored.embedding)),
        ):
            labels[row["second"], classes.index(row["target"])] = row["value"]
        # each stretch of labeled seconds (stretches closer than the context joined: none is used twice)
        for begin, end in mask_runs((~np.isnan(labels)).any(axis=1), join_gap=CONTEXT_FRAMES):
            first = max(0, begin - CONTEXT_FRAMES)
            yield LabeledSequence(
                key=f"recording:{content}:{first * stored.hop_seconds:.2f}",
                group=group,
                split=recording_split,
                embedding=stored.embedding[first:end],
                embedder_id=embedder_id,
                classes=classes,
                frame_labels=labels[first:end],
                start_seconds=first * stored.hop_seconds,
                hop_seconds=stored.hop_seconds,
                class_scores=None if stored.class_scores is None else stored.class_scores[first:end],
            )


def _labeled_embeddings(workspace: Workspace, label_table: str, split: str | None) -> Iterator[tuple]:
    """(content, embedder id, group, split, stored embedding) of every labeled, embedded content in the split."""
    groups = recording_groups(workspace)
    pairs = workspace.query(
        f"SELECT DISTINCT l.content_sha256, e.embedder_id FROM {label_table} l"
        " JOIN embeddings e ON e.content_sha256 = l.content_sha256 ORDER BY l.content_sha256, e.embedder_id"
    )
    for pair in pairs:
        content, embedder_id = pair["content_sha256"], pair["embedder_id"]
        group = groups.get(content, content)
        recording_split = split_of_group(group)
        if split is not None and recording_split != split:
            continue
        stored = load_embedding(workspace, content, embedder_id, with_class_scores=True)
        if stored is not None and len(stored.embedding):
            yield content, embedder_id, group, recording_split, stored


def clip_label_sequences(workspace: Workspace, split: str | None = None) -> Iterator[LabeledSequence]:
    """One weakly labeled sequence per recording with clip labels (and embedder): the whole recording."""
    classes = tuple(row["target"] for row in workspace.query("SELECT DISTINCT target FROM clip_labels ORDER BY target"))
    labels: dict[str, np.ndarray] = {}
    for row in workspace.query("SELECT content_sha256, target, value FROM clip_labels"):
        labels.setdefault(row["content_sha256"], np.full(len(classes), np.nan, dtype=np.float32))
        labels[row["content_sha256"]][classes.index(row["target"])] = row["value"]
    for content, embedder_id, group, recording_split, stored in _labeled_embeddings(workspace, "clip_labels", split):
        yield LabeledSequence(
            key=f"clip:{content}",
            group=group,
            split=recording_split,
            embedding=stored.embedding,
            embedder_id=embedder_id,
            classes=classes,
            clip_labels=labels[content],
            hop_seconds=stored.hop_seconds,
            class_scores=stored.class_scores,
        )


LABELED_SEQUENCE_PROVIDERS: tuple[Provider, ...] = (audioset_sequences, strong_label_sequences, clip_label_sequences)


def iter_labeled_sequences(
    workspace: Workspace, split: str | None = None, providers: Iterable[Provider] = LABELED_SEQUENCE_PROVIDERS
) -> Iterator[LabeledSequence]:
    """Every labeled sequence the workspace holds, from every registered provider, in provider order."""
    for provider in providers:
        yield from provider(workspace, split)


def status_section(workspace: Workspace) -> dict:
    """Labels for training: per-second and whole-recording labels per target, groups, and where they came from."""
    origins = [dict(row) for row in workspace.query(
        "SELECT origin, COUNT(*) AS labels FROM ("
        " SELECT origin FROM clip_labels UNION ALL SELECT COALESCE(task_id, origin) AS origin FROM strong_labels"
        " WHERE task_id LIKE 'import:%') GROUP BY origin ORDER BY origin")]
    groups = workspace.query("SELECT COUNT(*) AS recordings, COUNT(DISTINCT group_name) AS groups FROM recording_groups")[0]
    return {
        "seconds_labeled": {row["target"]: {"seconds": row["seconds"], "positive": int(row["positive_seconds"] or 0),
                                            "recordings": row["recordings"]} for row in strong_label_summary(workspace)},
        "recordings_labeled": {row["target"]: {"recordings": row["recordings"],
                                               "positive": int(row["positive_recordings"] or 0)}
                               for row in clip_label_summary(workspace)},
        "source_groups": {"recordings": groups["recordings"], "groups": groups["groups"]},
        "imports": origins,
    }
