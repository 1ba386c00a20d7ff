"""Does active learning pay? Learning curves (AP per class against labeled windows) per policy, on
real YAMNet embeddings of household recordings with known event times, at two event rates.

Household recordings are assembled from ../shared/data (homesound_testkit/al_households.py): the two
background beds with laughter and crying clips (the events) and household noises, speech and
room tone (hard negatives) laid over them, pool and test split by source recording. They are
embedded once with the real YAMNet .tflite (../shared/models/yamnet; embeddings and the 521
class scores per 0.96 s frame) and cached. An oracle knows every frame's label.

Round 0 is the zero-shot detector (YAMNet's own laughter and crying scores): no labels. Each round
a policy ranks the pool's 5 s windows with the current model (the first round with the zero-shot
model: the cold start of `homesound round`), the oracle labels the picks, and the learner is fitted
on everything labeled so far. The learner is a per-second logistic correction of the zero-shot
logit on the YAMNet embedding (regularised towards the zero-shot model, so no labels = zero-shot),
light enough to refit ~500 times in two minutes on 2 cores. It is lighter than the GRU detector
that `homesound round` trains on YAMNet embeddings, and unlike that GRU it keeps the zero-shot
scores as a prior: the simulation measures the ranking policies with a learner that starts from
the zero-shot model, not the GRU's own label efficiency.

    python benchmarks/al_simulation.py --out out/al_simulation   # both rates, 3 seeds: ~2 min once the
                                                                 # 5.7 h of households are embedded (~12 min)

Prints, per event rate, a table (labels each policy needs to reach 95 % of the AP of training on
every pool window, interpolated between rounds on the seed-averaged curve, and how many times
fewer than random) and writes curves.csv, summary.csv and curves-<rate>.png under --out.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # small problems on a shared machine: many BLAS threads thrash

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from active_learning.ranking import RankConfig  # noqa: E402
from active_learning.simulation import (  # noqa: E402
    OracleRecording,
    Policy,
    SimulationConfig,
    all_windows,
    average_precisions,
    labeled_frames,
    labels_to_reach,
    simulate,
)
from homesound_testkit.al_households import EVENTS, build_households, read_clips, recipes, split_by_source  # noqa: E402

CLASSES = EVENTS
RATES = {  # event share of the seconds -> (event clips per class in pool / test recordings, windows labeled per round)
    "30%": (0.30, {"pool": 60, "test": 30}, (5, 5, 10, 10, 20, 20, 40, 40)),
    "3%": (0.03, {"pool": 40, "test": 30}, (10, 10, 20, 20, 40, 40, 80, 80)),
}
NEGATIVE_SHARE = 0.10  # household noises, speech, room tone: a tenth of the seconds
RECORDING_SECONDS = 600.0
PIECE_FRAMES = 312  # pool recordings are cut into ~5-minute pieces; each seed draws POOL_SHARE of them
POOL_SHARE = 0.8
POLICIES = (  # per_class is RankConfig's default (chosen from this table); the first three rank with one score
    Policy("random", RankConfig(strategy="random", diversity=False, per_class=False)),
    Policy("entropy + k-center", RankConfig(strategy="entropy", per_class=False)),
    Policy("entropy", RankConfig(strategy="entropy", diversity=False, per_class=False)),
    Policy("per-class entropy + k-center (default)", RankConfig(strategy="entropy")),
    Policy("per-class + confident 30%", RankConfig(strategy="entropy", confident_share=0.3, confident_threshold=0.5)),
    Policy("prefilter 10% + per-class", RankConfig(strategy="entropy", prefilter_share=0.1)),
    Policy("prefilter 10% + per-class + confident 30%",
           RankConfig(strategy="entropy", prefilter_share=0.1, confident_share=0.3, confident_threshold=0.5)),
)


def shared() -> tuple[Path, Path]:
    for root in (REPO.parent / "shared", Path(os.environ.get("HOMESOUND_SHARED", "/work/shared"))):
        if (root / "data" / "clips.csv").is_file() and (root / "models" / "yamnet" / "yamnet.tflite").is_file():
            return root / "data", root / "models" / "yamnet"
    raise SystemExit("../shared/data and ../shared/models/yamnet not found beside the checkout (or $HOMESOUND_SHARED)")


def oracle_recordings(households, class_names, piece_frames: int | None = None) -> list[OracleRecording]:
    """The households with the zero-shot detector's probabilities (columns in CLASSES order), cut into
    pieces of piece_frames: YAMNet embeds each frame from its own 0.975 s, so a piece's frames are
    what embedding the piece's audio would give."""
    from classify.zero_shot import ZeroShotConfig, zero_shot_probabilities

    columns = [ZeroShotConfig().classes.index(name) for name in CLASSES]
    recordings = []
    for h in households:
        prior = zero_shot_probabilities(h.class_scores.astype(np.float32), class_names)[:, columns]
        step = piece_frames or len(h.truth)
        for start in range(0, len(h.truth), step):
            if len(h.truth) - start >= step // 2:
                part = slice(start, start + step)
                recordings.append(OracleRecording(f"{h.key}@{start}", h.embedding[part], h.truth[part], prior[part]))
    return recordings


