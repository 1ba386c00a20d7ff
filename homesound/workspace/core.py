"""Connection, forward migrations, transactions and run records for the workspace file."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

from homesound import __version__
from homesound.errors import HomesoundError


def component_modules() -> tuple[ModuleType, ...]:
    """The modules that own tables, in migration order; each defines COMPONENT (a name) and MIGRATIONS (SQL
    scripts, in order). Imported here, when a workspace opens, because each of them imports this module."""
    from homesound.workspace import (
        active_learning,
        audioset,
        classify,
        listen,
        lock,
        recordings,
        runs,
        training_data,
    )

    return (runs, recordings, audioset, training_data, classify, active_learning, listen, lock)


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


# SQLite's header field for "which program's file is this" ('hsnd'); set on every homesound workspace.
APPLICATION_ID = 0x68736E64
# Workspaces written before the application id existed are known by this table and a component row in it.
MARKER_TABLE = "schema_versions"
SQLITE_FULL_MESSAGES = ("database or disk is full",)
SQLITE_READONLY_MESSAGES = ("readonly database", "read-only", "unable to open database file")


class Workspace:
    """One open workspace file. Use as a context manager; not shared between processes.

    create: a missing file becomes a new workspace (only commands that produce data: embed, import,
    listen); otherwise it must exist. readonly: reading commands (status, export) open the file
    read-only and never change it, so a workspace in a read-only folder or filesystem is readable.
    Whatever the mode, a file that is not a homesound workspace (another program's SQLite database)
    is refused before anything is written to it, PRAGMA journal_mode included.
    """

    def __init__(self, path: str | os.PathLike, *, busy_timeout: float = BUSY_TIMEOUT_SECONDS,
                 create: bool = True, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        if self.path.is_dir():
            raise HomesoundError(f"workspace {self.path} is a directory; give a file such as home.db")
        exists = self.path.exists()
        if not exists and (readonly or not create):
            raise HomesoundError(f"no workspace at {self.path}; create one with "
                                 f"`homesound embed ... --workspace {self.path}`")
        if not exists and not self.path.parent.exists():
            raise HomesoundError(f"workspace folder {self.path.parent} does not exist; create it first")
        if exists:
            probe = _open_read_only(self.path, busy_timeout)
            try:
                _check_is_workspace(self.path, probe)
            except BaseException:
                probe.close()
                raise
            if readonly and not probe.execute("SELECT 1 FROM sqlite_master WHERE name=?", (MARKER_TABLE,)).fetchone():
                probe.close()
                raise HomesoundError(f"{self.path} is empty, not a homesound workspace yet; create one with "
                                     f"`homesound embed ... --workspace {self.path}`")
            if readonly:
                self.connection = probe
                self.connection.row_factory = sqlite3.Row
                return
            probe.close()
        _check_writable(self.path, exists)
        try:
            self.connection = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as error:
            raise translate_sqlite_error(self.path, error) from None
        try:
            self.connection.execute("PRAGMA journal_mode=WAL")
            self.connection.execute("PRAGMA foreign_keys=ON")
            self.connection.execute("PRAGMA synchronous=NORMAL")
            self.connection.row_factory = sqlite3.Row
            self._migrate()
        except sqlite3.Error as error:
            self.connection.close()
            raise translate_sqlite_error(self.path, error) from None
        except BaseException:
            self.connection.close()
            raise

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
        if self.readonly:
            raise HomesoundError(f"workspace {self.path} was opened read-only; this command only reads it")
        try:
            self.connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if "locked" in str(error) or "busy" in str(error):
                raise WorkspaceBusyError(
                    f"workspace {self.path} is busy: another homesound job is writing to it; "
                    "wait for it to finish or use another workspace"
                ) from error
            raise translate_sqlite_error(self.path, error) from None
        try:
            yield self.connection
        except BaseException as error:
            if self.connection.in_transaction:  # SQLite may have rolled back already (disk full)
                self.connection.execute("ROLLBACK")
            if isinstance(error, sqlite3.Error):
                raise translate_sqlite_error(self.path, error) from None
            raise
        else:
            try:
                self.connection.execute("COMMIT")
            except sqlite3.Error as error:
                if self.connection.in_transaction:
                    self.connection.execute("ROLLBACK")
                raise translate_sqlite_error(self.path, error) from None

    def query(self, sql: str, parameters: tuple | dict = ()) -> list[sqlite3.Row]:
        try:
            return self.connection.execute(sql, parameters).fetchall()
        except sqlite3.DatabaseError as error:  # a damaged file is the user's to restore, not a traceback
            raise translate_sqlite_error(self.path, error) from None

    def _migrate(self) -> None:
        with self.transaction() as db:
            if db.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
                db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_versions ("
                " component TEXT PRIMARY KEY, version INTEGER NOT NULL, migrated_at TEXT NOT NULL)"
            )
            applied = {row["component"]: row["version"] for row in db.execute("SELECT * FROM schema_versions")}
            for module in component_modules():
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

    def outdated_components(self) -> set[str]:
        """Components an older homesound wrote and a read-only open could not migrate."""
        versions = self.schema_versions()
        return {module.COMPONENT for module in component_modules() if versions.get(module.COMPONENT, 0) < len(module.MIGRATIONS)}

    def require_current(self, component: str) -> None:
        if component in self.outdated_components():
            raise HomesoundError(f"workspace {self.path} was written by an older homesound ({component} tables); "
                                 "run a writing command on it once (e.g. homesound embed with the same folders) to "
                                 "upgrade it, then read it")


def _open_read_only(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """A connection that cannot write: mode=ro, or immutable=1 where SQLite cannot even make its
    shared-memory file (a read-only folder or filesystem: then no writer can be at work either)."""
    uri = path.absolute().as_uri()
    last_error: sqlite3.Error | None = None
    for parameters in ("mode=ro", "immutable=1"):
        try:
            connection = sqlite3.connect(f"{uri}?{parameters}", uri=True, timeout=busy_timeout,
                                         isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:
            last_error = error
            continue
        try:
            connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return connection
        except sqlite3.DatabaseError as error:
            connection.close()
            if "not a database" in str(error) or "malformed" in str(error):
                raise _not_a_workspace(path, f"not an SQLite database ({error})") from None
            last_error = error
            if os.access(path.parent, os.W_OK) and parameters == "mode=ro":
                break  # the folder is writable: immutable would only hide a writer's changes
    raise HomesoundError(f"cannot read workspace {path} (SQLite says: {last_error}); check that it is a file "
                         "you can read")


def _check_is_workspace(path: Path, connection: sqlite3.Connection) -> None:
    """Refuse, untouched, an SQLite file that holds another program's tables."""
    if connection.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID:
        return
    tables = [row[0] for row in connection.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    if not tables:
        return  # an empty database: nothing of anyone's to harm
    if MARKER_TABLE in tables and connection.execute(
            f"SELECT 1 FROM {MARKER_TABLE} WHERE component='runs'").fetchone():
        return  # written by homesound before the application id
    shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
    raise _not_a_workspace(path, f"another program's SQLite database (tables: {shown}); it was not changed")


def _not_a_workspace(path: Path, why: str) -> HomesoundError:
    return HomesoundError(f"{path} is not a homesound workspace: {why}; choose another file name")


def _check_writable(path: Path, exists: bool) -> None:
    folder = path.parent
    if _read_only_filesystem(folder):
        raise HomesoundError(f"workspace {path} is on a read-only filesystem, so this command cannot write to it; "
                             "copy it somewhere writable (status and export work read-only)")
    if exists and not os.access(path, os.W_OK):
        raise HomesoundError(f"workspace {path} is read-only (file permissions), so this command cannot write to "
                             f"it; make it writable (chmod u+w {path}) or work on a copy; status and export only read")
    if not os.access(folder, os.W_OK):
        raise HomesoundError(f"workspace {path} is in a read-only folder ({folder}): SQLite must create its journal "
                             "beside it, so this command cannot write; copy the workspace to a writable folder "
                             "(status and export work read-only)")


def _read_only_filesystem(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def translate_sqlite_error(path: Path, error: sqlite3.Error) -> Exception:
    """SQLite's messages for a full disk, a read-only file or a broken file -> what the user should do;
    any other SQLite error is a bug of homesound and stays itself."""
    text = str(error)
    if any(message in text for message in SQLITE_FULL_MESSAGES):
        return HomesoundError(f"the disk holding workspace {path} is full; free some space and run the same "
                              "command again (what was committed is kept, nothing is done twice)")
    if any(message in text for message in SQLITE_READONLY_MESSAGES):
        return HomesoundError(f"cannot write workspace {path} (SQLite says: {text}); the file or its folder is "
                              "read-only: make them writable, or copy the workspace somewhere writable")
    if isinstance(error, sqlite3.DatabaseError) and ("malformed" in text or "not a database" in text):
        return HomesoundError(f"workspace {path} is damaged (SQLite says: {text}); restore it from a backup")
    return error


def _split_sql(script: str) -> list[str]:
    return [statement.strip() for statement in script.split(";") if statement.strip()]
