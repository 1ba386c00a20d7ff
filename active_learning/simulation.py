"""Does active learning pay? Replay the loop with an oracle that knows every second's true label.

Each round the learner is trained on the windows labeled so far, scored on held-out recordings
(average precision per class, per second), and the strategy picks the next windows from the
unlabeled pool - exactly what `homesound round` does, with the oracle in place of a person.
The learner is passed in (fit / probabilities / MC samples), so this loop runs the real detector
in the benchmark and a tiny model in tests.
"""

from __future__ import annotations

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
from homesound.sequences import LabeledSequence


@dataclass(frozen=True)
class OracleRecording:
    key: str
    embedding: np.ndarray  # [T, D] as stored (uint8 AudioSet format or float32 raw)
    truth: np.ndarray  # [T, C] in {0, 1}: what a person would mark


@dataclass(frozen=True)
class SimulationConfig:
    initial_windows: int = 8  # random windows labeled before the first model (same for every strategy)
    windows_per_round: int = 8
    rounds: int = 8
    window_seconds: float = 5.0
    mc_samples: int = 16  # dropout masks for BALD
    diversity: bool = True
    hop_seconds: float = HOP_SECONDS


class Learner(Protocol):
    def fit(self, sequences: Sequence[LabeledSequence], seed: int) -> Any: ...

    def probabilities(self, model: Any, embeddings: Sequence[np.ndarray]) -> list[np.ndarray]: ...

    def mc_samples(self, model: Any, embeddings: Sequence[np.ndarray], count: int, seed: int) -> list[np.ndarray]: ...

    def features(self, embeddings: Sequence[np.ndarray]) -> list[np.ndarray]: ...


def oracle_sequences(
    pool: Sequence[OracleRecording],
    labeled: dict[str, list[tuple[float, float]]],
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
        frames = len(recording.embedding)
        starts = np.arange(frames) * hop_seconds
        known = np.zeros(frames, dtype=bool)
        for start, end in spans:
            overlap = np.clip(np.minimum(starts + hop_seconds, end) - np.maximum(starts, start), 0, None)
            known |= overlap >= hop_seconds / 2 - 1e-9
        labels = np.where(known[:, None], recording.truth, np.nan).astype(np.float32)
        for begin, end in _stretches(known, context_frames):
            first = max(0, begin - context_frames)
            sequences.append(LabeledSequence(
                key=f"oracle:{recording.key}:{first}", group=recording.key, split="train",
                embedding=recording.embedding[first:end], embedder_id=embedder_id, classes=tuple(classes),
                frame_labels=labels[first:end], start_seconds=first * hop_seconds, hop_seconds=hop_seconds,
            ))
    return sequences


def _stretches(known: np.ndarray, join_gap: int) -> list[tuple[int, int]]:
    """[begin, end) runs of labeled frames; runs closer than join_gap become one, so no label is used twice."""
    edges = np.flatnonzero(np.diff(np.concatenate([[False], known, [False]]).astype(np.int8)))
    stretches: list[tuple[int, int]] = []
    for begin, end in zip(edges[0::2].tolist(), edges[1::2].tolist()):
        if stretches and begin - stretches[-1][1] <= join_gap:
            stretches[-1] = (stretches[-1][0], end)
        else:
            stretches.append((begin, end))
    return stretches


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
    strategy: str,
    seed: int,
    config: SimulationConfig,
    learner: Learner,
    embedder_id: str = "oracle",
) -> list[dict]:
    """The learning curve of one strategy and seed: AP after each round against labeled windows."""
    labeled: dict[str, list[tuple[float, float]]] = {}
    _label(labeled, _initial_picks(pool, classes, config, seed))
    pool_features = learner.features([r.embedding for r in pool]) if config.diversity else [None] * len(pool)
    curve = []
    for round_index in range(config.rounds + 1):
        model = learner.fit(oracle_sequences(pool, labeled, classes, embedder_id, config.hop_seconds), seed)
        test_probabilities = learner.probabilities(model, [r.embedding for r in test])
        aps = average_precisions([r.truth for r in test], test_probabilities, classes)
        curve.append({
            "strategy": strategy, "seed": seed, "round": round_index,
            "labeled_windows": sum(len(spans) for spans in labeled.values()),
            "mean_ap": float(np.nanmean(list(aps.values()))), **{f"ap_{name}": ap for name, ap in aps.items()},
        })
        if round_index == config.rounds:
            break
        embeddings = [r.embedding for r in pool]
        probabilities = learner.probabilities(model, embeddings)
        samples = (
            learner.mc_samples(model, embeddings, config.mc_samples, seed * 1000 + round_index)
            if strategy == "bald" else [None] * len(pool)
        )
        predictions = [
            RecordingPredictions(
                recording=r.key, path=r.key, classes=tuple(classes), probabilities=p, samples=s, embedding=f,
                excluded=tuple(labeled.get(r.key, ())), hop_seconds=config.hop_seconds,
            )
            for r, p, s, f in zip(pool, probabilities, samples, pool_features)
        ]
        rank = RankConfig(
            strategy=strategy, top=config.windows_per_round, window_seconds=config.window_seconds,
            diversity=config.diversity and strategy != "random", seed=seed * 1000 + round_index,
        )
        picks = rank_windows(predictions, rank)
        if not picks:  # every pool window is labeled
            break
        _label(labeled, [(p.recording, p.start_seconds, p.end_seconds) for p in picks])
    return curve


def all_windows(pool: Sequence[OracleRecording], config: SimulationConfig) -> dict[str, list[tuple[float, float]]]:
    rank = RankConfig(window_seconds=config.window_seconds)
    return {r.key: window_bounds(len(r.embedding) * config.hop_seconds, rank) for r in pool}


def labels_to_reach(curve: Sequence[dict], target: float) -> int | None:
    """Labeled windows at the first round whose mean AP reaches target; None if it never does."""
    for point in curve:
        if point["mean_ap"] >= target:
            return point["labeled_windows"]
    return None


def _initial_picks(pool, classes, config: SimulationConfig, seed: int) -> list[tuple[str, float, float]]:
    predictions = [
        RecordingPredictions(recording=r.key, path=r.key, classes=tuple(classes),
                             probabilities=np.zeros((len(r.embedding), len(classes))), hop_seconds=config.hop_seconds)
        for r in pool
    ]
    rank = RankConfig(strategy="random", top=config.initial_windows, window_seconds=config.window_seconds, seed=seed)
    return [(p.recording, p.start_seconds, p.end_seconds) for p in rank_windows(predictions, rank)]


def _label(labeled: dict[str, list[tuple[float, float]]], picks) -> None:
    for key, start, end in picks:
        labeled.setdefault(key, []).append((start, end))
