"""Issue 11, data safety: the job lock holds the file whatever its name, reading never writes, read-only
workspaces are readable, a full disk is one clear line; all through the real `homesound` command."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pandas as pd
import pytest

from homesound.cli import main
from homesound.workspace import Workspace
from homesound_testkit.hardening import REPO, assert_one_clear_error, cli_command, fill_disk, mounted, run_cli


@pytest.fixture(scope="module")
def clips(shared_data) -> pd.DataFrame:
    table = pd.read_csv(shared_data / "clips.csv")
    table["file"] = [str(shared_data / path) for path in table["path"]]
    return table


def archive_of(folder: Path, clips: pd.DataFrame, label: str, count: int) -> Path:
    """count real clips of one label, several formats, copied into folder."""
    folder.mkdir(parents=True)
    picked = clips[clips["label"] == label].groupby("format").head(count // 2 + 1).head(count)
    for index, source in enumerate(picked["file"]):
        shutil.copy(source, folder / f"{index:02d}_{os.path.basename(source)}")
    return folder


def embed_command(inputs, workspace, vggish_files, *extra) -> list[str]:
    return ["embed", *map(str, inputs), "--workspace", str(workspace), "--vggish", str(vggish_files.checkpoint),
            "--no-xla", "--no-progress", *extra]


def holder_written(workspace: Path) -> bool:
    try:
        with closing(sqlite3.connect(f"file:{workspace}?mode=ro", uri=True)) as db:
            return db.execute("SELECT COUNT(*) FROM job_holder").fetchone()[0] == 1
    except sqlite3.Error:
        return False


def recordings_in(workspace: Path) -> dict[str, str]:
    with closing(sqlite3.connect(f"file:{workspace}?mode=ro", uri=True)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return dict(db.execute("SELECT path, status FROM recordings"))


def start_job(workspace: Path, arguments: list[str]) -> subprocess.Popen:
    process = subprocess.Popen(cli_command(*arguments), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 120
    while not holder_written(workspace):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return process


@pytest.mark.slow
def test_a_symlink_or_hard_link_to_a_workspace_in_use_is_refused_and_nothing_is_lost(tmp_path, clips, vggish_files):
    first = archive_of(tmp_path / "first", clips, "crying", 12)
    second = archive_of(tmp_path / "second", clips, "laughter", 6)
    workspace = tmp_path / "C.db"
    (tmp_path / "Clink.db").symlink_to(workspace)

    job = start_job(workspace, embed_command([first], workspace, vggish_files, "--batch-size", "8"))
    os.link(workspace, tmp_path / "Ghard.db")
    for alias in ("Clink.db", "Ghard.db"):
        refused = run_cli(*embed_command([second], tmp_path / alias, vggish_files))
        assert_one_clear_error(refused, f"workspace {tmp_path / alias} is in use by `homesound embed` (pid {job.pid}")
    assert job.poll() is None, "the first job ended before the aliases were tried: the test proved nothing"
    out, err = job.communicate(timeout=300)
    assert job.returncode == 0, err

    done = recordings_in(workspace)
    assert len(done) == len(os.listdir(first)) and set(done.values()) == {"embedded"}
    # The job through the hard link, now alone, adds its recordings and keeps every earlier one.
    assert run_cli(*embed_command([second], tmp_path / "Ghard.db", vggish_files)).returncode == 0
    after = recordings_in(workspace)
    assert {path: after[path] for path in done} == done
    assert len(after) == len(done) + len(os.listdir(second))
    assert not list(tmp_path.glob("*.lock")), "no lock file is left beside the workspace"


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_mark_the_run_interrupted_like_ctrl_c(tmp_path, clips, vggish_files, stop):
    archive = archive_of(tmp_path / "archive", clips, "noise", 30)
    workspace = tmp_path / "home.db"
    job = start_job(workspace, embed_command([archive], workspace, vggish_files, "--batch-size", "4"))
    deadline = time.monotonic() + 120
    while not recordings_in(workspace) and time.monotonic() < deadline:
        time.sleep(0.05)
    job.send_signal(stop)
    out, err = job.communicate(timeout=120)
    assert "Traceback" not in err, err
    assert job.returncode == 128 + stop and f"stopped by {signal.Signals(stop).name}" in err
    with closing(sqlite3.connect(workspace)) as db:
        statuses = [status for (status,) in db.execute("SELECT status FROM runs WHERE command='embed'")]
    assert statuses == ["interrupted"]


def test_reading_commands_refuse_another_programs_database_untouched(tmp_path, capsys):
    other = tmp_path / "other.sqlite"
    with closing(sqlite3.connect(other)) as db:
        db.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
        db.execute("INSERT INTO contacts VALUES ('ann', '123')")
        db.commit()
    before = other.read_bytes()
    for command in (["status", "--workspace", str(other)],
                    ["export", "--workspace", str(other), "--out", str(tmp_path / "x.parquet")],
                    ["train", "--workspace", str(other), "--out", str(tmp_path / "m.pt")]):
        assert main(command) == 2
        error = capsys.readouterr().err
        assert "is not a homesound workspace: another program's SQLite database (tables: contacts)" in error
    assert other.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["other.sqlite"]  # no journal, no WAL, no export


def test_only_commands_that_produce_data_create_a_workspace(tmp_path, capsys):
    for command in (["status", "--workspace", "typo.db"], ["train", "--workspace", "typo.db", "--out", "m.pt"],
                    ["export", "--workspace", "typo.db", "--out", "x.parquet"]):
        assert main([part.replace("typo.db", str(tmp_path / "typo.db")) for part in command]) == 2
        assert "no workspace at" in capsys.readouterr().err
    assert not (tmp_path / "typo.db").exists()


def make_workspace(path: Path) -> None:
    from homesound.workspace import recordings
    from homesound.workspace.recordings import FileIdentity

    with Workspace(path) as workspace:
        recordings.save_recordings(workspace, [FileIdentity("/audio/a.wav", 10, 1)], content_sha256=None,
                                   status="failed", error="planted", run_id=None)


def test_a_workspace_on_a_read_only_filesystem_is_read_and_writing_says_why(tmp_path, capsys, vggish_files):
    original = tmp_path / "original"
    original.mkdir()
    make_workspace(original / "home.db")
    assert sorted(os.listdir(original)) == ["home.db"]  # closed cleanly: no WAL beside it
    with mounted(tmp_path / "ro", read_only_copy_of=original) as folder:
        workspace = folder / "home.db"
        assert main(["status", "--workspace", str(workspace), "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["recordings"]["failures"] == [{"path": "/audio/a.wav", "error": "planted"}]
        assert main(["export", "--workspace", str(workspace), "--out", str(tmp_path / "e.parquet")]) == 0
        assert "0 rows" in capsys.readouterr().out
        assert main(["embed", str(tmp_path), "--workspace", str(workspace), "--vggish",
                     str(vggish_files.checkpoint)]) == 2
        error = capsys.readouterr().err
        assert "read-only" in error and str(workspace) in error and "not a homesound workspace" not in error


def test_a_workspace_file_with_mode_444_is_read_and_writing_says_why(tmp_path, vggish_files):
    workspace = tmp_path / "home.db"
    make_workspace(workspace)
    workspace.chmod(0o444)
    status = run_cli("status", "--workspace", workspace, ordinary_user=True)
    assert status.returncode == 0 and "planted" in status.stdout, status.stderr
    refused = run_cli(*embed_command([tmp_path], workspace, vggish_files), ordinary_user=True)
    assert_one_clear_error(refused, f"workspace {workspace} is read-only (file permissions)")


def test_a_full_disk_is_one_clear_line_at_the_lock_and_during_embedding(tmp_path, clips, vggish_files):
    archive = archive_of(tmp_path / "archive", clips, "crying", 8)
    with mounted(tmp_path / "disk", size_kb=1024) as disk:
        fill_disk(disk)
        at_the_lock = run_cli(*embed_command([archive], disk / "home.db", vggish_files))
        assert_one_clear_error(at_the_lock, "disk", "full")

        (disk / "filler").unlink()
        make_workspace(disk / "home.db")
        fill_disk(disk, leave_bytes=48 * 1024)
        during = run_cli(*embed_command([archive], disk / "home.db", vggish_files, "--batch-size", "4"))
        assert_one_clear_error(during, f"the disk holding workspace {disk / 'home.db'} is full")
        (disk / "filler").unlink()
        kept = recordings_in(disk / "home.db")  # whole, and what was committed is there
        assert kept.get("/audio/a.wav") == "failed"


def test_status_gives_one_hour_total(tmp_path, clips, vggish_files, capsys):
    archive = archive_of(tmp_path / "archive", clips, "laughter", 3)
    first = next(archive.iterdir())
    shutil.copy(first, archive / "copy_of_first.flac")  # a copy is not more audio
    workspace = tmp_path / "home.db"
    assert main(embed_command([archive], workspace, vggish_files)) == 0
    capsys.readouterr()
    assert main(["status", "--workspace", str(workspace), "--json"]) == 0
    section = json.loads(capsys.readouterr().out)["recordings"]
    (embedder,) = section["embedders"]
    assert embedder["hours"] == pytest.approx(section["embedded_hours"])
    import soundfile

    distinct = [path for path in archive.iterdir() if path.name != "copy_of_first.flac"]
    assert section["embedded_hours"] == pytest.approx(sum(soundfile.info(str(p)).duration for p in distinct) / 3600)
    assert not list(tmp_path.glob("*.lock"))


def test_reading_commands_read_an_older_workspace_without_upgrading_it(tmp_path, capsys):
    workspace = tmp_path / "home.db"
    make_workspace(workspace)
    with closing(sqlite3.connect(workspace)) as db:  # as if a newer homesound had not yet migrated recordings
        db.execute("UPDATE schema_versions SET version = version - 1 WHERE component = 'recordings'")
        db.commit()
    before = workspace.read_bytes()
    assert main(["status", "--workspace", str(workspace), "--json"]) == 0
    assert "not yet upgraded" in json.loads(capsys.readouterr().out)["recordings"]["note"]
    assert main(["export", "--workspace", str(workspace), "--out", str(tmp_path / "x.parquet")]) == 2
    assert "written by an older homesound" in capsys.readouterr().err
    assert workspace.read_bytes() == before and not (tmp_path / "x.parquet").exists()


def test_recorded_runs_end_in_one_of_the_fixed_statuses(tmp_path):
    """A job's run is completed (or what the job says), failed with its error, or interrupted; never left running."""
    from homesound.workspace import Workspace
    from homesound.workspace.runs import RunStatus, list_runs, recorded

    with Workspace(tmp_path / "home.db") as workspace:
        with recorded(workspace, "job", {"n": 1}) as run:
            run.summary = {"done": 1}
        with recorded(workspace, "job", {"n": 2}) as run:
            run.status = RunStatus.COMPLETED_WITH_FAILURES
        with pytest.raises(ValueError), recorded(workspace, "job", {"n": 3}) as run:
            progress = {"reached": 7}
            run.summary = lambda: progress  # read when the run ends, however it ends
            raise ValueError("bad input")
        with pytest.raises(KeyboardInterrupt), recorded(workspace, "job", {"n": 4}):
            raise KeyboardInterrupt
        rows = list_runs(workspace, "job")
    assert [row["status"] for row in rows] == ["completed", "completed_with_failures", "failed", "interrupted"]
    assert json.loads(rows[0]["config_json"]) == {"n": 1} and json.loads(rows[0]["summary_json"]) == {"done": 1}
    assert json.loads(rows[2]["summary_json"]) == {"reached": 7, "error": "bad input"}
    assert all(row["finished_at"] for row in rows)


def test_older_status_words_migrate_to_the_fixed_ones(tmp_path):
    import sqlite3

    from homesound.workspace import Workspace

    path = tmp_path / "home.db"
    with Workspace(path) as workspace, workspace.transaction() as db:
        db.execute("UPDATE schema_versions SET version=1 WHERE component='runs'")
        for status in ("done", "finished", "failed"):
            db.execute("INSERT INTO runs(command, config_json, package_version, started_at, status) "
                       "VALUES ('old', '{}', '0', 'then', ?)", (status,))
    with Workspace(path):
        pass
    with sqlite3.connect(path) as db:
        assert [s for (s,) in db.execute("SELECT status FROM runs ORDER BY id")] == ["completed", "completed", "failed"]
