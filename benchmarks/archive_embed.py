"""Archive embedding speed, memory, no-op rerun and resume after kill -9 (`homesound embed --workspace`).

Builds an archive of the shared real clips (1,088 files, ~1.5 hours; Ogg, FLAC, float and 8 kHz WAV)
plus long synthetic recordings, then prints:
  - hours of audio per minute for the whole archive, and its ratio to the single-file speed
    (embed_file on one long file, network compiled beforehand: the best case for one file);
  - peak RSS of the main process and of the largest decoder process;
  - CPU use (user + system seconds per wall second, out of the cores there are);
  - the time of a rerun with nothing new, and its share of the first run;
  - the time to finish after a kill -9 half way, and the work the kill cost.
VGGish weights are random (offline); speed does not depend on their values. With --yamnet FILE the
real YAMNet .tflite embeds instead. Load on the machine from other jobs is printed too, since it
changes every figure.

    python benchmarks/archive_embed.py [--long-minutes 30,20,20] [--clips 1088] [--skip-resume]
    python benchmarks/archive_embed.py --yamnet ../shared/models/yamnet/yamnet.tflite --long-minutes 10
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from homesound_testkit.recordings import build_archive  # noqa: E402


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "homesound.cli", *args]


def embed_command(archive: Path, workspace: Path, weights: Path) -> list[str]:
    if weights.suffix == ".tflite":
        return cli("embed", str(archive), "--workspace", str(workspace), "--embedder", "yamnet", "--yamnet",
                   str(weights), "--no-progress")
    return cli("embed", str(archive), "--workspace", str(workspace), "--vggish", str(weights / "vggish_model.ckpt"),
               "--no-progress")


def embedder_config(weights: Path):
    """VGGish from the random weights folder, or YAMNet from a .tflite file."""
    from embed.embedder import EmbedderConfig

    if weights.suffix == ".tflite":
        return EmbedderConfig(model="yamnet", source=str(weights))
    return EmbedderConfig(source=str(weights / "vggish_model.ckpt"), pca=str(weights / "vggish_pca_params.npz"))


def last_run(workspace: Path) -> dict:
    with closing(sqlite3.connect(workspace)) as db:
        return json.loads(db.execute("SELECT summary_json FROM runs ORDER BY id DESC LIMIT 1").fetchone()[0])


def written(workspace: Path) -> tuple[int, float]:
    """(recordings, seconds of audio) embedded so far."""
    try:
        with closing(sqlite3.connect(f"file:{workspace}?mode=ro", uri=True)) as db:
            return db.execute("SELECT COUNT(*), COALESCE(SUM(duration_seconds), 0) FROM recordings"
                              " WHERE status='embedded'").fetchone()
    except sqlite3.OperationalError:
        return 0, 0.0


def worker(mode: str, audio: Path, weights: Path, workspace: Path | None) -> None:
    """One measurement in this fresh process, so its peak RSS is its own."""
    import numpy as np

    config = embedder_config(weights)
    if mode == "single":
        import soundfile

        from embed.pipeline import embed_file
        from embed.embedder import load_embedder

        embedder = load_embedder(config=config)
        embedder.raw_embeddings([np.zeros(config.batch_size * 15360 + 240)])  # compile outside the timing
        started = time.perf_counter()
        embed_file(audio, embedder)
        elapsed = time.perf_counter() - started
        result = {"audio_seconds": soundfile.info(str(audio)).duration, "wall_seconds": elapsed}
    else:
        from embed.archive import ArchiveJobConfig, default_workers, run_archive_job
        from embed.discover import DEFAULT_EXTENSIONS

        job = ArchiveJobConfig(inputs=(str(audio),), extensions=DEFAULT_EXTENSIONS, embedder=config,
                               workers=default_workers())
        decoders = DecoderMemory()
        started = time.perf_counter()
        summary = run_archive_job(str(workspace), job, progress=False)
        elapsed = time.perf_counter() - started
        decoders.stop.set()
        result = {"audio_seconds": summary.embedded_seconds, "wall_seconds": elapsed, "files": summary.embedded,
                  "failed": len(summary.failed), "workers": job.workers, "decoder_peak_rss_mb": decoders.peak_mb}
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    result.update(peak_rss_mb=own.ru_maxrss / 1024,
                  cpu_seconds=own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime)
    print(json.dumps(result))


class DecoderMemory(threading.Thread):
    """Peak RSS of this process's children, sampled (their ru_maxrss would count the pre-exec fork)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.peak_mb = 0.0
        self.start()

    def run(self) -> None:
        me = str(os.getpid())
        while not self.stop.wait(0.5):
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{pid}/stat") as stat:
                        if stat.read().rsplit(")", 1)[1].split()[1] != me:
                            continue
                    with open(f"/proc/{pid}/status") as status:
                        rss_kb = int(status.read().split("VmRSS:")[1].split()[0])
                except (OSError, IndexError):
                    continue
                self.peak_mb = max(self.peak_mb, rss_kb / 1024)


