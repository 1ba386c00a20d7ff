"""Issue 11: a listener given secrets in its stream URL (password with '@', ?token=), its --mqtt URL and its
webhook shows none of them: not on stdout, not in the -v log (ffmpeg's own error text included), not in any
MQTT payload, not in the workspace or its WAL. An unreachable broker is said, retried, and fails the run."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from homesound_testkit.hardening import REPO, assert_nowhere, cli_command, run_cli
from homesound_testkit.listen import Subscriber, free_port


class Unauthorized(BaseHTTPRequestHandler):
    """A camera that wants other credentials: ffmpeg reports the 401 quoting the URL it opened."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="camera"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.mark.slow
def test_no_secret_reaches_output_log_mqtt_or_workspace(hub_dir, broker, tmp_path):
    camera = ThreadingHTTPServer(("127.0.0.1", 0), Unauthorized)
    threading.Thread(target=camera.serve_forever, daemon=True).start()
    secrets = ["p@ss-SECRET-camera", "SECRET-query-token", "SECRET-mqtt-password", "SECRET-webhook-id"]
    source = f"http://carol:{secrets[0]}@127.0.0.1:{camera.server_address[1]}/live?token={secrets[1]}"
    workspace = tmp_path / "home.db"
    subscriber = Subscriber(broker.port)
    command = cli_command("listen", "--hub", hub_dir, "--source", source, "--stall-timeout", "2",
                          "--mqtt", f"mqtt://bob:{secrets[2]}@127.0.0.1:{broker.port}",
                          "--webhook", f"http://127.0.0.1:{free_port()}/api/webhook/{secrets[3]}",
                          "--workspace", workspace, verbose=True)
    try:
        listener = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        subscriber.wait_for("homesound/homesound/availability", "offline", timeout=60)
        time.sleep(6)  # several failed connections, each with ffmpeg's error text
        listener.send_signal(signal.SIGTERM)
        out, err = listener.communicate(timeout=60)
    finally:
        subscriber.close()
        camera.shutdown()
    assert "401" in err and "carol:***@127.0.0.1" in err and "token=***" in err, err  # the reason is still said
    assert err.count("reconnecting in") >= 2 and "Traceback" not in err
    payloads = [f"{topic} {payload}" for topic, payload, _ in subscriber.messages]
    assert any("network stream http://carol:***@" in payload for payload in payloads)
    assert_nowhere(secrets, [out, err, *payloads],
                   [workspace, Path(f"{workspace}-wal"), Path(f"{workspace}-shm")])


@pytest.mark.slow
def test_an_unreachable_broker_is_said_retried_and_fails_the_run(hub_dir, household_audio):
    result = run_cli("listen", "--hub", hub_dir, "--source", household_audio.path, "--fast",
                     "--mqtt", f"mqtt://127.0.0.1:{free_port()}", timeout=300)
    assert "Traceback" not in result.stderr
    assert "is not reachable (attempt 1); retrying with backoff" in result.stderr
    assert "was never reached" in result.stderr and "nothing was published" in result.stderr
    assert result.returncode == 1
