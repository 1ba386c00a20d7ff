"""How fast `homesound listen` is on this machine: real-time factor, per-hop latency, onset-to-report delay,
peak RSS and CPU, for the full TensorFlow + torch path and the hub's TFLite path (float32, float16, int8).

Each runtime runs in its own process (so RSS and imports are its own) with 2 CPU threads, through the real
listening loop (embed.sources + homesound_hub.listen):
  - real-time factor: a ~60 s household recording read as fast as possible (compute time / audio time);
  - per-hop latency: the recording played at real time (0.1 s blocks, as a microphone delivers them): from
    the wall-clock moment a 0.96 s hop's last sample happened to its probability being out;
  - onset-to-report: the crying onsets of the recording shifted against the hop grid (0, 0.24, 0.48, 0.72 s);
    stream time of the hop whose probability started the event, minus the true onset, plus the p95 latency.

Without --model/--vggish it trains the small test detector on the shared clips with RANDOM VGGish weights
(as tests/listen do): timings are those of the real network, detections are only as good as random features.

    python benchmarks/listen_latency.py [--realtime-seconds 20] [--work DIR] [--variants float16,int8]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from homesound_hub.listen import Sink  # noqa: E402  (no TensorFlow or torch behind it)

ONSET_SHIFTS = (0.0, 0.24, 0.48, 0.72)


def prepare(work: Path, variants: str) -> dict:
    """Random VGGish, the small detector, the household recording and the hub export (cached in `work`)."""
    import soundfile

    from homesound_testkit.shared_data import find_shared_data
    from homesound_testkit.listen import RATE, household, pcm16

    work.mkdir(parents=True, exist_ok=True)
    shared = find_shared_data()
    if shared is None:
        sys.exit("../shared/data is missing beside the checkout")
    files = {"vggish": work / "vggish" / "vggish_model.ckpt", "model": work / "detector.pt", "hub": work / "hub",
             "household": work / "household.wav", "truth": work / "truth.json"}
    if not files["model"].exists():
        from embed.random_weights import write_random_vggish
        from embed.embedder import load_embedder
        from homesound_testkit.listen import embed_clips, train_small_detector, training_clips, training_sequences

        print("preparing: random VGGish weights and the small detector ...", flush=True)
        written = write_random_vggish(work / "vggish")
        embedder = load_embedder(str(written.checkpoint), str(written.pca))
        clips = training_clips(shared)
        sequences = training_sequences(clips, embed_clips(clips, embedder), embedder.embedder_id)
        train_small_detector(sequences, {embedder.embedder_id: embedder.provenance}).save(files["model"])
    if not files["household"].exists():
        recording = household(shared)
        soundfile.write(str(files["household"]), np.frombuffer(pcm16(recording.samples), "<i2"), RATE,
                        subtype="PCM_16")
        files["truth"].write_text(json.dumps(recording.truth))
    if not (files["hub"] / "manifest.json").exists():
        print(f"preparing: homesound export --hub (float32 + {variants}) ...", flush=True)
        subprocess.run([sys.executable, "-m", "homesound.cli", "export", "--model", str(files["model"]), "--hub",
                        str(files["hub"]), "--quantize", variants, "--calibration-audio", str(files["household"])],
                       cwd=REPO, check=True)
    return {name: str(path) for name, path in files.items()}


# --- one runtime, in its own process ----------------------------------------------------------------------


class StartCapture(Sink):
    """A listener output that keeps the stream time of the hop behind each event start."""

    def __init__(self):
        self.last_hop_end = 0.0
        self.starts: list[tuple[str, float, float]] = []

    def hop(self, hop, result, wall, latency):
        self.last_hop_end = result.end_seconds

    def event(self, report):
        if report.update.kind == "start":
            self.starts.append((report.update.event.label, report.update.event.start, self.last_hop_end))


def _status_kb(field: str) -> float:
    """VmHWM (peak) or VmRSS (now) of this process: unlike ru_maxrss, not inherited from the parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return float("nan")


