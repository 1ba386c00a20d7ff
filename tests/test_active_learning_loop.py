"""`homesound rank` and `homesound round` on a workspace of embedded real household recordings,
with the real detector and, for rounds, a real Label Studio where a person annotates through the API."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from active_learning.label_studio import LabelStudio, LabelStudioSettings
from homesound.cli import main
from homesound.sequences import LabeledSequence
from homesound.workspace import Workspace
from homesound.workspace import active_learning as queue
from homesound.workspace.recordings import (
    StoredEmbedding,
    register_embedder,
    save_recording,
)
from homesound.workspace.training_data import strong_label_summary
from homesound_testkit.active_learning import household_recording

CLASSES = ("laughter", "crying")
SCENES = (
    ("silence", "crying", "noise", "laughter", "silence", "crying"),
    ("laughter", "silence", "silence", "crying", "noise", "laughter"),
    ("noise", "laughter", "crying", "silence", "laughter", "noise"),
    ("crying", "noise", "laughter", "noise", "silence", "crying"),
    ("silence", "laughter", "noise", "crying", "crying", "silence"),
    ("noise", "crying", "silence", "laughter", "noise", "laughter"),
)
FAST_TRAIN = ["--train-epochs=6", "--train-patience=6", "--train-threads=1", "--train-hidden-size=16",
              "--train-projection-size=16", "--train-validation-fraction=0.5"]


@pytest.fixture(scope="module")
def household(tmp_path_factory, shared_data, checkpoint_embedder):
    """Six 30 s recordings embedded into a workspace, their true event spans, and a first detector
    trained on three of them as if from elsewhere (AudioSet): nothing in the workspace is labeled."""
    from embed.pipeline import embed_file

    directory = tmp_path_factory.mktemp("household")
    workspace_path = directory / "home.db"
    truth, spans_of, embedded = {}, {}, []
    with Workspace(workspace_path) as workspace:
        for index, scene in enumerate(SCENES):
            path = directory / "archive" / f"room-{index}.flac"
            spans = household_recording(shared_data, path, scene, offset=index)
            embeddings = embed_file(path, checkpoint_embedder)
            content = hashlib.sha256(path.read_bytes()).hexdigest()
            register_embedder(workspace, embeddings.embedder_id, embeddings.provenance)
            save_recording(
                workspace, path=str(path), size=path.stat().st_size, mtime_ns=path.stat().st_mtime_ns,
                content_sha256=content, status="embedded", duration_seconds=30.0,
                embedding=StoredEmbedding(content, embeddings.embedder_id, embeddings.embedding, None, 0.96),
            )
            spans_of[content] = spans
            truth[content] = _frame_truth(spans, len(embeddings.embedding))
            embedded.append((content, embeddings))
    model = directory / "first.pt"
    _first_detector(embedded[:3], truth, model)
    return workspace_path, model, spans_of


def test_rank_prints_exports_and_queues_windows_never_ranked_twice(household, tmp_path, capsys):
    source, model, _ = household
    workspace = tmp_path / "home.db"
    workspace.write_bytes(source.read_bytes())
    out = tmp_path / "ranked.csv"
    assert main(["rank", "--workspace", str(workspace), "--model", str(model), "--top", "6", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(out)
    assert len(table) == 6 and table["reason"].str.contains("entropy").all()
    assert list(table.columns[:6]) == ["rank", "recording", "start_seconds", "end_seconds", "strategy", "score"]
    assert "6 queued for `homesound push`" in printed and "room-" in printed
    assert table["score"].is_monotonic_decreasing

    again = tmp_path / "again.parquet"
    assert main(["rank", "--workspace", str(workspace), "--model", str(model), "--top", "6", "--out", str(again),
                 "--strategy", "bald", "--mc-samples", "8", "--no-diversity"]) == 0
    second = pd.read_parquet(again)
    assert not set(second["window_key"]) & set(table["window_key"])  # queued windows are not ranked again
    assert (second["score"] > 0).all() and second["reason"].str.contains("bald").all()
    with Workspace(workspace) as ws:
        rows = queue.queued_windows(ws)
    assert len(rows) == 12 and all(r.status == "ranked" and r.predictions for r in rows)

    assert main(["rank", "--workspace", str(workspace), "--model", str(model), "--top", "3", "--dry-run"]) == 0
    with Workspace(workspace) as ws:
        assert len(queue.queued_windows(ws)) == 12


def test_rounds_pull_train_rank_and_push_with_history(household, label_studio, tmp_path, monkeypatch, capsys):
    source, model, spans_of = household
    workspace = label_studio.document_root / "round" / "home.db"
    workspace.parent.mkdir(parents=True)
    workspace.write_bytes(source.read_bytes())
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.credentials.personal_access_token)
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(label_studio.document_root))
    monkeypatch.setenv("HOMESOUND_LABEL_STUDIO_CONFIG", "")
    common = ["--workspace", str(workspace), "--top", "8", "--project-title", "round test"]

    # Round 1: nothing labeled yet, so rank with the first detector and push.
    assert main(["round", *common, "--model", str(model)]) == 0
    with Workspace(workspace) as ws:
        first = queue.queued_windows(ws)
    assert len(first) == 8 and {w.status for w in first} == {"pushed"}

    # A person labels every pushed clip in Label Studio (regions where they hear laughing or crying).
    server = LabelStudio(LabelStudioSettings(label_studio.url, label_studio.credentials.legacy_token,
                                             str(label_studio.document_root)))
    for window in first:
        regions = [
            {"from_name": "event", "to_name": "audio", "type": "labels",
             "value": {"start": max(start, window.clip_start_seconds) - window.clip_start_seconds,
                       "end": min(end, window.clip_end_seconds) - window.clip_start_seconds, "labels": [label]}}
            for label, start, end in spans_of[window.content_sha256]
            if label in CLASSES and start < window.clip_end_seconds and window.clip_start_seconds < end
        ]
        server.client.annotations.create(id=window.task_id, result=regions)

    # Round 2: pull those labels, train on them, evaluate, rank with the new model, push the next picks.
    assert main(["round", *common, *FAST_TRAIN]) == 0
    printed = capsys.readouterr().out
    assert "round 2: pulled 8 new" in printed
    with Workspace(workspace) as ws:
        windows = queue.queued_windows(ws)
        rounds = queue.list_rounds(ws)
        labeled = {row["target"]: row for row in strong_label_summary(ws)}
    assert [r["status"] for r in rounds] == ["completed", "completed"]
    assert rounds[0]["labels_added"] == 0 and rounds[1]["labels_added"] == 8
    assert rounds[1]["model"].startswith("round-002@")
    assert rounds[1]["metrics"] is not None and rounds[1]["summary"]["pushed"] == 8
    assert sum(w.status == "labeled" for w in windows) == 8 and sum(w.status == "pushed" for w in windows) == 8
    assert {w.round_id for w in windows} == {1, 2}
    assert labeled["crying"]["seconds"] >= 8 * 6 and labeled["crying"]["positive_seconds"] > 0
    keys = [t["data"]["homesound_window"] for t in server.tasks(windows[0].project_id)]
    assert len(keys) == len(set(keys)) == 16
    capsys.readouterr()
    assert main(["status", "--workspace", str(workspace), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)["active_learning"]
    assert status["queue"] == {"labeled": 8, "pushed": 8} and status["labeled_windows"] == 8
    assert [(r["id"], r["labels_added"], r["pushed"]) for r in status["rounds"]] == [(1, 0, 8), (2, 8, 8)]
    assert status["rounds"][1]["model"].startswith("round-002@") and status["rounds"][1]["held_out_ap"]


def _frame_truth(spans, frames: int) -> np.ndarray:
    truth = np.zeros((frames, len(CLASSES)), dtype=np.float32)
    starts = np.arange(frames) * 0.96
    for label, start, end in spans:
        if label in CLASSES:
            overlap = np.clip(np.minimum(starts + 0.96, end) - np.maximum(starts, start), 0, None)
            truth[overlap >= 0.48, CLASSES.index(label)] = 1
    return truth


def _first_detector(embedded, truth, path) -> None:
    from classify.config import ModelConfig, TrainConfig
    from classify.training import train_detector

    sequences = [
        LabeledSequence(key=f"prior:{content}:{half}", group=content, split="train",
                        embedding=e.embedding[half * 15:(half + 1) * 15], embedder_id=e.embedder_id, classes=CLASSES,
                        frame_labels=truth[content][half * 15:(half + 1) * 15])
        for content, e in embedded for half in (0, 1)
    ]
    detector = train_detector(
        sequences, ModelConfig(classes=CLASSES, hidden_size=16, projection_size=16),
        TrainConfig(epochs=6, patience=6, num_threads=1, validation_fraction=0.5), classes=CLASSES, progress=False,
    )
    detector.save(path)
