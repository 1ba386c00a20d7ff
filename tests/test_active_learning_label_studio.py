"""Push and pull against a real Label Studio server, annotating through its API as a person would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from active_learning.label_studio import (
    LabelStudio,
    LabelStudioError,
    LabelStudioSettings,
)
from active_learning.labeling import WINDOW_KEY_FIELD, frame_labels, task_payload
from active_learning.round_trip import (
    PushConfig,
    _with_clip,
    ensure_project,
    picture_path,
    pull,
    push,
)
from homesound.workspace import Workspace
from homesound.workspace import active_learning as queue
from homesound.workspace.classify import register_model
from homesound.workspace.training_data import strong_label_summary
from homesound_testkit import label_studio_server
from homesound_testkit.active_learning import household_recording

REPO_ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("laughter", "crying")
SCENE = ("silence", "crying", "laughter", "silence", "crying", "laughter")  # 5 s each


@pytest.fixture(scope="module")
def recording(label_studio, shared_data) -> tuple[Path, str]:
    """A 30 s household recording assembled from real clips; event times are known."""
    path = label_studio.document_root / "recordings" / "living-room.flac"
    household_recording(shared_data, path, SCENE)
    return path, "f" * 64


def settings_for(server, key: str | None = None) -> LabelStudioSettings:
    return LabelStudioSettings(
        url=server.url, api_key=key or server.credentials.personal_access_token,
        local_files_document_root=str(server.document_root),
    )


def model_guess(start: float, end: float) -> dict:
    """A stored model guess: crying everywhere in [start, end) at 0.7."""
    frames = int(np.ceil((end - start) / 0.96))
    probabilities = np.tile([0.1, 0.7], (frames, 1))
    return {"classes": list(CLASSES), "hop_seconds": 0.96, "start_seconds": start,
            "probabilities": probabilities.tolist(), "thresholds": {"laughter": 0.5, "crying": 0.5}}


def queue_windows(workspace, recording, starts, *, model_file="detector-v1.pt"):
    path, sha = recording
    windows = [
        queue.QueuedWindow(
            content_sha256=sha, recording_path=str(path), start_seconds=float(s), end_seconds=float(s) + 5.0,
            rank=i + 1, strategy="entropy", score=1.5 - 0.1 * i, reason=f"entropy pick {i + 1}",
            predictions=model_guess(float(s), float(s) + 5.0),
        )
        for i, s in enumerate(starts)
    ]
    model_id = register_model(workspace, path=model_file, sha256="d" * 64, config={}, classes=CLASSES, thresholds={},
                              embedder_ids=())
    queue.queue_windows(workspace, windows, model_id=model_id)
    return windows


def test_push_creates_one_task_per_window_with_the_models_guess_and_a_playable_clip(label_studio, recording, tmp_path):
    server = LabelStudio(settings_for(label_studio))
    config = PushConfig(clip_dir=str(label_studio.document_root / "clips-push"), project_title="push test")
    with Workspace(tmp_path / "home.db") as workspace:
        windows = queue_windows(workspace, recording, [0, 5, 25])
        summary = push(workspace, server, config, progress=False)
        assert (summary.pushed, summary.adopted, summary.failed) == (3, 0, [])
        again = push(workspace, server, config, progress=False)
        assert (again.pushed, again.adopted, again.project_id) == (0, 0, summary.project_id)
        rows = {row.key: row for row in queue.queued_windows(workspace)}

    tasks = list(server.tasks(summary.project_id, with_annotations=True))
    assert sorted(t["data"][WINDOW_KEY_FIELD] for t in tasks) == sorted(w.key for w in windows)
    for task in tasks:
        row = rows[task["data"][WINDOW_KEY_FIELD]]
        assert (row.status, row.task_id) == (queue.PUSHED, task["id"])
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == "detector-v1@" + "d" * 12 and prediction["score"] == pytest.approx(row.score, abs=1e-3)
        assert {r["value"]["labels"][0] for r in prediction["result"]} == {"crying"}
    # The clip plays from the server: the window plus 1 s of context (only after, at the start).
    first = rows[windows[0].key]
    task = next(t for t in tasks if t["data"][WINDOW_KEY_FIELD] == first.key)
    clip_file = tmp_path / "served.wav"
    clip_file.write_bytes(_served(label_studio, task["data"]["audio"]))
    assert sf.info(clip_file).duration == pytest.approx(6.0, abs=0.01)
    assert (first.clip_start_seconds, first.clip_end_seconds) == (0.0, 6.0)
    # Beside the player, the person sees the clip's spectrogram with the model's guess, served the same way.
    picture = _served(label_studio, task["data"]["spectrogram"])
    assert picture[:8] == b"\x89PNG\r\n\x1a\n" and len(picture) > 10_000
    project = server.client.projects.get(id=summary.project_id)
    assert '<Image name="spectrogram" value="$spectrogram"/>' in project.label_config


def test_pull_turns_annotations_into_labels_and_an_edit_replaces_them(label_studio, recording, tmp_path):
    server = LabelStudio(settings_for(label_studio, label_studio.credentials.legacy_token))
    config = PushConfig(clip_dir=str(label_studio.document_root / "clips-pull"), project_title="pull test")
    with Workspace(tmp_path / "home.db") as workspace:
        windows = queue_windows(workspace, recording, [5, 15, 20])
        project_id = push(workspace, server, config, progress=False).project_id
        task_of = {row.key: row.task_id for row in queue.queued_windows(workspace)}

        # A person marks the cry in 5-10 s (clip 4-11 s) and says 15-20 s holds none; 20-25 s waits.
        cry = server.client.annotations.create(
            id=task_of[windows[0].key], result=[_region("crying", 1.0, 6.0)], lead_time=12.5)
        server.client.annotations.create(
            id=task_of[windows[1].key],
            result=[{"from_name": "clip", "to_name": "audio", "type": "choices",
                     "value": {"choices": ["none of these"]}}],
        )
        summary = pull(workspace, server)
        assert (summary.added, summary.updated, summary.waiting) == (2, 0, 1)
        labeled = {a.window_key: a for a in queue.list_annotations(workspace)}
        assert labeled[windows[0].key].regions == (queue.Region("crying", 5.0, 10.0),)
        assert labeled[windows[0].key].annotator == label_studio_server_user()
        assert labeled[windows[1].key].regions == () and labeled[windows[1].key].none_of_these
        labels = frame_labels(list(labeled.values()), CLASSES, frames=31, hop_seconds=0.96)
        assert labels[5:10, 1].tolist() == [1, 1, 1, 1, 1] and np.nanmax(labels[15:21]) == 0
        assert np.isnan(labels[23:]).all()  # 20-25 s (clip 19-26 s) is not labeled yet
        # The same labels are the workspace's strong labels, which `homesound train` learns from:
        # seconds 4-10 (clip 4-11 s) and 15-21 (clip 14-21 s), cry in seconds 5-9.
        assert _strong_counts(workspace) == {"crying": (14, 5), "laughter": (14, 0)}

        # The person corrects the first one: it was laughter from 7 s to 9 s.
        server.client.annotations.update(id=cry.id, result=[_region("laughter", 3.0, 5.0)])
        edited = pull(workspace, server)
        assert (edited.added, edited.updated, edited.unchanged) == (0, 1, 1)
        annotations = queue.list_annotations(workspace)
        assert len(annotations) == 2
        corrected = next(a for a in annotations if a.window_key == windows[0].key)
        assert corrected.regions == (queue.Region("laughter", 7.0, 9.0),)
        assert corrected.task_id == task_of[windows[0].key]
        assert _strong_counts(workspace) == {"crying": (14, 0), "laughter": (14, 2)}  # replaced, not added
        statuses = {row.key: row.status for row in queue.queued_windows(workspace)}
        assert statuses == {windows[0].key: "labeled", windows[1].key: "labeled", windows[2].key: "pushed"}
    assert project_id


def test_push_refuses_clips_the_server_cannot_serve_before_creating_tasks(label_studio, recording, tmp_path):
    settings = settings_for(label_studio)
    wrong_root = LabelStudioSettings(settings.url, settings.api_key, local_files_document_root="/")
    server = LabelStudio(wrong_root)
    config = PushConfig(clip_dir=str(label_studio.document_root / "clips-wrong-root"), project_title="root test")
    with Workspace(tmp_path / "home.db") as workspace:
        queue_windows(workspace, recording, [0])
        with pytest.raises(LabelStudioError, match="does not serve the clip"):
            push(workspace, server, config, progress=False)
        assert [w.status for w in queue.queued_windows(workspace)] == ["ranked"]
        project_id = queue.remembered_project(workspace, server.url, "root test")[0]
    assert list(server.tasks(project_id)) == []


def test_push_adopts_tasks_a_crashed_run_created_and_never_duplicates(label_studio, recording, tmp_path):
    server = LabelStudio(settings_for(label_studio))
    config = PushConfig(clip_dir=str(label_studio.document_root / "clips-adopt"), project_title="adopt test")
    with Workspace(tmp_path / "home.db") as workspace:
        queue_windows(workspace, recording, [0, 10])
        # The state a run leaves when it dies right after the server took a task but before noting it.
        project_id, _ = ensure_project(workspace, server, config)
        row = _with_clip(workspace, queue.queued_windows(workspace)[0], config)
        (orphan,) = server.import_tasks(project_id, [task_payload(
            row, server.local_file_url(row.clip_path), "m", CLASSES, server.local_file_url(picture_path(row.clip_path)))])
        summary = push(workspace, server, config, progress=False)
        assert (summary.adopted, summary.pushed) == (1, 1)
        assert queue.queued_windows(workspace)[0].task_id == orphan
    assert len(list(server.tasks(project_id))) == 2


def test_server_killed_mid_push_then_restarted_finishes_without_duplicates(label_studio, recording, tmp_path):
    workspace_path = tmp_path / "home.db"
    with Workspace(workspace_path) as workspace:
        # 26 overlapping windows, each pushed in its own request: slow enough to be cut mid-way.
        queue_windows(workspace, recording, range(26), model_file="m.pt")
        total = len(queue.queued_windows(workspace))
    environment = {
        **os.environ, "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.credentials.personal_access_token,
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(label_studio.document_root),
        "HOMESOUND_LABEL_STUDIO_CONFIG": "",
    }
    command = [sys.executable, "-m", "homesound.cli", "push", "--workspace", str(workspace_path),
               "--clip-dir", str(label_studio.document_root / "clips-kill"), "--project-title", "kill test",
               "--push-batch-size", "1"]
    pushing = subprocess.Popen(command, env=environment, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_pushed(workspace_path, at_least=3, process=pushing)
        label_studio.kill()
        _, stderr = pushing.communicate(timeout=120)
    finally:
        label_studio.start()
    assert pushing.returncode == 2, stderr
    assert "not reachable" in stderr and "Traceback" not in stderr
    with Workspace(workspace_path) as workspace:
        pushed_before = sum(row.status == "pushed" for row in queue.queued_windows(workspace))
    assert 3 <= pushed_before < total

    finished = subprocess.run(command, env=environment, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                              check=False)
    assert finished.returncode == 0, finished.stderr
    server = LabelStudio(settings_for(label_studio))
    with Workspace(workspace_path) as workspace:
        rows = queue.queued_windows(workspace)
        project_id = rows[0].project_id
    tasks = list(server.tasks(project_id))
    keys = [task["data"][WINDOW_KEY_FIELD] for task in tasks]
    assert len(keys) == len(set(keys)) == total
    assert {row.key: row.task_id for row in rows} == {task["data"][WINDOW_KEY_FIELD]: task["id"] for task in tasks}
    assert all(row.status == "pushed" for row in rows)


def test_both_token_kinds_work_and_a_bad_key_or_dead_server_is_one_clear_error(label_studio, tmp_path):
    for key in (label_studio.credentials.legacy_token, label_studio.credentials.personal_access_token):
        assert LabelStudio(settings_for(label_studio, key)).user == label_studio_server_user()
    with pytest.raises(LabelStudioError, match="refused the API key"):
        LabelStudio(settings_for(label_studio, "not-a-token"))
    forged = label_studio.credentials.personal_access_token[:-4] + "AAAA"
    with pytest.raises(LabelStudioError, match="refused the API key"):
        LabelStudio(settings_for(label_studio, forged))

    workspace_path = tmp_path / "home.db"
    Workspace(workspace_path).close()
    dead = f"http://127.0.0.1:{_closed_port()}"
    for url, key, message in ((dead, "x", "not reachable"), (label_studio.url, "wrong", "refused the API key")):
        result = subprocess.run(
            [sys.executable, "-m", "homesound.cli", "pull", "--workspace", str(workspace_path)],
            env={**os.environ, "LABEL_STUDIO_URL": url, "LABEL_STUDIO_API_KEY": key},
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
        )
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    with Workspace(workspace_path) as workspace:
        assert workspace.query("SELECT COUNT(*) AS n FROM runs")[0]["n"] == 0  # nothing written


def test_a_personal_access_token_made_without_a_browser_works(label_studio):
    """The README's headless steps for a fresh account (here signed up through the form: the server's first
    user already holds a token): sign in with email and password (Django's CSRF form), ask for a personal
    access token, and homesound connects with it."""
    import http.cookiejar
    import json
    import urllib.parse

    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def csrf() -> str:
        return next(cookie.value for cookie in jar if cookie.name == "csrftoken")

    email, password = "headless@homesound.test", "another long passphrase"
    for page in ("signup", "login"):
        browser.open(f"{label_studio.url}/user/{page}/", timeout=10).close()
        form = urllib.parse.urlencode({"csrfmiddlewaretoken": csrf(), "email": email, "password": password}).encode()
        browser.open(urllib.request.Request(f"{label_studio.url}/user/{page}/", data=form,
                                            headers={"Referer": f"{label_studio.url}/user/{page}/"}), timeout=10).close()
    request = urllib.request.Request(f"{label_studio.url}/api/token/", data=b"{}", method="POST", headers={
        "X-CSRFToken": csrf(), "Referer": f"{label_studio.url}/", "Content-Type": "application/json"})
    with browser.open(request, timeout=10) as response:
        token = json.loads(response.read())["token"]
    assert LabelStudio(settings_for(label_studio, token)).user == email


def _served(label_studio, url_path: str) -> bytes:
    """A file as the labeling page fetches it from the server."""
    request = urllib.request.Request(label_studio.url + url_path,
                                     headers={"Authorization": f"Token {label_studio.credentials.legacy_token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def _strong_counts(workspace) -> dict[str, tuple[int, int]]:
    return {row["target"]: (row["seconds"], row["positive_seconds"]) for row in strong_label_summary(workspace)}


def _region(label: str, start: float, end: float) -> dict:
    return {"from_name": "event", "to_name": "audio", "type": "labels",
            "value": {"start": start, "end": end, "labels": [label]}}


def label_studio_server_user() -> str:
    return label_studio_server.USERNAME


def _wait_for_pushed(workspace_path: Path, at_least: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        with Workspace(workspace_path) as workspace:
            if sum(row.status == "pushed" for row in queue.queued_windows(workspace)) >= at_least:
                return
        time.sleep(0.05)
    raise AssertionError("push made no progress")


def _closed_port() -> int:
    return label_studio_server.free_port()
