"""Exponential backoff for anything that reconnects (audio streams, webhooks): quick first retry, then patient."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial_seconds: float = 1.0
    maximum_seconds: float = 60.0
    factor: float = 2.0
    jitter: float = 0.1  # +-10 %: many hubs restarting after a power cut do not retry in lockstep
    _next: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.reset()

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self.maximum_seconds, self._next * self.factor)
        return delay * (1.0 + random.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        self._next = self.initial_seconds
