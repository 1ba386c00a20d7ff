"""One writing job per workspace at a time: an exclusive OS lock on the workspace file itself.

The lock belongs to the file (its inode), not to the name it was opened by, so a symbolic link
or a hard link to a workspace in use is refused like the workspace itself. The operating system
drops it when its process ends, however it ends (kill -9 included), so a dead job never leaves a
lock behind, and no lock file is ever created beside the workspace. Who holds it (command, pid,
host, start) is written into the workspace for the message a refused job prints.

flock is separate from SQLite's own POSIX record locks on Linux and macOS, so the two never meet;
but closing any descriptor of a file drops *all* POSIX locks of the process on it, so the lock's
descriptor is closed only after the job's workspace connections are (leave `with JobLock` last).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path

from homesound.errors import HomesoundError
from homesound.workspace.core import Workspace, utc_now

COMPONENT = "job_lock"
MIGRATIONS = (
    """
    CREATE TABLE job_holder (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        command TEXT NOT NULL,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        started_at TEXT NOT NULL
    )
    """,
)


class WorkspaceLockedError(HomesoundError):
    """Another job holds the workspace."""


class JobLock:
    """`with JobLock(workspace_path, "embed"):` refuses at once if another job holds the workspace."""

    def __init__(self, workspace_path: str | os.PathLike, command: str):
        self.workspace_path = Path(workspace_path)
        self.command = command
        self._fd: int | None = None

    def __enter__(self) -> "JobLock":
        fd = _open_for_locking(self.workspace_path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # before reading the holder: no SQLite connection of ours is open on the file yet
            raise WorkspaceLockedError(
                f"workspace {self.workspace_path} is in use by {_describe_holder(self.workspace_path)}; "
                "wait for it to finish, or use another workspace"
            ) from None
        self._fd = fd
        try:
            with Workspace(self.workspace_path) as workspace, workspace.transaction() as db:
                db.execute(
                    "INSERT INTO job_holder(id, command, pid, host, started_at) VALUES (1, ?, ?, ?, ?)"
                    " ON CONFLICT(id) DO UPDATE SET command=excluded.command, pid=excluded.pid,"
                    " host=excluded.host, started_at=excluded.started_at",
                    (self.command, os.getpid(), socket.gethostname(), utc_now()))
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._release()

    def _release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _open_for_locking(path: Path) -> int:
    """The workspace file (created empty if missing: JobLock is taken by commands that create workspaces)."""
    if path.is_dir():
        raise HomesoundError(f"workspace {path} is a directory; give a file such as home.db")
    try:
        return os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError as error:
        why = {errno.EROFS: "the filesystem is read-only", errno.ENOSPC: "the disk is full",
               errno.ENOENT: "its folder does not exist",
               errno.EACCES: "permission denied (the folder is not writable or the file not readable)",
               }.get(error.errno, error.strerror)
        raise HomesoundError(f"cannot create or open workspace {path}: {why}; give a file in an existing folder "
                             "you can write to") from None


def _describe_holder(path: Path) -> str:
    try:
        with Workspace(path, readonly=True) as workspace:
            row = workspace.query("SELECT * FROM job_holder WHERE id = 1")
    except Exception:  # a workspace still being created: its holder is not written yet
        row = []
    if not row:
        return "another homesound job"
    holder = row[0]
    return (f"`homesound {holder['command']}` (pid {holder['pid']} on {holder['host']}, "
            f"started {holder['started_at']})")
