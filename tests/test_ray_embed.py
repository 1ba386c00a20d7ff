"""`homesound embed --workspace --ray` against a real Ray cluster on this machine (a head node and a
worker node, each its own process tree): the same workspace as one machine, byte for byte, after a
worker node is killed with -9 mid-job, and after the driver is killed and the command rerun."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import pandas as pd
import pytest

from homesound.cli import main
from homesound_testkit.ray_local_cluster import LocalCluster

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tests that use the cluster are slow: it takes ~20 s to start on 2 busy cores, and each job loads TensorFlow.

# One job through the library, so a test can set what the command line leaves to defaults (small tasks).
DRIVER = """
import json, sys
from embed.archive import ArchiveJobConfig, run_archive_job
from embed.discover import DEFAULT_EXTENSIONS
from embed.ray_cluster import ClusterConfig
from embed.vggish import EmbedderConfig
archive, workspace, checkpoint, cluster = json.loads(sys.argv[1])
config = ArchiveJobConfig(inputs=(archive,), extensions=DEFAULT_EXTENSIONS,
                          embedder=EmbedderConfig(checkpoint, jit_compile=False), cluster=ClusterConfig(**cluster))
summary = run_archive_job(workspace, config, progress=True)
print(json.dumps(summary.as_dict()))
"""


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A head node and one worker node, one CPU each; a test that kills the worker node adds a new one."""
    pytest.importorskip("ray", reason="the Ray tests need homesound[ray] (.ci/run installs it)")
    cluster = LocalCluster(str(tmp_path_factory.mktemp("ray-cluster")))
    saved = {name: os.environ.get(name) for name in LocalCluster.driver_env()}
    os.environ.update(LocalCluster.driver_env())
    try:
        cluster.start_head(cpus=1)
        cluster.worker = cluster.add_node(cpus=1)
        yield cluster
    finally:
        cluster.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def archive(tmp_path_factory, shared_data):
    """One short clip per label and format (Ogg, FLAC, float and 8 kHz WAV), a copy, and a broken file."""
    table = pd.read_csv(shared_data / "clips.csv")
    table = table[table["seconds"] < 10].sort_values("path")
    root = tmp_path_factory.mktemp("archive")
    for _, clip in table.groupby(["label", "format"]).head(1).iterrows():
        target = root / clip["label"] / os.path.basename(clip["path"])
        target.parent.mkdir(exist_ok=True)
        shutil.copy(shared_data / clip["path"], target)
    first = sorted(root.rglob("*.flac"))[0]
    shutil.copy(first, root / "copy of first.flac")  # one content under two paths: embedded once
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    return root


@pytest.fixture(scope="module")
def single_machine(archive, vggish_files, tmp_path_factory):
    """The reference: the same archive embedded without Ray."""
    workspace = tmp_path_factory.mktemp("single") / "home.db"
    assert main(embed_args(archive, workspace, vggish_files)) == 1  # the broken file
    return snapshot(workspace)


def embed_args(archive, workspace, vggish_files, *extra):
    return ["embed", str(archive), "--workspace", str(workspace), "--vggish", str(vggish_files.checkpoint),
            "--no-xla", "--no-progress", *extra]


def snapshot(workspace):
    """({path: everything stored about it but times and run ids}, {content: (frames, embedding bytes, class
    score bytes)}, {embedder: what the workspace says it is})."""
    with closing(sqlite3.connect(f"file:{workspace}?mode=ro", uri=True)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.row_factory = sqlite3.Row
        recordings = {row["path"]: dict(row) for row in db.execute(
            "SELECT path, size, mtime_ns, content_sha256, duration_seconds, sample_rate, channels, format, status,"
            " error FROM recordings")}
        embeddings = {}
        for row in db.execute("SELECT content_sha256, embedder_id, frames, embedding, class_scores FROM embeddings"):
            assert row["content_sha256"] not in embeddings  # one embedder per workspace here
            embeddings[row["content_sha256"]] = (row["frames"], row["embedding"], row["class_scores"])
        embedders = {row["id"]: (row["provenance_json"], row["frames_json"], row["class_names_json"])
                     for row in db.execute("SELECT * FROM embedders")}
    return recordings, embeddings, embedders


def embedded_count(workspace):
    try:
        with closing(sqlite3.connect(f"file:{workspace}?mode=ro", uri=True, timeout=1)) as db:
            return db.execute("SELECT COUNT(*) FROM recordings WHERE status='embedded'").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def run_statuses(workspace):
    with closing(sqlite3.connect(workspace)) as db:
        return [status for (status,) in db.execute("SELECT status FROM runs ORDER BY id")]


def start_driver(archive, workspace, vggish_files, cluster, **options):
    arguments = json.dumps([str(archive), str(workspace), str(vggish_files.checkpoint),
                            {"address": cluster.address, **options}])
    return subprocess.Popen([sys.executable, "-c", DRIVER, arguments], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **LocalCluster.driver_env()})


def wait_for_rows(process, workspace, rows, timeout=240):
    deadline = time.monotonic() + timeout
    while embedded_count(workspace) < rows:
        assert process.poll() is None, f"the job ended before {rows} rows:\n{process.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, f"no {rows} rows after {timeout} s"
        time.sleep(0.05)


