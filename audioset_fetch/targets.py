"""What to learn from AudioSet: target classes, and which other sounds make good negatives.

The user-facing file (TOML or JSON) names classes as the ontology does; `TargetMapping` is the
resolved form (each target -> every AudioSet mid under it). The mapping travels with the data
(selection CSV header, workspace rows), so labels can always be traced back to AudioSet classes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from audioset_fetch.ontology import Ontology
from homesound.errors import HomesoundError

DEFAULT_TARGETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("laughter", ("/m/01j3sz",)),  # Laughter
    ("crying", ("/m/0463cq4",)),  # Crying, sobbing
)

# Sounds a home detector confuses with laughter or crying: voices (adult, child, baby), vocal
# non-speech, media playing in the room, and animals. Each entry is one group with an equal share.
DEFAULT_HARD_NEGATIVES: tuple[str, ...] = (
    "Speech",
    "Child speech, kid speaking",
    "Babbling",
    "Children shouting",
    "Children playing",
    "Screaming",
    "Shout",
    "Wail, moan",
    "Sigh",
    "Singing",
    "Humming",
    "Cough",
    "Hiccup",
    "Music",
    "Television",
    "Radio",
    "Animal",
    "Cat",
    "Bleat",
)

TARGET_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class SelectionConfig:
    """Targets (name -> AudioSet classes by name or mid) and how negatives are drawn."""

    targets: tuple[tuple[str, tuple[str, ...]], ...] = DEFAULT_TARGETS
    hard_negatives: tuple[str, ...] = DEFAULT_HARD_NEGATIVES
    negative_ratio: float = 3.0  # negatives per positive, in each split
    hard_fraction: float = 0.5  # share of the negatives drawn from the hard-negative groups
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.targets:
            raise HomesoundError("the target configuration defines no targets; add a [targets] table")
        names = [name for name, _ in self.targets]
        for name in names:
            if not TARGET_NAME_PATTERN.match(name):
                raise HomesoundError(
                    f"target name {name!r} must be lower-case letters, digits and '_' (it becomes a column)"
                )
        if len(set(names)) != len(names):
            raise HomesoundError(f"target names repeat: {names}")
        if self.negative_ratio < 0:
            raise HomesoundError(f"negative_ratio must be >= 0, got {self.negative_ratio}")
        if not 0.0 <= self.hard_fraction <= 1.0:
            raise HomesoundError(f"hard_fraction must be between 0 and 1, got {self.hard_fraction}")


@dataclass(frozen=True)
class TargetMapping:
    """Resolved targets: names in column order, each with the full set of AudioSet mids it covers."""

    names: tuple[str, ...]
    mids: tuple[frozenset[str], ...]

    def multi_hot(self, label_mids: Iterable[str]) -> tuple[int, ...]:
        labels = set(label_mids)
        return tuple(int(not labels.isdisjoint(target)) for target in self.mids)

    def to_json(self) -> str:
        return json.dumps(
            {"targets": [{"name": name, "mids": sorted(mids)} for name, mids in zip(self.names, self.mids)]},
            sort_keys=True,
            separators=(",", ":"),
        )

    @property
    def id(self) -> str:
        """Stable id of this mapping: equal mappings from different files get the same id."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @classmethod
    def from_json(cls, text: str) -> "TargetMapping":
        try:
            entries = json.loads(text)["targets"]
            return cls(
                names=tuple(entry["name"] for entry in entries),
                mids=tuple(frozenset(entry["mids"]) for entry in entries),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise HomesoundError(f"stored AudioSet target mapping is unreadable ({error}): {text[:200]!r}") from error


def resolve_targets(config: SelectionConfig, ontology: Ontology) -> TargetMapping:
    return TargetMapping(
        names=tuple(name for name, _ in config.targets),
        mids=tuple(ontology.resolve_all(classes) for _, classes in config.targets),
    )


def resolve_hard_negatives(
    config: SelectionConfig, ontology: Ontology, targets: TargetMapping
) -> dict[str, frozenset[str]]:
    """Hard-negative groups by name; target classes are removed (a positive is never a negative)."""
    target_mids = frozenset().union(*targets.mids)
    return {name: ontology.resolve(name) - target_mids for name in config.hard_negatives}


def load_selection_config(path: str | os.PathLike | None) -> SelectionConfig:
    """Read a TOML (.toml) or JSON file; missing keys keep their defaults.

    [targets]
    laughter = ["Laughter"]
    crying = ["Crying, sobbing", "/t/dd00002"]

    [negatives]
    ratio = 3.0
    hard_fraction = 0.5
    hard = ["Speech", "Babbling", "Music"]
    seed = 0
    """
    if path is None:
        return SelectionConfig()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HomesoundError(f"target configuration {path} not found") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as error:
        raise HomesoundError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {error}") from error
    return _config_from_dict(data, path)


def _config_from_dict(data: dict, path: Path) -> SelectionConfig:
    unknown = set(data) - {"targets", "negatives"}
    if unknown:
        raise HomesoundError(f"{path}: unknown tables {sorted(unknown)}; expected [targets] and [negatives]")
    targets = data.get("targets")
    negatives = data.get("negatives", {})
    unknown = set(negatives) - {"ratio", "hard_fraction", "hard", "seed"}
    if unknown:
        raise HomesoundError(f"{path}: unknown [negatives] keys {sorted(unknown)}")
    kwargs: dict = {}
    if targets is not None:
        kwargs["targets"] = tuple(
            (str(name), _string_tuple(classes, f"{path}: targets.{name}")) for name, classes in targets.items()
        )
    if "hard" in negatives:
        kwargs["hard_negatives"] = _string_tuple(negatives["hard"], f"{path}: negatives.hard")
    try:
        if "ratio" in negatives:
            kwargs["negative_ratio"] = float(negatives["ratio"])
        if "hard_fraction" in negatives:
            kwargs["hard_fraction"] = float(negatives["hard_fraction"])
        if "seed" in negatives:
            kwargs["seed"] = int(negatives["seed"])
    except (TypeError, ValueError) as error:
        raise HomesoundError(f"{path}: [negatives] has a value of the wrong type ({error})") from error
    return SelectionConfig(**kwargs)


def _string_tuple(value: object, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        raise HomesoundError(f"{where} must be a non-empty list of AudioSet class names or mids")
    return tuple(value)
