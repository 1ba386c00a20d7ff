"""Day one without labels: YAMNet's own AudioSet class scores as a crying and laughter detector.

YAMNet scores each 0.96 s frame for the 521 AudioSet classes. A target's zero-shot probability
is its AudioSet classes' scores combined per frame (by default the largest: "Laughter" and its
children "Baby laughter", "Giggle", "Snicker", "Belly laugh", "Chuckle, chortle"; "Crying,
sobbing" and "Baby cry, infant cry"). The core, `zero_shot_probabilities`, is a pure function of
(class scores [T, K], class names). `ZeroShotDetector` wraps it with thresholds (0.5 until
calibrated on labeled windows at a target false-positive rate) and the interface of a trained
detector, so `detect`, `evaluate`, `rank` and `listen` use either. It needs numpy only (no
torch), so it runs on a hub as it is. Its file is JSON and records the class indices and names
it reads, the combination rule, the thresholds and how they were chosen.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from homesound import __version__
from homesound.errors import HomesoundError, ProvenanceMismatchError
from homesound.frames import YAMNET_FRAMES
from homesound.output_files import atomic_output

ZERO_SHOT_FORMAT = "homesound-zero-shot-detector"
ZERO_SHOT_FORMAT_VERSION = 1
BUILTIN_NAME = "zero-shot"  # `--model zero-shot`: the uncalibrated detector, no file needed
CLASS_SCORES = "class_scores"  # its input encoding: what it reads per frame instead of an embedding
COMBINE_RULES = ("max", "noisy_or")
DEFAULT_THRESHOLD = 0.5
# AudioSet display names (ontology.json): each target and its descendants that YAMNet scores.
DEFAULT_TARGETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("crying", ("Crying, sobbing", "Baby cry, infant cry")),
    ("laughter", ("Laughter", "Baby laughter", "Giggle", "Snicker", "Belly laugh", "Chuckle, chortle")),
)
# Where YAMNet puts them (yamnet_class_map.csv): `--model zero-shot` needs no class list to start,
# and the names are checked against the embedder's class names before any score is read.
YAMNET_CLASS_COUNT = 521
YAMNET_DEFAULT_INDICES = {"crying": (19, 20), "laughter": (13, 14, 15, 16, 17, 18)}


@dataclass(frozen=True)
class ZeroShotConfig:
    """Which AudioSet classes make each target, and how their per-frame scores combine."""

    targets: tuple[tuple[str, tuple[str, ...]], ...] = DEFAULT_TARGETS
    combine: str = "max"  # "max": the most confident member; "noisy_or": 1 - prod(1 - score)

    def __post_init__(self) -> None:
        if self.combine not in COMBINE_RULES:
            raise ValueError(f"combine must be one of {COMBINE_RULES}, got {self.combine!r}")
        if not self.targets or any(not members for _, members in self.targets):
            raise ValueError("every zero-shot target needs at least one AudioSet class")
        if len({name for name, _ in self.targets}) != len(self.targets):
            raise ValueError("zero-shot target names must be distinct")

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.targets)

    def to_dict(self) -> dict:
        return {"targets": {name: list(members) for name, members in self.targets}, "combine": self.combine}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ZeroShotConfig:
        targets = tuple((name, tuple(members)) for name, members in dict(values["targets"]).items())
        return cls(targets=targets, combine=values.get("combine", "max"))


def member_indices(class_names: Sequence[str], config: ZeroShotConfig) -> dict[str, tuple[int, ...]]:
    """Each target's column indices in the class scores; refuses class lists that lack a member."""
    position = {name: index for index, name in enumerate(class_names)}
    missing = sorted({m for _, members in config.targets for m in members if m not in position})
    if missing:
        raise ProvenanceMismatchError(
            f"the class scores have no class named {', '.join(repr(m) for m in missing)} "
            f"({len(class_names)} classes); the zero-shot detector needs YAMNet's AudioSet class scores"
        )
    return {name: tuple(position[m] for m in members) for name, members in config.targets}


def combine_scores(member_scores: np.ndarray, rule: str) -> np.ndarray:
    """[T, K] scores of one target's AudioSet classes -> [T] target probability."""
    if rule == "max":
        return member_scores.max(axis=1)
    return 1.0 - np.prod(1.0 - member_scores, axis=1)


