"""Does active learning pay? Learning curves (AP per class against labeled windows) per strategy.

Household recordings are assembled from the real clips in ../shared/data/clips (crying, laughter,
household noise, room tone) with known event times, so an oracle knows every second's label.
They are embedded with homesound's VGGish pipeline - with deterministic RANDOM weights, the only
VGGish available offline, so absolute APs are lower than with Google's weights - and the real
detector (classify.train_detector) is retrained each round on the windows labeled so far.

    python benchmarks/al_simulation.py --seeds 3 --out out/al_simulation

Prints a table (labels needed to reach 95 % of the AP of training on every pool window, per
strategy) and writes curves.csv, summary.csv and curves.png under --out. Clip split: sources
are never on both sides, except the single long laughter and room-tone recordings, whose clips
are split by time (first 70 % pool, the rest test).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from active_learning.simulation import (  # noqa: E402
    OracleRecording,
    SimulationConfig,
    all_windows,
    average_precisions,
    labels_to_reach,
    oracle_sequences,
    simulate,
)

CLASSES = ("laughter", "crying")
BACKGROUND = ("noise", "silence")
SAMPLE_RATE = 16000
HOP_SECONDS = 0.96
TEST_FRACTION = 0.3
CLIPS_PER_RECORDING = 10
STRATEGIES = ("random", "least-confidence", "margin", "entropy", "bald")


# ---- data: household recordings with known event times ---------------------------------------------

def shared_data() -> Path:
    for candidate in (REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if (candidate / "clips.csv").is_file():
            return candidate
    raise SystemExit("../shared/data (real clips) not found beside the checkout")


def split_clips(rows: list[dict], seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Pool and test clips; a source recording never feeds both, except single-source labels (split by time)."""
    rng = np.random.default_rng(seed)
    pool, test = [], []
    for label in sorted({row["label"] for row in rows}):
        clips = sorted((r for r in rows if r["label"] == label), key=lambda r: (r["source"], r["path"]))
        sources = sorted({r["source"] for r in clips})
        if len(sources) == 1:
            cut = int(round(len(clips) * (1 - TEST_FRACTION)))
            pool += clips[:cut]
            test += clips[cut:]
            continue
        held_out, count = set(), 0
        for source in rng.permutation(sources):
            if count >= TEST_FRACTION * len(clips):
                break
            held_out.add(source)
            count += sum(r["source"] == source for r in clips)
        pool += [r for r in clips if r["source"] not in held_out]
        test += [r for r in clips if r["source"] in held_out]
    return pool, test


def household_playlists(clips: list[dict], seed: int) -> list[list[dict]]:
    """Clips in household proportions: every background and laughter clip, as many cries as laughs."""
    rng = np.random.default_rng(seed)
    laughter = [c for c in clips if c["label"] == "laughter"]
    crying = [c for c in clips if c["label"] == "crying"]
    chosen = [c for c in clips if c["label"] in BACKGROUND] + laughter
    chosen += [crying[i] for i in rng.permutation(len(crying))[: len(laughter)]]
    order = rng.permutation(len(chosen))
    return [[chosen[i] for i in order[start:start + CLIPS_PER_RECORDING]]
            for start in range(0, len(order), CLIPS_PER_RECORDING)]


