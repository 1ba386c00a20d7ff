"""Live detection on one audio stream: a per-second step of the detector and events with hysteresis.

The detector (torch `StreamingDetector` or the hub's numpy `PortableStream`) carries its hidden
state from hop to hop, so its probabilities equal `homesound detect` on the same audio; one
`EventTracker` per class turns them into event starts (as soon as an event is certain) and
ends (once the hold time has passed without a new onset). A break in the audio closes open
events and starts afresh: state carried across a gap would describe audio that never came.
Pure: no I/O, no torch (the torch detector is passed in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence

import numpy as np

from classify.events import EventRule, EventTracker, EventUpdate
from classify.zero_shot import CLASS_SCORES
from homesound.errors import HomesoundError


class DetectorStream(Protocol):
    def push(self, embeddings: np.ndarray, embedder_id: str) -> np.ndarray: ...

    def reset(self) -> None: ...


@dataclass(frozen=True)
class HopResult:
    index: int  # hop number since listening started (all segments)
    start_seconds: float  # stream time of the hop's start
    probabilities: np.ndarray  # [C]
    updates: list[EventUpdate]
    hop_seconds: float

    @property
    def end_seconds(self) -> float:
        return self.start_seconds + self.hop_seconds


class LiveDetector:
    """Embeddings one hop at a time -> per-class probabilities and event updates."""

    def __init__(self, stream: DetectorStream, classes: Sequence[str], rules: Mapping[str, EventRule],
                 embedder_id: str, input_encoding: str, hop_seconds: float):
        self.stream = stream
        self.hop_seconds = hop_seconds  # the embedder's frame hop
        self.classes = tuple(classes)
        self.rules = {label: rules[label] for label in self.classes}
        self.embedder_id = embedder_id
        self.input_encoding = input_encoding
        self.hops = 0
        self.segment_start_seconds = 0.0
        self._segment_hops = 0
        self._trackers = self._new_trackers(0.0)

    def push(self, embedding: np.ndarray, raw_embedding: np.ndarray, class_scores: np.ndarray | None = None
             ) -> HopResult:
        """The next hop's stored-encoding embedding, raw float32 embedding and class scores (if the embedder
        has them); the detector reads the one its input encoding names (the zero-shot detector: class scores)."""
        if self.input_encoding == CLASS_SCORES:
            if class_scores is None:
                raise HomesoundError("the zero-shot detector needs class scores: listen with the YAMNet embedder")
            features = class_scores
        else:
            features = raw_embedding if self.input_encoding == "raw_float32" else embedding
        probabilities = np.asarray(self.stream.push(features, self.embedder_id), dtype=np.float64)
        start = self.segment_start_seconds + self._segment_hops * self.hop_seconds
        updates = [update for tracker, p in zip(self._trackers, probabilities) for update in tracker.push(p)]
        result = HopResult(self.hops, start, probabilities, updates, self.hop_seconds)
        self.hops += 1
        self._segment_hops += 1
        return result

    def close_events(self) -> list[EventUpdate]:
        """End every open event now (the stream ended, stalled, or listening stops)."""
        return [update for tracker in self._trackers for update in tracker.finish()]

    def restart(self, start_seconds: float) -> list[EventUpdate]:
        """A break in the audio: close open events, forget the hidden state, continue at `start_seconds`."""
        updates = self.close_events()
        self.stream.reset()
        self.segment_start_seconds = start_seconds
        self._segment_hops = 0
        self._trackers = self._new_trackers(start_seconds)
        return updates

    def active(self) -> dict[str, bool]:
        return {tracker.label: tracker.active for tracker in self._trackers}

    def _new_trackers(self, start_seconds: float) -> list[EventTracker]:
        return [EventTracker(label, self.rules[label], self.hop_seconds, start_seconds) for label in self.classes]
