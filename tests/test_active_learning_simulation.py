"""The oracle simulation loop with a tiny per-second learner on planted data."""

from __future__ import annotations

import numpy as np
import pytest

from active_learning.simulation import (
    OracleRecording,
    SimulationConfig,
    labels_to_reach,
    oracle_sequences,
    simulate,
)

CLASSES = ("laughter", "crying")


class NearestMeanLearner:
    """Per-second class scores from distances to class means of the labeled seconds; bootstrap as 'MC'."""

    def fit(self, sequences, seed):
        x = np.concatenate([s.embedding for s in sequences]).astype(np.float64)
        y = np.concatenate([s.frame_labels for s in sequences])
        known = ~np.isnan(y[:, 0])
        return x[known], y[known]

    def probabilities(self, model, embeddings):
        return [self._score(model, e.astype(np.float64)) for e in embeddings]

    def mc_samples(self, model, embeddings, count, seed):
        rng = np.random.default_rng(seed)
        x, y = model
        draws = [rng.integers(0, len(x), len(x)) for _ in range(count)]
        return [np.stack([self._score((x[d], y[d]), e.astype(np.float64)) for d in draws]) for e in embeddings]

    def features(self, embeddings):
        return [e.astype(np.float64) for e in embeddings]

    @staticmethod
    def _score(model, x):
        train_x, train_y = model
        columns = []
        for c in range(train_y.shape[1]):
            positive, negative = train_y[:, c] == 1, train_y[:, c] == 0
            if not positive.any() or not negative.any():
                columns.append(np.full(len(x), 0.5))
                continue
            to_positive = np.linalg.norm(x - train_x[positive].mean(0), axis=1)
            to_negative = np.linalg.norm(x - train_x[negative].mean(0), axis=1)
            columns.append(1 / (1 + np.exp(to_positive - to_negative)))
        return np.stack(columns, axis=1)


def planted(count: int, seed: int) -> list[OracleRecording]:
    rng = np.random.default_rng(seed)
    recordings = []
    for index in range(count):
        truth = np.zeros((60, 2))
        for _ in range(2):
            start, c = rng.integers(0, 54), rng.integers(0, 2)
            truth[start:start + 5, c] = 1
        embedding = rng.normal(0, 1, (60, 8)) + truth @ np.array([[3.0] * 4 + [0.0] * 4, [0.0] * 4 + [3.0] * 4])
        recordings.append(OracleRecording(f"r{index}", embedding.astype(np.float32), truth))
    return recordings


def test_oracle_sequences_label_only_the_chosen_windows():
    recording = planted(1, 0)[0]
    first, second = oracle_sequences([recording], {"r0": [(4.8, 9.6), (38.4, 43.2)]}, CLASSES, "oracle")
    assert (first.start_seconds, len(first.embedding)) == (0.0, 10)  # 5 frames of context before the window
    known = ~np.isnan(first.frame_labels[:, 0])
    assert np.flatnonzero(known).tolist() == [5, 6, 7, 8, 9]
    assert (first.frame_labels[known] == recording.truth[5:10]).all()
    assert second.start_seconds == pytest.approx(35 * 0.96) and np.isnan(second.frame_labels[:5]).all()


@pytest.mark.parametrize("strategy", ["entropy", "bald", "random"])
def test_each_round_labels_new_windows_and_the_model_learns(strategy):
    config = SimulationConfig(initial_windows=6, windows_per_round=4, rounds=3, mc_samples=4)
    curve = simulate(planted(8, 1), planted(4, 2), CLASSES, strategy, seed=0, config=config,
                     learner=NearestMeanLearner())
    assert [p["labeled_windows"] for p in curve] == [6, 10, 14, 18]
    assert curve[-1]["mean_ap"] > 0.8
    assert labels_to_reach(curve, 0.0) == 6 and labels_to_reach(curve, 1.1) is None
