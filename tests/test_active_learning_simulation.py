"""The oracle simulation loop with a tiny per-second learner on planted data."""

from __future__ import annotations

import numpy as np
import pytest

from active_learning.ranking import RankConfig
from active_learning.simulation import (
    OracleRecording,
    Policy,
    SimulationConfig,
    labeled_frames,
    labels_to_reach,
    oracle_sequences,
    simulate,
)

CLASSES = ("laughter", "crying")


class NearestMeanLearner:
    """Per-second class scores from distances to class means of the labeled seconds (0.5 before any label);
    bootstrap draws stand in for MC dropout."""

    def fit(self, pool, labeled, seed):
        if not labeled:
            return None
        x, y = [], []
        for recording in pool:
            if labeled.get(recording.key):
                known = labeled_frames(recording, labeled[recording.key])
                x.append(recording.embedding[known].astype(np.float64))
                y.append(recording.truth[known])
        return np.concatenate(x), np.concatenate(y)

    def probabilities(self, model, recordings):
        return [self._score(model, r.embedding.astype(np.float64)) for r in recordings]

    def mc_samples(self, model, recordings, count, seed):
        if model is None:
            return [np.full((count, len(r.embedding), len(CLASSES)), 0.5) for r in recordings]
        rng = np.random.default_rng(seed)
        x, y = model
        draws = [rng.integers(0, len(x), len(x)) for _ in range(count)]
        return [np.stack([self._score((x[d], y[d]), r.embedding.astype(np.float64)) for d in draws])
                for r in recordings]

    def features(self, recordings):
        return [r.embedding.astype(np.float64) for r in recordings]

    @staticmethod
    def _score(model, x):
        if model is None:
            return np.full((len(x), len(CLASSES)), 0.5)
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
    config = SimulationConfig(batches=(8, 6, 6), mc_samples=4)
    policy = Policy(strategy, RankConfig(strategy=strategy, per_class=strategy == "entropy"))
    curve = simulate(planted(8, 1), planted(4, 2), CLASSES, policy, seed=0, config=config,
                     learner=NearestMeanLearner())
    assert [p["labeled_windows"] for p in curve] == [0, 8, 14, 20]
    assert curve[0]["mean_ap"] < 0.6 < 0.75 < curve[-1]["mean_ap"]  # 0 labels: the learner's prior (0.5)
    assert curve[-1]["event_windows_laughter"] + curve[-1]["event_windows_crying"] > 0


def test_labels_to_reach_interpolates_between_rounds():
    curve = [{"labeled_windows": 0, "mean_ap": 0.4}, {"labeled_windows": 10, "mean_ap": 0.5},
             {"labeled_windows": 30, "mean_ap": 0.7}]
    assert labels_to_reach(curve, 0.3) == 0
    assert labels_to_reach(curve, 0.6) == pytest.approx(20.0)
    assert labels_to_reach(curve, 0.71) is None
