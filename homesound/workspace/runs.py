"""Every job that writes to the workspace records itself, with its configuration."""

from __future__ import annotations

import json
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


def mark_interrupted(workspace: Workspace, command: str) -> int:
    """Runs of `command` still marked running; call only while holding that command's job lock."""
    with workspace.transaction() as db:
        cursor = db.execute(
            "UPDATE runs SET status='interrupted' WHERE command=? AND status='running'", (command,))
        return cursor.rowcount


RECENT_RUNS_SHOWN = 5


def status_section(workspace: Workspace) -> dict:
    counts: dict[str, dict[str, int]] = {}
    for row in workspace.query("SELECT command, status, COUNT(*) AS n FROM runs GROUP BY command, status"):
        counts.setdefault(row["command"], {})[row["status"]] = row["n"]
    recent = [
        {"id": row["id"], "command": row["command"], "status": row["status"], "started_at": row["started_at"],
         "finished_at": row["finished_at"], "summary": json.loads(row["summary_json"]) if row["summary_json"] else None}
        for row in workspace.query("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (RECENT_RUNS_SHOWN,))
    ]
    return {"by_command": counts, "recent": recent}
