"""Days of listening: a stalled source, malformed PCM, a network stream that ends and comes back, a webhook,
and event clips saved into the workspace for active learning. All through the hub runtime in subprocesses."""

from __future__ import annotations

import http.server
import json
import signal
import threading

import numpy as np
import pytest
import soundfile

from homesound_testkit.listen import RATE, ListenProcess, events_match, hub_environment

STDIN_ARGS = ["--source", "-", "--rate", "44100", "--format", "s16le"]


def hub_listener(hub_dir, tmp_path, *arguments: str) -> ListenProcess:
    env, _ = hub_environment(tmp_path / "site")
    return ListenProcess(["--hub", str(hub_dir), "--min-event", "1.92", *arguments], env, tmp_path / "stderr.txt")


def is_status(name):
    return lambda record: record["type"] == "status" and record["status"] == name


def test_a_stalled_source_closes_the_open_event_and_listening_resumes(hub_dir, household_audio, tmp_path):
    listener = hub_listener(hub_dir, tmp_path, *STDIN_ARGS, "--stall-timeout", "1.5")
    try:
        listener.feed(household_audio.pcm_until(15.0))
        listener.wait_for(lambda r: r["type"] == "event" and r["state"] == "start" and r["label"] == "crying")
        stalled = listener.wait_for(is_status("stalled"), timeout=10)
        ended = listener.wait_for(lambda r: r["type"] == "event" and r["state"] == "end")
        assert ended["label"] == "crying" and ended["end"] <= 15.0 + 1e-6
        assert listener.records.index(ended) > listener.records.index(stalled)
        listener.feed(household_audio.pcm_until(70.0, start=15.0))
        listener.close_stdin()
        assert listener.finish() == 0, listener.stderr_text()
    finally:
        listener.kill()
    statuses = [r["status"] for r in listener.records if r["type"] == "status"]
    assert statuses == ["connected", "stalled", "resumed", "ended"]
    crying = [event for event in listener.events() if event[0] == "crying"]
    # The stall cut the first crying at 15 s; when audio came back the baby was still crying (a new event).
    first = household_audio.truth[0]
    truth = [("crying", first[1], 15.0), ("crying", 15.0, first[2]), household_audio.truth[-1]]
    assert events_match(crying, truth), crying


def test_a_wav_file_piped_as_raw_pcm_is_refused_with_advice(hub_dir, household_audio, tmp_path):
    from homesound.workspace import Workspace
    from homesound.workspace.runs import list_runs

    workspace_path = tmp_path / "home.db"
    listener = hub_listener(hub_dir, tmp_path, *STDIN_ARGS, "--workspace", str(workspace_path))
    listener.feed(household_audio.path.read_bytes()[:4096])  # fits the pipe: the listener may stop reading
    listener.close_stdin()
    assert listener.finish() == 2
    stderr = listener.stderr_text()
    assert "starts like a WAV file" in stderr
    assert stderr.index("listened to") < stderr.index("error: "), stderr  # what was heard, then why it ended
    with Workspace(workspace_path) as workspace:
        [run] = list_runs(workspace, "listen")
    summary = json.loads(run["summary_json"])
    assert run["status"] == "failed" and "starts like a WAV file" in summary["error"]
    assert summary["ended"] == "error" and summary["clips_saved"] == 0


def test_nan_samples_and_a_cut_last_frame_are_survived(hub_dir, household_audio, tmp_path):
    samples = household_audio.recording.samples[: 44100 * 8].astype("<f4")
    samples[44100:44100 + 500] = np.nan
    samples[88200] = np.inf
    listener = hub_listener(hub_dir, tmp_path, "--source", "-", "--rate", "44100", "--format", "f32le",
                            "--probabilities")
    listener.feed(samples.tobytes() + b"\x01\x02\x03")
    listener.close_stdin()
    assert listener.finish() == 0, listener.stderr_text()
    hops = [r for r in listener.records if r["type"] == "hop"]
    assert len(hops) == 8 and all(np.isfinite(list(r["probabilities"].values())).all() for r in hops)
    assert "NaN/inf samples" in listener.stderr_text() and "3 trailing bytes ignored" in listener.stderr_text()