def pool_of_seed(pool: list[OracleRecording], seed: int) -> list[OracleRecording]:
    """The pool one seed learns from: a random POOL_SHARE of the pieces (the seeds differ in their data)."""
    chosen = np.random.default_rng(seed).choice(len(pool), size=round(POOL_SHARE * len(pool)), replace=False)
    return [pool[i] for i in sorted(chosen)]


# ---- the learner ---------------------------------------------------------------------------------

@dataclass
class ZeroShotPriorLogistic:
    """Per second and class: logit = a * logit(zero-shot) + b + w . x, x = the YAMNet embedding
    projected on the pool's top principal components; fitted by L-BFGS (scipy) with a penalty that pulls
    (a, b, w) towards (1, 0, 0) - the zero-shot model - so a few labels nudge it, many reshape it."""

    unlabeled: list  # the pool's recordings: the projection is fitted on them (a workspace has them too)
    components: int = 64
    weight_penalty: float = 300.0  # on |w|^2, in labeled-frame units (chosen by 5-fold CV on the pool)
    prior_penalty: float = 1000.0  # on (a - 1)^2 + b^2: keep trusting the zero-shot scores
    max_positive_weight: float = 10.0

    def __post_init__(self) -> None:
        frames = np.concatenate([np.asarray(r.embedding, dtype=np.float32) for r in self.unlabeled])
        self.mean = frames.mean(axis=0)
        centered = (frames - self.mean).astype(np.float64)
        variances, vectors = np.linalg.eigh(centered.T @ centered / len(frames))
        top = np.argsort(variances)[::-1][: self.components]
        self.basis = (vectors[:, top] / np.sqrt(variances[top])).astype(np.float32)  # unit variance per component
        self.projected: dict[str, np.ndarray] = {}  # recording key -> its projected frames

    def features(self, recordings):
        missing = [r for r in recordings if r.key not in self.projected]
        for recording in missing:
            self.projected[recording.key] = (np.asarray(recording.embedding, dtype=np.float32) - self.mean) @ self.basis
        return [self.projected[r.key] for r in recordings]

    def fit(self, pool, labeled, seed):
        from scipy.optimize import minimize

        classes = pool[0].truth.shape[1]
        if not labeled:
            return np.zeros((self.components, classes)), np.ones(classes), np.zeros(classes)
        features, priors, truth = [], [], []
        chosen = [r for r in pool if labeled.get(r.key)]
        for recording, x in zip(chosen, self.features(chosen)):
            known = labeled_frames(recording, labeled[recording.key])
            features.append(x[known])
            priors.append(_logit(recording.prior[known]))
            truth.append(recording.truth[known])
        x = np.concatenate(features).astype(np.float64)
        prior, y = np.concatenate(priors), np.concatenate(truth).astype(np.float64)
        positive_weight = np.clip((1 - y).sum(0) / np.maximum(y.sum(0), 1), 1.0, self.max_positive_weight)
        weights = np.where(y > 0.5, positive_weight, 1.0)
        size = self.components * classes

        def loss(theta):
            w, a, b = theta[:size].reshape(self.components, classes), theta[size:size + classes], theta[size + classes:]
            z = a * prior + b + x @ w
            data = (weights * (np.logaddexp(0.0, z) - y * z)).sum()
            residual = weights * (1.0 / (1.0 + np.exp(-z)) - y)
            value = data + self.weight_penalty * (w ** 2).sum() + self.prior_penalty * (((a - 1) ** 2).sum() + (b ** 2).sum())
            gradient = np.concatenate([
                (x.T @ residual + 2 * self.weight_penalty * w).ravel(),
                (residual * prior).sum(0) + 2 * self.prior_penalty * (a - 1),
                residual.sum(0) + 2 * self.prior_penalty * b,
            ])
            return value, gradient

        start = np.concatenate([np.zeros(size), np.ones(classes), np.zeros(classes)])
        theta = minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": 300}).x
        return theta[:size].reshape(self.components, classes), theta[size:size + classes], theta[size + classes:]

    def probabilities(self, model, recordings):
        w, a, b = model
        return [1.0 / (1.0 + np.exp(-(a * _logit(r.prior) + b + x @ w)))
                for r, x in zip(recordings, self.features(recordings))]

    def mc_samples(self, model, recordings, count, seed):
        raise ValueError("this learner has no dropout: BALD needs homesound's detector")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)  # float16 scores reach ~1e-7: keep their order
    return np.log(p / (1 - p))


