"""A real Label Studio server for tests: own data dir, known user and tokens, no internet.

The server lives in its own virtualenv (.ci/install_label_studio.sh). Its first start migrates
an empty database (~40 s); that initialised data dir is kept as a template next to the venv, so
every later server, in this run or the next, starts from a copy in a few seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from homesound_testkit.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
USERNAME = "tester@homesound.test"
PASSWORD = "homesound-test-password"
LEGACY_TOKEN = "homesoundlegacytesttoken0123456789abcd"
TEMPLATE_NAME = "homesound-test-data-template"
FIRST_START_TIMEOUT_SECONDS = 240.0
START_TIMEOUT_SECONDS = 90.0


def label_studio_venv() -> Path:
    return Path(os.environ.get("LABEL_STUDIO_VENV", REPO_ROOT / ".venv-label-studio"))


def label_studio_executable() -> Path | None:
    executable = label_studio_venv() / "bin" / "label-studio"
    return executable if executable.exists() else None


@dataclass(frozen=True)
class Credentials:
    legacy_token: str
    personal_access_token: str  # a JWT refresh token, exchanged at /api/token/refresh


class LabelStudioServer:
    """One server process on 127.0.0.1; stop, kill and restart keep its data dir and port."""

    def __init__(self, data_dir: Path, document_root: Path, credentials: Credentials, log_path: Path):
        self.data_dir = data_dir
        self.document_root = document_root
        self.credentials = credentials
        self.log_path = log_path
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        if _answers(self.url):
            self.port = free_port()
        self.process = _spawn(self.data_dir, self.document_root, self.port, self.log_path, first_start=False)
        _wait_until_up(self, timeout)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """Die like a crashed server: no shutdown, in-flight requests cut."""
        self._signal(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _signal(self, signum: int) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signum)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)


def start_server(workdir: Path, document_root: Path) -> LabelStudioServer:
    """A fresh server in workdir whose local-files storage may serve anything under document_root."""
    template = ensure_template(document_root)
    data_dir = workdir / "label-studio-data"
    shutil.copytree(template, data_dir)
    credentials = Credentials(**json.loads((data_dir / "homesound-test.json").read_text()))
    server = LabelStudioServer(data_dir, document_root, credentials, workdir / "label-studio.log")
    server.start()
    return server


def ensure_template(document_root: Path) -> Path:
    """The initialised data dir (migrated database, user, both tokens), made once per venv
    (beside it, or in the temp folder when the venv is read-only)."""
    home = label_studio_venv() if os.access(label_studio_venv(), os.W_OK) else Path(tempfile.gettempdir())
    template = home / TEMPLATE_NAME
    if (template / "homesound-test.json").exists():
        return template
    building = Path(tempfile.mkdtemp(prefix="ls-template-", dir=home))
    data_dir = building / "data"
    data_dir.mkdir()
    server = LabelStudioServer(data_dir, document_root, Credentials(LEGACY_TOKEN, ""), building / "first-start.log")
    server.process = _spawn(data_dir, document_root, server.port, server.log_path, first_start=True)
    try:
        _wait_until_up(server, FIRST_START_TIMEOUT_SECONDS)
        personal_access_token = _create_personal_access_token(server.url)
    finally:
        server.stop()
    (data_dir / "homesound-test.json").write_text(
        json.dumps({"legacy_token": LEGACY_TOKEN, "personal_access_token": personal_access_token})
    )
    try:
        data_dir.rename(template)
    except OSError:  # another test run finished its template first; use that one
        pass
    shutil.rmtree(building, ignore_errors=True)
    return template


def _spawn(data_dir: Path, document_root: Path, port: int, log_path: Path, *, first_start: bool) -> subprocess.Popen:
    home = data_dir.parent / f"home-{data_dir.name}"
    home.mkdir(exist_ok=True)
    environment = {
        "PATH": f"{label_studio_venv() / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "LOCAL_FILES_SERVING_ENABLED": "true",
        "LOCAL_FILES_DOCUMENT_ROOT": str(document_root),
        "PYTHONUNBUFFERED": "1",
    }
    if first_start:
        environment["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] = "true"
    command = [
        str(label_studio_venv() / "bin" / "label-studio"), "start", "--no-browser",
        "--internal-host", "127.0.0.1", "--port", str(port),
        "--username", USERNAME, "--password", PASSWORD, "--user-token", LEGACY_TOKEN,
    ]
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=data_dir,
        )


def _wait_until_up(server: LabelStudioServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"Label Studio exited with {server.process.returncode}; see {server.log_path}")
        if _whoami(server.url) == USERNAME:
            return
        time.sleep(0.25)
    server.kill()
    raise RuntimeError(f"Label Studio did not answer on {server.url} within {timeout:.0f} s; see {server.log_path}")


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(f"{url}/health", timeout=1).close()
        return True
    except OSError:
        return False


def _whoami(url: str) -> str | None:
    request = urllib.request.Request(
        f"{url}/api/current-user/whoami", headers={"Authorization": f"Token {LEGACY_TOKEN}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return json.loads(response.read()).get("email")
    except (OSError, ValueError):
        return None


def _create_personal_access_token(url: str) -> str:
    request = urllib.request.Request(
        f"{url}/api/token/", data=b"{}", method="POST",
        headers={"Authorization": f"Token {LEGACY_TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["token"]
