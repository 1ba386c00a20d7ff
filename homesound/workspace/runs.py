"""Every job that writes to the workspace records itself, with its configuration."""

from __future__ import annotations

from typing import Any

from homesound import __version__
from homesound.workspace.core import Workspace, to_json, utc_now

COMPONENT = "runs"
MIGRATIONS = (
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        command TEXT NOT NULL,
        config_json TEXT NOT NULL,
        package_version TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL DEFAULT 'running',
        summary_json TEXT
    )
    """,
)


def start_run(workspace: Workspace, command: str, config: Any) -> int:
    with workspace.transaction() as db:
        cursor = db.execute(
            "INSERT INTO runs(command, config_json, package_version, started_at) VALUES (?, ?, ?, ?)",
            (command, to_json(config), __version__, utc_now()),
        )
        return int(cursor.lastrowid)


def finish_run(workspace: Workspace, run_id: int, status: str, summary: Any = None) -> None:
    with workspace.transaction() as db:
        db.execute(
            "UPDATE runs SET finished_at=?, status=?, summary_json=? WHERE id=?",
            (utc_now(), status, to_json(summary) if summary is not None else None, run_id),
        )


def list_runs(workspace: Workspace, command: str | None = None) -> list[dict]:
    sql = "SELECT * FROM runs" + (" WHERE command=?" if command else "") + " ORDER BY id"
    return [dict(row) for row in workspace.query(sql, (command,) if command else ())]
