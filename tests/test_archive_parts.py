"""The parts of `homesound embed --workspace` that need no network: walking, planning, batching, locking."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from embed.archive import ExampleBatcher, content_sha256, plan_work
from embed.discover import DEFAULT_EXTENSIONS, FoundFile, discover, parse_extensions
from homesound.errors import HomesoundError
from homesound.workspace.lock import JobLock, WorkspaceLockedError
from homesound.workspace.recordings import FileState


def make_tree(root):
    """An archive folder with everything a walk must survive."""
    (root / "phone" / "2019").mkdir(parents=True)
    (root / "phone" / "2019" / "a.WAV").write_bytes(b"a")  # upper-case extension
    (root / "phone" / "b.flac").write_bytes(b"b")
    (root / "phone" / "notes.txt").write_text("not audio")
    (root / "phone" / "photo.jpg").write_bytes(b"jpg")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "secret.wav").write_bytes(b"h")
    (root / ".trashed.ogg").write_bytes(b"t")
    (root / "dir.wav").mkdir()  # a folder named like a file is walked like any folder
    (root / "dir.wav" / "inner.ogg").write_bytes(b"i")
    (root / "phone" / "2019" / "loop").symlink_to(root)  # a folder link back up: a loop
    (root / "self.wav").symlink_to(root / "self.wav")  # a file link to itself
    (root / "dangling.mp3").symlink_to(root / "gone.mp3")
    os.mkfifo(root / "pipe.wav")  # reading it would block forever
    (root / "monitor").symlink_to(root / "phone")  # a second route to a folder already walked


def test_walk_finds_audio_and_reports_what_cannot_be_a_recording(tmp_path):
    make_tree(tmp_path)
    found = discover([tmp_path])
    paths = sorted(os.path.relpath(f.path, tmp_path) for f in found.files)
    assert paths == ["dir.wav/inner.ogg", "phone/2019/a.WAV", "phone/b.flac"]  # monitor/ is phone/ again
    problems = {os.path.relpath(p.path, tmp_path): p for p in found.problems}
    assert "link loop" in problems["self.wav"].reason
    assert "broken symbolic link" in problems["dangling.mp3"].reason
    assert "named pipe" in problems["pipe.wav"].reason
    assert all(problem.is_file for problem in problems.values())
    assert found.skipped_by_extension == 2  # notes.txt, photo.jpg
    entry = next(f for f in found.files if f.path.endswith("b.flac"))
    assert entry.size == 1 and entry.mtime_ns == os.stat(entry.path).st_mtime_ns


def test_named_files_are_taken_whatever_their_extension_and_once(tmp_path):
    (tmp_path / "recording.bin").write_bytes(b"x")
    (tmp_path / "a.wav").write_bytes(b"y")
    found = discover([tmp_path / "recording.bin", tmp_path, tmp_path / "a.wav"])
    assert [os.path.basename(f.path) for f in found.files] == ["recording.bin", "a.wav"]


def test_extension_option():
    assert parse_extensions(None) == DEFAULT_EXTENSIONS
    assert {"wav", "flac", "ogg", "mp3", "m4a", "aac", "3gp", "caf", "opus", "aiff"} <= set(DEFAULT_EXTENSIONS)
    assert parse_extensions("WAV, .flac") == ("wav", "flac")
    assert parse_extensions("+mp4,mkv")[-2:] == ("mp4", "mkv") and "ogg" in parse_extensions("+mp4")


def test_unreadable_file_and_folder_give_reasons():
    """Permissions do not stop root, so as root the check runs in a child that became `nobody`."""
    with tempfile.TemporaryDirectory() as scratch:  # pytest's tmp_path is closed to other users
        os.chmod(scratch, 0o755)
        check_unreadable(Path(scratch))


def check_unreadable(tmp_path):
    secret = tmp_path / "locked.wav"
    secret.write_bytes(b"audio")
    secret.chmod(0)
    folder = tmp_path / "private"
    folder.mkdir()
    (folder / "x.wav").write_bytes(b"x")
    folder.chmod(0)

    def check() -> str:
        digest, reason = content_sha256(str(secret))
        found = discover([tmp_path])
        return f"{digest}|{reason}|{[(p.path, p.reason, p.is_file) for p in found.problems]}"

    if os.geteuid() != 0:
        result = check()
    else:
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:  # no exec: the modules are loaded already, nothing under /root is needed
            try:
                os.setgid(65534)
                os.setuid(65534)
                os.write(write_end, check().encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            result = pipe.read()
        os.waitpid(child, 0)
    folder.chmod(0o755)
    digest, reason, problems = result.split("|", 2)
    assert digest == "None" and "permission denied" in reason
    assert str(folder) in problems and "cannot list this folder" in problems and "False" in problems


def test_plan_skips_unchanged_without_reading():
    files = [FoundFile("/a/same.wav", 10, 100), FoundFile("/a/touched.wav", 10, 200), FoundFile("/a/new.wav", 5, 1),
             FoundFile("/a/other_embedder.wav", 7, 7), FoundFile("/a/broken.wav", 3, 3)]
    known = {
        "/a/same.wav": FileState(10, 100, "embedded", "s1", None, True),
        "/a/touched.wav": FileState(10, 150, "embedded", "s2", None, True),
        "/a/other_embedder.wav": FileState(7, 7, "embedded", "s3", None, False),
        "/a/broken.wav": FileState(3, 3, "failed", "s4", "empty file", False),
    }
    plan = plan_work(files, known, retry_failed=False)
    assert [f.path for f in plan.todo] == ["/a/touched.wav", "/a/new.wav", "/a/other_embedder.wav"]
    assert plan.unchanged == 1 and plan.failed_before == [("/a/broken.wav", "empty file")]
    assert "/a/broken.wav" in [f.path for f in plan_work(files, known, retry_failed=True).todo]


def test_batches_span_recordings_in_order():
    batcher = ExampleBatcher()
    examples = {owner: np.full((n, 96, 64), owner, np.float32) for owner, n in ((1, 5), (2, 70), (3, 3))}
    for owner, block in examples.items():
        batcher.push(owner, block)
    batcher.push(4, np.zeros((0, 96, 64), np.float32))
    first, owners = batcher.pop(64)
    assert len(first) == 64 and owners == [(1, 5), (2, 59)]
    batcher.discard(3)
    second, owners = batcher.pop(64)
    assert owners == [(2, 11)] and batcher.pending == 0
    assert np.array_equal(np.concatenate([first, second])[:, 0, 0], np.repeat([1.0, 2.0], [5, 70]))


def test_job_lock_refuses_a_second_job_and_dies_with_its_holder(tmp_path):
    with pytest.raises(HomesoundError, match="existing folder"):
        JobLock(tmp_path / "missing" / "home.db", "embed").__enter__()
    workspace = tmp_path / "home.db"
    with JobLock(workspace, "embed"):
        with pytest.raises(WorkspaceLockedError, match=rf"in use by `homesound embed` \(pid {os.getpid()}"):
            with JobLock(workspace, "embed"):
                pass
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from homesound.workspace.lock import JobLock\n"
         f"with JobLock({str(workspace)!r}, 'embed'):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(WorkspaceLockedError, match=f"pid {holder.pid}"):
        JobLock(workspace, "embed").__enter__()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    time.sleep(0.05)
    with JobLock(workspace, "embed"):  # a killed holder leaves no stale lock
        pass
