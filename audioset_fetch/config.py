"""Configurations of the AudioSet jobs that the command line reads defaults from; kept free of heavy
imports (the importer's module loads TensorFlow's record reader)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImportConfig:
    """What `homesound audioset import` reads; stored in its run."""

    features: str  # features.tar.gz, a folder of .tfrecord shards, or one shard
    selection: str  # CSV written by `homesound audioset select`
    class_labels: str  # class_labels_indices.csv
    batch_size: int = 500  # segments per transaction
