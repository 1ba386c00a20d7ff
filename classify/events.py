"""Per-second probabilities -> events, with hysteresis, a minimum length and a merge gap.

One implementation serves both uses: `EventTracker` consumes one probability at a time (live
detection reports an event's start as soon as it is certain and its end once the merge gap —
the hold time — has passed without a new onset), and `extract_events` runs trackers over whole
recordings. Pure: no I/O, no torch.

Frame i covers [start + i * hop, start + (i + 1) * hop); every event therefore lies inside the
frames it was computed from, and event times are whole multiples of the hop from the start.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

_TIME_TOLERANCE = 1e-9


@dataclass(frozen=True)
class EventRule:
    """When a class is 'on': starts at >= on_threshold, continues while >= off_threshold.

    Gaps of at most merge_gap_seconds between two parts are bridged (and are the hold time of
    live detection: an event is over only when no new onset came within it); events shorter than
    min_event_seconds are dropped.
    """

    on_threshold: float
    off_threshold: float | None = None  # None: same as on_threshold (no hysteresis)
    min_event_seconds: float = 0.0
    merge_gap_seconds: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.on_threshold <= 1.0:
            raise ValueError(f"on_threshold must be in [0, 1], got {self.on_threshold}")
        if self.off_threshold is not None and not 0.0 <= self.off_threshold <= self.on_threshold:
            raise ValueError(f"off_threshold must be in [0, on_threshold], got {self.off_threshold}")
        if self.min_event_seconds < 0 or self.merge_gap_seconds < 0:
            raise ValueError("min_event_seconds and merge_gap_seconds must not be negative")

    @property
    def off(self) -> float:
        return self.on_threshold if self.off_threshold is None else self.off_threshold


@dataclass(frozen=True)
class Event:
    label: str
    start: float
    end: float
    peak_probability: float
    mean_probability: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class EventUpdate:
    """'start': the event is certain (long enough) — end is where it has got to so far; 'end': final."""

    kind: str
    event: Event


class EventTracker:
    """Hysteresis for one class of one stream, fed one per-second probability at a time."""

    def __init__(self, label: str, rule: EventRule, hop_seconds: float, start_seconds: float = 0.0):
        self.label = label
        self.rule = rule
        self.hop_seconds = hop_seconds
        self.start_seconds = start_seconds
        self._next_index = 0
        self._first: int | None = None  # first frame of the open event
        self._last = 0  # last frame at or above the off threshold
        self._above = False  # still in the part that has not dropped below off
        self._confirmed = False  # its 'start' update was given
        self._sum = 0.0
        self._peak = 0.0
        self._gap_sum = 0.0  # probabilities since _last, counted only if the event resumes
        self._gap_peak = 0.0

    def push(self, probability: float) -> list[EventUpdate]:
        index = self._next_index
        self._next_index += 1
        probability = float(probability)
        if self._first is None:
            if probability >= self.rule.on_threshold:
                self._open(index, probability)
                return self._confirm_if_long_enough()
            return []
        if self._above and probability >= self.rule.off:
            self._extend(index, probability)
            return self._confirm_if_long_enough()
        if not self._above and probability >= self.rule.on_threshold:
            # Only reachable while the gap is still bridgeable (otherwise the event was closed).
            self._extend(index, probability)
            return self._confirm_if_long_enough()
        self._above = False
        self._gap_sum += probability
        self._gap_peak = max(self._gap_peak, probability)
        # Any onset from the next frame on would leave a gap longer than the merge gap: close now.
        if self._seconds(index + 1 - (self._last + 1)) > self.rule.merge_gap_seconds + _TIME_TOLERANCE:
            return self._close()
        return []

    def finish(self) -> list[EventUpdate]:
        """The stream ended: close the open event, if any."""
        return self._close() if self._first is not None else []

    @property
    def active(self) -> bool:
        """An event has been reported as started and not yet as ended."""
        return self._confirmed

    def _open(self, index: int, probability: float) -> None:
        self._first, self._last, self._above, self._confirmed = index, index, True, False
        self._sum, self._peak = probability, probability
        self._gap_sum, self._gap_peak = 0.0, 0.0

    def _extend(self, index: int, probability: float) -> None:
        self._sum += self._gap_sum + probability
        self._peak = max(self._peak, self._gap_peak, probability)
        self._gap_sum, self._gap_peak = 0.0, 0.0
        self._last, self._above = index, True

    def _confirm_if_long_enough(self) -> list[EventUpdate]:
        if self._confirmed or not self._long_enough():
            return []
        self._confirmed = True
        return [EventUpdate("start", self._event())]

    def _close(self) -> list[EventUpdate]:
        updates = [EventUpdate("end", self._event())] if self._confirmed else []
        self._first, self._above, self._confirmed = None, False, False
        return updates

    def _long_enough(self) -> bool:
        return self._seconds(self._last + 1 - self._first) >= self.rule.min_event_seconds - _TIME_TOLERANCE

    def _event(self) -> Event:
        frames = self._last + 1 - self._first
        return Event(
            label=self.label,
            start=self.start_seconds + self._first * self.hop_seconds,
            end=self.start_seconds + (self._last + 1) * self.hop_seconds,
            peak_probability=self._peak,
            mean_probability=self._sum / frames,
        )

    def _seconds(self, frames: int) -> float:
        return frames * self.hop_seconds


def extract_events(
    probabilities: np.ndarray,
    classes: Sequence[str],
    rules: EventRule | Mapping[str, EventRule],
    hop_seconds: float,
    start_seconds: float = 0.0,
) -> list[Event]:
    """All events of a recording, probabilities [T, C] -> events sorted by start time, then label."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(classes):
        raise ValueError(f"probabilities must be [T, {len(classes)}], got {probabilities.shape}")
    events: list[Event] = []
    for column, label in enumerate(classes):
        rule = rules if isinstance(rules, EventRule) else rules[label]
        tracker = EventTracker(label, rule, hop_seconds, start_seconds)
        updates = [update for p in probabilities[:, column] for update in tracker.push(p)]
        updates.extend(tracker.finish())
        events.extend(_ended(updates))
    return sorted(events, key=lambda event: (event.start, event.label))


def _ended(updates: Iterable[EventUpdate]) -> list[Event]:
    return [update.event for update in updates if update.kind == "end"]
