"""The zero-shot detector: YAMNet's own class scores -> crying/laughter, its file, calibration, and use in the CLI."""

import json

import numpy as np
import pandas as pd
import pytest

from classify.calibration import calibrate_zero_shot
from classify.detector import load_detector
from classify.metrics import calibrate_at_fpr, threshold_at_fpr
from classify.zero_shot import (
    ZeroShotConfig,
    ZeroShotDetector,
    yamnet_class_names,
    zero_shot_probabilities,
)
from homesound.cli import main
from homesound.errors import ProvenanceMismatchError
from homesound.frames import YAMNET_FRAMES
from homesound.sequences import LabeledSequence
from homesound.workspace import Workspace
from homesound.workspace.classify import list_detections
from homesound.workspace.recordings import StoredEmbedding, register_embedder, save_recording
from homesound.workspace.training_data import split_of_group
from homesound_testkit.workspaces import content_hash


@pytest.fixture(scope="module")
def class_names(shared_data):
    return yamnet_class_names(shared_data.parent / "models" / "yamnet" / "yamnet_class_map.csv")


def scores_with(class_names, frames: int, values: dict[str, list[float]], seed: int = 0) -> np.ndarray:
    """[frames, 521] low random scores, with the named classes set per frame."""
    scores = np.random.default_rng(seed).uniform(0.0, 0.05, (frames, len(class_names))).astype(np.float32)
    for name, column in values.items():
        scores[:, class_names.index(name)] = column
    return scores


def test_probabilities_combine_the_member_classes(class_names):
    scores = scores_with(class_names, 3, {"Baby cry, infant cry": [0.9, 0.1, 0.0], "Crying, sobbing": [0.2, 0.6, 0.0],
                                          "Giggle": [0.0, 0.3, 0.7], "Speech": [1.0, 1.0, 1.0]})
    config = ZeroShotConfig()
    probabilities = zero_shot_probabilities(scores, class_names, config)
    assert config.classes == ("crying", "laughter")
    np.testing.assert_allclose(probabilities[:, 0], [0.9, 0.6, scores[2, [19, 20]].max()])
    np.testing.assert_allclose(probabilities[:, 1], [scores[0, 13:19].max(), 0.3, 0.7])
    noisy_or = zero_shot_probabilities(scores, class_names, ZeroShotConfig(combine="noisy_or"))
    assert noisy_or[0, 0] == pytest.approx(1 - 0.1 * 0.8)
    with pytest.raises(ProvenanceMismatchError, match="'Giggle'"):
        zero_shot_probabilities(scores[:, :15], class_names[:15])


def test_builtin_reads_yamnets_class_indices_and_refuses_other_class_lists(class_names):
    detector = ZeroShotDetector.builtin()
    detector.check_class_names(class_names, "yamnet")
    assert detector.members()["crying"] == [{"index": 19, "name": "Crying, sobbing"},
                                            {"index": 20, "name": "Baby cry, infant cry"}]
    assert [m["name"] for m in detector.members()["laughter"]] == [
        "Laughter", "Baby laughter", "Giggle", "Snicker", "Belly laugh", "Chuckle, chortle"]
    with pytest.raises(ProvenanceMismatchError, match="YAMNet"):
        detector.check_class_names(None, "vggish-x")
    with pytest.raises(ProvenanceMismatchError, match="order"):
        detector.check_class_names(list(reversed(class_names)), "shuffled")


def test_threshold_at_a_target_false_positive_rate():
    negatives = np.arange(100) / 100.0  # 0.00 .. 0.99
    threshold = threshold_at_fpr(negatives, 0.02)
    assert (negatives >= threshold).sum() == 2 and 0.97 < threshold <= 0.98
    assert (negatives >= threshold_at_fpr(negatives, 0.0)).sum() == 0
    choice = calibrate_at_fpr(np.r_[negatives, [0.985, 0.99, 0.5]], np.r_[np.zeros(100), np.ones(3)], 0.02)
    assert choice["rule"] == "target_fpr" and choice["validation_fpr"] <= 0.02
    assert choice["validation_recall"] == pytest.approx(2 / 3)
    assert calibrate_at_fpr(np.array([0.3]), np.array([1.0]), 0.02)["rule"] == "default"


