"""Queue and annotation storage in the workspace, and the pure conversions between labels and tasks."""

from __future__ import annotations

import dataclasses
from xml.etree import ElementTree

import numpy as np
import pytest

from active_learning.labeling import (
    NONE_OF_THESE,
    WINDOW_KEY_FIELD,
    annotation_from_task,
    frame_labels,
    label_config,
    prediction_regions,
    strong_labels,
    task_payload,
)
from homesound.workspace import Workspace
from homesound.workspace import active_learning as al
from homesound.workspace.classify import register_model
from homesound.workspace.training_data import strong_label_summary

CLASSES = ("laughter", "crying")
SHA = "ab" * 32


def queued(start: float, end: float, **kwargs) -> al.QueuedWindow:
    values = {
        "content_sha256": SHA, "recording_path": "/home/kitchen.flac", "start_seconds": start, "end_seconds": end,
        "rank": 1, "strategy": "entropy", "score": 1.2, "reason": "entropy peak 1.2 bits",
    }
    values.update(kwargs)
    return al.QueuedWindow(**values)


@pytest.fixture
def workspace(tmp_path):
    with Workspace(tmp_path / "home.db") as ws:
        yield ws


def a_model(workspace) -> int:
    """A registered model (the queue refers to the model that ranked a window by its models row)."""
    return register_model(workspace, path="/models/m1.pt", sha256="c" * 64, config={}, classes=CLASSES,
                          thresholds={}, embedder_ids=())


def test_queue_is_idempotent_and_spans_are_taken(workspace):
    model = a_model(workspace)
    assert al.queue_windows(workspace, [queued(10, 15), queued(20, 25)], model_id=model) == 2
    assert al.queue_windows(workspace, [queued(10, 15), queued(30, 35)], model_id=model) == 1
    assert sorted(al.taken_spans(workspace)[SHA]) == [(10, 15), (20, 25), (30, 35)]
    key = queued(10, 15).key
    al.mark_pushed(workspace, 7, [(key, 101)])
    al.mark_pushed(workspace, 7, [(key, 999)])  # only a ranked window becomes pushed: no second task id
    row = next(w for w in al.queued_windows(workspace) if w.key == key)
    assert (row.status, row.project_id, row.task_id) == (al.PUSHED, 7, 101)
    assert (row.model_id, row.model_version) == (model, "m1@" + "c" * 12)


def test_saving_an_edited_annotation_replaces_it(workspace):
    al.queue_windows(workspace, [queued(10, 15)], model_id=a_model(workspace))
    first = al.Annotation(
        window_key=queued(10, 15).key, content_sha256=SHA, span_start_seconds=9.0, span_end_seconds=16.0,
        regions=(al.Region("crying", 11.0, 13.5),), classes=CLASSES, none_of_these=False, project_id=7,
        task_id=101, annotation_id=5, annotator="ann@home", annotated_at="t0", updated_at="t0",
    )

    def save(annotation):
        return al.save_annotations(workspace, [annotation], {annotation.window_key: strong_labels(annotation)})

    assert save(first) == {"added": 1, "updated": 0, "unchanged": 0, "changed_recordings": [SHA]}
    assert save(first) == {"added": 0, "updated": 0, "unchanged": 1, "changed_recordings": []}
    by_target = {row["target"]: row for row in strong_label_summary(workspace)}
    assert (by_target["crying"]["seconds"], by_target["crying"]["positive_seconds"]) == (8, 3)  # 9-16 s heard
    edited = dataclasses.replace(first, regions=(), none_of_these=True, updated_at="t1")
    assert save(edited)["updated"] == 1
    assert al.list_annotations(workspace) == [edited]
    by_target = {row["target"]: row for row in strong_label_summary(workspace)}
    assert (by_target["crying"]["seconds"], by_target["crying"]["positive_seconds"]) == (8, 0)  # replaced, not added
    assert al.queued_windows(workspace)[0].status == al.LABELED
    assert al.status_section(workspace)["labeled_windows"] == 1