def zero_shot_probabilities(
    scores: np.ndarray, class_names: Sequence[str], config: ZeroShotConfig = ZeroShotConfig()
) -> np.ndarray:
    """AudioSet class scores [T, K] (names in column order) -> per-frame target probabilities [T, C]."""
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim != 2 or scores.shape[1] != len(class_names):
        raise HomesoundError(f"class scores must be [T, {len(class_names)}], got {scores.shape}")
    indices = member_indices(class_names, config)
    return _combine(scores, indices, config)


def _combine(scores: np.ndarray, indices: Mapping[str, Sequence[int]], config: ZeroShotConfig) -> np.ndarray:
    columns = [combine_scores(scores[:, list(indices[name])], config.combine) for name in config.classes]
    return np.stack(columns, axis=1).astype(np.float32) if columns else np.zeros((len(scores), 0), np.float32)


@dataclass
class ZeroShotDetector:
    """Per-frame probabilities from class scores, with the interface of classify.detector.Detector."""

    config: ZeroShotConfig
    indices: dict[str, tuple[int, ...]]  # column indices in the class scores, resolved from names
    class_count: int  # how many classes the scores have (521 for YAMNet)
    thresholds: dict[str, float]
    threshold_details: dict[str, Any] = field(default_factory=dict)
    calibrated_on: tuple[str, ...] = ()  # embedder ids of the labeled windows the thresholds came from
    metrics: dict[str, Any] = field(default_factory=dict)

    input_encoding = CLASS_SCORES
    streamable = True
    frames = YAMNET_FRAMES  # class scores come one per YAMNet frame: hop and grid for events
    train_config = None  # nothing trained: evaluate defaults to the held-out split, like a trained model
    # Any embedder whose class scores carry the member names serves: the names are checked, not ids.
    embedder_ids: tuple[str, ...] = ()

    @classmethod
    def create(cls, class_names: Sequence[str], config: ZeroShotConfig = ZeroShotConfig(),
               thresholds: Mapping[str, float] | None = None) -> ZeroShotDetector:
        indices = member_indices(class_names, config)
        chosen = {name: float((thresholds or {}).get(name, DEFAULT_THRESHOLD)) for name in config.classes}
        details = {name: {"threshold": chosen[name], "rule": "default" if not thresholds or name not in thresholds
                          else "given"} for name in config.classes}
        return cls(config, indices, len(class_names), chosen, details)

    @classmethod
    def builtin(cls) -> ZeroShotDetector:
        """`--model zero-shot`: the default targets at YAMNet's class indices, threshold 0.5."""
        config = ZeroShotConfig()
        thresholds = {name: DEFAULT_THRESHOLD for name in config.classes}
        details = {name: {"threshold": DEFAULT_THRESHOLD, "rule": "default"} for name in config.classes}
        return cls(config, dict(YAMNET_DEFAULT_INDICES), YAMNET_CLASS_COUNT, thresholds, details)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.config.classes

    @property
    def kind(self) -> str:
        return "zero-shot"

    def members(self) -> dict[str, list[dict]]:
        names = dict(self.config.targets)
        return {target: [{"index": index, "name": name} for index, name in zip(self.indices[target], names[target])]
                for target in self.classes}

    def check_embedder(self, embedder_id: str) -> None:
        """Every embedder is acceptable here; whether it has the right class scores is checked on use."""

    def check_class_names(self, class_names: Sequence[str] | None, embedder_id: str = "these embeddings") -> None:
        if class_names is None:
            raise ProvenanceMismatchError(
                f"{embedder_id} has no AudioSet class scores; the zero-shot detector needs YAMNet "
                "(embed with --embedder yamnet)"
            )
        if len(class_names) != self.class_count or member_indices(class_names, self.config) != self.indices:
            raise ProvenanceMismatchError(
                f"the class scores of {embedder_id} are not in the order this zero-shot detector reads "
                f"({len(class_names)} classes, expected {self.class_count} in YAMNet's order)"
            )

    def model_input(self, class_scores: np.ndarray, embedder_id: str = "") -> np.ndarray:
        if class_scores is None:
            raise HomesoundError("the zero-shot detector needs class scores (YAMNet embeddings); none were given")
        class_scores = np.asarray(class_scores, dtype=np.float32)
        if class_scores.ndim != 2 or class_scores.shape[1] != self.class_count:
            raise HomesoundError(f"class scores must be [T, {self.class_count}], got {class_scores.shape}")
        return class_scores

    def probabilities(self, class_scores: np.ndarray, embedder_id: str = "") -> np.ndarray:
        """Per-frame probabilities [T, C] of one recording from its class scores [T, K]."""
        return _combine(self.model_input(class_scores, embedder_id), self.indices, self.config)

    def probabilities_many(self, class_scores: Sequence[np.ndarray], embedder_id: str = "") -> list[np.ndarray]:
        return [self.probabilities(scores, embedder_id) for scores in class_scores]

    def stream(self) -> ZeroShotStream:
        return ZeroShotStream(self)

    def with_thresholds(self, thresholds: Mapping[str, float], details: Mapping[str, Any],
                        calibrated_on: Sequence[str] = (), metrics: Mapping[str, Any] | None = None) -> ZeroShotDetector:
        return ZeroShotDetector(self.config, dict(self.indices), self.class_count,
                                {name: float(thresholds[name]) for name in self.classes}, dict(details),
                                tuple(calibrated_on), dict(metrics or {}))

    def to_dict(self) -> dict:
        return {
            "format": ZERO_SHOT_FORMAT,
            "format_version": ZERO_SHOT_FORMAT_VERSION,
            "homesound_version": __version__,
            "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "kind": self.kind,
            "config": self.config.to_dict(),
            "classes": list(self.classes),
            "class_count": self.class_count,
            "members": self.members(),
            "thresholds": {name: float(value) for name, value in self.thresholds.items()},
            "threshold_details": self.threshold_details,
            "calibrated_on": list(self.calibrated_on),
            "metrics": self.metrics,
        }

    def digest(self) -> str:
        """sha256 of what decides its outputs (config, members, thresholds): its identity without a file."""
        identity = {key: value for key, value in self.to_dict().items() if key in
                    ("format", "config", "class_count", "members", "thresholds")}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()

    def save(self, path: str | os.PathLike) -> str:
        """Write atomically as JSON; returns the file's sha256."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True, default=_json_default) + "\n"
        with atomic_output(path, what="detector") as partial:
            partial.write_text(text)
        return hashlib.sha256(text.encode()).hexdigest()

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> ZeroShotDetector:
        if stored.get("format") != ZERO_SHOT_FORMAT:
            raise HomesoundError("not a homesound zero-shot detector")
        if stored.get("format_version", 0) > ZERO_SHOT_FORMAT_VERSION:
            raise HomesoundError(f"zero-shot detector format v{stored['format_version']}; upgrade homesound "
                                 f"(this is {__version__})")
        config = ZeroShotConfig.from_dict(stored["config"])
        members = stored["members"]
        indices = {target: tuple(int(m["index"]) for m in members[target]) for target in config.classes}
        return cls(config, indices, int(stored["class_count"]), {k: float(v) for k, v in stored["thresholds"].items()},
                   dict(stored.get("threshold_details") or {}), tuple(stored.get("calibrated_on") or ()),
                   dict(stored.get("metrics") or {}))

    @classmethod
    def load(cls, path: str | os.PathLike) -> ZeroShotDetector:
        try:
            stored = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise HomesoundError(f"{path} is not a readable zero-shot detector ({error})") from error
        try:
            return cls.from_dict(stored)
        except (KeyError, TypeError, ValueError) as error:
            raise HomesoundError(f"{path}: damaged zero-shot detector file ({error})") from error


class ZeroShotStream:
    """Live use: class scores of one (or a few) hops at a time; nothing carried between hops."""

    def __init__(self, detector: ZeroShotDetector):
        self.detector = detector

    def push(self, class_scores: np.ndarray, embedder_id: str = "") -> np.ndarray:
        single = np.ndim(class_scores) == 1
        probabilities = self.detector.probabilities(np.atleast_2d(class_scores), embedder_id)
        return probabilities[0] if single else probabilities

    def reset(self) -> None:
        """Nothing to forget: each hop is scored on its own."""


def is_zero_shot_file(path: str | os.PathLike) -> bool:
    """A JSON file (zero-shot) rather than a torch archive (trained detector), by its first byte."""
    try:
        with open(path, "rb") as handle:
            return handle.read(1) == b"{"
    except OSError:
        return False


def yamnet_class_names(path: str | os.PathLike) -> list[str]:
    """Display names, in score order, from a YAMNet class map CSV (index, mid, display_name)."""
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        return [row["display_name"] for row in csv.DictReader(handle)]


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
