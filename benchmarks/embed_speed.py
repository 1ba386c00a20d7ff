"""Embedding speed and memory: homesound's pipeline against the reference's order of work.

Prints seconds of audio per wall second (end to end and model only) and peak RSS, each measured
in its own subprocess. The "reference" does what Google's vggish_inference_demo does: read the
whole file, resample it whole with resampy, log-mel it whole, run the network on all examples
in one call. Weights are random (offline); speed does not depend on their values.

    python benchmarks/embed_speed.py [--minutes 5] [--long-hours 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]


def make_recording(path: Path, seconds: float, rate: int = 44100, channels: int = 2) -> None:
    """Noise with tones and pauses, written block by block (a 3-hour file never sits in memory)."""
    import soundfile

    rng = np.random.default_rng(0)
    with soundfile.SoundFile(path, "w", rate, channels, subtype="PCM_16") as out:
        for start in range(0, int(seconds * rate), rate * 60):
            n = min(rate * 60, int(seconds * rate) - start)
            t = (start + np.arange(n)) / rate
            signal = 0.1 * rng.standard_normal((n, channels)) + 0.3 * np.sin(2 * np.pi * 440 * t)[:, None]
            out.write(signal * (np.sin(2 * np.pi * t / 7.0)[:, None] > 0))


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

    jit = mode != "reference"
    embedder = load_embedder(config=EmbedderConfig(source=str(weights / "vggish_model.ckpt"),
                                                   pca=str(weights / "vggish_pca_params.npz"), jit_compile=jit))
    embedder.run_network(np.zeros((embedder.config.batch_size, 96, 64), np.float32))  # compile outside timing
    seconds = soundfile.info(str(audio)).duration
    started = time.perf_counter()
    if mode == "reference":
        data, rate = soundfile.read(str(audio), dtype="float64")
        examples = waveform_to_examples(resample_whole(data.mean(axis=1), rate, 16000))
        embedder.postprocess(embedder.run_network(examples))
    elif mode == "homesound":
        embed_file(audio, embedder)
    elif mode == "model-only":
        examples = np.random.default_rng(0).normal(0, 2, (int(seconds / 0.96), 96, 64)).astype(np.float32)
        started = time.perf_counter()
        embedder.run_network(examples)
    elapsed = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": mode, "audio_seconds": seconds, "wall_seconds": elapsed,
                      "x_realtime": seconds / elapsed, "peak_rss_mb": peak_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the 44.1 kHz stereo test file")
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
        audio = scratch / "recording.wav"
        make_recording(audio, args.minutes * 60)
        print(f"{args.minutes:g}-minute 44.1 kHz stereo WAV, {os.cpu_count()} cores, random VGGish weights")
        print(f"{'mode':<12} {'x real time':>12} {'wall s':>8} {'peak RSS MB':>12}")
        for mode in ("reference", "homesound", "model-only"):
            result = measure(mode, audio, scratch / "weights")
            print(f"{mode:<12} {result['x_realtime']:>12.1f} {result['wall_seconds']:>8.1f} {result['peak_rss_mb']:>12.0f}")
        if args.long_hours:
            long_audio = scratch / "long.wav"
            make_recording(long_audio, args.long_hours * 3600, rate=16000, channels=1)
            result = measure("homesound", long_audio, scratch / "weights")
            print(f"{args.long_hours:g}-hour 16 kHz file: {result['x_realtime']:.1f}x real time, "
                  f"peak RSS {result['peak_rss_mb']:.0f} MB (flat memory: compare with the short file)")


if __name__ == "__main__":
    main()