def test_label_config_is_valid_xml_with_regions_and_a_clip_choice():
    root = ElementTree.fromstring(label_config(CLASSES))
    assert [label.get("value") for label in root.iter("Label")] == list(CLASSES)
    assert [choice.get("value") for choice in root.iter("Choice")] == [NONE_OF_THESE]
    assert root.find("Audio").get("value") == "$audio"


def test_prediction_regions_follow_the_model_in_clip_time():
    probabilities = np.zeros((8, 2))
    probabilities[2:5, 1] = 0.8  # crying from 1.92 s to 4.80 s of the recording
    predictions = {
        "classes": list(CLASSES), "hop_seconds": 0.96, "start_seconds": 0.0,
        "probabilities": probabilities.tolist(), "thresholds": {"crying": 0.5},
    }
    regions = prediction_regions(predictions, clip_start=1.0, clip_end=6.0)
    assert len(regions) == 1
    assert regions[0]["value"] == {"start": 0.92, "end": 3.8, "labels": ["crying"]}
    assert regions[0]["score"] == pytest.approx(0.8)


def test_a_task_round_trips_to_an_annotation_in_recording_time():
    window = al.QueueRow(
        key=queued(10, 15).key, content_sha256=SHA, recording_path="/home/kitchen.flac", start_seconds=10,
        end_seconds=15, rank=1, strategy="entropy", score=1.2, reason="r", model_id=1, round_id=None,
        predictions=None, status=al.PUSHED, clip_path="/clips/x.wav", clip_start_seconds=9.0,
        clip_end_seconds=16.0, project_id=7, task_id=101,
    )
    task = task_payload(window, "/data/local-files/?d=clips/x.wav", "m1", CLASSES, "/data/local-files/?d=clips/x.png")
    assert task["data"][WINDOW_KEY_FIELD] == window.key and "predictions" not in task
    server_task = {
        "id": 101, "project": 7, "data": task["data"],
        "annotations": [
            {"id": 1, "was_cancelled": False, "updated_at": "2026-01-01T00:00:00Z", "completed_by": 3,
             "result": [{"from_name": "event", "to_name": "audio", "type": "labels",
                         "value": {"start": 0.5, "end": 2.0, "labels": ["laughter"]}}]},
            {"id": 2, "was_cancelled": False, "updated_at": "2026-01-02T00:00:00Z", "completed_by": 3,
             "result": [{"from_name": "event", "to_name": "audio", "type": "labels",
                         "value": {"start": 2.0, "end": 9.0, "labels": ["crying"]}}]},
            {"id": 3, "was_cancelled": True, "updated_at": "2026-01-03T00:00:00Z", "result": []},
        ],
    }
    annotation = annotation_from_task(server_task, window, ("other",))
    assert annotation.annotation_id == 2  # the latest finished one; the skipped one does not count
    assert annotation.regions == (al.Region("crying", 11.0, 16.0),)  # clipped to what was heard
    assert annotation.annotator == "3" and annotation.task_id == 101
    assert annotation.classes == CLASSES  # from the task, not the fallback
    assert annotation_from_task({**server_task, "annotations": []}, window, CLASSES) is None


def test_frame_labels_mark_heard_seconds_only():
    annotation = al.Annotation(
        window_key="k", content_sha256=SHA, span_start_seconds=0.96, span_end_seconds=4.8,
        regions=(al.Region("crying", 1.92, 2.5), al.Region("crying", 2.4, 3.0)), classes=CLASSES,
        none_of_these=False, project_id=1, task_id=1, annotation_id=1, annotator="me", annotated_at="t0",
        updated_at="t1",
    )
    labels = frame_labels([annotation], CLASSES, frames=7, hop_seconds=0.96)
    assert np.isnan(labels[0]).all() and np.isnan(labels[5:]).all()
    assert labels[1:5, 0].tolist() == [0, 0, 0, 0]
    assert labels[1:5, 1].tolist() == [0, 1, 0, 0]  # 1.92-3.0 covers frame 2 fully, frame 3 only 0.12 s
    rows = strong_labels(annotation)
    assert [(r.second, r.target, r.value) for r in rows if r.value == 1] == [(2, "crying", 1.0)]
    assert {r.second for r in rows} == {1, 2, 3, 4} and len(rows) == 8
    assert {(r.origin, r.task_id, r.annotator, r.annotated_at) for r in rows} == {("label-studio", "label-studio:1:1", "me", "t1")}