# ---- the experiment ------------------------------------------------------------------------------

def run_rate(name: str, share: float, counts, batches, args, data: Path, yamnet: Path, class_names):
    rows = read_clips(data)
    sides = split_by_source(rows)
    started = time.perf_counter()
    sets = {}
    for recipe in recipes(sides, share, counts, RECORDING_SECONDS, NEGATIVE_SHARE, seed=0):
        households = build_households(recipe, data, yamnet / "yamnet.tflite", Path(args.cache))
        sets[recipe.bed_side] = oracle_recordings(households, class_names,
                                                  PIECE_FRAMES if recipe.bed_side == "pool" else None)
    pool, test = sets["pool"], sets["test"]
    config = SimulationConfig(batches=tuple(args.batches or batches))
    learner = ZeroShotPriorLogistic(pool)
    for side, recordings in sets.items():
        truth = np.concatenate([r.truth for r in recordings])
        print(f"[{name}] {side}: {len(recordings)} recordings, {len(truth) * 0.96 / 3600:.2f} h; event seconds "
              + ", ".join(f"{c} {truth[:, i].mean():.1%}" for i, c in enumerate(CLASSES))
              + f" (any {truth.max(axis=1).mean():.1%})", flush=True)
    pools = [pool_of_seed(pool, seed) for seed in range(args.seeds)]
    total_windows = float(np.mean([sum(map(len, all_windows(p, config).values())) for p in pools]))
    print(f"[{name}] embedded/loaded in {time.perf_counter() - started:.0f} s; pool {len(pool)} pieces, each seed "
          f"draws {POOL_SHARE:.0%}: {total_windows:.0f} windows of {config.window_seconds:.0f} s", flush=True)

    zero = average_precisions([r.truth for r in test], [r.prior for r in test], CLASSES)
    full_runs = []
    for seed_pool in pools:
        full = learner.fit(seed_pool, all_windows(seed_pool, config), 0)
        full_runs.append(average_precisions([r.truth for r in test], learner.probabilities(full, test), CLASSES))
    full_aps = {c: float(np.mean([run[c] for run in full_runs])) for c in CLASSES}
    print(f"[{name}] zero-shot AP {_fmt(zero)}; every pool window labeled: AP {_fmt(full_aps)} (mean of "
          f"{len(pools)} seeds)", flush=True)

    curves = []
    policies = [p for p in POLICIES if p.name in args.policies] if args.policies else list(POLICIES)
    for policy in policies:
        # The baseline labels on for two more rounds, so the labels it needs can be measured, not bounded.
        longer = dataclasses.replace(config, batches=config.batches + (2 * config.batches[-1], 4 * config.batches[-1]))
        for seed, seed_pool in enumerate(pools):
            curve = simulate(seed_pool, test, CLASSES, policy, seed, longer if policy.name == "random" else config,
                             learner)
            for point in curve:
                point["rate"] = name
            curves += curve
            print(f"[{name}] {policy.name:>42} seed {seed}: " + " ".join(
                f"{p['mean_ap']:.3f}@{p['labeled_windows']}" for p in curve)
                + f"  ({time.perf_counter() - started:.0f} s)", flush=True)
    return curves, full_aps, zero, total_windows


