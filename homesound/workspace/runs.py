"""Every job that writes to the workspace records itself, with its configuration, through `recorded`."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from homesound import __version__
from homesound.workspace.core import Workspace, to_json, utc_now

COMPONENT = "runs"


class RunStatus(str, enum.Enum):
    """The only words a run's status can hold (older workspaces' "done"/"finished" migrate to COMPLETED)."""

    RUNNING = "running"
    COMPLETED = "completed"
    COMPLETED_WITH_FAILURES = "completed_with_failures"  # the job went on past inputs it could not use
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # Ctrl-C, SIGTERM/SIGHUP, or a killed process noticed by the next run


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
    """
    UPDATE runs SET status='completed' WHERE status IN ('done', 'finished')
    """,
)

Summary = Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None


@dataclass
class RecordedRun:
    """The run a job is inside. The job fills `summary` (a mapping, or a function giving one at the end,
    so a failed or interrupted run still says how far it got) and may lower `status` to
    COMPLETED_WITH_FAILURES; failure and interruption are recorded by `recorded` itself."""

    id: int
    summary: Summary = None
    status: RunStatus = RunStatus.COMPLETED


@contextmanager
def recorded(workspace: Workspace, command: str, config: Any) -> Iterator[RecordedRun]:
    """Record `command` with its configuration for as long as the block runs: completed (or what the job
    set), failed with the error, or interrupted by Ctrl-C or a stop signal; the exception goes on."""
    run = RecordedRun(_start_run(workspace, command, config))
    try:
        yield run
    except KeyboardInterrupt:  # homesound.cli.Stopped (SIGTERM, SIGHUP) is one too
        _finish_run(workspace, run.id, RunStatus.INTERRUPTED, _summary(run))
        raise
    except BaseException as error:
        _finish_run(workspace, run.id, RunStatus.FAILED, {**(_summary(run) or {}), "error": str(error)})
        raise
    _finish_run(workspace, run.id, run.status, _summary(run))


def _summary(run: RecordedRun) -> Mapping[str, Any] | None:
    return run.summary() if callable(run.summary) else run.summary


def _start_run(workspace: Workspace, command: str, config: Any) -> int:
    with workspace.transaction() as db:
        cursor = db.execute(
            "INSERT INTO runs(command, config_json, package_version, started_at, status) VALUES (?, ?, ?, ?, ?)",
            (command, to_json(config), __version__, utc_now(), RunStatus.RUNNING.value),
        )
        return int(cursor.lastrowid)


def _finish_run(workspace: Workspace, run_id: int, status: RunStatus, summary: Any = None) -> None:
    with workspace.transaction() as db:
        db.execute(
            "UPDATE runs SET finished_at=?, status=?, summary_json=? WHERE id=?",
            (utc_now(), RunStatus(status).value, to_json(summary) if summary is not None else None, run_id),
        )


def list_runs(workspace: Workspace, command: str | None = None) -> list[dict]:
    sql = "SELECT * FROM runs" + (" WHERE command=?" if command else "") + " ORDER BY id"
    return [dict(row) for row in workspace.query(sql, (command,) if command else ())]


def mark_interrupted(workspace: Workspace, command: str) -> int:
    """Runs of `command` still marked running (their process was killed); call only while holding that
    command's job lock, so no live run is among them."""
    with workspace.transaction() as db:
        cursor = db.execute("UPDATE runs SET status=? WHERE command=? AND status=?",
                            (RunStatus.INTERRUPTED.value, command, RunStatus.RUNNING.value))
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
