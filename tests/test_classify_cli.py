"""`homesound train / evaluate / detect` end to end on a workspace with planted, labeled recordings."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from classify.detector import Detector
from homesound.cli import main
from homesound.workspace import Workspace
from homesound.workspace.classify import list_detections, list_models
from homesound.workspace.runs import list_runs
from homesound.workspace.training_data import split_of_recording
from homesound_testkit.workspaces import planted_workspace

TRAIN_FAST = ["--epochs", "15", "--patience", "15", "--quiet",
              "--hidden-size", "32", "--projection-size", "32"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workspace of 40 planted 30-second recordings, and a detector trained on it by the CLI."""
    directory = tmp_path_factory.mktemp("cli")
    workspace = directory / "home.db"
    truth = planted_workspace(workspace, recordings=40, seconds=30, seed=0)
    model = directory / "models" / "detector.pt"
    assert main(["train", "--workspace", str(workspace), "--out", str(model), *TRAIN_FAST]) == 0
    return workspace, model, truth


def test_train_writes_model_curves_and_records(trained, capsys):
    workspace, model, truth = trained
    assert model.is_file()
    assert (model.parent / "detector_training_curves.png").stat().st_size > 10_000
    detector = Detector.load(model)
    assert detector.classes == ("crying", "laughter")
    train_groups = {c for c in truth if split_of_recording(c) == "train"}
    assert detector.data_summary["groups"] == len(train_groups)  # test recordings never trained on
    assert set(detector.data_summary["sequences_per_group"]) == train_groups
    assert detector.data_summary["per_source_kind"] == {"recording": len(train_groups)}
    assert detector.embedder_provenance == {"synthetic-planted-v1": {"kind": "synthetic planted patterns"}}
    with Workspace(workspace) as ws:
        (record,) = list_models(ws)
        (run,) = list_runs(ws, "train")
    assert record["classes"] == ["crying", "laughter"] and record["run_id"] == run["id"]
    assert run["status"] == "completed" and json.loads(run["summary_json"])["model_id"] == record["id"]


def test_evaluate_reports_every_metric_on_held_out_recordings(trained, tmp_path, capsys):
    workspace, model, truth = trained
    report_dir = tmp_path / "report"
    assert main(["evaluate", "--model", str(model), "--workspace", str(workspace), "--report", str(report_dir)]) == 0
    printed = capsys.readouterr().out
    assert "segF1" in printed and "PSDS" in printed and "crying" in printed
    report = json.loads((report_dir / "report.json").read_text())
    assert report["splits"] == ["test"] and report["split"] == "held-out"
    assert report["groups"] == sum(split_of_recording(c) == "test" for c in truth)
    for label in ("crying", "laughter"):
        entry = report["classes"][label]
        assert entry["frame"]["average_precision"] > 0.9 and entry["frame"]["roc_auc"] > 0.9
        assert {"precision", "recall", "f1"} <= set(entry["frame"])
        assert entry["segment_based"]["f1"] > 0.7
        assert 0.0 <= entry["event_based"]["f1"] <= 1.0  # strict collars: planted edges are fuzzy
        assert 0.0 < entry["psds"] <= 1.0
        assert entry["false_alarms_per_hour"] >= 0
        assert (report_dir / f"pr_{label}.png").stat().st_size > 5_000
    assert main(["evaluate", "--model", str(model), "--workspace", str(workspace), "--split", "nope",
                 "--report", str(tmp_path / "r2")]) == 2
    assert "no labeled sequences in split 'nope'" in capsys.readouterr().err


def test_detect_on_workspace_writes_events_back_once(trained, tmp_path, capsys):
    workspace, model, truth = trained
    events_path = tmp_path / "events.csv"
    arguments = ["detect", "--workspace", str(workspace), "--model", str(model), "--out", str(events_path)]
    assert main([*arguments, "--timeline", str(tmp_path / "timeline")]) == 0
    assert main(arguments) == 0  # a rerun replaces, never duplicates
    events = pd.read_csv(events_path)
    assert list(events.columns) == ["recording", "content_sha256", "label", "start", "end", "duration",
                                    "peak_probability", "mean_probability"]
    with Workspace(workspace) as ws:
        stored = list_detections(ws)
        runs = list_runs(ws, "detect")
    assert len(stored) == len(events) and [r["status"] for r in runs] == ["completed", "completed"]
    assert len(list((tmp_path / "timeline").glob("*.png"))) == len(truth)
    # Planted events are found where they are: most true positive seconds lie inside a detection.
    hits = total = 0
    for content, labels in truth.items():
        for column, label in enumerate(("laughter", "crying")):  # planted_sequences' column order
            mine = events[(events.content_sha256 == content) & (events.label == label)]
            for second in np.flatnonzero(labels[:, column] > 0.5):
                total += 1
                middle = (second + 0.5) * 0.96
                hits += bool(((mine.start <= middle) & (middle <= mine.end)).any())
    assert hits / total > 0.85
    assert (events.end <= 30 * 0.96 + 1e-6).all() and (events.start >= 0).all()
    assert (events.duration >= 0.96 - 1e-6).all()


@pytest.mark.parametrize("suffix", [".json", ".parquet"])
def test_detect_writes_json_and_parquet(trained, tmp_path, suffix):
    workspace, model, _ = trained
    out = tmp_path / f"events{suffix}"
    assert main(["detect", "--workspace", str(workspace), "--model", str(model), "--out", str(out),
                 "--on", "0.6", "--off", "0.3", "--min-event", "1.9", "--merge-gap", "0"]) == 0
    table = pd.read_json(out) if suffix == ".json" else pd.read_parquet(out)
    assert len(table) > 0 and (table.duration >= 1.9 - 1e-6).all() and (table.peak_probability >= 0.6).all()