def _sequence(key, group, scores, crying, laughter):
    return LabeledSequence(key=key, group=group, split="train", embedding=np.zeros((len(scores), 4), np.float32),
                           embedder_id="yamnet-test", classes=("crying", "laughter"),
                           clip_labels=np.array([crying, laughter], np.float32), class_scores=scores)


def test_calibration_keeps_false_positives_at_the_target(class_names):
    rng = np.random.default_rng(1)
    sequences = []
    for i in range(200):  # negatives: crying scores spread over [0, 0.7]
        sequences.append(_sequence(f"n{i}", f"g{i}", scores_with(class_names, 4, {
            "Baby cry, infant cry": rng.uniform(0, 0.7, 4)}, seed=i), 0, 0))
    for i in range(50):  # positives: one loud frame in [0.5, 1]
        sequences.append(_sequence(f"p{i}", f"h{i}", scores_with(class_names, 4, {
            "Crying, sobbing": np.r_[rng.uniform(0.5, 1.0), np.zeros(3)]}, seed=1000 + i), 1, 0))
    calibrated = calibrate_zero_shot(ZeroShotDetector.builtin(), sequences, target_fpr=0.05)
    detail = calibrated.threshold_details["crying"]
    assert detail["rule"] == "target_fpr" and detail["negatives"] == 200 and detail["positives"] == 50
    window_max = np.array([s.class_scores[:, [19, 20]].max() for s in sequences[:200]])
    assert (window_max >= calibrated.thresholds["crying"]).mean() <= 0.05
    assert (window_max >= calibrated.thresholds["crying"]).mean() > 0.03  # the lowest such threshold
    assert calibrated.threshold_details["laughter"]["rule"] == "target_fpr"  # negatives only: recall undefined
    assert calibrated.metrics["calibration"]["windows"] == 250


def test_file_round_trip_and_loading_by_name(tmp_path, class_names):
    calibrated = ZeroShotDetector.builtin().with_thresholds(
        {"crying": 0.31, "laughter": 0.77}, {"crying": {"rule": "target_fpr"}}, ["yamnet-x"])
    path = tmp_path / "zero-shot.json"
    calibrated.save(path)
    stored = json.loads(path.read_text())
    assert stored["config"]["combine"] == "max" and stored["members"]["crying"][1]["index"] == 20
    loaded = load_detector(path)
    assert isinstance(loaded, ZeroShotDetector) and loaded.thresholds == {"crying": 0.31, "laughter": 0.77}
    assert loaded.digest() == calibrated.digest() != ZeroShotDetector.builtin().digest()
    assert load_detector("zero-shot").thresholds == {"crying": 0.5, "laughter": 0.5}
    scores = scores_with(class_names, 5, {"Giggle": [0.1, 0.9, 0.9, 0.2, 0.0]})
    stream = loaded.stream()
    streamed = np.stack([stream.push(row) for row in scores])
    np.testing.assert_allclose(streamed, loaded.probabilities(scores))


@pytest.fixture
def yamnet_workspace(tmp_path, class_names):
    """Two recordings embedded by a YAMNet-shaped embedder: one with crying in seconds 2-4, one with laughter."""
    path = tmp_path / "home.db"
    with Workspace(path) as workspace:
        register_embedder(workspace, "yamnet-test", {"source": "test"}, frames=YAMNET_FRAMES, class_names=class_names)
        for name, values in (("cry", {"Baby cry, infant cry": [0, 0, 0.9, 0.95, 0.8, 0, 0, 0]}),
                             ("laugh", {"Belly laugh": [0, 0.7, 0.9, 0, 0, 0, 0, 0]})):
            content = content_hash(name)
            scores = scores_with(class_names, 8, values)
            save_recording(workspace, path=f"/archive/{name}.wav", size=1, mtime_ns=1, content_sha256=content,
                           status="embedded", embedding=StoredEmbedding(
                               content, "yamnet-test", np.zeros((8, 1024), np.float16), None, 0.96, class_scores=scores))
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_detect_with_zero_shot_writes_events_and_probabilities(yamnet_workspace, tmp_path, suffix):
    probabilities_path = tmp_path / f"probabilities{suffix}"
    assert main(["detect", "--workspace", str(yamnet_workspace), "--model", "zero-shot", "--out",
                 str(tmp_path / "events.csv"), "--probabilities", str(probabilities_path)]) == 0
    table = pd.read_csv(probabilities_path) if suffix == ".csv" else pd.read_parquet(probabilities_path)
    assert list(table.columns) == ["path", "content_sha256", "start_seconds", "crying", "laughter"]
    cry = table[table.path == "/archive/cry.wav"]
    assert len(cry) == 8 and cry.start_seconds.tolist() == pytest.approx([0.96 * i for i in range(8)])
    assert cry.crying.tolist()[2:5] == pytest.approx([0.9, 0.95, 0.8], abs=1e-3)  # float16 in the workspace
    events = pd.read_csv(tmp_path / "events.csv")
    assert set(zip(events.recording, events.label)) == {("/archive/cry.wav", "crying"),
                                                        ("/archive/laugh.wav", "laughter")}
    (crying,) = events[events.label == "crying"].itertuples()
    assert crying.start == pytest.approx(1.92) and crying.end == pytest.approx(4.8)
    with Workspace(yamnet_workspace) as workspace:
        assert len(list_detections(workspace)) == 2


