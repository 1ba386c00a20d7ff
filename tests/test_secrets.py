"""Issue 11: no secret in any output or file. Secrets are planted where a user can put them (LABEL_STUDIO_URL,
--mqtt, webhooks, ?token= query strings) and every output, the -v log, the workspace and its WAL are searched."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from homesound.redact import RedactingFilter, redact_text, redact_url, strip_credentials, url_secrets
from homesound_testkit.hardening import assert_nowhere, run_cli


def dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again: nothing listens there


@pytest.mark.parametrize("url, shown", [
    ("http://alice:PW-SECRET@host:8080/x", "http://alice:***@host:8080/x"),
    ("rtsp://carol:p@ss@SECRET@cam/live", "rtsp://carol:***@cam/live"),  # '@' inside the password
    ("rtsp://carol:pa/ss-SECRET@cam/live", "rtsp://carol:***@cam/live"),  # a raw '/' inside it
    ("http://cam/live?token=SECRET&channel=2#access_token=SECRET", "http://cam/live?token=***&channel=2#access_token=***"),
    ("http://cam/live?api_key=SECRET&Signature=SECRET", "http://cam/live?api_key=***&Signature=***"),
    ("mqtt://bob:SECRET@host:notaport", "mqtt://bob:***@host:notaport"),
    ("https://tfhub.dev/google/vggish/1", "https://tfhub.dev/google/vggish/1"),
    ("http://host:8080/users/@bob", "http://host:8080/users/@bob"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown
    assert "SECRET" not in redact_text(f"error opening '{url}': 401", url_secrets(url))


def test_webhook_paths_and_decoded_secrets():
    hook = "http://ha.local:8123/api/webhook/SECRET-id?x=1"
    assert redact_url(hook, hide_path=True) == "http://ha.local:8123/***?***"
    assert redact_text("POST to /api/webhook/SECRET-id failed", url_secrets(hook, hide_path=True)).count("SECRET") == 0
    # ffmpeg may print a percent-encoded password decoded
    assert redact_text("auth for p@ss SECRET failed", url_secrets("rtsp://u:p%40ss%20SECRET@cam/")) == "auth for *** failed"
    assert strip_credentials("http://alice:P@W@host:8080/x") == ("http://host:8080/x", True)


def test_every_log_line_is_redacted(caplog):
    logger = logging.getLogger("some.library")
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO):
        logger.info("HTTP Request: GET %s", "http://alice:SECRET@host/api/?token=SECRET2")
    assert "SECRET" not in caplog.text and "http://alice:***@host/api/?token=***" in caplog.text


def test_mqtt_url_errors_never_show_the_password():
    from homesound_hub.notify import MqttSettings
    from homesound.errors import HomesoundError

    with pytest.raises(HomesoundError, match=r"mqtt://bob:\*\*\*@host:notaport: the port is not a number") as error:
        MqttSettings.from_url("mqtt://bob:SECRET-pw@host:notaport")
    assert "SECRET" not in str(error.value)


def test_a_failing_webhook_logs_no_secret_id(caplog):
    from homesound_hub.notify import Webhook

    class Update:  # what the listener hands a sink: only its record() is sent
        @staticmethod
        def record() -> dict:
            return {"type": "event", "label": "crying", "state": "start"}

    url = f"http://user:SECRET-pw@127.0.0.1:{dead_port()}/api/webhook/SECRET-webhook-id?token=SECRET-token"
    Webhook.ATTEMPTS = 2
    with caplog.at_level(logging.WARNING, logger="homesound_hub.notify"):
        hook = Webhook(url, timeout=1.0)
        hook.event(Update())
        hook.close()
    assert "failed 2 times" in caplog.text and "127.0.0.1" in caplog.text
    assert_nowhere(["SECRET-pw", "SECRET-webhook-id", "SECRET-token"], [caplog.text], [])


@pytest.mark.slow
def test_label_studio_url_credentials_are_dropped_and_never_shown_or_stored(label_studio, shared_data, tmp_path):
    from homesound.workspace import Workspace
    from homesound.workspace import active_learning as queue
    from homesound_testkit.active_learning import household_recording

    recording = label_studio.document_root / "recordings" / "secrets.flac"
    household_recording(shared_data, recording, ("silence", "crying", "laughter"))
    workspace = tmp_path / "home.db"
    with Workspace(workspace) as ws:
        queue.queue_windows(ws, [queue.QueuedWindow(
            content_sha256="e" * 64, recording_path=str(recording), start_seconds=0.0, end_seconds=5.0, rank=1,
            strategy="entropy", score=1.0, reason="planted", predictions=None)], model_id=None)
    host = label_studio.url.partition("://")[2]
    secrets = ["SECRET-ls-password"]
    env = {"LABEL_STUDIO_URL": f"http://alice:p@{secrets[0]}@{host}",
           "LABEL_STUDIO_API_KEY": label_studio.credentials.legacy_token,
           "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(label_studio.document_root),
           "HOMESOUND_LABEL_STUDIO_CONFIG": str(tmp_path / "none.toml")}
    (tmp_path / "none.toml").write_text("")
    pushed = run_cli("push", "--workspace", workspace, "--clip-dir", label_studio.document_root / "clips-secret",
                     verbose=True, env=env)
    assert pushed.returncode == 0, pushed.stderr  # the API key signed in: no HTTP Basic from the URL
    assert f"pushed 1 clips to http://{host}/projects/" in pushed.stdout
    assert "are ignored" in pushed.stderr  # the user is told the URL's credentials are not used
    pulled = run_cli("pull", "--workspace", workspace, verbose=True, env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert "HTTP Request" in pushed.stderr + pulled.stderr  # -v really logged the requests
    assert_nowhere(secrets, [pushed.stdout, pushed.stderr, pulled.stdout, pulled.stderr],
                   [workspace, Path(f"{workspace}-wal"), Path(f"{workspace}-shm")])