def network_actor_processes():
    """Ray names a worker process after the actor it holds ('ray::NetworkActor...')."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    if b"ray::NetworkActor" in cmdline.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.mark.slow
def test_ray_results_equal_one_machine_byte_for_byte(ray_cluster, archive, vggish_files, single_machine,
                                                     tmp_path, capsys):
    workspace = tmp_path / "home.db"
    assert main(embed_args(archive, workspace, vggish_files, "--ray", ray_cluster.address)) == 1
    report = capsys.readouterr().out
    assert snapshot(workspace) == single_machine
    recordings, embeddings, _ = single_machine
    assert len(embeddings) == len(recordings) - 2  # a copy and a broken file
    assert "broken.wav" in report and "embedded" in report

    # Nothing new: nothing is read again, on the cluster or here.
    assert main(embed_args(archive, workspace, vggish_files, "--ray", ray_cluster.address)) == 1
    assert f"unchanged  {len(recordings) - 1:>6}" in capsys.readouterr().out
    assert snapshot(workspace) == single_machine
    with closing(sqlite3.connect(workspace)) as db:
        config = json.loads(db.execute("SELECT config_json FROM runs ORDER BY id LIMIT 1").fetchone()[0])
    assert config["cluster"]["address"] == ray_cluster.address  # the run says how it was made


@pytest.mark.slow
def test_worker_node_killed_mid_job_loses_nothing_and_duplicates_nothing(ray_cluster, archive, vggish_files,
                                                                           single_machine, tmp_path):
    workspace = tmp_path / "home.db"
    # Two files per task: the worker node holds decoding tasks as well as its network actor when it dies.
    process = start_driver(archive, workspace, vggish_files, ray_cluster, files_per_task=2)
    try:
        wait_for_rows(process, workspace, 1)
        ray_cluster.kill_node(ray_cluster.worker)
        out, err = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
        ray_cluster.worker = ray_cluster.add_node(cpus=1)  # for the tests after this one
    assert process.returncode == 0, err[-3000:]
    summary = json.loads(out.splitlines()[-1])
    assert "was lost" in err and "Traceback" not in err, err[-3000:]  # the kill cost something, and was survived
    assert "nodes busy" in err  # the progress bar's cluster column
    assert snapshot(workspace) == single_machine
    assert summary["embedded"] == len(single_machine[0]) - 1 and len(summary["failed"]) == 1
    assert run_statuses(workspace) == ["completed_with_failures"]


@pytest.mark.slow
def test_driver_killed_mid_job_then_rerun_equals_one_machine(ray_cluster, archive, vggish_files, single_machine,
                                                             tmp_path):
    workspace = tmp_path / "home.db"
    process = start_driver(archive, workspace, vggish_files, ray_cluster, files_per_task=2)
    wait_for_rows(process, workspace, 2)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    before = snapshot(workspace)[0]
    assert 2 <= sum(row["status"] == "embedded" for row in before.values()) < len(single_machine[0]) - 1

    rerun = start_driver(archive, workspace, vggish_files, ray_cluster, files_per_task=2)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err[-3000:]
    summary = json.loads(out.splitlines()[-1])
    assert snapshot(workspace) == single_machine
    done_before = sum(row["status"] == "embedded" for row in before.values())
    assert summary["unchanged"] == done_before  # what the killed run wrote is not embedded again
    assert run_statuses(workspace) == ["interrupted", "completed_with_failures"]
    deadline = time.monotonic() + 30
    while network_actor_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not network_actor_processes(), "a finished or killed driver left network actors behind"


@pytest.mark.slow
def test_yamnet_through_ray_equals_one_machine(ray_cluster, archive, yamnet_tflite, tmp_path):
    """Waveform chunks instead of examples, float16 frames and class scores: the embedder options reach the actors."""
    yamnet = ["--embedder", "yamnet", "--yamnet", str(yamnet_tflite), "--no-progress"]
    assert main(["embed", str(archive), "--workspace", str(tmp_path / "single.db"), *yamnet]) == 1
    assert main(["embed", str(archive), "--workspace", str(tmp_path / "ray.db"), *yamnet,
                 "--ray", ray_cluster.address]) == 1
    single = snapshot(tmp_path / "single.db")
    assert snapshot(tmp_path / "ray.db") == single
    assert all(scores is not None for _, _, scores in single[1].values())


@pytest.mark.slow
def test_without_ray_nothing_imports_ray(archive, vggish_files, tmp_path):
    """The single-machine path never imports Ray (an optional extra), even where it is installed."""
    workspace = tmp_path / "home.db"
    clip = sorted(archive.rglob("*.flac"))[0]
    script = ("import sys; from homesound.cli import main; "
              f"code = main({embed_args(clip, workspace, vggish_files)!r}); "
              "print(code, 'ray' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.stdout.split()[-2:] == ["0", "False"], result.stderr[-3000:]


@pytest.mark.parametrize("arguments, message", [
    (["--out-dir", "{workspace}", "--ray"], "add --workspace"),
    (["--workspace", "{workspace}", "--ray", "--workers", "2"], "with --ray the cluster decodes"),
])
def test_ray_option_mistakes_are_one_clear_message(arguments, message, archive, tmp_path, capsys):
    arguments = [argument.replace("{workspace}", str(tmp_path / "home.db")) for argument in arguments]
    assert main(["embed", str(archive), *arguments]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_ray_swallowing_a_path_is_explained(archive, tmp_path, capsys):
    paths = sorted(str(path) for path in archive.iterdir() if path.is_dir())[:2]
    assert main(["embed", "--ray", *paths, "--workspace", str(tmp_path / "home.db")]) == 2
    assert "put --ray after the paths" in capsys.readouterr().err