def test_detect_refuses_a_bad_probabilities_name(yamnet_workspace, tmp_path, capsys):
    assert main(["detect", "--workspace", str(yamnet_workspace), "--model", "zero-shot", "--out",
                 str(tmp_path / "events.csv"), "--probabilities", str(tmp_path / "p.json")]) == 2
    assert "--probabilities" in capsys.readouterr().err


def test_zero_shot_needs_class_scores(tmp_path, capsys):
    from homesound_testkit.workspaces import planted_workspace

    workspace = tmp_path / "vggish.db"
    planted_workspace(workspace, recordings=12, seconds=5)
    assert main(["detect", "--workspace", str(workspace), "--model", "zero-shot", "--out",
                 str(tmp_path / "e.csv")]) == 2
    assert "YAMNet" in capsys.readouterr().err


def test_zero_shot_on_real_yamnet_scores_of_shared_clips(shared_data, yamnet_tflite, tmp_path):
    """Real weights, real clips: ESC-50's crying babies mostly score high for crying, knocking on wood does not."""
    clips = pd.read_csv(shared_data / "clips.csv")
    crying = sorted(clips[clips.origin.str.startswith("ESC-50 via") & (clips.label == "crying")].path)[:5]
    knocks = sorted(clips[clips.origin.str.contains("door_wood_knock")].path)[:2]
    files = [str(shared_data / p) for p in crying + knocks]
    probabilities_path = tmp_path / "probabilities.csv"
    assert main(["detect", *files, "--model", "zero-shot", "--yamnet", str(yamnet_tflite), "--out",
                 str(tmp_path / "events.csv"), "--probabilities", str(probabilities_path)]) == 0
    table = pd.read_csv(probabilities_path)
    peak = table.groupby("path")[["crying", "laughter"]].max()
    cries, others = peak.loc[files[:5]], peak.loc[files[5:]]
    assert cries.crying.median() > 0.5 and cries.crying.median() > cries.laughter.median()
    assert (others.to_numpy() < 0.1).all()
    events = pd.read_csv(tmp_path / "events.csv")
    assert 0 < len(set(events[events.label == "crying"].recording)) and set(events.recording) <= set(files[:5])


