"""Training speed: 20,000 ten-second sequences per epoch, target under 60 s on 2 CPU cores.

Usage: python benchmarks/train_speed.py [--sequences 25000] [--epochs 3] [--threads 1 2]
(25,000 planted sequences: 20 % of the groups go to validation, leaving 20,000 to train on.)
Measures each torch thread count given; the default training uses one (see TrainConfig).
"""

from __future__ import annotations

import argparse
import time

from classify.config import ModelConfig, TrainConfig
from homesound_testkit.synthetic import planted_sequences
from classify.training import train_detector

TARGET_SEQUENCES = 20_000
TARGET_SECONDS = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=25_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rnn", choices=("gru", "lstm"), default="gru")
    args = parser.parse_args()

    started = time.perf_counter()
    sequences = planted_sequences(args.sequences, frames=10, labels="weak", seed=0)
    print(f"{len(sequences)} planted ten-second sequences made in {time.perf_counter() - started:.1f} s")
    for threads in args.threads:
        config = TrainConfig(epochs=args.epochs, patience=args.epochs, num_threads=threads)
        started = time.perf_counter()
        detector = train_detector(sequences, ModelConfig(rnn=args.rnn), config, progress=False)
        total = time.perf_counter() - started
        trained_on = detector.data_summary["training_windows"]
        epochs = detector.history
        best_train = min(h["train_seconds"] for h in epochs)
        print(f"\n{args.rnn.upper()} (default architecture), batch {config.batch_size}, {threads} thread(s): "
              f"{trained_on} training + {detector.data_summary['validation_windows']} validation sequences")
        for h in epochs:
            print(f"  epoch {h['epoch']}: training pass {h['train_seconds']:.1f} s "
                  f"({h['sequences_per_second']:,.0f} sequences/s), validation AP {h['validation_ap']:.3f}")
        per_20k = best_train * TARGET_SEQUENCES / trained_on
        verdict = "meets" if per_20k < TARGET_SECONDS else "MISSES"
        print(f"  -> {TARGET_SEQUENCES:,} sequences per epoch in {per_20k:.1f} s of training "
              f"({verdict} the < {TARGET_SECONDS:.0f} s target); whole run incl. validation and "
              f"setup: {total:.1f} s for {len(epochs)} epochs")


if __name__ == "__main__":
    main()