def measure(mode: str, audio: Path, weights: Path, workspace: Path | None = None) -> dict:
    command = [sys.executable, __file__, "--worker", mode, "--audio", str(audio), "--weights", str(weights)]
    if workspace is not None:
        command += ["--workspace", str(workspace)]
    output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=10_000, help="how many shared clips (default: all)")
    parser.add_argument("--long-minutes", default="30,20,20", help="lengths of the long synthetic recordings")
    parser.add_argument("--skip-resume", action="store_true", help="leave out the kill -9 and resume measurement")
    parser.add_argument("--yamnet", type=Path, metavar="FILE.tflite", help="embed with this YAMNet .tflite instead")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--audio", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workspace", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.audio, args.weights, args.workspace)
        return
    from embed.random_weights import write_random_vggish

    cores = os.cpu_count()
    print(f"{cores} cores; load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
          "(other jobs on this machine slow every figure)")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        weights = args.yamnet.resolve() if args.yamnet else scratch / "weights"
        if not args.yamnet:
            write_random_vggish(weights)
        archive = scratch / "archive"
        built = build_archive(archive, args.clips, args.long_minutes)
        print(built.description)

        single = measure("single", next((archive / "long").glob("*_long_44k_stereo.wav")), weights)
        single_rate = single["audio_seconds"] / 3600 / (single["wall_seconds"] / 60)
        print(f"single file (embed_file, {single['audio_seconds'] / 60:.0f} min 44.1 kHz stereo, compiled): "
              f"{single_rate:.2f} h/min ({single['audio_seconds'] / single['wall_seconds']:.0f}x real time)")

        workspace = scratch / "home.db"
        full = measure("archive", archive, weights, workspace)
        rate = full["audio_seconds"] / 3600 / (full["wall_seconds"] / 60)
        print(f"archive, first run ({full['workers']} decoder process(es), including model load and compile): "
              f"{full['files']} files in {full['wall_seconds']:.0f} s = {rate:.2f} h/min, "
              f"{rate / single_rate:.0%} of the single-file speed; failed {full['failed']}")
        print(f"  CPU: {full['cpu_seconds'] / full['wall_seconds']:.2f} core-seconds per second (of {cores}); "
              f"peak RSS main {full['peak_rss_mb']:.0f} MB, largest decoder {full['decoder_peak_rss_mb']:.0f} MB")

        started = time.perf_counter()
        subprocess.run(embed_command(archive, workspace, weights), check=True, capture_output=True, cwd=REPO)
        noop = time.perf_counter() - started
        print(f"no-op rerun: {noop:.2f} s end to end (job itself {last_run(workspace)['elapsed_seconds']:.2f} s) = "
              f"{noop / full['wall_seconds']:.2%} of the first run")

        if not args.skip_resume:
            resumed = scratch / "resumed.db"
            process = subprocess.Popen(embed_command(archive, resumed, weights), cwd=REPO,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            kill_after = full["wall_seconds"] / 2
            time.sleep(kill_after)
            process.send_signal(signal.SIGKILL)
            process.wait()
            files_at_kill, seconds_at_kill = written(resumed)
            started = time.perf_counter()
            subprocess.run(embed_command(archive, resumed, weights), check=True, capture_output=True, cwd=REPO)
            resume = time.perf_counter() - started
            remaining = full["audio_seconds"] - seconds_at_kill
            expected = remaining / full["audio_seconds"] * full["wall_seconds"]
            print(f"kill -9 after {kill_after:.0f} s ({files_at_kill} of {full['files']} recordings written, "
                  f"{seconds_at_kill / 3600:.2f} of {full['audio_seconds'] / 3600:.2f} h); the rerun embedded the "
                  f"remaining {remaining / 3600:.2f} h in {resume:.0f} s, {resume - expected:+.0f} s against the "
                  "first run's pace (work in flight at the kill, model load and compile again)")
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
