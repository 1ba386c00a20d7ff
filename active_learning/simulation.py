"""Does active learning pay? Replay the loop with an oracle that knows every second's true label.

Round 0 is the model before any label (the zero-shot detector, when the learner has that prior);
each round a policy picks the next windows from the unlabeled pool with that round's model - as
`homesound round` does, with the oracle in place of a person - the learner is fitted on every
window labeled so far and scored on held-out recordings (average precision per class, per
second). The learner is passed in (fit / probabilities / features), so the benchmark runs real
models on real embeddings and tests run a tiny one on planted data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from sklearn.metrics import average_precision_score

from active_learning.ranking import (
    HOP_SECONDS,
    RankConfig,
    RecordingPredictions,
    rank_windows,
    window_bounds,
)
from homesound.sequences import LabeledSequence, mask_runs

Spans = dict[str, list[tuple[float, float]]]  # recording key -> labeled (start, end) seconds


@dataclass(frozen=True)
class OracleRecording:
    key: str
    embedding: np.ndarray  # [T, D] as the learner reads it
    truth: np.ndarray  # [T, C] in {0, 1}: what a person would mark
    prior: np.ndarray | None = None  # [T, C] a prior model's probabilities (zero-shot), if there is one


@dataclass(frozen=True)
class Policy:
    """A named way of choosing windows: a ranking configuration (top and seed are set each round)."""

    name: str
    rank: RankConfig


@dataclass(frozen=True)
class SimulationConfig:
    batches: tuple[int, ...] = (10, 10, 20, 20, 40, 40, 80, 80)  # windows labeled in each round
    window_seconds: float = 5.0
    mc_samples: int = 16  # dropout masks for BALD
    hop_seconds: float = HOP_SECONDS


class Learner(Protocol):
    def fit(self, pool: Sequence[OracleRecording], labeled: Spans, seed: int) -> Any:
        """A model from the labeled spans of the pool (none labeled: the learner's prior model)."""

    def probabilities(self, model: Any, recordings: Sequence[OracleRecording]) -> list[np.ndarray]: ...

    def mc_samples(self, model: Any, recordings: Sequence[OracleRecording], count: int, seed: int) -> list[np.ndarray]: ...

    def features(self, recordings: Sequence[OracleRecording]) -> list[np.ndarray]:
        """Per-frame vectors k-center spreads the picks over."""


def labeled_frames(recording: OracleRecording, spans: Sequence[tuple[float, float]],
                   hop_seconds: float = HOP_SECONDS) -> np.ndarray:
    """[T] bool: frames a labeled span covers for at least half a hop (as pulled labels do)."""
    starts = np.arange(len(recording.truth)) * hop_seconds
    known = np.zeros(len(recording.truth), dtype=bool)
    for start, end in spans:
        overlap = np.clip(np.minimum(starts + hop_seconds, end) - np.maximum(starts, start), 0, None)
        known |= overlap >= hop_seconds / 2 - 1e-9
    return known


def oracle_sequences(
    pool: Sequence[OracleRecording],
    labeled: Spans,
    classes: Sequence[str],
    embedder_id: str,
    hop_seconds: float = HOP_SECONDS,
    context_frames: int = 5,
) -> list[LabeledSequence]:
    """What the workspace would train on: one sequence per labeled stretch of a recording, with the
    oracle's labels where labeled, NaN elsewhere, and a few unlabeled seconds before it (a causal
    model's warm-up), as the workspace's strong-label provider does."""
    sequences = []
    for recording in pool:
        spans = labeled.get(recording.key)
        if not spans:
            continue
        known = labeled_frames(recording, spans, hop_seconds)
        labels = np.where(known[:, None], recording.truth, np.nan).astype(np.float32)
        for begin, end in mask_runs(known, join_gap=context_frames):
            first = max(0, begin - context_frames)
            sequences.append(LabeledSequence(
                key=f"oracle:{recording.key}:{first}", group=recording.key, split="train",
                embedding=recording.embedding[first:end], embedder_id=embedder_id, classes=tuple(classes),
                frame_labels=labels[first:end], start_seconds=first * hop_seconds, hop_seconds=hop_seconds,
            ))
    return sequences


def average_precisions(
    truth: Sequence[np.ndarray], probabilities: Sequence[np.ndarray], classes: Sequence[str]
) -> dict[str, float]:
    """Per-second AP of each class over all test recordings (NaN if the class never occurs)."""
    y = np.concatenate(truth)
    p = np.concatenate(probabilities)
    return {
        name: float(average_precision_score(y[:, c], p[:, c])) if y[:, c].any() else float("nan")
        for c, name in enumerate(classes)
    }


def simulate(
    pool: Sequence[OracleRecording],
    test: Sequence[OracleRecording],
    classes: Sequence[str],
    policy: Policy,
    seed: int,
    config: SimulationConfig,
    learner: Learner,
) -> list[dict]:
    """The learning curve of one policy and seed: AP and labeled windows (with events) after each round."""
    labeled: Spans = {}
    needs_features = policy.rank.diversity and policy.rank.strategy != "random"
    pool_features = learner.features(pool) if needs_features else [None] * len(pool)
    curve = []
    for round_index in range(len(config.batches) + 1):
        model = learner.fit(pool, labeled, seed)
        aps = average_precisions([r.truth for r in test], learner.probabilities(model, test), classes)
        curve.append({
            "policy": policy.name, "seed": seed, "round": round_index,
            "labeled_windows": sum(len(spans) for spans in labeled.values()),
            **{f"event_windows_{name}": count for name, count in _event_windows(pool, labeled, classes, config).items()},
            "mean_ap": float(np.nanmean(list(aps.values()))), **{f"ap_{name}": ap for name, ap in aps.items()},
        })
        if round_index == len(config.batches):
            break
        probabilities = learner.probabilities(model, pool)
        samples = (
            learner.mc_samples(model, pool, config.mc_samples, seed * 1000 + round_index)
            if policy.rank.strategy == "bald" else [None] * len(pool)
        )
        predictions = [
            RecordingPredictions(
                recording=r.key, path=r.key, classes=tuple(classes), probabilities=p, samples=s, embedding=f,
                excluded=tuple(labeled.get(r.key, ())), hop_seconds=config.hop_seconds, prior=r.prior,
            )
            for r, p, s, f in zip(pool, probabilities, samples, pool_features)
        ]
        rank = dataclasses.replace(
            policy.rank, top=config.batches[round_index], window_seconds=config.window_seconds,
            seed=seed * 1000 + round_index,
        )
        picks = rank_windows(predictions, rank)
        if not picks:  # every pool window is labeled
            break
        for pick in picks:
            labeled.setdefault(pick.recording, []).append((pick.start_seconds, pick.end_seconds))
    return curve


def _event_windows(pool, labeled: Spans, classes, config: SimulationConfig) -> dict[str, int]:
    """Labeled windows holding at least one second of each class: did the picks find the events?"""
    counts = dict.fromkeys(classes, 0)
    by_key = {r.key: r for r in pool}
    for key, spans in labeled.items():
        for span in spans:
            inside = labeled_frames(by_key[key], [span], config.hop_seconds)
            for c, name in enumerate(classes):
                counts[name] += int(by_key[key].truth[inside, c].any())
    return counts


def all_windows(pool: Sequence[OracleRecording], config: SimulationConfig) -> Spans:
    rank = RankConfig(window_seconds=config.window_seconds)
    return {r.key: window_bounds(len(r.truth) * config.hop_seconds, rank) for r in pool}


def labels_to_reach(curve: Sequence[dict], target: float, column: str = "mean_ap") -> float | None:
    """Labeled windows where the curve first reaches target, linearly interpolated between the two
    rounds around it (rounds label growing batches); None if it never does."""
    previous = None
    for point in curve:
        if point[column] >= target:
            if previous is None or point[column] == previous[column]:
                return float(point["labeled_windows"])
            share = (target - previous[column]) / (point[column] - previous[column])
            return float(previous["labeled_windows"] + share * (point["labeled_windows"] - previous["labeled_windows"]))
        previous = point
    return None
