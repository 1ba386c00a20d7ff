"""The ranking core on numbers whose answer is known."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from active_learning.ranking import (
    RankConfig,
    RecordingPredictions,
    bald,
    candidate_windows,
    entropy_uncertainty,
    k_center_greedy,
    least_confidence,
    margin_uncertainty,
    rank_windows,
    window_bounds,
)

CLASSES = ("laughter", "crying")


def recording(probabilities, name="a", **kwargs) -> RecordingPredictions:
    return RecordingPredictions(
        recording=name, path=f"/home/{name}.wav", classes=CLASSES,
        probabilities=np.asarray(probabilities, dtype=np.float64), **kwargs,
    )


def test_uncertainty_measures_agree_on_the_obvious_and_differ_where_they_should():
    sure_nothing, coin_flip, both_high = [0.01, 0.02], [0.5, 0.01], [0.95, 0.95]
    p = np.array([sure_nothing, coin_flip, both_high])
    assert least_confidence(p) == pytest.approx([0.02, 0.5, 0.05])
    assert entropy_uncertainty(np.array([[0.5, 0.5]])) == pytest.approx([2.0])
    # Laughter and crying both near-certain: each decision is sure, but which sound is it is not.
    margin = margin_uncertainty(p)
    assert margin[2] > 0.95 and margin[0] < 0.1
    assert least_confidence(p)[2] < least_confidence(p)[1]


def test_bald_separates_model_doubt_from_ambiguous_audio():
    disagree = np.zeros((10, 1, 2))
    disagree[::2, 0, 0] = 0.99  # half the dropout masks hear laughter, half hear nothing
    disagree[1::2, 0, 0] = 0.01
    ambiguous = np.full((10, 1, 2), 0.01)
    ambiguous[:, 0, 0] = 0.5  # every mask says 50/50: the audio is unclear, labels will not help
    assert bald(disagree)[0] > 0.8
    assert bald(ambiguous)[0] == pytest.approx(0.0, abs=1e-6)


def test_sure_float32_outputs_give_finite_scores():
    certain = np.array([[[1.0, 0.0]], [[0.0, 1.0]]], dtype=np.float32)  # [S=2, T=1, C=2]
    assert np.isfinite(entropy_uncertainty(certain[0])).all()
    assert bald(certain)[0] == pytest.approx(2.0)


def test_windows_cover_the_recording_and_skip_taken_spans():
    config = RankConfig(window_seconds=5.0)
    assert window_bounds(12.0, config) == [(0.0, 5.0), (5.0, 10.0)]  # 2 s tail < half a window
    assert window_bounds(13.0, config)[-1] == (10.0, 13.0)
    frames = 21  # 20.16 s
    predictions = recording(np.full((frames, 2), 0.3), excluded=((4.0, 6.0),))
    starts = [c.start_seconds for c in candidate_windows(predictions, config)]
    assert starts == [10.0, 15.0]


def test_uncertain_window_ranks_first_with_a_reason_naming_time_and_probabilities():
    probabilities = np.full((40, 2), 0.02)
    probabilities[25] = [0.48, 0.05]  # 24.0 s: a doubtful laugh
    picks = rank_windows([recording(probabilities)], RankConfig(strategy="least-confidence", top=2, diversity=False))
    assert (picks[0].start_seconds, picks[0].end_seconds) == (20.0, 25.0)
    assert "0:00:24" in picks[0].reason and "laughter 0.48" in picks[0].reason
    assert picks[0].score > picks[1].score


def test_k_center_spreads_picks_over_different_sounds():
    rng = np.random.default_rng(0)
    frames = 100  # 20 windows of ~5 frames
    embedding = np.zeros((frames, 8))
    probabilities = np.full((frames, 2), 0.4)
    embedding[:50] = rng.normal(0.0, 0.05, (50, 8))  # one long cry, the most uncertain part
    probabilities[:50, 1] = 0.5
    embedding[50:] = rng.normal(5.0, 0.05, (50, 8)) * np.arange(1, 9)  # other sounds, a bit less uncertain
    predictions = recording(probabilities, embedding=embedding)
    plain = rank_windows([predictions], RankConfig(strategy="entropy", top=4, diversity=False))
    spread = rank_windows([predictions], RankConfig(strategy="entropy", top=4, diversity=True, diversity_pool=5))
    assert all(pick.start_seconds < 48 for pick in plain)
    assert any(pick.start_seconds >= 48 for pick in spread)
    assert "k-center" in spread[0].reason


def test_picks_keep_away_from_what_is_already_labeled():
    embedding = np.zeros((40, 2))
    embedding[20:] = 10.0  # two sounds; the first one is already labeled at 0-5 s
    probabilities = np.full((40, 2), 0.3)
    probabilities[:20, 0] = 0.5  # the labeled sound is also the most uncertain
    taken = recording(probabilities, embedding=embedding, excluded=((0.0, 5.0),))
    config = RankConfig(strategy="least-confidence", top=1, diversity_pool=8)
    assert rank_windows([taken], config)[0].start_seconds >= 19.2
    assert rank_windows([taken], RankConfig(strategy="least-confidence", top=1, diversity=False))[0].start_seconds < 19


def test_k_center_greedy_starts_away_from_labeled_points():
    points = np.array([[0.0], [1.0], [10.0]])
    picked, distances = k_center_greedy(points, 2, centers=np.array([[0.5]]))
    assert picked == [2, 0] and distances[0] == pytest.approx(9.5)


def test_confident_share_reserves_picks_for_sure_detections():
    probabilities = np.full((50, 2), 0.5)
    probabilities[40:45] = [0.99, 0.01]
    picks = rank_windows([recording(probabilities)], RankConfig(top=4, confident_share=0.25, diversity=False))
    confident = [pick for pick in picks if pick.strategy == "confident"]
    assert len(confident) == 1 and confident[0].start_seconds in (35.0, 40.0)
    assert "confident laughter" in confident[0].reason


def test_per_class_gives_a_rare_class_its_share_of_the_picks():
    probabilities = np.full((100, 2), 0.01)
    probabilities[:80, 0] = 0.5  # laughter: doubtful almost everywhere (common, e.g. speech-like sounds)
    probabilities[[85, 92], 1] = 0.2  # crying: two mildly doubtful seconds, the rare event
    summed = rank_windows([recording(probabilities)],
                          RankConfig(strategy="entropy", top=4, diversity=False, per_class=False))
    shared = rank_windows([recording(probabilities)],
                          RankConfig(strategy="entropy", top=4, diversity=False, per_class=True))
    assert all(pick.start_seconds < 80 for pick in summed)
    assert sorted(p.start_seconds for p in shared if p.start_seconds >= 80) == [80.0, 85.0]  # 81.6 s, 88.3 s
    assert sum("about crying" in p.reason for p in shared) == 2 and sum("about laughter" in p.reason for p in shared) == 2


def test_confident_share_takes_turns_between_classes():
    probabilities = np.full((100, 2), 0.3)
    probabilities[:60, 0] = 0.99  # many sure laughs
    probabilities[70:74, 1] = 0.8  # one surer-than-threshold cry
    picks = rank_windows([recording(probabilities)], RankConfig(
        strategy="entropy", top=4, confident_share=0.5, confident_threshold=0.6, diversity=False))
    confident = [p for p in picks if p.strategy == "confident"]
    assert len(confident) == 2
    assert {"confident laughter" in p.reason for p in confident} == {True, False}
    assert any(p.start_seconds == 65.0 and "confident crying" in p.reason for p in confident)


def test_prefilter_ranks_only_windows_the_prior_finds_likely():
    probabilities = np.full((200, 2), 0.5)  # the model is unsure everywhere
    prior = np.full((200, 2), 0.001)
    prior[[12, 107, 160], 1] = [0.6, 0.5, 0.4]  # the zero-shot detector hears crying here,
    prior[[50, 180], 0] = [0.7, 0.3]  # and laughter here
    config = RankConfig(strategy="entropy", top=3, diversity=False, prefilter_share=0.01, diversity_pool=1)
    picks = rank_windows([recording(probabilities, prior=prior)], config)
    # Per class, its two likeliest windows (at least diversity_pool x top between the classes) are candidates.
    assert {p.start_seconds for p in picks} <= {10.0, 100.0, 45.0, 170.0} and len(picks) == 3
    assert "likeliest windows" in picks[0].reason
    unfiltered = rank_windows([recording(probabilities, prior=prior)], dataclasses.replace(config, prefilter_share=1.0))
    assert {p.start_seconds for p in unfiltered} == {0.0, 5.0, 10.0}


def test_random_baseline_is_reproducible_per_seed():
    predictions = recording(np.random.default_rng(1).random((200, 2)))
    first = rank_windows([predictions], RankConfig(strategy="random", top=5, seed=3))
    again = rank_windows([predictions], RankConfig(strategy="random", top=5, seed=3))
    other = rank_windows([predictions], RankConfig(strategy="random", top=5, seed=4))
    key = lambda picks: [p.start_seconds for p in picks]
    assert key(first) == key(again) != key(other)


def test_bald_without_samples_is_refused():
    with pytest.raises(ValueError, match="MC-dropout"):
        rank_windows([recording(np.full((10, 2), 0.5))], RankConfig(strategy="bald"))


@settings(max_examples=40, deadline=None)
@given(
    frames=st.integers(1, 80),
    excluded=st.lists(st.tuples(st.floats(0, 80), st.floats(0.1, 20)), max_size=4),
    strategy=st.sampled_from(["least-confidence", "margin", "entropy", "bald", "random"]),
    seed=st.integers(0, 5),
    per_class=st.booleans(),
    prefilter_share=st.sampled_from([1.0, 0.3, 0.05]),
)
def test_picks_are_distinct_and_never_touch_taken_spans(frames, excluded, strategy, seed, per_class, prefilter_share):
    rng = np.random.default_rng(seed)
    spans = tuple((start, start + length) for start, length in excluded)
    predictions = recording(
        rng.random((frames, 2)), samples=rng.random((4, frames, 2)), embedding=rng.random((frames, 3)),
        excluded=spans, prior=rng.random((frames, 2)),
    )
    picks = rank_windows([predictions], RankConfig(strategy=strategy, top=6, confident_share=0.2, seed=seed,
                                                   per_class=per_class, prefilter_share=prefilter_share))
    windows = [(p.start_seconds, p.end_seconds) for p in picks]
    assert len(windows) == len(set(windows)) <= 6
    assert [p.rank for p in picks] == list(range(1, len(picks) + 1))
    for start, end in windows:
        assert all(not (start < b and a < end) for a, b in spans)
