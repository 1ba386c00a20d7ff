"""Event extraction: hysteresis, minimum length and merge gap, batch and streaming (one implementation)."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from classify.events import EventRule, EventTracker, extract_events

HOP = 0.96
TOLERANCE = 1e-9

probability_series = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=0, max_size=80)


@st.composite
def rules(draw):
    on = draw(st.floats(0.05, 1.0))
    off = draw(st.floats(0.0, 1.0).map(lambda f: f * on))
    return EventRule(
        on_threshold=on,
        off_threshold=off,
        min_event_seconds=draw(st.sampled_from([0.0, 0.5, 0.96, 1.0, 2.5, 4.0])),
        merge_gap_seconds=draw(st.sampled_from([0.0, 0.5, 0.96, 1.92, 3.0])),
    )


@settings(max_examples=300, deadline=None)
@given(probabilities=probability_series, rule=rules(), start=st.sampled_from([0.0, 12.48, 3600.0]))
def test_events_respect_time_arithmetic(probabilities, rule, start):
    series = np.array(probabilities, dtype=np.float64).reshape(-1, 1)
    events = extract_events(series, ["crying"], rule, HOP, start)
    recording_end = start + len(probabilities) * HOP
    for event in events:
        assert start - TOLERANCE <= event.start < event.end <= recording_end + TOLERANCE  # inside the recording
        assert event.duration >= rule.min_event_seconds - 1e-6  # minimum length
        assert event.peak_probability >= rule.on_threshold  # something switched it on
        assert event.mean_probability <= event.peak_probability + 1e-12
        first = round((event.start - start) / HOP)
        last = round((event.end - start) / HOP) - 1
        assert probabilities[first] >= rule.on_threshold  # starts at an onset
        assert probabilities[last] >= rule.off  # ends on the last second still 'on'
        assert event.peak_probability == pytest.approx(max(probabilities[first:last + 1]))
        assert event.mean_probability == pytest.approx(float(np.mean(probabilities[first:last + 1])))
    for earlier, later in itertools.pairwise(events):
        assert earlier.end <= later.start  # never overlap within a class
        assert later.start - earlier.end > rule.merge_gap_seconds - 1e-6  # shorter gaps would be merged


@settings(max_examples=200, deadline=None)
@given(probabilities=probability_series, threshold=st.floats(0.05, 1.0))
def test_without_hysteresis_events_are_exactly_the_runs_above_threshold(probabilities, threshold):
    events = extract_events(np.array(probabilities).reshape(-1, 1), ["laughter"], EventRule(threshold), HOP)
    above = [p >= threshold for p in probabilities]
    runs, index = [], 0
    while index < len(above):
        if above[index]:
            begin = index
            while index < len(above) and above[index]:
                index += 1
            runs.append((begin * HOP, index * HOP))
        else:
            index += 1
    assert [(e.start, e.end) for e in events] == [pytest.approx(run) for run in runs]


@settings(max_examples=200, deadline=None)
@given(probabilities=probability_series, rule=rules(), chunk=st.integers(1, 7))
def test_streaming_updates_match_batch_events(probabilities, rule, chunk):
    tracker = EventTracker("crying", rule, HOP)
    updates = []
    for begin in range(0, len(probabilities), chunk):
        for p in probabilities[begin:begin + chunk]:
            updates.extend(tracker.push(p))
    updates.extend(tracker.finish())
    batch = extract_events(np.array(probabilities).reshape(-1, 1), ["crying"], rule, HOP)
    assert [u.event for u in updates if u.kind == "end"] == batch
    # Every start is followed by its end; a start is reported with the onset time it will keep.
    kinds = [u.kind for u in updates]
    assert kinds == ["start", "end"] * (len(kinds) // 2)
    for started, ended in zip(updates[::2], updates[1::2]):
        assert started.event.start == ended.event.start
        assert started.event.duration >= rule.min_event_seconds - 1e-6


def test_start_is_reported_as_soon_as_the_event_is_long_enough_and_end_after_the_hold():
    rule = EventRule(on_threshold=0.8, off_threshold=0.4, min_event_seconds=1.5, merge_gap_seconds=1.92)
    tracker = EventTracker("crying", rule, HOP)
    timeline = [0.1, 0.9, 0.5, 0.6, 0.3, 0.2, 0.85, 0.1, 0.1, 0.1, 0.0]
    reported = {index: tracker.push(p) for index, p in enumerate(timeline)}
    assert [u.kind for u in reported[2]] == ["start"]  # second frame of the event: 1.92 s >= 1.5 s
    assert reported[2][0].event.start == pytest.approx(0.96)
    # Dropped below off at frames 4-5 (a 1.92 s gap) and came back on at 6: merged.
    # After frame 6 it is off again; an onset at frame 9 would still be merged (gap 1.92 s), so
    # the end is known only at frame 9, when an onset could no longer be bridged.
    assert all(not reported[i] for i in (3, 4, 5, 6, 7, 8))
    (end,) = reported[9]
    assert end.kind == "end"
    assert (end.event.start, end.event.end) == pytest.approx((0.96, 7 * 0.96))
    assert end.event.peak_probability == pytest.approx(0.9)
    assert end.event.mean_probability == pytest.approx(np.mean(timeline[1:7]))
    assert tracker.finish() == []


def test_short_blips_are_dropped_and_per_class_rules_apply():
    probabilities = np.array([[0.9, 0.0], [0.0, 0.9], [0.0, 0.9], [0.0, 0.9], [0.0, 0.0]])
    rules = {
        "laughter": EventRule(0.5, min_event_seconds=1.0),
        "crying": EventRule(0.5, min_event_seconds=1.0),
    }
    events = extract_events(probabilities, ["laughter", "crying"], rules, HOP, start_seconds=10.0)
    assert [(e.label, e.start, e.end) for e in events] == [("crying", 10.0 + HOP, pytest.approx(10.0 + 4 * HOP))]


def test_bad_rules_are_refused():
    with pytest.raises(ValueError):
        EventRule(0.5, off_threshold=0.7)
    with pytest.raises(ValueError):
        EventRule(1.5)
    with pytest.raises(ValueError):
        EventRule(0.5, min_event_seconds=-1)
