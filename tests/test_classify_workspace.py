"""Workspace side of the detector: strong labels, labeled-sequence providers, models and detections."""

import sqlite3

import numpy as np
import pytest

from classify.events import Event
from homesound_testkit.synthetic import SYNTHETIC_EMBEDDER, planted_sequences
from homesound.workspace import Workspace
from homesound.workspace.classify import (
    detected_contents,
    list_detections,
    list_models,
    register_model,
    replace_detections,
)
from homesound.workspace.recordings import (
    StoredEmbedding,
    register_embedder,
    save_recording,
)
from homesound.workspace.training_data import (
    CONTEXT_FRAMES,
    StrongLabel,
    iter_labeled_sequences,
    seconds_to_frames,
    split_of_recording,
    strong_label_sequences,
    strong_label_summary,
    upsert_strong_labels,
)
from homesound_testkit.workspaces import content_hash, planted_workspace


def fake_audioset_provider(workspace, split=None):
    """A second provider, as the AudioSet stage plugs in its own."""
    for sequence in planted_sequences(3, labels="weak", split="eval", key_prefix="audioset"):
        if split in (None, sequence.split):
            yield sequence


def test_strong_labels_are_upserted_never_duplicated(tmp_path):
    content = content_hash("a")
    with Workspace(tmp_path / "home.db") as workspace:
        labels = [StrongLabel(content, s, "crying", 1.0, "label-studio", task_id="7", annotator="ann") for s in range(4)]
        upsert_strong_labels(workspace, labels)
        upsert_strong_labels(workspace, labels)
        assert strong_label_summary(workspace) == [
            {"target": "crying", "seconds": 4, "positive_seconds": 4.0, "recordings": 1}
        ]
        # The annotation was edited: the region shrank to two seconds, the rest is now negative.
        edited = [StrongLabel(content, s, "crying", float(s < 2), "label-studio", task_id="7") for s in range(3)]
        upsert_strong_labels(workspace, edited, replacing_tasks=["7"])
        rows = workspace.query("SELECT second, value FROM strong_labels ORDER BY second")
        assert [(r["second"], r["value"]) for r in rows] == [(0, 1.0), (1, 1.0), (2, 0.0)]
        with pytest.raises(sqlite3.IntegrityError):  # values are 0 or 1
            upsert_strong_labels(workspace, [StrongLabel(content, 0, "crying", 0.5, "x")])
        assert len(workspace.query("SELECT * FROM strong_labels")) == 3  # the failed write left nothing


def test_regions_map_to_the_embedding_frames_they_mostly_cover():
    assert seconds_to_frames(0.0, 0.96) == range(1)
    assert seconds_to_frames(1.0, 3.0) == range(1, 3)  # frame 3 starts at 2.88: only 0.12 s covered
    assert seconds_to_frames(0.5, 0.9) == range(0)  # covers less than half of any frame
    assert seconds_to_frames(2.0, 1.0) == range(0)
    assert seconds_to_frames(0.0, 10.0) == range(10)


def test_strong_labels_become_sequences_of_the_labeled_stretches(tmp_path):
    content = content_hash("recording")
    embedding = np.arange(40 * 128, dtype=np.int64).reshape(40, 128).astype(np.uint8)
    with Workspace(tmp_path / "home.db") as workspace:
        register_embedder(workspace, SYNTHETIC_EMBEDDER, {"kind": "test"})
        save_recording(workspace, path="/a.wav", size=1, mtime_ns=1, content_sha256=content, status="embedded",
                       embedding=StoredEmbedding(content, SYNTHETIC_EMBEDDER, embedding, None, 0.96))
        upsert_strong_labels(workspace, [StrongLabel(content, s, "crying", float(s == 9), "ls") for s in (8, 9, 10)])
        upsert_strong_labels(workspace, [StrongLabel(content, s, "laughter", 1.0, "ls") for s in (14, 30)])
        upsert_strong_labels(workspace, [StrongLabel(content_hash("never embedded"), 0, "crying", 1.0, "ls")])
        sequences = list(iter_labeled_sequences(workspace))
    assert len(sequences) == 2
    first, second = sequences
    assert first.classes == ("crying", "laughter")
    assert first.group == content and first.split == split_of_recording(content)
    # Seconds 8-10 and 14 are close: one sequence, starting with unlabeled context.
    assert first.start_seconds == pytest.approx((8 - CONTEXT_FRAMES) * 0.96)
    assert np.array_equal(first.embedding, embedding[8 - CONTEXT_FRAMES:15])
    assert np.isnan(first.frame_labels[:CONTEXT_FRAMES]).all()
    assert first.frame_labels[CONTEXT_FRAMES:CONTEXT_FRAMES + 3, 0].tolist() == [0.0, 1.0, 0.0]
    assert np.isnan(first.frame_labels[:-1, 1]).all() and first.frame_labels[-1, 1] == 1.0
    assert np.isnan(first.frame_labels[-1, 0])  # crying never labeled at second 14: unknown, not negative
    assert second.start_seconds == pytest.approx((30 - CONTEXT_FRAMES) * 0.96) and len(second.embedding) == 6
    assert second.key != first.key


def test_providers_are_chained_and_filtered_by_split(tmp_path):
    truth = planted_workspace(tmp_path / "home.db", recordings=10, seconds=12, seed=2)
    providers = (strong_label_sequences, fake_audioset_provider)
    with Workspace(tmp_path / "home.db") as workspace:
        everything = list(iter_labeled_sequences(workspace, providers=providers))
        test_only = list(iter_labeled_sequences(workspace, "test", providers=providers))
        evaluation = list(iter_labeled_sequences(workspace, "eval", providers=providers))
    assert len(everything) == 10 + 3
    assert {s.group for s in everything[:10]} == set(truth)
    assert {s.split for s in test_only} == {"test"}
    assert {s.group for s in test_only} == {c for c in truth if split_of_recording(c) == "test"}
    assert [s.key.split(":")[0] for s in evaluation] == ["audioset"] * 3


def test_models_and_detections_are_recorded_once(tmp_path):
    content = content_hash("x")
    events = [Event("crying", 0.96, 2.88, 0.9, 0.7), Event("laughter", 5.76, 6.72, 0.6, 0.55)]
    with Workspace(tmp_path / "home.db") as workspace:
        model_id = register_model(workspace, path="a.pt", sha256="f" * 64, config={"rnn": "gru"},
                                  classes=["crying", "laughter"], thresholds={"crying": 0.5, "laughter": 0.4},
                                  embedder_ids=["e"], metrics={"ap": 0.9})
        assert register_model(workspace, path="b.pt", sha256="f" * 64, config={}, classes=[], thresholds={},
                              embedder_ids=[]) == model_id
        (model,) = list_models(workspace)
        assert model["path"] == "b.pt" and model["classes"] == ["crying", "laughter"]
        replace_detections(workspace, model_id, content, events, frames=10)
        replace_detections(workspace, model_id, content, events[:1], frames=10)
        replace_detections(workspace, model_id, content_hash("silent"), [], frames=30)
        detections = list_detections(workspace, model_id)
        assert [(d["label"], d["start_seconds"], d["end_seconds"]) for d in detections] == [("crying", 0.96, 2.88)]
        assert detected_contents(workspace, model_id) == {content, content_hash("silent")}
