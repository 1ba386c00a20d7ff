"""Labeled sequences with planted, learnable events, for the tests and benchmarks (no audio needed; never
used by the product).

Background seconds are noise around the middle of the uint8 range; during an event of class c a
fixed class-specific direction is added, so the per-second labels are learnable exactly where
they are planted — and nowhere else, which is what a shuffled-labels control relies on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from homesound.sequences import LabeledSequence

SYNTHETIC_EMBEDDER = "synthetic-planted-v1"
LABEL_KINDS = ("weak", "strong", "both")


def planted_sequences(
    count: int,
    *,
    frames: int = 10,
    classes: Sequence[str] = ("laughter", "crying"),
    labels: str = "weak",
    event_probability: float = 0.3,
    strength: float = 40.0,
    sequences_per_group: int = 2,
    split: str = "train",
    embedder_id: str = SYNTHETIC_EMBEDDER,
    seed: int = 0,
    key_prefix: str = "synthetic",
    dtype: type = np.uint8,
) -> list[LabeledSequence]:
    if labels not in LABEL_KINDS:
        raise ValueError(f"labels must be one of {LABEL_KINDS}")
    classes = tuple(classes)
    directions = _class_directions(len(classes))
    rng = np.random.default_rng(seed)
    sequences = []
    for index in range(count):
        active = np.zeros((frames, len(classes)), dtype=np.float32)
        for column in range(len(classes)):
            if rng.random() < event_probability:
                length = int(rng.integers(2, max(3, frames // 2 + 1)))
                start = int(rng.integers(0, max(1, frames - length + 1)))
                active[start:start + length, column] = 1.0
        values = rng.normal(128.0, 25.0, size=(frames, 128)) + strength * (active @ directions)
        if dtype == np.uint8:
            embedding = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        else:
            embedding = ((values / 255.0) * 4.0 - 2.0).astype(np.float32)
        sequences.append(
            LabeledSequence(
                key=f"{key_prefix}:{seed}:{index}",
                group=f"{key_prefix}-group:{seed}:{index // sequences_per_group}",
                split=split,
                embedding=embedding,
                embedder_id=embedder_id,
                classes=classes,
                clip_labels=active.max(axis=0) if labels in ("weak", "both") else None,
                frame_labels=active if labels in ("strong", "both") else None,
            )
        )
    return sequences


def _class_directions(classes: int) -> np.ndarray:
    """Fixed (seed-independent) unit-ish directions per class over disjoint dimensions."""
    directions = np.zeros((classes, 128), dtype=np.float64)
    width = 128 // max(classes, 1) // 4
    pattern = np.random.default_rng(12345).choice([-1.0, 1.0], size=(classes, width))
    for column in range(classes):
        directions[column, column * width:(column + 1) * width] = pattern[column]
    return directions