def summarize(curves, policies, full_aps, zero, total_windows, target_share, budget: int) -> list[dict]:
    """Per policy: windows to reach target_share of the all-labeled AP (mean over classes and per class,
    on the seed-averaged curve), the first round's AP against zero-shot, and the events found and AP
    after `budget` rounds (the policies' last one; random labels on for longer)."""
    full_mean = float(np.mean(list(full_aps.values())))
    by = defaultdict(list)
    for point in curves:
        by[(point["policy"], point["seed"])].append(point)
    rows = []
    for policy in policies:
        seeds = sorted(seed for p, seed in by if p == policy)
        if not seeds:
            continue
        runs = [by[(policy, seed)] for seed in seeds]
        averaged = [
            {key: float(np.mean([p[key] for p in points])) for key in points[0]
             if key not in ("policy", "rate", "seed")}
            for points in zip(*runs)
        ]
        row = {
            "policy": policy,
            "windows_to_target": labels_to_reach(averaged, target_share * full_mean),
            **{f"windows_to_target_{c}": labels_to_reach(averaged, target_share * full_aps[c], f"ap_{c}")
               for c in CLASSES},
            "windows_to_target_per_seed": " ".join(
                _count(labels_to_reach(run, target_share * full_mean)) for run in runs),
            "zero_shot_mean_ap": averaged[0]["mean_ap"],
            "round1_mean_ap": averaged[1]["mean_ap"],
            "round1_windows": averaged[1]["labeled_windows"],
            **{f"round1_ap_{c}": averaged[1][f"ap_{c}"] for c in CLASSES},
            "labeled_windows_at_end": averaged[-1]["labeled_windows"],
            "final_windows": averaged[budget]["labeled_windows"],
            "final_mean_ap": averaged[budget]["mean_ap"],
            **{f"final_event_windows_{c}": averaged[budget][f"event_windows_{c}"] for c in CLASSES},
            "full_pool_mean_ap": full_mean,
            "full_pool_windows": total_windows,
            "zero_shot_ap": " ".join(f"{c} {zero[c]:.3f}" for c in CLASSES),
        }
        rows.append(row)
    random = next((r for r in rows if r["policy"] == "random"), None)
    for row in rows:
        for suffix in ("", *(f"_{c}" for c in CLASSES)):
            row[f"saving{suffix}"] = _saving(row[f"windows_to_target{suffix}"],
                                             random[f"windows_to_target{suffix}"] if random else None,
                                             random["labeled_windows_at_end"] if random else None)
    return rows


def _saving(needed, random_needed, random_labeled) -> str:
    """How many times fewer labels than random reach the target; a lower bound when random never does."""
    if needed is None:
        return "not reached"
    if needed == 0:
        return "zero-shot reaches it"
    if random_needed is None:
        return f">{random_labeled / needed:.1f}x (random: not in {random_labeled:.0f})"
    return f"{random_needed / needed:.2f}x"


def _count(value) -> str:
    return "-" if value is None else f"{value:.0f}"


def _fmt(aps: dict) -> str:
    return ", ".join(f"{c} {v:.3f}" for c, v in aps.items())


