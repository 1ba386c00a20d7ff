"""Does active learning pay? Learning curves (AP per class against labeled windows) per strategy.

Household recordings are assembled from the real clips in ../shared/data/clips (crying, laughter,
household noise, room tone) with known event times, so an oracle knows every second's label.
Clips are embedded once with homesound's VGGish pipeline - with deterministic RANDOM weights, the
only VGGish available offline, so absolute APs are lower than with Google's weights - and the real
detector (classify.train_detector) is retrained each round on the windows labeled so far.

    python benchmarks/al_simulation.py --seeds 3 --out out/al_simulation
    python benchmarks/al_simulation.py --seeds 3 --event-share 0.1 --out out/al_simulation_rare

Prints a table (labels needed to reach 95 % of the AP of training on every pool window, per
strategy, and how many times fewer than random) and writes curves.csv, summary.csv and
curves.png under --out. Clip split: a source recording never feeds both pool and test, except
the single long laughter and room-tone recordings, whose clips are split by time (first 70 %
pool, the rest test). Test recordings hold every test clip of laughter and as many cries.
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

from active_learning.simulation import (
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
HOP_SECONDS = 0.96
TEST_FRACTION = 0.3
VGGISH_RATE = 16000
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
            cut = round(len(clips) * (1 - TEST_FRACTION))
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


def embed_clips(rows: list[dict], data: Path, cache: Path) -> tuple[dict[str, np.ndarray], str]:
    """Each clip's VGGish frames (whole 0.96 s examples only), embedded once and cached.

    The clips, resampled to 16 kHz and cut to whole examples, are embedded as one long waveform
    and split back by example counts: one network call instead of 658 differently shaped ones.
    """
    if cache.is_file():
        stored = np.load(cache, allow_pickle=False)
        return {name: stored[name] for name in stored.files if name != "embedder_id"}, str(stored["embedder_id"])
    from embed.audio_io import read_mono
    from embed.pipeline import embed_waveform
    from embed.random_weights import write_random_vggish
    from embed.resample import resample_whole
    from embed.embedder import load_embedder

    example = round(HOP_SECONDS * VGGISH_RATE)
    pieces, counts = [], {}
    for row in rows:
        samples, rate = read_mono(data / row["path"])
        samples = resample_whole(np.asarray(samples, dtype=np.float64), rate, VGGISH_RATE)
        whole = len(samples) // example
        if whole:
            pieces.append(samples[: whole * example])
            counts[row["path"]] = whole
    weights = write_random_vggish(cache.parent / "random-vggish", seed=0)
    embedder = load_embedder(str(weights.checkpoint), str(weights.pca))
    started = time.perf_counter()
    result = embed_waveform(np.concatenate(pieces), VGGISH_RATE, embedder)
    print(f"embedded {len(counts)} clips ({len(result.embedding)} s) in {time.perf_counter() - started:.0f} s",
          flush=True)
    bounds = np.cumsum([0] + list(counts.values()))
    embeddings = {path: result.embedding[bounds[i]:bounds[i + 1]] for i, path in enumerate(counts)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, embedder_id=np.array(result.embedder_id), **embeddings)
    return embeddings, result.embedder_id


def households(
    clips: list[dict], embeddings: dict[str, np.ndarray], event_share: float | None, prefix: str, seed: int
) -> list[OracleRecording]:
    """Recordings of CLIPS_PER_RECORDING clips back to back, with every second's true label.

    All background clips (noise, room tone) are used; event clips (laughter, crying, equally many)
    make up event_share of the clips, or all laughter clips and as many cries when None. Clips are
    whole 0.96 s examples, so joining their embeddings is embedding the joined audio.
    """
    rng = np.random.default_rng(seed)
    usable = [c for c in clips if c["path"] in embeddings]
    background = [c for c in usable if c["label"] in BACKGROUND]
    by_class = {name: [c for c in usable if c["label"] == name] for name in CLASSES}
    per_class = (min(len(v) for v in by_class.values()) if event_share is None
                 else round(len(background) * event_share / (1 - event_share) / len(CLASSES)))
    chosen = list(background)
    for name in CLASSES:
        pool = by_class[name]
        chosen += [pool[i] for i in rng.permutation(len(pool))[:per_class]]
    order = rng.permutation(len(chosen))
    recordings = []
    for number, start in enumerate(range(0, len(order), CLIPS_PER_RECORDING)):
        playlist = [chosen[i] for i in order[start:start + CLIPS_PER_RECORDING]]
        frames = [embeddings[c["path"]] for c in playlist]
        truth = np.concatenate([
            np.tile(np.array([float(c["label"] == name) for name in CLASSES], dtype=np.float32), (len(f), 1))
            for c, f in zip(playlist, frames)
        ])
        recordings.append(OracleRecording(f"{prefix}-{number}", np.concatenate(frames), truth))
    return recordings


def dequantized(embeddings) -> list[np.ndarray]:
    """AudioSet uint8 features back to floats: (x / 255) * 4 - 2."""
    return [e.astype(np.float32) * np.float32(4.0 / 255.0) - np.float32(2.0) for e in embeddings]


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
        return dequantized(embeddings)


@dataclasses.dataclass
class FrameMLPLearner:
    """A per-second MLP with dropout (no memory across seconds): a stable yardstick next to the GRU."""

    hidden: int = 64
    dropout: float = 0.3
    steps: int = 300

    def fit(self, sequences, seed):
        import torch

        x = torch.from_numpy(np.concatenate(self.features([s.embedding for s in sequences])))
        y = torch.from_numpy(np.concatenate([s.frame_labels for s in sequences]).astype(np.float32))
        known = ~torch.isnan(y)
        torch.manual_seed(seed)
        model = torch.nn.Sequential(
            torch.nn.Linear(x.shape[1], self.hidden), torch.nn.ReLU(), torch.nn.Dropout(self.dropout),
            torch.nn.Linear(self.hidden, y.shape[1]),
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
        positives = torch.nansum(y, 0).clamp(min=1)
        negatives = (known.sum(0) - torch.nansum(y, 0)).clamp(min=1)
        loss_function = torch.nn.BCEWithLogitsLoss(reduction="none", pos_weight=(negatives / positives).clamp(max=20))
        model.train()
        for _ in range(self.steps):
            loss = loss_function(model(x), torch.nan_to_num(y))[known].mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return model.eval()

    def probabilities(self, model, embeddings):
        import torch

        with torch.inference_mode():
            return [torch.sigmoid(model(torch.from_numpy(f))).numpy() for f in self.features(embeddings)]

    def mc_samples(self, model, embeddings, count, seed):
        import torch

        torch.manual_seed(seed)
        model.train()
        try:
            with torch.inference_mode():
                return [torch.sigmoid(torch.stack([model(torch.from_numpy(f)) for _ in range(count)])).numpy()
                        for f in self.features(embeddings)]
        finally:
            model.eval()

    def features(self, embeddings):
        return dequantized(embeddings)


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
    parser.add_argument("--learner", choices=("detector", "frame-mlp"), default="detector",
                        help="homesound's GRU detector (default) or a per-second MLP with dropout (a stable yardstick)")
    parser.add_argument("--event-share", type=float, default=None,
                        help="share of event clips in the pool recordings (default: all laughter clips and as many "
                             "cries, about half the clips; household-like: 0.1)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import torch

    torch.set_num_threads(1)  # small models: one thread is fastest, and the machine is shared

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = shared_data()
    with open(data / "clips.csv") as table:
        rows = list(csv.DictReader(table))
    embeddings, embedder_id = embed_clips(rows, data, out.parent / "al_simulation_clip_embeddings.npz")
    pool_clips, test_clips = split_clips(rows)
    pool = households(pool_clips, embeddings, args.event_share, "pool", seed=0)
    test = households(test_clips, embeddings, None, "test", seed=1)
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
    learner = DetectorLearner(embedder_id) if args.learner == "detector" else FrameMLPLearner()

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
    print(f"| strategy | final mean AP ({summary[0]['final_labeled_windows']} windows) | AP laughter | AP crying | "
          "mean AP over rounds | windows to target (seed mean; per seed) | fewer labels than random |")
    print("|---|---|---|---|---|---|---|")
    for row in summary:
        reach = row["windows_to_target"] if row["windows_to_target"] is not None else "-"
        print(f"| {row['strategy']} | {row['final_mean_ap']:.3f} +- {row['final_mean_ap_std']:.3f} | "
              f"{row['final_ap_laughter']:.3f} | {row['final_ap_crying']:.3f} | {row['area_under_curve']:.3f} | "
              f"{reach} ({row['windows_to_target_per_seed']}) | {row['saving_vs_random']} |")
    print(f"curves: {out / 'curves.png'}; total {time.perf_counter() - started:.0f} s")
    return 0


def _summary(curves, strategies, target, full_ap, total_windows) -> list[dict]:
    """Per strategy: final AP, area under the curve, and labels to reach the target, per seed and on the
    seed-averaged curve (less noisy: one lucky round of one seed does not count as reaching it)."""
    by = defaultdict(list)
    for point in curves:
        by[(point["strategy"], point["seed"])].append(point)
    averaged_reach = {}
    rows = []
    for strategy in strategies:
        seeds = sorted(seed for s, seed in by if s == strategy)
        finals = [by[(strategy, seed)][-1] for seed in seeds]
        mean_curve = [
            {"labeled_windows": points[0]["labeled_windows"], "mean_ap": float(np.mean([p["mean_ap"] for p in points]))}
            for points in zip(*(by[(strategy, seed)] for seed in seeds))
        ]
        averaged_reach[strategy] = labels_to_reach(mean_curve, target)
        rows.append({
            "strategy": strategy,
            "final_labeled_windows": finals[0]["labeled_windows"],
            "final_mean_ap": float(np.mean([f["mean_ap"] for f in finals])),
            "final_mean_ap_std": float(np.std([f["mean_ap"] for f in finals])),
            "final_ap_laughter": float(np.nanmean([f["ap_laughter"] for f in finals])),
            "final_ap_crying": float(np.nanmean([f["ap_crying"] for f in finals])),
            "area_under_curve": float(np.mean([p["mean_ap"] for p in mean_curve])),
            "windows_to_target_per_seed": " ".join(
                str(r) if r is not None else "-" for r in (labels_to_reach(by[(strategy, s)], target) for s in seeds)),
            "windows_to_target": averaged_reach[strategy],
            "full_pool_ap": full_ap,
            "full_pool_windows": total_windows,
        })
    for row in rows:
        row["saving_vs_random"] = _saving(row["windows_to_target"], averaged_reach.get("random"))
    return rows


def _saving(needed: int | None, random_needed: int | None) -> str:
    """How many times fewer labels than random reach the target (on seed-averaged curves)."""
    if needed is None:
        return "never reached"
    if random_needed is None:
        return "random never reached"
    return f"{random_needed / needed:.2f}x"


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
