"""`homesound round` from a workspace holding recordings and nothing else (real YAMNet, real Label Studio),
and the warning that held-out metrics from a recording or two mean nothing yet."""

from __future__ import annotations

import json
import shutil

import pytest

from active_learning.label_studio import LabelStudio, LabelStudioSettings
from classify.jobs import held_out_warnings
from homesound.cli import main
from homesound.workspace import Workspace
from homesound.workspace import active_learning as queue
from homesound.workspace.classify import get_model
from homesound.workspace.recordings import list_recordings
from homesound.workspace.runs import list_runs
from homesound.workspace.training_data import StrongLabel, split_of_recording, upsert_strong_labels
from homesound_testkit.active_learning import household_recording

CLASSES = ("laughter", "crying")
SCENES = (
    ("silence", "crying", "noise", "silence", "silence", "noise"),
    ("noise", "silence", "silence", "laughter", "noise", "silence"),
    ("silence", "noise", "crying", "silence", "silence", "silence"),
    ("noise", "silence", "silence", "silence", "crying", "noise"),
    ("silence", "laughter", "noise", "silence", "silence", "silence"),
    ("silence", "silence", "noise", "crying", "silence", "noise"),
)
FAST_TRAIN = ["--train-epochs=3", "--train-patience=3", "--train-hidden-size=8", "--train-projection-size=8",
              "--train-validation-fraction=0.5"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory, shared_data, yamnet_tflite):
    """Six 30 s household recordings (rare cries and laughs among room tone and noises), embedded with the
    real YAMNet into a workspace that holds nothing else: no model, no labels."""
    directory = tmp_path_factory.mktemp("cold-start")
    spans = {}
    for index, scene in enumerate(SCENES):
        path = directory / "archive" / f"room-{index}.flac"
        spans[str(path)] = household_recording(shared_data, path, scene, offset=index)
    workspace = directory / "home.db"
    assert main(["embed", str(directory / "archive"), "--workspace", str(workspace), "--embedder", "yamnet",
                 "--yamnet", str(yamnet_tflite), "--workers", "1"]) == 0
    with Workspace(workspace) as ws:
        by_content = {row.content_sha256: spans[row.path] for row in list_recordings(ws)}
    return workspace, by_content


@pytest.fixture
def label_studio_env(label_studio, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.credentials.personal_access_token)
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(label_studio.document_root))
    monkeypatch.setenv("HOMESOUND_LABEL_STUDIO_CONFIG", "")
    return label_studio


