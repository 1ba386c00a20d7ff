"""`homesound embed --workspace` on one machine vs on a Ray cluster (`--ray`), and the driver's limits.

Builds an archive of shared real clips plus long synthetic recordings (the same as
benchmarks/archive_embed.py: homesound_testkit/recordings.py), embeds it with the same command on one
machine and on real local Ray clusters started here, and prints, for each, x real time and the ratio to the single-machine path:
  - single machine: one decoder process, the network in the main process (the default);
  - Ray, one node, --num-cpus 1: one decoding worker process and one network actor;
  - Ray, one node, --num-cpus 2 and --ray-actors-per-node 2: two decoding workers, two network actors;
  - Ray, two nodes on this machine (1 CPU each): one decoding worker and one network actor per node.
"End to end" counts from the command's start to its last write (Python, TensorFlow and model load,
connecting to Ray); "steady" counts from the first recording written to the last, the pace a long
archive runs at. Every node here shares the same 2 cores, so more worker processes cannot make the
work faster: the rows measure what Ray costs, not what more machines give.

Then the driver's own limits, which no number of nodes raises: SQLite writes per second (one
transaction per recording, as the job does) and sha256 hashing in MB/s, turned into hours of audio
per minute the driver can keep up with.

Weights are random (offline); speed does not depend on their values.

    python benchmarks/ray_embed.py [--clips 300] [--long-minutes 10,10] [--skip-two-nodes]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from homesound_testkit.recordings import build_archive  # noqa: E402  (the same archive as archive_embed.py)
from homesound_testkit.ray_local_cluster import LocalCluster  # noqa: E402

WRITES = 2000  # recordings written in the driver's write test (a tenth of it for hour-long ones)


def written(workspace: Path) -> tuple[int, float]:
    """(recordings, seconds of audio) embedded so far."""
    try:
        with closing(sqlite3.connect(f"file:{workspace}?mode=ro", uri=True, timeout=1)) as db:
            return db.execute("SELECT COUNT(*), COALESCE(SUM(duration_seconds), 0) FROM recordings"
                              " WHERE status='embedded'").fetchone()
    except sqlite3.OperationalError:
        return 0, 0.0


def run_job(archive: Path, workspace: Path, weights: Path, files: int, *extra: str) -> dict:
    """The command in a fresh process, its workspace watched: start, first write, last write."""
    command = [sys.executable, "-m", "homesound.cli", "embed", str(archive), "--workspace", str(workspace),
               "--vggish", str(weights / "vggish_model.ckpt"), "--no-progress", *extra]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **LocalCluster.driver_env()})
    first = first_seconds = None
    rows, seconds = 0, 0.0
    while rows < files and process.poll() is None:
        time.sleep(0.1)
        rows, seconds = written(workspace)
        if rows and first is None:
            first, first_seconds = time.perf_counter(), seconds
    last = time.perf_counter()
    _, err = process.communicate()
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{err[-3000:]}")
    rows, seconds = written(workspace)
    return {"seconds": seconds, "end_to_end": seconds / (last - started),
            "steady": (seconds - first_seconds) / (last - first) if last > first else float("nan")}


def embeddings(workspace: Path) -> dict[str, bytes]:
    with closing(sqlite3.connect(f"file:{workspace}?mode=ro", uri=True)) as db:
        return dict(db.execute("SELECT content_sha256, embedding FROM embeddings"))


def ray_job(archive: Path, scratch: Path, weights: Path, files: int, name: str, nodes: list[int],
            actors_per_node: int) -> dict:
    cluster = LocalCluster(str(scratch / f"cluster-{name}"))
    try:
        cluster.start_head(cpus=nodes[0])
        for cpus in nodes[1:]:
            cluster.add_node(cpus=cpus)
        result = run_job(archive, scratch / f"{name}.db", weights, files, "--ray", cluster.address,
                         "--ray-actors-per-node", str(actors_per_node))
        single, here = embeddings(scratch / "single.db"), embeddings(scratch / f"{name}.db")
        result["differing"] = sum(here.get(sha) != blob for sha, blob in single.items())
        return result
    finally:
        cluster.stop()


def driver_writes_per_second(scratch: Path, frames: int, writes: int) -> float:
    """Recordings of `frames` embeddings written one transaction each, as the driver writes them."""
    import numpy as np

    from homesound.workspace import Workspace, recordings
    from homesound.workspace.recordings import AudioFacts, FileIdentity, StoredEmbedding

    rng = np.random.default_rng(0)
    with Workspace(scratch / f"writes-{frames}.db") as workspace:
        recordings.register_embedder(workspace, "benchmark", {"model": "vggish"})
        started = time.perf_counter()
        for index in range(writes):
            sha256 = f"{index:064x}"
            embedding = StoredEmbedding(sha256, "benchmark", rng.integers(0, 256, (frames, 128), np.uint8), None, 0.96)
            recordings.save_recordings(workspace, [FileIdentity(f"/archive/{index}.flac", 100_000, index)],
                                       content_sha256=sha256, status="embedded",
                                       audio=AudioFacts(frames * 0.96, 44100, 1, "FLAC"), embedding=embedding)
        return writes / (time.perf_counter() - started)


def hash_mb_per_second(archive: Path) -> float:
    from embed.archive import content_sha256

    files = sorted(path for path in archive.rglob("*") if path.is_file())
    size = sum(path.stat().st_size for path in files)
    started = time.perf_counter()
    for path in files:
        content_sha256(str(path))
    return size / 1e6 / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=300, help="how many shared clips (default 300, ~25 min)")
    parser.add_argument("--long-minutes", default="10,10", help="lengths of the long synthetic recordings")
    parser.add_argument("--skip-two-nodes", action="store_true", help="leave out the two-node cluster")
    args = parser.parse_args()
    from embed.random_weights import write_random_vggish

    print(f"{os.cpu_count()} cores; load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
          "(other jobs on this machine slow every figure)")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        weights = scratch / "weights"
        write_random_vggish(weights)
        archive = scratch / "archive"
        built = build_archive(archive, args.clips, args.long_minutes)
        print(built.description, end="\n\n")

        print("| run | end to end, x real time | ratio | steady, x real time | ratio | contents not byte-equal |")
        print("|---|---|---|---|---|---|", flush=True)
        single = None
        runs = [("single machine (1 decoder process)", None, None),
                ("Ray, 1 node: 1 decoding worker, 1 network actor", [1], 1),
                ("Ray, 1 node: 2 decoding workers, 2 network actors", [2], 2)]
        if not args.skip_two_nodes:
            runs.append(("Ray, 2 nodes: 1 decoding worker + 1 network actor each", [1, 1], 1))
        for index, (name, nodes, actors_per_node) in enumerate(runs):
            if nodes is None:
                result = run_job(archive, scratch / "single.db", weights, built.files)
            else:
                result = ray_job(archive, scratch, weights, built.files, f"ray{index}", nodes, actors_per_node)
            single = single or result
            print(f"| {name} | {result['end_to_end']:.1f} | {result['end_to_end'] / single['end_to_end']:.2f} "
                  f"| {result['steady']:.1f} | {result['steady'] / single['steady']:.2f} "
                  f"| {result.get('differing', '-')} |", flush=True)

        print("\nthe driver's limits (one process, whatever the cluster's size):")
        for frames, what, writes in ((5, "a 5 s clip", WRITES), (62, "a 1-minute recording", WRITES),
                                     (3750, "a 1-hour recording", WRITES // 10)):
            rate = driver_writes_per_second(scratch, frames, writes)
            hours_per_minute = rate * frames * 0.96 / 3600 * 60
            print(f"  SQLite writes of {what} ({frames} embeddings, one transaction each): {rate:.0f}/s "
                  f"= {hours_per_minute:.0f} h of audio per minute")
        mb_per_second = hash_mb_per_second(archive)
        print(f"  sha256 of the archive (in the page cache): {mb_per_second:.0f} MB/s "
              f"= {mb_per_second * 1e6 / (44100 * 2 * 2) / 3600 * 60:.0f} h/min of 44.1 kHz stereo 16-bit WAV, "
              f"{mb_per_second * 1e6 / 12_000 / 3600 * 60:.0f} h/min of ~96 kbit/s Ogg")
        single_hours_per_minute = single["steady"] / 60
        print(f"  one node here embeds {single_hours_per_minute:.2f} h/min")
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
