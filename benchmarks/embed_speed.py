"""Embedding speed, start-up and memory: TF and torch backends side by side, and Google's reference order of work.

Each figure comes from its own fresh process, so start-up and peak RSS are that process's own:
- start-up: `homesound embed` of a 1 s file, process start to exit (the torch weights already
  converted: only the first run converts them);
- x real time: a 20-minute 44.1 kHz stereo WAV through embed_file (decode, resample, log-mel,
  network, PCA/uint8), the model loaded and warmed up first; then the network alone;
- the reference does what Google's vggish_inference_demo does: read the whole file, resample it
  whole with resampy, log-mel it whole, then the TF network (no XLA) on all examples.
Weights are random (offline); speed does not depend on their values.

    python benchmarks/embed_speed.py [--minutes 20] [--long-hours 0]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from homesound_testkit.recordings import make_recording

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
# The CLI, then its own peak RSS: ru_maxrss would include the parent's RSS before exec (Linux keeps it).
CLI = ("import sys; from homesound.cli import main; code = main(sys.argv[1:]); "
       "print(next(line for line in open('/proc/self/status') if line.startswith('VmHWM')), file=sys.stderr); "
       "sys.exit(code)")
GOALS = {"startup_seconds": 2.0, "times_reference": 3.0, "peak_rss_mb": 1000.0}


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM belongs to the address space, which exec replaces)."""
    line = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def startup(backend: str, audio: Path, weights: Path, out: Path) -> tuple[float, float, float]:
    """(seconds from process start to exit, CPU seconds, peak RSS MB) of `homesound embed` on a short file."""
    command = [sys.executable, "-c", CLI, "embed", str(audio), "--vggish", str(weights / "vggish_model.ckpt"),
               "--backend", backend, "--out", str(out)]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"homesound embed --backend {backend} failed: {process.stderr.read().decode()[-2000:]}")
    peak = next(line for line in process.stderr.read().decode().splitlines() if line.startswith("VmHWM"))
    process.stderr.close()
    return elapsed, usage.ru_utime + usage.ru_stime, int(peak.split()[1]) / 1024


def measure(mode: str, audio: Path, weights: Path) -> dict:
    """Run one mode in a fresh process so its peak RSS is its own."""
    command = [sys.executable, __file__, "--worker", mode, "--audio", str(audio), "--weights", str(weights)]
    output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO).stdout
    return json.loads(output.strip().splitlines()[-1])


def worker(mode: str, audio: Path, weights: Path) -> None:
    import soundfile

    from embed.frontend import waveform_to_examples
    from embed.pipeline import embed_file
    from embed.resample import resample_whole
    from embed.embedder import EmbedderConfig, load_embedder

    backend = "torch" if mode == "torch" else "tf"
    embedder = load_embedder(config=EmbedderConfig(source=str(weights / "vggish_model.ckpt"),
                                                   pca=str(weights / "vggish_pca_params.npz"),
                                                   jit_compile=mode != "reference", backend=backend))
    embedder.run_network(np.zeros((embedder.config.batch_size, 96, 64), np.float32))  # compile outside timing
    seconds = soundfile.info(str(audio)).duration
    started, cpu_started = time.perf_counter(), time.process_time()
    if mode == "reference":
        data, rate = soundfile.read(str(audio), dtype="float64")
        examples = waveform_to_examples(resample_whole(data.mean(axis=1), rate, 16000))
        embedder.postprocess(embedder.run_network(examples))  # batches of 64 (one call would need GBs)
    else:
        embed_file(audio, embedder)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    network_alone = None
    if mode != "reference":
        examples = np.random.default_rng(0).normal(0, 2, (320, 96, 64)).astype(np.float32)  # ~5 minutes
        network_started = time.perf_counter()
        embedder.run_network(examples)
        network_alone = len(examples) * 0.96 / (time.perf_counter() - network_started)
    print(json.dumps({"mode": mode, "audio_seconds": seconds, "wall_seconds": elapsed, "x_realtime": seconds / elapsed,
                      "x_per_cpu_second": seconds / cpu, "network_x_realtime": network_alone,
                      "peak_rss_mb": peak_rss_mb()}))


def machine() -> str:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")), "?")
    simd = [name for name in ("avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "avx2") if f" {name}" in flags]
    return f"{model}, {os.cpu_count()} cores, {'/'.join(simd) or 'no AVX'}, load average {os.getloadavg()[0]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0, help="length of the 44.1 kHz stereo test file")
    parser.add_argument("--startup-runs", type=int, default=3, help="fresh processes per backend (best is shown)")
    parser.add_argument("--long-hours", type=float, default=0.0, help="also embed a file this long (memory check)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--audio", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.audio, args.weights)
        return
    from embed.random_weights import write_random_vggish

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        write_random_vggish(scratch / "weights")
        short, audio = scratch / "one-second.wav", scratch / "recording.wav"
        make_recording(short, 1.0)
        make_recording(audio, args.minutes * 60)
        print(f"{machine()}; random VGGish weights")
        startup("torch", short, scratch / "weights", scratch / "out.npz")  # converts the weights once (untimed)
        starts = {backend: min((startup(backend, short, scratch / "weights", scratch / "out.npz")
                                for _ in range(args.startup_runs)), key=lambda pair: pair[0])
                  for backend in ("tf", "torch")}
        results = {mode: measure(mode, audio, scratch / "weights") for mode in ("reference", "tf", "torch")}
        print(f"\nstart-up: `homesound embed` of a 1 s file, fresh process (best of {args.startup_runs}); "
              f"speed: {args.minutes:g}-minute 44.1 kHz stereo WAV, end to end after loading\n")
        print("| pipeline | start-up s (CPU s) | start-up peak RSS MB | x real time (per CPU second) | network alone "
              "| peak RSS MB |")
        print("|---|---|---|---|---|---|")
        for mode, label in (("reference", "Google's reference order of work (TF, whole file)"),
                            ("tf", "homesound, --backend tf (XLA)"), ("torch", "homesound, --backend torch")):
            result = results[mode]
            start, start_cpu, start_rss = starts.get(mode, (None, None, None))
            network = f"{result['network_x_realtime']:.1f}" if result["network_x_realtime"] else "-"
            print(f"| {label} | {f'{start:.2f} ({start_cpu:.2f})' if start else '-'} | "
                  f"{f'{start_rss:.0f}' if start_rss else '-'} | {result['x_realtime']:.1f} "
                  f"({result['x_per_cpu_second']:.1f}) | {network} | {result['peak_rss_mb']:.0f} |")
        torch_times = results["torch"]["x_realtime"] / results["reference"]["x_realtime"]
        print(f"\ntorch goals: start-up {starts['torch'][0]:.2f} s (< {GOALS['startup_seconds']:g}), "
              f"{torch_times:.1f}x the reference (>= {GOALS['times_reference']:g}), peak RSS "
              f"{results['torch']['peak_rss_mb']:.0f} MB (< {GOALS['peak_rss_mb']:g}); load average now "
              f"{os.getloadavg()[0]:.1f}")
        if args.long_hours:
            long_audio = scratch / "long.wav"
            make_recording(long_audio, args.long_hours * 3600, rate=16000, channels=1)
            result = measure("torch", long_audio, scratch / "weights")
            print(f"{args.long_hours:g}-hour 16 kHz file: {result['x_realtime']:.1f}x real time, "
                  f"peak RSS {result['peak_rss_mb']:.0f} MB (flat memory: compare with the short file)")


if __name__ == "__main__":
    main()
