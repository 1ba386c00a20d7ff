"""Configurations of the active-learning stage: how windows are ranked and how they are pushed to Label Studio.

Plain dataclasses without numpy, so the command line takes its defaults and choices from here cheaply;
each is recorded with the run (and the round) it configured.
"""

from __future__ import annotations

from dataclasses import dataclass

STRATEGIES = ("least-confidence", "margin", "entropy", "bald", "random")
AGGREGATES = ("max", "mean")


@dataclass(frozen=True)
class RankConfig:
    strategy: str = "entropy"
    top: int = 50
    window_seconds: float = 5.0
    aggregate: str = "max"  # a window is as informative as its most uncertain second ("max"), or on average
    diversity: bool = True  # k-center greedy over window embeddings among the most uncertain candidates
    diversity_pool: float = 4.0  # how many times `top` of the highest-scoring windows k-center may choose from
    confident_share: float = 0.0  # share of picks reserved for the most confident detections
    confident_threshold: float = 0.9
    # Share the picks equally between classes, each ranked by its own uncertainty: the default, because on
    # real YAMNet households (benchmarks/al_simulation.py) it reached the rarer class's AP target with the
    # fewest labels at both event rates, and was within noise of the best on mean AP.
    per_class: bool = True
    prefilter_share: float = 1.0  # candidates: this share of windows, per class, most likely under the prior
    min_window_fraction: float = 0.5  # a recording's last, shorter window counts if at least this long
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {self.aggregate!r}")
        if self.top < 1:
            raise ValueError("top must be at least 1")
        if self.window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        if not 0.0 <= self.confident_share <= 1.0:
            raise ValueError("confident_share must be within [0, 1]")
        if self.diversity_pool < 1.0:
            raise ValueError("diversity_pool must be at least 1")
        if not 0.0 < self.prefilter_share <= 1.0:
            raise ValueError("prefilter_share must be within (0, 1]")


@dataclass(frozen=True)
class RankRequest:
    rank: RankConfig
    mc_samples: int = 20  # dropout masks per recording for BALD


DEFAULT_CLASSES = ("laughter", "crying")
DEFAULT_PROJECT_TITLE = "homesound: laughter and crying"


@dataclass(frozen=True)
class PushConfig:
    clip_dir: str
    project_title: str = DEFAULT_PROJECT_TITLE
    classes: tuple[str, ...] = DEFAULT_CLASSES
    context_seconds: float = 1.0  # audio before and after the window, so a person hears how it starts
    batch_size: int = 20