def assemble(playlist: list[dict], data: Path) -> tuple[np.ndarray, np.ndarray]:
    """16 kHz mono waveform of the clips back to back, and per-second truth [T, C]."""
    from embed.audio_io import read_mono
    from embed.resample import resample_whole

    pieces, spans, at = [], [], 0.0
    for clip in playlist:
        samples, rate = read_mono(data / clip["path"])
        samples = resample_whole(np.asarray(samples, dtype=np.float64), rate, SAMPLE_RATE)
        pieces.append(samples)
        spans.append((clip["label"], at, at + len(samples) / SAMPLE_RATE))
        at += len(samples) / SAMPLE_RATE
    frames = int(at // HOP_SECONDS)
    starts = np.arange(frames) * HOP_SECONDS
    truth = np.zeros((frames, len(CLASSES)), dtype=np.float32)
    for label, start, end in spans:
        if label in CLASSES:
            overlap = np.clip(np.minimum(starts + HOP_SECONDS, end) - np.maximum(starts, start), 0, None)
            truth[overlap >= HOP_SECONDS / 2, CLASSES.index(label)] = 1
    return np.concatenate(pieces), truth


def load_households(cache: Path, seed: int = 0) -> tuple[list[OracleRecording], list[OracleRecording], str]:
    """Pool and test recordings, embedded once and cached (embedding is the slow part)."""
    if cache.is_file():
        stored = np.load(cache, allow_pickle=False)
        recordings = {"pool": [], "test": []}
        for name in sorted({key.rsplit("/", 1)[0] for key in stored.files if "/" in key},
                           key=lambda n: (n.split("-")[0], int(n.split("-")[1]))):
            side = name.split("-")[0]
            recordings[side].append(OracleRecording(name, stored[f"{name}/embedding"], stored[f"{name}/truth"]))
        return recordings["pool"], recordings["test"], str(stored["embedder_id"])

    from embed.pipeline import embed_waveform
    from embed.random_weights import write_random_vggish
    from embed.vggish import load_embedder

    data = shared_data()
    with open(data / "clips.csv") as table:
        rows = list(csv.DictReader(table))
    pool_clips, test_clips = split_clips(rows)
    weights = write_random_vggish(cache.parent / "random-vggish", seed=0)
    embedder = load_embedder(str(weights.checkpoint), str(weights.pca))
    arrays: dict[str, np.ndarray] = {}
    started = time.perf_counter()
    embedder_id = ""
    for side, clips in (("pool", pool_clips), ("test", test_clips)):
        for index, playlist in enumerate(household_playlists(clips, seed + (side == "test"))):
            waveform, truth = assemble(playlist, data)
            embeddings = embed_waveform(waveform, SAMPLE_RATE, embedder)
            frames = min(len(embeddings.embedding), len(truth))
            arrays[f"{side}-{index}/embedding"] = embeddings.embedding[:frames]
            arrays[f"{side}-{index}/truth"] = truth[:frames]
            embedder_id = embeddings.embedder_id
            print(f"embedded {side}-{index}: {frames} s, {time.perf_counter() - started:.0f} s so far", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, embedder_id=np.array(embedder_id), **arrays)
    return load_households(cache, seed)


# ---- the learner: homesound's detector ---------------------------------------------------------------

@dataclasses.dataclass
class DetectorLearner:
    embedder_id: str
    epochs: int = 30
    patience: int = 6

    def fit(self, sequences, seed):
        from classify.config import ModelConfig, TrainConfig
        from classify.training import train_detector

        train = TrainConfig(epochs=self.epochs, patience=self.patience, seed=seed, num_threads=1)
        return train_detector(sequences, ModelConfig(classes=CLASSES), train, classes=CLASSES, progress=False)

    def probabilities(self, model, embeddings):
        return model.probabilities_many(list(embeddings), self.embedder_id)

    def mc_samples(self, model, embeddings, count, seed):
        from active_learning.scoring import mc_dropout_probabilities

        return mc_dropout_probabilities(model, list(embeddings), self.embedder_id, count, seed)

    def features(self, embeddings):
        return [e.astype(np.float32) * (4.0 / 255.0) - 2.0 if e.dtype == np.uint8 else e for e in embeddings]


# ---- the experiment ----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "out" / "al_simulation"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--initial-windows", type=int, default=16)
    parser.add_argument("--windows-per-round", type=int, default=8)
    parser.add_argument("--no-diversity", action="store_true")
    parser.add_argument("--target", type=float, default=0.95, help="share of the all-pool AP to reach")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pool, test, embedder_id = load_households(out / "households.npz")
    config = SimulationConfig(
        initial_windows=args.initial_windows, windows_per_round=args.windows_per_round, rounds=args.rounds,
        diversity=not args.no_diversity,
    )
    windows = all_windows(pool, config)
    total_windows = sum(len(w) for w in windows.values())
    positives = np.concatenate([r.truth for r in pool]).sum(0)
    print(f"pool: {len(pool)} recordings, {sum(len(r.truth) for r in pool)} s, {total_windows} windows of "
          f"{config.window_seconds:.0f} s; positive seconds {dict(zip(CLASSES, positives.astype(int).tolist()))}; "
          f"test: {len(test)} recordings, {sum(len(r.truth) for r in test)} s")
    learner = DetectorLearner(embedder_id)

    started = time.perf_counter()
    reference = []
    for seed in range(args.seeds):
        model = learner.fit(oracle_sequences(pool, windows, CLASSES, embedder_id), seed)
        aps = average_precisions([r.truth for r in test], learner.probabilities(model, [r.embedding for r in test]),
                                 CLASSES)
        reference.append(aps)
        print(f"all {total_windows} pool windows labeled, seed {seed}: AP {aps}", flush=True)
    full_ap = float(np.mean([np.nanmean(list(aps.values())) for aps in reference]))
    target = args.target * full_ap

    curves = []
    for strategy in args.strategies:
        for seed in range(args.seeds):
            curve = simulate(pool, test, CLASSES, strategy, seed, config, learner, embedder_id)
            curves += curve
            print(f"{strategy:>16} seed {seed}: mean AP " +
                  " ".join(f"{p['mean_ap']:.3f}@{p['labeled_windows']}" for p in curve) +
                  f"  ({time.perf_counter() - started:.0f} s)", flush=True)

    _write_csv(out / "curves.csv", curves)
    summary = _summary(curves, args.strategies, target, full_ap, total_windows)
    _write_csv(out / "summary.csv", summary)
    _plot(curves, args.strategies, full_ap, target, out / "curves.png")
    print(f"\nAP with all {total_windows} pool windows labeled: {full_ap:.3f} (mean of {args.seeds} seeds); "
          f"target {args.target:.0%} of it = {target:.3f}")
    print(f"{'strategy':>16} | final mean AP | AP laughter | AP crying | windows to target (per seed) | vs random")
    for row in summary:
        print(f"{row['strategy']:>16} | {row['final_mean_ap']:.3f} +- {row['final_mean_ap_std']:.3f} | "
              f"{row['final_ap_laughter']:.3f} | {row['final_ap_crying']:.3f} | {row['windows_to_target']:>28} | "
              f"{row['saving_vs_random']}")
    print(f"curves: {out / 'curves.png'}; total {time.perf_counter() - started:.0f} s")
    return 0


def _summary(curves, strategies, target, full_ap, total_windows) -> list[dict]:
    by = defaultdict(list)
    for point in curves:
        by[(point["strategy"], point["seed"])].append(point)
    needed = {}
    rows = []
    for strategy in strategies:
        seeds = sorted(seed for s, seed in by if s == strategy)
        finals = [by[(strategy, seed)][-1] for seed in seeds]
        reach = [labels_to_reach(by[(strategy, seed)], target) for seed in seeds]
        needed[strategy] = reach
        rows.append({
            "strategy": strategy,
            "final_labeled_windows": finals[0]["labeled_windows"],
            "final_mean_ap": float(np.mean([f["mean_ap"] for f in finals])),
            "final_mean_ap_std": float(np.std([f["mean_ap"] for f in finals])),
            "final_ap_laughter": float(np.mean([f["ap_laughter"] for f in finals])),
            "final_ap_crying": float(np.mean([f["ap_crying"] for f in finals])),
            "windows_to_target": " ".join(str(r) if r is not None else "-" for r in reach),
            "full_pool_ap": full_ap,
            "full_pool_windows": total_windows,
        })
    random_reach = needed.get("random")
    for row in rows:
        row["saving_vs_random"] = _saving(needed[row["strategy"]], random_reach)
    return rows


def _saving(reach, random_reach) -> str:
    """How many times fewer labels than random to reach the target (median over seeds that reached it)."""
    if not random_reach:
        return "n/a"
    mine = [r for r in reach if r is not None]
    theirs = [r for r in random_reach if r is not None]
    if not mine:
        return "never reached"
    if not theirs:
        return "random never reached"
    return f"{np.median(theirs) / np.median(mine):.2f}x"


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _plot(curves, strategies, full_ap, target, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = ("mean_ap",) + tuple(f"ap_{name}" for name in CLASSES)
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), sharex=True)
    for axis, column in zip(axes, panels):
        for strategy in strategies:
            points = [p for p in curves if p["strategy"] == strategy]
            xs = sorted({p["labeled_windows"] for p in points})
            values = np.array([[p[column] for p in points if p["labeled_windows"] == x] for x in xs])
            mean, std = np.nanmean(values, axis=1), np.nanstd(values, axis=1)
            axis.plot(xs, mean, marker="o", markersize=3, label=strategy,
                      linestyle="--" if strategy == "random" else "-")
            axis.fill_between(xs, mean - std, mean + std, alpha=0.12)
        if column == "mean_ap":
            axis.axhline(full_ap, color="black", linewidth=0.8, label="all pool windows")
            axis.axhline(target, color="grey", linewidth=0.8, linestyle=":", label="95 % of that")
        axis.set_title(column.replace("_", " "))
        axis.set_xlabel("labeled 5 s windows")
        axis.set_ylabel("average precision (per second, test)")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