class RecordingHandler(http.server.BaseHTTPRequestHandler):
    """Serves one file on GET and keeps POSTed JSON bodies."""

    body = b""
    requests: list[str] = []
    posts: list[dict] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        type(self).requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def do_POST(self):  # noqa: N802
        length = int(self.headers["Content-Length"])
        type(self).posts.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    handler = type("Handler", (RecordingHandler,), {"requests": [], "posts": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()


def test_a_network_stream_that_ends_is_played_again_after_a_backoff(hub_dir, household_audio, tmp_path, http_server):
    server, handler = http_server
    clip = tmp_path / "first30s.wav"
    soundfile.write(str(clip), household_audio.recording.samples[: 44100 * 30], 44100, subtype="PCM_16")
    handler.body = clip.read_bytes()
    url = f"http://127.0.0.1:{server.server_address[1]}/nursery.wav"
    listener = hub_listener(hub_dir, tmp_path, "--source", url, "--probabilities")
    try:
        listener.wait_for(lambda r: r["type"] == "event" and r["state"] == "end", timeout=60)
        listener.wait_for(is_status("failed"))
        listener.wait_for(lambda r: r["type"] == "hop" and r["start"] >= 31.0, timeout=60)
        listener.process.send_signal(signal.SIGTERM)
        assert listener.finish(timeout=20) == 0, listener.stderr_text()
    finally:
        listener.kill()
    assert len(handler.requests) >= 2
    statuses = [r for r in listener.records if r["type"] == "status"]
    assert [s["status"] for s in statuses[:3]] == ["connected", "failed", "connected"]
    assert "reconnecting in" in statuses[1]["message"]
    first_crying = [e for e in listener.events() if e[0] == "crying"][0]
    assert events_match([first_crying], [household_audio.truth[0]])
    # The second connection continues the stream time where the first ended (30 s), without overlap, and
    # starts afresh (state reset): the same audio gives the same probabilities as the first time. ffmpeg
    # keeps the stream's own rate, so the exact resampler makes them those of the file itself.
    hops = [r for r in listener.records if r["type"] == "hop"]
    first = [r["probabilities"] for r in hops if r["start"] < 30.0 - 0.96 + 1e-6]
    second = [r["probabilities"] for r in hops if r["start"] >= 30.0 - 1e-6]
    assert len(first) == 31 and abs(hops[len(first)]["start"] - 30.0) < 1e-6
    for again, before in zip(second, first):
        assert again == pytest.approx(before, abs=1e-6)


def test_events_go_to_a_webhook_and_into_the_workspace_as_clips(hub_dir, household_audio, tmp_path, http_server):
    from homesound_hub.bundle import load_hub
    from embed.streaming import StreamingEmbedder
    from homesound.workspace import Workspace
    from homesound.workspace.classify import get_model
    from homesound.workspace.listen import list_live_events
    from homesound.workspace.recordings import iter_embedded_recordings
    from homesound.workspace.runs import list_runs

    server, handler = http_server
    workspace_path = tmp_path / "home.db"
    listener = hub_listener(hub_dir, tmp_path, "--source", str(household_audio.path), "--fast",
                            "--webhook", f"http://127.0.0.1:{server.server_address[1]}/events",
                            "--workspace", str(workspace_path), "--pre-roll", "3")
    assert listener.finish() == 0, listener.stderr_text()

    printed = [r for r in listener.records if r["type"] == "event"]
    assert handler.posts == printed and printed
    ended = [r for r in printed if r["state"] == "end"]
    with Workspace(workspace_path) as workspace:
        live = list_live_events(workspace)
        stored = {recording.path: embedding for recording, embedding in iter_embedded_recordings(workspace, with_raw=True)}
        runs = list_runs(workspace, "listen")
        models = {event.model_id: get_model(workspace, event.model_id) for event in live}
    assert [(e.started_at, e.label) for e in live] == sorted((r["start_time"], r["label"]) for r in ended)
    assert runs[-1]["status"] == "completed"
    # The hub's detector is the registered model it was exported from: one identity, by id.
    manifest = json.loads((hub_dir / "manifest.json").read_text())
    (model,) = models.values()
    assert model["sha256"] == manifest["detector"]["sha256"] and model["path"] == manifest["detector"]["source"]

    hub = load_hub(hub_dir)
    for event, record in zip(live, sorted(ended, key=lambda r: (r["start_time"], r["label"]))):
        samples, rate = soundfile.read(event.clip_path, dtype="float64")
        assert rate == 16000
        duration = record["end"] - record["start"]
        assert event.event_start_in_clip == pytest.approx(min(3.84, record["start"]), abs=1e-6)
        assert event.event_end_in_clip - event.event_start_in_clip == pytest.approx(duration, abs=1e-6)
        embedding = stored[event.clip_path]
        assert len(samples) == len(embedding.embedding) * 15360 + 240
        # The clip embeds again to the hops the listener stored with it (up to float32 rounding of the file).
        hops = StreamingEmbedder(hub.embedder, 16000).push(samples)
        again = np.stack([hop.embedding for hop in hops])
        assert again.shape == embedding.embedding.shape
        assert np.mean(again == embedding.embedding) > 0.99


def test_the_listen_job_runs_in_any_thread_and_stops_when_its_caller_says(hub_dir, household_audio):
    """homesound_hub.jobs.listen as a library call: from a worker thread (where Python allows no signal
    handlers, so the process's own are left alone) it listens until the caller's stop event is set."""
    import io
    import time

    from homesound_hub.jobs import ListenConfig, listen
    from homesound_hub.sources import SourceOptions

    config = ListenConfig(hub=str(hub_dir), source=str(household_audio.path), audio=SourceOptions(realtime=True))
    out, stop, results = io.StringIO(), threading.Event(), []
    handlers = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    worker = threading.Thread(target=lambda: results.append(listen(config, out=out, stop=stop)))
    worker.start()
    deadline = time.monotonic() + 120
    while '"connected"' not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(3)  # a few hops at real time
    stop.set()
    worker.join(timeout=60)
    assert not worker.is_alive() and results, "the listen job did not stop when told"
    [result] = results
    assert result.summary.exit_status == "stopped" and result.run_id is None and not result.undelivered
    assert 0 < result.summary.seconds < len(household_audio.pcm) / 2 / RATE / 2  # stopped well before the end
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [record["status"] for record in records if record["type"] == "status"] == ["connected"]
    assert {number: signal.getsignal(number) for number in handlers} == handlers