def print_table(name: str, rows: list[dict], target_share: float) -> None:
    first = rows[0]
    print(f"\n### Event rate {name}: pool {first['full_pool_windows']:.0f} windows; zero-shot AP {first['zero_shot_ap']}; "
          f"all pool windows labeled: mean AP {first['full_pool_mean_ap']:.3f}; target {target_share:.0%} of it")
    print("| policy | windows to target (per seed) | vs random | laughter: windows, vs random | "
          "crying: windows, vs random | round 1 mean AP (zero-shot) | events found (laughter/crying windows) | "
          f"mean AP at {first['final_windows']:.0f} windows |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['policy']} | {_count(row['windows_to_target'])} ({row['windows_to_target_per_seed']}) | "
              f"{row['saving']} | {_count(row['windows_to_target_laughter'])}, {row['saving_laughter']} | "
              f"{_count(row['windows_to_target_crying'])}, {row['saving_crying']} | "
              f"{row['round1_mean_ap']:.3f} ({row['zero_shot_mean_ap']:.3f}) | "
              f"{row['final_event_windows_laughter']:.0f}/{row['final_event_windows_crying']:.0f} | "
              f"{row['final_mean_ap']:.3f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "out" / "al_simulation"))
    parser.add_argument("--cache", default="/tmp/homesound-al-simulation",
                        help="where the embedded household recordings are kept between runs")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rates", nargs="+", choices=list(RATES), default=list(RATES))
    parser.add_argument("--policies", nargs="+", help="policy names (default: all)")
    parser.add_argument("--batches", nargs="+", type=int,
                        help="windows labeled in each round (default per rate: 30%%: 5 5 10 10 20 20 40 40, "
                             "3%%: 10 10 20 20 40 40 80 80)")
    parser.add_argument("--target", type=float, default=0.95, help="share of the all-pool AP to reach")
    args = parser.parse_args(argv)
    from classify.zero_shot import yamnet_class_names

    data, yamnet = shared()
    class_names = yamnet_class_names(yamnet / "yamnet_class_map.csv")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    all_curves, tables = [], {}
    for name in args.rates:
        share, counts, batches = RATES[name]
        curves, full_aps, zero, total = run_rate(name, share, counts, batches, args, data, yamnet, class_names)
        all_curves += curves
        policies = list(dict.fromkeys(p["policy"] for p in curves))
        tables[name] = summarize(curves, policies, full_aps, zero, total, args.target,
                                 budget=len(args.batches or batches))
        _plot(curves, policies, full_aps, args.target, out / f"curves-{name.rstrip('%')}pct.png", name)
    _write_csv(out / "curves.csv", all_curves)
    _write_csv(out / "summary.csv", [{"rate": name, **row} for name, rows in tables.items() for row in rows])
    for name, rows in tables.items():
        print_table(name, rows, args.target)
    print(f"\ncurves: {', '.join(str(p) for p in sorted(out.glob('curves-*.png')))}; "
          f"total {time.perf_counter() - started:.0f} s")
    return 0


def _write_csv(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _plot(curves, policies, full_aps, target_share, path: Path, rate: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = ("mean_ap", *(f"ap_{name}" for name in CLASSES))
    references = {"mean_ap": float(np.mean(list(full_aps.values()))),
                  **{f"ap_{name}": full_aps[name] for name in CLASSES}}
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), sharex=True)
    for axis, column in zip(axes, panels):
        for policy in policies:
            points = [p for p in curves if p["policy"] == policy]
            rounds = sorted({p["round"] for p in points})  # seeds may run out of pool windows at different counts
            xs = [np.mean([p["labeled_windows"] for p in points if p["round"] == r]) for r in rounds]
            mean = np.array([np.nanmean([p[column] for p in points if p["round"] == r]) for r in rounds])
            std = np.array([np.nanstd([p[column] for p in points if p["round"] == r]) for r in rounds])
            axis.plot(xs, mean, marker="o", markersize=3, label=policy,
                      linestyle="--" if policy == "random" else "-")
            axis.fill_between(xs, mean - std, mean + std, alpha=0.1)
        axis.axhline(references[column], color="black", linewidth=0.8, label="all pool windows labeled")
        axis.axhline(target_share * references[column], color="grey", linewidth=0.8, linestyle=":",
                     label=f"{target_share:.0%} of that")
        axis.set_xscale("symlog", linthresh=10)
        axis.set_title(f"{column.replace('_', ' ')} (events {rate} of the seconds)")
        axis.set_xlabel("labeled 5 s windows (0 = zero-shot)")
        axis.set_ylabel("average precision per second, test")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
