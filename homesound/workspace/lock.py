"""One writing job per workspace at a time: an exclusive lock on `<workspace>.lock`, held for the job.

The operating system drops the lock when its process ends, however it ends (kill -9 included), so
a lock can never be left behind by a dead job. The file names the holder for the error message;
it is never deleted (deleting a lock file while another process opens it would let two jobs in).
POSIX only (fcntl.flock: Linux, macOS).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path

from homesound.errors import HomesoundError
from homesound.workspace.core import utc_now


class WorkspaceLockedError(HomesoundError):
    """Another job holds the workspace."""


class JobLock:
    """`with JobLock(workspace_path, "embed"):` refuses at once if another job holds the workspace."""

    def __init__(self, workspace_path: str | os.PathLike, command: str):
        self.path = Path(f"{workspace_path}.lock")
        self.workspace_path = Path(workspace_path)
        self.command = command
        self._fd: int | None = None

    def __enter__(self) -> "JobLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise HomesoundError(
                f"cannot use workspace {self.workspace_path}: {error.strerror} ({self.path}); "
                "give a file in an existing folder you can write to") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise WorkspaceLockedError(
                f"workspace {self.workspace_path} is in use by `homesound {holder.get('command', '?')}` "
                f"(pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started_at', '?')}); "
                "wait for it to finish, or use another workspace"
            ) from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command, "started_at": utc_now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the lock
            self._fd = None


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