@pytest.mark.slow
def test_rounds_start_from_recordings_alone_and_warn_while_held_out_labels_are_few(
        archive, label_studio_env, tmp_path, capsys):
    source, spans_of = archive
    workspace = label_studio_env.document_root / "cold-start" / "home.db"
    workspace.parent.mkdir(parents=True)
    shutil.copy(source, workspace)
    common = ["--workspace", str(workspace), "--top", "6", "--project-title", "cold start", "--per-class"]

    # Round 1: no model, no labels: the zero-shot detector ranks, and its guess rides along as pre-annotation.
    assert main(["round", *common]) == 0
    printed = capsys.readouterr().out
    assert "ranked with the zero-shot detector" in printed
    with Workspace(workspace) as ws:
        first = queue.queued_windows(ws)
        (round_one,) = queue.list_rounds(ws)
    assert len(first) == 6 and {w.status for w in first} == {"pushed"}
    assert round_one["status"] == "completed" and round_one["summary"]["model_source"] == "zero-shot"
    assert round_one["model"].startswith("zero-shot@")
    with Workspace(workspace) as ws:  # the round is a run like any other, and its model a registered one
        (run,) = [r for r in list_runs(ws, "round") if r["id"] == round_one["run_id"]]
        assert run["status"] == "completed" and get_model(ws, round_one["model_id"])["path"] == "zero-shot"
    found = [w for w in first if _overlaps(w, spans_of[w.content_sha256], "crying")]
    assert found, "the zero-shot detector's picks include the cries"
    server = LabelStudio(LabelStudioSettings(label_studio_env.url, label_studio_env.credentials.legacy_token,
                                             str(label_studio_env.document_root)))
    tasks = {t["id"]: t for t in server.tasks(first[0].project_id, with_annotations=True)}
    assert all(tasks[w.task_id]["predictions"][0]["model_version"].startswith("zero-shot@") for w in first)

    # A person labels the six clips; round 2 trains on them and says its held-out AP means nothing yet.
    for window in first:
        server.client.annotations.create(id=window.task_id, result=[
            {"from_name": "event", "to_name": "audio", "type": "labels",
             "value": {"start": max(start, window.clip_start_seconds) - window.clip_start_seconds,
                       "end": min(end, window.clip_end_seconds) - window.clip_start_seconds, "labels": [label]}}
            for label, start, end in spans_of[window.content_sha256]
            if label in CLASSES and start < window.clip_end_seconds and window.clip_start_seconds < end
        ])
    assert main(["round", *common, *FAST_TRAIN]) == 0
    printed = capsys.readouterr().out
    assert "round 2: pulled 6 new" in printed and "ranked with trained model" in printed
    assert "(held-out AP" not in printed and "warning:" in printed
    with Workspace(workspace) as ws:
        rounds = queue.list_rounds(ws)
    assert rounds[1]["summary"]["model_source"] == "trained" and rounds[1]["metrics"]["warnings"]
    assert main(["status", "--workspace", str(workspace), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)["active_learning"]
    assert status["rounds"][0]["model_source"] == "zero-shot"
    assert status["rounds"][1]["held_out_warnings"] == rounds[1]["metrics"]["warnings"]


def test_rank_needs_no_model_on_a_yamnet_archive(archive, tmp_path, capsys):
    source, spans_of = archive
    workspace = tmp_path / "home.db"
    shutil.copy(source, workspace)
    assert main(["rank", "--workspace", str(workspace), "--top", "4", "--prefilter-share", "0.2",
                 "--out", str(tmp_path / "picks.csv")]) == 0
    printed = capsys.readouterr().out
    assert "4 windows from 6 recordings" in printed and "4 queued" in printed
    with Workspace(workspace) as ws:
        picks = queue.queued_windows(ws)
    assert all("likeliest windows" in pick.reason and pick.model_version.startswith("zero-shot@") for pick in picks)
    assert {"about crying", "about laughter"} <= {" ".join(pick.reason.split()[1:3]) for pick in picks}  # shares
    assert any(_overlaps(pick, spans_of[pick.content_sha256], "crying") for pick in picks)


def test_evaluate_on_one_held_out_recording_says_its_ap_means_nothing(archive, tmp_path, capsys):
    source, spans_of = archive
    workspace = tmp_path / "home.db"
    shutil.copy(source, workspace)
    held_out = [content for content in spans_of if split_of_recording(content) == "test"]
    assert held_out, "the archive's recordings should include one the split holds out"
    content = held_out[0]
    with Workspace(workspace) as ws:  # every second of the 30 s recording labeled, as a person would
        upsert_strong_labels(ws, [
            StrongLabel(content, second, target, float(_inside(second, spans_of[content], target)), "test")
            for second in range(31) for target in CLASSES
        ])
    assert main(["evaluate", "--model", "zero-shot", "--workspace", str(workspace),
                 "--report", str(tmp_path / "report")]) == 0
    printed = capsys.readouterr().out
    assert "mean AP" in printed
    assert "warning: the held-out part comes from 1 source recording (fewer than 5)" in printed
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["warnings"] and report["warnings"][0].startswith("the held-out part comes from 1 source recording")


def test_held_out_warnings_name_the_class_with_too_few_positives():
    report = {"groups": 12, "classes": {"crying": {"frame": {"positives": 80}},
                                        "laughter": {"frame": {"positives": 3}, "clip": {"positives": 2}}}}
    (warning,) = held_out_warnings(report)
    assert warning.startswith("laughter: 5 positive labels held out")
    assert held_out_warnings({**report, "groups": 2}, min_positives=1)[0].startswith(
        "the held-out part comes from 2 source recordings")


def _inside(second: int, spans, target: str, hop: float = 0.96) -> bool:
    return any(label == target and min(end, (second + 1) * hop) - max(start, second * hop) >= hop / 2
               for label, start, end in spans)


def _overlaps(window, spans, target: str) -> bool:
    return any(label == target and start < window.end_seconds and window.start_seconds < end
               for label, start, end in spans)