def test_detect_refuses_unclear_requests(trained, tmp_path, capsys):
    workspace, model, _ = trained
    assert main(["detect", "--workspace", str(workspace), "--model", str(model), "--out", str(tmp_path / "e.txt")]) == 2
    assert "use a .csv, .json or .parquet" in capsys.readouterr().err
    assert main(["detect", "x.wav", "--workspace", str(workspace), "--model", str(model),
                 "--out", str(tmp_path / "e.csv")]) == 2
    assert main(["detect", "--workspace", str(workspace), "--model", str(tmp_path / "missing.pt"),
                 "--out", str(tmp_path / "e.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["detect", "--workspace", str(workspace), "--model", str(model), "--out", str(tmp_path / "e.csv"),
                 "--on", "0.5", "--off", "0.5", "--off-ratio", "1.5"]) == 2


def test_train_on_an_empty_workspace_says_what_to_do(tmp_path, capsys):
    Workspace(tmp_path / "empty.db").close()  # a workspace with nothing embedded or labeled yet
    assert main(["train", "--workspace", str(tmp_path / "empty.db"), "--out", str(tmp_path / "m.pt")]) == 2
    assert "no labeled sequences" in capsys.readouterr().err


def test_bidirectional_training_is_marked_offline_only(trained, tmp_path, capsys):
    workspace, _, _ = trained
    model = tmp_path / "offline.pt"
    assert main(["train", "--workspace", str(workspace), "--out", str(model), "--bidirectional", "--rnn", "lstm",
                 "--epochs", "2", *TRAIN_FAST[2:]]) == 0
    assert "offline only" in capsys.readouterr().out
    assert torch.load(model, weights_only=True)["offline_only"] is True
    with pytest.raises(Exception, match="offline only"):
        Detector.load(model).stream()


def test_audioset_segments_and_household_labels_train_one_detector(tmp_path, capsys):
    """Weak AudioSet segments (issue 4's store) and strong household labels in one workspace."""
    from homesound_testkit.synthetic import planted_sequences
    from homesound.workspace import audioset
    from homesound.workspace.recordings import register_embedder

    workspace = tmp_path / "home.db"
    planted_workspace(workspace, recordings=20, seconds=20, seed=0)
    segments = planted_sequences(120, labels="weak", seed=5, classes=("laughter", "crying"))
    with Workspace(workspace) as ws:
        register_embedder(ws, audioset.EMBEDDER_ID, audioset.EMBEDDER_PROVENANCE)
        audioset.use_target_mapping(ws, "m1", "{}", ("laughter", "crying"), lambda mids: (0, 0))
        audioset.save_segments(ws, [
            audioset.AudioSetSegment(
                ytid=f"yt{i:04d}", start_ms=30_000, start_seconds=30.0, end_seconds=40.0,
                split="eval" if i % 5 == 0 else "train", source_list="balanced_train_segments",
                selection_role="positive", label_mids=(), targets=tuple(int(v) for v in s.clip_labels),
                embedding=s.embedding,
            ) for i, s in enumerate(segments)
        ], "m1", None)
    model = tmp_path / "both.pt"
    train = ["train", "--workspace", str(workspace), "--out", str(model), *TRAIN_FAST]
    assert main(train) == 2
    assert "--mix-embedders" in capsys.readouterr().err
    assert main([*train, "--mix-embedders"]) == 0
    detector = Detector.load(model)
    assert set(detector.embedder_ids) == {"audioset-release", "synthetic-planted-v1"}
    assert detector.embedder_provenance["audioset-release"]["source"].startswith("AudioSet released features")
    assert detector.data_summary["per_source_kind"]["audioset"] == 96  # the eval segments stay out
    assert main(["evaluate", "--model", str(model), "--workspace", str(workspace),
                 "--report", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["splits"] == ["eval", "test"]
    crying = report["classes"]["crying"]
    assert crying["clip"]["labels"] == 24 and crying["clip"]["average_precision"] > 0.8  # AudioSet eval
    assert crying["frame"]["average_precision"] > 0.5 and "psds" in crying  # household test seconds (chance ~0.1)
    assert main(["train", "--workspace", str(workspace), "--out", str(tmp_path / "a.pt"), "--embedder",
                 "audioset-release", *TRAIN_FAST]) == 0
    assert Detector.load(tmp_path / "a.pt").embedder_ids == ("audioset-release",)


def test_detect_writes_per_frame_probabilities_of_a_trained_detector(trained, tmp_path):
    workspace, model, truth = trained
    path = tmp_path / "probabilities.parquet"
    assert main(["detect", "--workspace", str(workspace), "--model", str(model), "--out", str(tmp_path / "e.csv"),
                 "--probabilities", str(path)]) == 0
    table = pd.read_parquet(path)
    assert list(table.columns) == ["path", "content_sha256", "start_seconds", "crying", "laughter"]
    assert len(table) == sum(len(labels) for labels in truth.values())
    one = table[table.content_sha256 == next(iter(truth))]
    assert one.start_seconds.tolist() == pytest.approx([0.96 * i for i in range(len(one))])
    assert one[["crying", "laughter"]].to_numpy().min() >= 0 and one[["crying", "laughter"]].to_numpy().max() <= 1