def test_train_zero_shot_calibrates_on_imported_labels_and_evaluates(yamnet_workspace, tmp_path, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label,start,end\n/archive/cry.wav,crying,,\n/archive/laugh.wav,laughter,,\n"
                      "/archive/laugh.wav,speech,3.84,7.68\n")
    assert main(["labels", "import", str(labels), "--workspace", str(yamnet_workspace)]) == 0
    model = tmp_path / "zero-shot.json"
    assert main(["train", "--workspace", str(yamnet_workspace), "--zero-shot", "--target-fpr", "0",
                 "--train-splits", "train,test", "--out", str(model)]) == 0
    assert "calibrated on 3 labeled windows" in capsys.readouterr().out
    calibrated = load_detector(model)
    assert calibrated.threshold_details["crying"]["rule"] == "target_fpr"
    assert calibrated.threshold_details["crying"]["validation_recall"] == 1.0
    assert calibrated.thresholds["laughter"] > 0.05  # above the quiet seconds of the laughing recording
    split = split_of_group(content_hash("cry"))
    assert main(["evaluate", "--model", str(model), "--workspace", str(yamnet_workspace), "--split", split,
                 "--report", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["classes"]["crying"]["clip"]["positives"] == 1


def test_train_with_a_target_false_positive_rate(tmp_path):
    from homesound_testkit.workspaces import planted_workspace

    workspace = tmp_path / "home.db"
    planted_workspace(workspace, recordings=24, seconds=20)
    model = tmp_path / "detector.pt"
    assert main(["train", "--workspace", str(workspace), "--out", str(model), "--epochs", "3", "--quiet",
                 "--target-fpr", "0.05"]) == 0
    detector = load_detector(model)
    for detail in detector.threshold_details.values():
        assert detail["rule"] in ("target_fpr", "default") and detail["level"] == "window"
    assert main(["train", "--workspace", str(workspace), "--out", str(model), "--target-fpr", "0.05",
                 "--target-precision", "0.9"]) == 2


def test_jobs_import_calibrate_and_detect_as_library_functions(yamnet_workspace, tmp_path):
    """The jobs behind `labels import`, `train --zero-shot` and `detect --workspace`, called without a parser:
    each returns what it made and records a completed run."""
    from classify.detect_jobs import DetectInWorkspaceJob, DetectionOutputs, detect_in_workspace
    from classify.jobs import (
        LabelsImportJob,
        ZeroShotTrainJob,
        calibrate_zero_shot_on_workspace,
        import_labels_to_workspace,
    )
    from homesound.workspace.classify import list_models
    from homesound.workspace.runs import list_runs

    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n/archive/cry.wav,crying\n/archive/laugh.wav,laughter\n/archive/gone.wav,crying\n")
    imported = import_labels_to_workspace(LabelsImportJob(workspace=str(yamnet_workspace), source=str(labels)))
    assert (imported.rows, imported.imported_rows, imported.recordings) == (3, 2, 2)
    assert len(imported.problems) == 1 and "gone.wav" in str(imported.problems[0])

    model = tmp_path / "zero-shot.json"
    calibrated = calibrate_zero_shot_on_workspace(ZeroShotTrainJob(
        workspace=str(yamnet_workspace), out=str(model), target_fpr=0.0, train_splits=("train", "test")))
    assert calibrated.path == model and model.is_file()
    assert calibrated.detector.metrics["calibration"]["windows"] == 2 and calibrated.detector.metrics["run_id"] == \
        calibrated.run_id

    detected = detect_in_workspace(DetectInWorkspaceJob(
        workspace=str(yamnet_workspace), model=str(model), outputs=DetectionOutputs(events=str(tmp_path / "e.csv"))))
    assert sorted(d.recording for d in detected.detections) == ["/archive/cry.wav", "/archive/laugh.wav"]
    assert detected.events_per_class == {"crying": 1, "laughter": 1} and detected.failures == ()
    assert detected.hours == pytest.approx(16 * 0.96 / 3600)
    assert len(pd.read_csv(tmp_path / "e.csv")) == 2

    with Workspace(yamnet_workspace) as workspace:
        runs = list_runs(workspace)
        models = list_models(workspace)
    assert [run["command"] for run in runs] == ["labels import", "train", "detect"]
    assert [run["status"] for run in runs] == ["completed"] * 3
    assert json.loads(runs[0]["summary_json"])["problems"] == 1
    assert runs[2]["id"] == detected.run_id
    assert json.loads(runs[2]["summary_json"]) == {"recordings": 2, "events": 2}
    assert calibrated.model_id in {m["id"] for m in models}


def test_a_detect_that_fails_midway_is_recorded_as_failed(yamnet_workspace, tmp_path):
    from classify.detect_jobs import DetectInWorkspaceJob, DetectionOutputs, detect_in_workspace
    from homesound.workspace.runs import list_runs

    in_the_way = tmp_path / "timeline"
    in_the_way.write_text("a file where the timeline folder should go")
    outputs = DetectionOutputs(events=str(tmp_path / "e.csv"), timeline=str(in_the_way))
    with pytest.raises(OSError):
        detect_in_workspace(DetectInWorkspaceJob(workspace=str(yamnet_workspace), model="zero-shot", outputs=outputs))
    with Workspace(yamnet_workspace) as workspace:
        (run,) = list_runs(workspace, "detect")
    assert run["status"] == "failed" and run["finished_at"] is not None
    summary = json.loads(run["summary_json"])
    assert summary["recordings"] == 1 and summary["error"]  # the first recording was done, then drawing failed
    assert not (tmp_path / "e.csv").exists()  # nothing half-written