def _runtime(kind: str, files: dict, variant: str, threads: int):
    from classify.config import EventSettings
    from classify.stream import LiveDetector
    from embed.streaming import StreamingEmbedder

    if kind == "full":
        import torch

        from classify.detector import Detector
        from embed.params import VGGISH
        from embed.embedder import EmbedderConfig, load_embedder

        torch.set_num_threads(1)
        detector = Detector.load(files["model"])
        embedder = load_embedder(config=EmbedderConfig(files["vggish"], None, batch_size=1))
        embedder.raw_embeddings([np.zeros(VGGISH.example_samples + VGGISH.example_overlap_samples)])
        table = None
    else:
        from homesound_hub.bundle import load_hub

        hub = load_hub(files["hub"], variant, threads=threads)
        embedder, detector, table = hub.embedder, hub.detector, hub.filter_table
    rules = EventSettings().rules(detector.thresholds)

    def live():
        return LiveDetector(detector.stream(), detector.classes, rules, embedder.embedder_id,
                            detector.input_encoding, detector.frames.hop_seconds)

    def factory(rate, on_audio):
        return StreamingEmbedder(embedder, rate, on_audio, table)

    return live, factory


def _listen(path: str, realtime: bool, live, factory, sinks=()):
    from embed.sources import FileSource, SourceReader
    from homesound_hub.listen import Listener

    listener = Listener(SourceReader(FileSource(path, realtime)), factory, live(), list(sinks))
    return listener.run(threading.Event())


