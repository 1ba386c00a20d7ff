"""Detection speed over stored embeddings: hours of audio per second (and the per-second streaming step).

Usage: python benchmarks/detect_speed.py [--recordings 20] [--hours 1.0]
Builds a temporary workspace of random stored embeddings, trains a default-size detector for one
epoch on planted sequences (speed does not depend on the weights), and times
  1. probabilities + events in memory (Detector.probabilities_many + extract_events),
  2. `homesound detect --workspace` end to end (read embeddings, detect, write detections and CSV),
  3. the streaming step (one embedding at a time, hidden state carried), as used for live detection.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

import numpy as np

from classify.config import EventSettings, TrainConfig
from classify.events import extract_events
from homesound_testkit.synthetic import SYNTHETIC_EMBEDDER, planted_sequences
from classify.training import train_detector
from homesound.cli import main as homesound
from homesound.frames import VGGISH_FRAMES
from homesound.workspace import Workspace
from homesound.workspace.recordings import (
    StoredEmbedding,
    register_embedder,
    save_recording,
)

HOP = VGGISH_FRAMES.hop_seconds  # synthetic VGGish-shaped embeddings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", type=int, default=20)
    parser.add_argument("--hours", type=float, default=1.0, help="length of each recording")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    frames = int(args.hours * 3600 / HOP)
    embeddings = [rng.integers(0, 256, (frames, 128), dtype=np.uint8) for _ in range(args.recordings)]
    total_hours = args.recordings * frames * HOP / 3600
    detector = train_detector(planted_sequences(2000, seed=1), train_config=TrainConfig(epochs=1), progress=False)
    settings = EventSettings()
    rules = settings.rules(detector.thresholds)
    print(f"{args.recordings} recordings x {args.hours:g} h = {total_hours:.1f} h of stored embeddings; "
          f"detector: {detector.config.rnn.upper()} {detector.config.hidden_size} hidden, "
          f"{len(detector.classes)} classes")

    started = time.perf_counter()
    probabilities = detector.probabilities_many(embeddings, SYNTHETIC_EMBEDDER)
    events = [extract_events(p, detector.classes, rules, detector.frames.hop_seconds) for p in probabilities]
    seconds = time.perf_counter() - started
    print(f"1. in memory: {seconds:.2f} s -> {total_hours / seconds:,.0f} hours of audio per second "
          f"({sum(map(len, events))} events)")

    with tempfile.TemporaryDirectory() as directory:
        workspace, model = Path(directory) / "home.db", Path(directory) / "detector.pt"
        detector.save(model)
        with Workspace(workspace) as ws:
            register_embedder(ws, SYNTHETIC_EMBEDDER, {"kind": "benchmark"})
            for index, embedding in enumerate(embeddings):
                content = hashlib.sha256(embedding.tobytes()).hexdigest()
                save_recording(ws, path=f"/archive/{index}.wav", size=None, mtime_ns=None, content_sha256=content,
                               status="embedded", duration_seconds=frames * HOP,
                               embedding=StoredEmbedding(content, SYNTHETIC_EMBEDDER, embedding, None, HOP))
        started = time.perf_counter()
        code = homesound(["detect", "--workspace", str(workspace), "--model", str(model),
                          "--out", str(Path(directory) / "events.csv")])
        seconds = time.perf_counter() - started
        print(f"2. homesound detect --workspace (exit {code}): {seconds:.2f} s -> "
              f"{total_hours / seconds:,.0f} hours of audio per second")

    stream = detector.stream()
    steps = 2000
    started = time.perf_counter()
    for row in embeddings[0][:steps]:
        stream.push(row, SYNTHETIC_EMBEDDER)
    per_step = (time.perf_counter() - started) / steps
    print(f"3. streaming step: {per_step * 1e6:.0f} us per 0.96 s embedding "
          f"(real-time factor {per_step / HOP:.1e})")


if __name__ == "__main__":
    main()