def test_label_studio_settings_come_from_environment_or_file_never_printing_the_key(tmp_path):
    from active_learning.label_studio import LabelStudioError, load_settings

    config = tmp_path / "ls.toml"
    config.write_text('url = "http://files:8080/"\napi_key = "from-file"\nlocal_files_document_root = "/srv"\n')
    from_file = load_settings({}, config)
    assert (from_file.url, from_file.api_key, from_file.local_files_document_root) == ("http://files:8080", "from-file", "/srv")
    environment = {"LABEL_STUDIO_URL": "http://env:8080", "LABEL_STUDIO_API_KEY": "from-env",
                   "HOMESOUND_LABEL_STUDIO_CONFIG": str(config)}
    from_env = load_settings(environment)
    assert (from_env.url, from_env.api_key) == ("http://env:8080", "from-env")
    assert "from-env" not in repr(from_env)
    with pytest.raises(LabelStudioError, match="LABEL_STUDIO_API_KEY"):
        load_settings({"LABEL_STUDIO_URL": "http://env:8080", "HOMESOUND_LABEL_STUDIO_CONFIG": ""})
    with pytest.raises(LabelStudioError, match="does not exist"):
        load_settings({}, tmp_path / "missing.toml")


@pytest.mark.parametrize("suffix", [".flac", ".m4a"])
def test_clips_are_cut_with_context_from_any_format_embed_reads(tmp_path, suffix, request):
    import subprocess

    import soundfile as sf

    from active_learning.clips import cut_clip
    from homesound.errors import AudioDecodeError

    rate = 16000
    ramp = (np.arange(20 * rate) % rate / rate - 0.5).astype(np.float32)  # a sawtooth: position is audible
    source = tmp_path / "source.flac"
    sf.write(source, ramp, rate)
    if suffix == ".m4a":
        recording = tmp_path / "phone.m4a"
        subprocess.run([request.getfixturevalue("ffmpeg"), "-v", "error", "-i", str(source), str(recording)], check=True)
    else:
        recording = source
    span = cut_clip(recording, 0.5, 5.5, 1.0, tmp_path / "clip.wav")
    assert span == (0.0, 6.5)
    assert sf.info(tmp_path / "clip.wav").duration == pytest.approx(6.5, abs=0.05)
    assert cut_clip(recording, 15.0, 20.0, 1.0, tmp_path / "tail.wav") == pytest.approx((14.0, 20.0), abs=0.05)
    with pytest.raises(AudioDecodeError, match="beyond the recording's end"):
        cut_clip(recording, 30.0, 35.0, 1.0, tmp_path / "late.wav")
    assert not list(tmp_path.glob("*.part*"))


def test_the_clip_picture_shows_where_the_sound_is_and_the_models_guess(tmp_path):
    import soundfile as sf

    from active_learning.spectrogram import spectrogram_db, write_clip_picture

    rate = 16000
    time = np.arange(7 * rate) / rate
    samples = np.where((time >= 3) & (time < 4), 0.5 * np.sin(2 * np.pi * 1000 * time), 0.0).astype(np.float32)
    clip = tmp_path / "clip.wav"
    sf.write(clip, samples, rate)
    times, frequencies, decibels = spectrogram_db(samples, rate)
    loudest = np.unravel_index(np.argmax(decibels), decibels.shape)
    assert frequencies[loudest[0]] == pytest.approx(1000, abs=40) and 3 <= times[loudest[1]] < 4
    guess = {"classes": list(CLASSES), "hop_seconds": 0.96, "start_seconds": 9.0,
             "probabilities": [[0.1, 0.7]] * 7, "thresholds": {"laughter": 0.5, "crying": 0.5}}
    picture = write_clip_picture(clip, tmp_path / "clip.png", 9.0, (10.0, 15.0), guess)
    assert picture.read_bytes()[:4] == b"\x89PNG" and not list(tmp_path.glob("*.part*"))