def worker(kind: str, variant: str, threads: int, files: dict, realtime_seconds: float, soak_passes: int) -> dict:
    import soundfile

    started = time.perf_counter()
    live, factory = _runtime(kind, files, variant, threads)
    load_seconds = time.perf_counter() - started
    fast = _listen(files["household"], False, live, factory)
    rss_mb = [_status_kb("VmRSS") / 1024]
    for _ in range(soak_passes):  # memory must stay flat however long it listens
        _listen(files["household"], False, live, factory)
        rss_mb.append(_status_kb("VmRSS") / 1024)

    samples, rate = soundfile.read(files["household"], dtype="float64")
    head = Path(files["household"]).with_name(f"realtime-{os.getpid()}.wav")
    soundfile.write(str(head), samples[: int(realtime_seconds * rate)], rate, subtype="PCM_16")
    usage, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    realtime = _listen(str(head), True, live, factory)
    usage_after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - wall
    cpu = (usage_after.ru_utime - usage.ru_utime + usage_after.ru_stime - usage.ru_stime) / wall
    head.unlink()
    latencies = np.array(realtime.latencies[1:]) * 1000  # the first hop also pays one-off warm-up

    truth = [tuple(t) for t in json.loads(Path(files["truth"]).read_text()) if t[0] == "crying"]
    delays = []
    for shift in ONSET_SHIFTS:
        shifted = Path(files["household"]).with_name(f"shift-{os.getpid()}.wav")
        soundfile.write(str(shifted), np.concatenate([np.zeros(int(shift * rate)), samples]), rate,
                        subtype="PCM_16")
        capture = StartCapture()
        _listen(str(shifted), False, live, factory, [capture])
        shifted.unlink()
        for label, onset, _ in truth:
            onset += shift
            found = [hop_end for got, start, hop_end in capture.starts
                     if got == label and abs(start - onset) <= 1.5]
            delays.append(found[0] - onset if found else float("nan"))
    p95 = float(np.percentile(latencies, 95))
    return {
        "runtime": "tf+torch" if kind == "full" else f"tflite-{variant} t{threads}", "load_seconds": load_seconds,
        "real_time_factor": fast.compute_seconds / fast.seconds,
        "real_time_factor_live": realtime.compute_seconds / realtime.seconds,
        "ms_per_hop": 1000 * fast.compute_seconds / fast.hops,
        "latency_mean_ms": float(latencies.mean()), "latency_p95_ms": p95, "latency_max_ms": float(latencies.max()),
        "cpu_percent_realtime": 100 * cpu,
        "peak_rss_mb": _status_kb("VmHWM") / 1024,
        "rss_mb_per_pass": [round(value, 1) for value in rss_mb],
        "onset_to_report_s": [round(d + p95 / 1000, 2) for d in delays],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/homesound-listen-benchmark", help="cache of the prepared files")
    parser.add_argument("--realtime-seconds", type=float, default=20.0)
    parser.add_argument("--variants", default="float16,int8", help="hub VGGish variants besides float32")
    parser.add_argument("--soak-passes", type=int, default=5,
                        help="extra plays of the recording by the TFLite float32 runtime, RSS after each")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--files", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.variant, args.threads, json.loads(args.files),
                                args.realtime_seconds, args.soak_passes)))
        return

    files = prepare(Path(args.work), args.variants)
    manifest = json.loads((Path(files["hub"]) / "manifest.json").read_text())
    load_before = os.getloadavg()
    rows = []
    runs = [("full", "float32", 2, 0), ("hub", "float32", 1, args.soak_passes), ("hub", "float32", 2, 0)]
    runs += [("hub", variant, 1, 0) for variant in args.variants.split(",") if variant]
    for kind, variant, threads, soak in runs:
        print(f"measuring {kind} {variant} ({threads} threads) ...", flush=True)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", OPENBLAS_NUM_THREADS="1")  # as homesound listen sets
        done = subprocess.run([sys.executable, __file__, "--worker", kind, "--variant", variant, "--threads",
                               str(threads), "--soak-passes", str(soak), "--files", json.dumps(files),
                               "--realtime-seconds", str(args.realtime_seconds)],
                              cwd=REPO, env=env, capture_output=True, text=True)
        if done.returncode:
            print(done.stderr[-3000:])
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    load_after = os.getloadavg()

    print(f"\nmachine: {os.cpu_count()} cores; load average before {load_before[0]:.1f}, after {load_after[0]:.1f} "
          "(other jobs share these cores)")
    print(f"{'runtime':<20}{'RTF':>7}{'RTF live':>9}{'ms/hop':>8}{'lat mean':>10}{'lat p95':>9}{'lat max':>9}"
          f"{'CPU %':>7}{'RSS MB':>8}{'load s':>8}  onset->report s (4 shifts x 2 onsets)")
    for row in rows:
        print(f"{row['runtime']:<20}{row['real_time_factor']:>7.3f}{row['real_time_factor_live']:>9.3f}"
              f"{row['ms_per_hop']:>8.1f}"
              f"{row['latency_mean_ms']:>10.0f}{row['latency_p95_ms']:>9.0f}{row['latency_max_ms']:>9.0f}"
              f"{row['cpu_percent_realtime']:>7.0f}{row['peak_rss_mb']:>8.0f}{row['load_seconds']:>8.1f}  "
              f"{row['onset_to_report_s']}")
    for row in rows:
        if len(row["rss_mb_per_pass"]) > 1:
            print(f"memory over {len(row['rss_mb_per_pass'])} plays of the recording ({row['runtime']}): "
                  f"RSS {row['rss_mb_per_pass']} MB")
    print("\nembedding error of each hub variant (exported with these weights, measured on the household audio):")
    for variant, report in manifest["variants"].items():
        error = report.get("error_vs_float32", report["error_vs_source"])
        print(f"  {variant:<8} {report['bytes'] / 1e6:6.1f} MB  max |raw| error {error['max_abs_raw_error']:.2e} "
              f"(relative {error['max_relative_raw_error']:.1e}), uint8 values differing "
              f"{error['uint8_values_differing']:.2%} (vs {'float32' if 'error_vs_float32' in report else 'TF'})")
    print("targets: real-time factor <= 0.05; an event reported within 1.5 s of its onset")


if __name__ == "__main__":
    main()
