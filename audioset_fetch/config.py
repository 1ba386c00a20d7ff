"""Configurations of the AudioSet jobs that the command line reads defaults from; kept free of heavy
imports (the importer's module loads TensorFlow's record reader)."""

from __future__ import annotations

from dataclasses import dataclass

SPLITS = ("train", "eval")
ROLE_POSITIVE = "positive"
ROLE_HARD_NEGATIVE = "hard_negative"
ROLE_RANDOM_NEGATIVE = "random_negative"
ROLES = (ROLE_POSITIVE, ROLE_HARD_NEGATIVE, ROLE_RANDOM_NEGATIVE)


@dataclass(frozen=True)
class ImportConfig:
    """What `homesound audioset import` reads; stored in its run."""

    features: str  # features.tar.gz, a folder of .tfrecord shards, or one shard
    selection: str  # CSV written by `homesound audioset select`
    class_labels: str  # class_labels_indices.csv
    batch_size: int = 500  # segments per transaction
