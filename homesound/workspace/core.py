"""Connection, forward migrations, transactions and run records for the workspace file."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib
import json
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from homesound import __version__
from homesound.errors import HomesoundError

# Modules that own tables; each defines COMPONENT (a name) and MIGRATIONS (SQL scripts, in order).
COMPONENT_MODULES = (
    "homesound.workspace.runs",
    "homesound.workspace.recordings",
    "homesound.workspace.audioset",
    "homesound.workspace.training_data",
    "homesound.workspace.classify",
    "homesound.workspace.active_learning",
    "homesound.workspace.listen",
)

BUSY_TIMEOUT_SECONDS = 30.0


class WorkspaceBusyError(HomesoundError):
    """Another process holds the workspace's write lock for too long."""


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def to_json(value: Any) -> str:
    """Canonical JSON (sorted keys) so equal configurations compare and hash equal."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


class Workspace:
    """One open workspace file. Use as a context manager; not shared between processes."""

    def __init__(self, path: str | os.PathLike, *, busy_timeout: float = BUSY_TIMEOUT_SECONDS):
        self.path = Path(path)
        if self.path.is_dir():
            raise HomesoundError(f"workspace {self.path} is a directory; give a file such as home.db")
        if not self.path.parent.exists():
            raise HomesoundError(f"workspace folder {self.path.parent} does not exist; create it first")
        try:
            self.connection = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            self.connection.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as error:
            raise HomesoundError(
                f"{self.path} is not a homesound workspace (SQLite says: {error}); "
                "choose another file name"
            ) from error
        self.connection.execute("PRAGMA foreign_keys=ON")
        self.connection.execute("PRAGMA synchronous=NORMAL")
        self.connection.row_factory = sqlite3.Row
        self._migrate()

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Workspace":
        return cls(path)

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.connection.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: all of it lands or none of it, writers queue up."""
        try:
            self.connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if "locked" in str(error) or "busy" in str(error):
                raise WorkspaceBusyError(
                    f"workspace {self.path} is busy: another homesound job is writing to it; "
                    "wait for it to finish or use another workspace"
                ) from error
            raise
        try:
            yield self.connection
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        else:
            self.connection.execute("COMMIT")

    def query(self, sql: str, parameters: tuple | dict = ()) -> list[sqlite3.Row]:
        return self.connection.execute(sql, parameters).fetchall()

    def _migrate(self) -> None:
        with self.transaction() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_versions ("
                " component TEXT PRIMARY KEY, version INTEGER NOT NULL, migrated_at TEXT NOT NULL)"
            )
            applied = {row["component"]: row["version"] for row in db.execute("SELECT * FROM schema_versions")}
            for module_name in COMPONENT_MODULES:
                module = importlib.import_module(module_name)
                current = applied.get(module.COMPONENT, 0)
                if current > len(module.MIGRATIONS):
                    raise HomesoundError(
                        f"workspace {self.path} was written by a newer homesound "
                        f"({module.COMPONENT} schema v{current}); upgrade homesound (this is {__version__})"
                    )
                for version, script in enumerate(module.MIGRATIONS, start=1):
                    if version <= current:
                        continue
                    for statement in _split_sql(script):
                        db.execute(statement)
                    db.execute(
                        "INSERT INTO schema_versions(component, version, migrated_at) VALUES (?, ?, ?)"
                        " ON CONFLICT(component) DO UPDATE SET version=excluded.version,"
                        " migrated_at=excluded.migrated_at",
                        (module.COMPONENT, version, utc_now()),
                    )

    def schema_versions(self) -> dict[str, int]:
        return {row["component"]: row["version"] for row in self.query("SELECT * FROM schema_versions")}


def _split_sql(script: str) -> list[str]:
    return [statement.strip() for statement in script.split(";") if statement.strip()]
