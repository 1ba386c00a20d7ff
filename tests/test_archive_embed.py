"""`homesound embed --workspace` end to end on real clips: broken files, reruns, kill -9, a second job."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing

import numpy as np
import pandas as pd
import pytest
import soundfile

from embed.pipeline import embed_file
from embed.embedder import EmbedderConfig, load_embedder
from homesound.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def plain_embedder(vggish_files):
    """What the tests' jobs run (--no-xla: no compile time); the batch position does not change results."""
    return load_embedder(config=EmbedderConfig(str(vggish_files.checkpoint), str(vggish_files.pca), jit_compile=False))


@pytest.fixture(scope="module")
def clips(shared_data):
    table = pd.read_csv(shared_data / "clips.csv")
    table["file"] = [str(shared_data / path) for path in table["path"]]
    return table


def embed_args(inputs, workspace, vggish_files, *extra):
    return ["embed", *map(str, inputs), "--workspace", str(workspace), "--vggish", str(vggish_files.checkpoint),
            "--no-xla", "--no-progress", *extra]


def snapshot(workspace):
    """(recordings {path: (status, sha256, run_id)}, embeddings {sha256: bytes}), read-only; a workspace killed
    before its tables were created (one transaction) is empty."""
    with closing(sqlite3.connect(f"file:{workspace}?mode=ro", uri=True)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name='recordings'").fetchone():
            return {}, {}
        rows = {path: (status, sha, run) for path, status, sha, run in
                db.execute("SELECT path, status, content_sha256, run_id FROM recordings")}
        embeddings = {}
        for sha, embedder, frames, blob in db.execute(
                "SELECT content_sha256, embedder_id, frames, embedding FROM embeddings"):
            assert sha not in embeddings  # one embedder in these tests: one row per content
            assert len(blob) == frames * 128
            embeddings[sha] = blob
    return rows, embeddings


def last_run_summary(workspace):
    with closing(sqlite3.connect(workspace)) as db:
        return json.loads(db.execute("SELECT summary_json FROM runs ORDER BY id DESC LIMIT 1").fetchone()[0])


def test_mixed_archive_with_broken_files(tmp_path, clips, vggish_files, plain_embedder, capsys):
    archive = tmp_path / "archive"
    (archive / "phone").mkdir(parents=True)
    (archive / "monitor" / "dir.wav").mkdir(parents=True)
    good = {}
    for fmt, group in clips.groupby("format"):  # every shared format: Ogg, FLAC, float WAV, 8 kHz WAV
        source = group["file"].iloc[0]
        target = archive / "phone" / os.path.basename(source)
        shutil.copy(source, target)
        good[str(target)] = source
    flac = clips[clips["format"] == "FLAC/PCM_16"]["file"].iloc[1]
    wav = clips[clips["format"] == "WAV/PCM_16"]["file"].iloc[1]
    shutil.copy(flac, archive / "monitor" / "dir.wav" / "inside.flac")  # a folder named like a file
    good[str(archive / "monitor" / "dir.wav" / "inside.flac")] = flac
    shutil.copy(flac, archive / "monitor" / "really_flac.ogg")  # wrong extension, readable content
    good[str(archive / "monitor" / "really_flac.ogg")] = flac
    if shutil.which("ffmpeg"):
        m4a = archive / "phone" / "voice_memo.m4a"
        subprocess.run(["ffmpeg", "-v", "error", "-i", wav, "-c:a", "aac", str(m4a)], check=True)
        good[str(m4a)] = wav
    broken = {
        "truncated.flac": open(flac, "rb").read()[:3000],
        "empty.wav": b"",
        "text.wav": b"this is not audio at all, just text with a .wav name\n" * 20,
    }
    for name, data in broken.items():
        (archive / "monitor" / name).write_bytes(data)
    locked = archive / "monitor" / "locked.wav"
    shutil.copy(wav, locked)
    locked.chmod(0)
    (archive / "monitor" / "loop").symlink_to(archive)  # a folder link loop
    (archive / "monitor" / "self.wav").symlink_to(archive / "monitor" / "self.wav")  # a file link loop
    (archive / "phone" / ".hidden.wav").write_bytes(open(wav, "rb").read())
    (archive / "phone" / "readme.txt").write_text("notes")
    workspace = tmp_path / "home.db"

    assert main(embed_args([archive], workspace, vggish_files)) == 1
    report = capsys.readouterr().out
    rows, embeddings = snapshot(workspace)

    if os.geteuid() == 0:  # root reads anything: the permission case is covered in test_archive_parts
        good[str(locked)] = wav
    else:
        assert rows[str(locked)][0] == "failed"
    for name in ("truncated.flac", "empty.wav", "text.wav", "self.wav"):
        path = str(archive / "monitor" / name)
        assert rows[path][0] == "failed", name
        assert path in report
    assert "empty file" in report and "link loop" in report and "not readable as audio" in report
    assert set(rows) == set(good) | {str(archive / "monitor" / name)
                                     for name in ("truncated.flac", "empty.wav", "text.wav", "self.wav")} | {
        str(locked)}  # hidden, non-audio and the loop's second routes are not recordings
    for path, source in good.items():
        status, sha, _ = rows[path]
        assert status == "embedded", path
        expected = embed_file(path, plain_embedder)  # the single-file pipeline, byte for byte
        assert embeddings[sha] == expected.embedding.tobytes(), path
        assert len(expected) >= 4

    capsys.readouterr()
    assert main(["status", "--workspace", str(workspace), "--json"]) == 0
    section = json.loads(capsys.readouterr().out)["recordings"]
    assert section["by_status"] == {"embedded": len(good), "failed": len(rows) - len(good)}
    assert section["embedded_hours"] == pytest.approx(  # each content once: copies are not more audio
        sum({rows[path][1]: soundfile.info(source).duration for path, source in good.items()}.values()) / 3600,
        rel=0.01)
    assert main(["status", "--workspace", str(workspace)]) == 0
    assert "[recordings]" in capsys.readouterr().out

    out = tmp_path / "embeddings.parquet"
    assert main(["export", "--workspace", str(workspace), "--out", str(out)]) == 0
    table = pd.read_parquet(out)
    assert len(table) == sum(len(embeddings[sha]) // 128 for status, sha, _ in rows.values() if status == "embedded")
    first = table[table["path"] == next(iter(good))]
    assert np.stack(first["embedding"]).dtype == np.uint8
    np.testing.assert_allclose(first["start_seconds"], np.arange(len(first)) * 0.96)
    assert np.stack(first["embedding"]).tobytes() == embeddings[rows[next(iter(good))][1]]

    # Nothing changed: nothing is read again, nothing written twice; the old failures still count.
    assert main(embed_args([archive], workspace, vggish_files)) == 1
    summary = last_run_summary(workspace)
    assert summary["unchanged"] == len(good) and summary["embedded"] == 0 and summary["linked"] == 0
    assert snapshot(workspace)[1] == embeddings


def test_changed_file_reembedded_copy_embedded_once_touched_file_linked(tmp_path, clips, vggish_files):
    archive = tmp_path / "archive"
    (archive / "backup").mkdir(parents=True)
    first, second, third = clips[clips["format"] == "OGG/VORBIS"]["file"].iloc[:3]
    shutil.copy(first, archive / "a.ogg")
    shutil.copy(first, archive / "backup" / "a copy.ogg")
    shutil.copy(second, archive / "b.ogg")
    workspace = tmp_path / "home.db"
    assert main(embed_args([archive], workspace, vggish_files)) == 0
    summary = last_run_summary(workspace)
    assert summary["embedded"] == 3 and summary["embedded_contents"] == 2
    rows, embeddings = snapshot(workspace)
    assert len(embeddings) == 2 and rows[str(archive / "a.ogg")][1] == rows[str(archive / "backup" / "a copy.ogg")][1]

    shutil.copy(third, archive / "b.ogg")  # new content under an old name
    os.utime(archive / "a.ogg", ns=(time.time_ns(), time.time_ns() + 10**9))  # same content, new time
    assert main(embed_args([archive], workspace, vggish_files)) == 0
    summary = last_run_summary(workspace)
    assert (summary["embedded"], summary["linked"], summary["unchanged"]) == (1, 1, 1)
    new_rows, new_embeddings = snapshot(workspace)
    assert new_rows[str(archive / "b.ogg")][1] != rows[str(archive / "b.ogg")][1]
    assert len(new_embeddings) == 3 and all(new_embeddings[sha] == blob for sha, blob in embeddings.items())
    assert new_rows[str(archive / "backup" / "a copy.ogg")] == rows[str(archive / "backup" / "a copy.ogg")]


def children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def count_rows(workspace):
    if not os.path.exists(workspace):
        return 0
    try:
        with closing(sqlite3.connect(f"file:{workspace}?mode=ro", uri=True, timeout=1)) as db:
            return db.execute("SELECT COUNT(*) FROM recordings").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_kill_9_at_random_points_then_rerun_equals_one_uninterrupted_run(tmp_path, clips, vggish_files):
    archive = tmp_path / "archive"
    archive.mkdir()
    picked = pd.concat([group.head(4) for _, group in clips.groupby("format")])
    for index, source in enumerate(picked["file"]):
        shutil.copy(source, archive / f"{index:02d}_{os.path.basename(source)}")
    shutil.copy(picked["file"].iloc[0], archive / "copy_of_first.ogg")
    seed = int(os.environ.get("HOMESOUND_KILL_SEED", time.time_ns() % 2**32))
    print(f"kill points drawn with HOMESOUND_KILL_SEED={seed} (set it to replay this run)")
    rng = np.random.default_rng(seed)
    soundfile.write(archive / "long.wav", rng.uniform(-0.3, 0.3, (44100 * 40, 2)), 44100)
    total = len(os.listdir(archive))

    # Small chunks keep the decoder ahead of the network, blocked on sending: it must still die with its parent.
    small_chunks = ("--batch-size", "8")
    reference = tmp_path / "reference.db"
    assert main(embed_args([archive], reference, vggish_files, *small_chunks)) == 0
    reference_rows, reference_embeddings = snapshot(reference)
    assert len(reference_rows) == total

    workspace = tmp_path / "killed.db"
    command = [sys.executable, "-m", "homesound.cli", *embed_args([archive], workspace, vggish_files, *small_chunks)]
    kill_points = [("seconds", rng.uniform(0.2, 4.0)), ("rows", int(rng.integers(1, total // 2))),
                   ("rows", int(rng.integers(total // 2, total - 1)))]
    killed = refused = 0
    for kind, point in kill_points:
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + (point if kind == "seconds" else 120)
        while time.monotonic() < deadline and process.poll() is None:
            if kind == "rows" and count_rows(workspace) >= point:
                break
            time.sleep(0.02)
        if process.poll() is not None:
            break  # it finished first: nothing left to interrupt
        if kind == "rows":
            time.sleep(rng.uniform(0, 0.3))  # anywhere inside the next recording's work or write
            if killed == 1:  # a second job now: it must refuse, not corrupt
                second = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
                assert second.returncode == 2 and "in use by `homesound embed`" in second.stderr, second.stderr
                assert "Traceback" not in second.stderr
                refused += 1
        workers = children_of(process.pid)
        process.send_signal(signal.SIGKILL)
        process.communicate()
        killed += 1
        rows, embeddings = snapshot(workspace) if os.path.exists(workspace) else ({}, {})
        for path, (status, sha, _) in rows.items():  # whatever landed is whole and right
            assert (status, sha) == reference_rows[path][:2]
            if status == "embedded":
                assert embeddings[sha] == reference_embeddings[sha]
        assert all(embeddings[sha] == reference_embeddings[sha] for sha in embeddings)
        give_up = time.monotonic() + 15
        while any(alive(pid) for pid in workers) and time.monotonic() < give_up:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in workers), "decoder processes outlived their killed parent"
    assert killed >= 2 and refused == 1

    before = snapshot(workspace)[0]
    assert main(embed_args([archive], workspace, vggish_files, *small_chunks)) == 0
    rows, embeddings = snapshot(workspace)
    assert embeddings == reference_embeddings
    assert {path: row[:2] for path, row in rows.items()} == {path: row[:2] for path, row in reference_rows.items()}
    for path, row in before.items():  # done before the kill: not done again
        if row[0] == "embedded":
            assert rows[path][2] == row[2]
    with closing(sqlite3.connect(workspace)) as db:
        statuses = [status for (status,) in db.execute("SELECT status FROM runs ORDER BY id")]
    assert statuses[-1] == "completed" and "running" not in statuses


def test_savedmodel_source_keep_raw_and_export_raw(tmp_path, clips, vggish_files, plain_embedder, capsys):
    """Hub/SavedModel sources take waveform chunks one by one; results agree with the checkpoint's."""
    archive = tmp_path / "archive"
    archive.mkdir()
    sources = list(clips.groupby("format").head(1)["file"].iloc[:2])
    for source in sources:
        shutil.copy(source, archive)
    workspace = tmp_path / "home.db"
    args = ["embed", str(archive), "--workspace", str(workspace), "--vggish", str(vggish_files.savedmodel),
            "--pca", str(vggish_files.pca), "--keep-raw", "--no-progress"]
    assert main(args) == 0
    out = tmp_path / "raw.parquet"
    assert main(["export", "--workspace", str(workspace), "--out", str(out), "--raw"]) == 0
    table = pd.read_parquet(out)
    assert table["embedder_id"].iloc[0].startswith("vggish-savedmodel-")
    for source in sources:
        rows = table[table["path"] == str(archive / os.path.basename(source))]
        expected = embed_file(source, plain_embedder)
        np.testing.assert_allclose(np.stack(rows["raw_embedding"]), expected.raw_embedding, rtol=1e-4, atol=1e-3)
        assert np.abs(np.stack(rows["embedding"]).astype(int) - expected.embedding).max() <= 1
    capsys.readouterr()
    no_raw = tmp_path / "no_raw.db"
    assert main(embed_args([archive], no_raw, vggish_files)) == 0
    assert main(["export", "--workspace", str(no_raw), "--out", str(out), "--raw"]) == 2
    assert "--keep-raw" in capsys.readouterr().err and not list(tmp_path.glob("raw.parquet.part*"))


def test_a_crashed_decoder_costs_its_files_not_the_job(tmp_path, clips, vggish_files, capsys):
    """A codec crash kills a decoder process: its files fail with a reason, the job goes on and ends."""
    archive = tmp_path / "archive"
    archive.mkdir()
    for source in clips[clips["format"] == "OGG/VORBIS"]["file"].iloc[:2]:
        shutil.copy(source, archive / f"a_{os.path.basename(source)}")
    soundfile.write(archive / "long.wav", np.random.default_rng(0).uniform(-0.3, 0.3, 16000 * 50), 16000)
    workspace = tmp_path / "home.db"
    # Chunks of 4 examples: the long file fills the decoder's queue, so the decoder is mid-file when killed.
    args = embed_args([archive], workspace, vggish_files, "--batch-size", "4", "--workers", "1")
    outcome = []
    job = threading.Thread(target=lambda: outcome.append(main(args)))
    job.start()
    deadline = time.monotonic() + 120
    while count_rows(workspace) < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    decoders = [pid for pid in children_of(os.getpid()) if "spawn_main" in open(f"/proc/{pid}/cmdline").read()]
    assert len(decoders) == 1
    os.kill(decoders[0], signal.SIGKILL)
    job.join(timeout=120)
    assert outcome == [1]
    assert "long.wav: the decoder process crashed" in capsys.readouterr().out
    assert snapshot(workspace)[0][str(archive / "long.wav")][0] == "failed"

    assert main(embed_args([archive], workspace, vggish_files, "--retry-failed")) == 0  # a new decoder did the rest
    rows, embeddings = snapshot(workspace)
    assert all(status == "embedded" for status, _, _ in rows.values())
    assert len(embeddings[rows[str(archive / "long.wav")][1]]) == 52 * 128  # (50 s * 16000 - 240) // 15360


@pytest.mark.slow
def test_sigterm_stops_the_job_and_its_run_says_interrupted_with_what_it_did(tmp_path, clips, vggish_files):
    archive = tmp_path / "archive"
    archive.mkdir()
    for index, source in enumerate(clips.groupby("format").head(2)["file"]):
        shutil.copy(source, archive / f"{index:02d}_{os.path.basename(source)}")
    noise = np.random.default_rng(0).uniform(-0.3, 0.3, (16000 * 300, 1))
    soundfile.write(archive / "long.wav", noise, 16000)  # still being embedded when the signal comes
    workspace = tmp_path / "home.db"
    command = [sys.executable, "-m", "homesound.cli", *embed_args([archive], workspace, vggish_files)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while count_rows(workspace) < 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()[1][-3000:]
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err[-3000:]
    with closing(sqlite3.connect(workspace)) as db:
        [(status, summary)] = db.execute("SELECT status, summary_json FROM runs").fetchall()
    assert status == "interrupted" and json.loads(summary)["embedded"] >= 1
