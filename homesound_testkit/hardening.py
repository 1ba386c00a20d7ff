"""Real hostile environments for the hardening tests: the CLI as a separate process, a full disk, a read-only
filesystem, and file permissions that bind even when the tests run as root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest

REPO = Path(__file__).resolve().parents[1]
# Root ignores file modes; without these two capabilities it obeys them like any user (same uid, same files).
AS_ORDINARY_USER = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []


def cli_command(*arguments: str, ordinary_user: bool = False, verbose: bool = False) -> list[str]:
    prefix = AS_ORDINARY_USER if ordinary_user else []
    if ordinary_user and prefix and shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop root's permission override")
    return [*prefix, sys.executable, "-m", "homesound.cli", *(["-v"] if verbose else []), *map(str, arguments)]


def run_cli(*arguments: str, ordinary_user: bool = False, verbose: bool = False, timeout: float = 300,
            env: dict[str, str | None] | None = None, **options) -> subprocess.CompletedProcess:
    """The real `homesound` in its own process (stdout and stderr as text), from this checkout."""
    environment = {**os.environ, **(env or {})}
    environment.pop("PYTHONPATH", None)
    environment = {key: value for key, value in environment.items() if value is not None}  # None: unset it
    return subprocess.run(cli_command(*arguments, ordinary_user=ordinary_user, verbose=verbose), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=environment, **options)


def assert_one_clear_error(result: subprocess.CompletedProcess, *expected: str, status: int = 2) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    for text in expected:
        assert text in result.stderr, result.stderr


@contextmanager
def mounted(path: Path, *, size_kb: int = 1024, read_only_copy_of: Path | None = None):
    """A small tmpfs at path (a disk that fills up), or a read-only bind mount of a folder's copy."""
    path.mkdir(parents=True, exist_ok=True)
    if read_only_copy_of is not None:
        commands = [["mount", "--bind", str(read_only_copy_of), str(path)],
                    ["mount", "-o", "remount,ro,bind", str(path)]]
    else:
        commands = [["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)]]
    mounted_once = False
    try:
        for command in commands:
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                pytest.skip(f"cannot mount here ({result.stderr.strip()}): needs root in a machine that allows it")
            mounted_once = True
        yield path
    finally:
        if mounted_once:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill_disk(folder: Path, leave_bytes: int = 0) -> None:
    """Fill the filesystem holding folder, leaving about leave_bytes free."""
    filler = folder / "filler"
    with open(filler, "wb") as out:
        chunk = b"\0" * 4096
        try:
            while True:
                free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
                if free <= leave_bytes:
                    break
                out.write(chunk[: max(1, min(len(chunk), free - leave_bytes))])
                out.flush()
        except OSError:
            pass


def assert_nowhere(secrets: list[str], texts: list[str], files: list[Path]) -> None:
    """Neither the secret nor its percent-encoded form in any text or any file (bytes, WAL included)."""
    forms = {form for secret in secrets for form in (secret, quote(secret, safe=""))}
    for text in texts:
        for form in forms:
            assert form not in text, f"{form!r} leaked into: {text[max(0, text.find(form) - 200):][:400]}"
    for path in files:
        if path.exists():
            data = path.read_bytes()
            for form in forms:
                assert form.encode() not in data, f"{form!r} leaked into {path}"
