"""Workspaces with planted, strongly labeled recordings for the classify tests (no audio needed)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from homesound_testkit.synthetic import SYNTHETIC_EMBEDDER, planted_sequences
from homesound.workspace import Workspace
from homesound.workspace.recordings import (
    StoredEmbedding,
    register_embedder,
    save_recording,
)
from homesound.workspace.training_data import (
    StrongLabel,
    split_of_recording,
    upsert_strong_labels,
)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def planted_workspace(path: Path, recordings: int = 40, seconds: int = 30, seed: int = 0) -> dict[str, np.ndarray]:
    """Embedded recordings with planted events, every second labeled; returns labels per content hash.

    At least two recordings land in each split (train/test are assigned by content hash).
    """
    sequences = planted_sequences(recordings, frames=seconds, labels="strong", seed=seed, event_probability=0.6)
    truth = {}
    with Workspace(path) as workspace:
        register_embedder(workspace, SYNTHETIC_EMBEDDER, {"kind": "synthetic planted patterns"})
        labels = []
        for index, sequence in enumerate(sequences):
            content = content_hash(f"{seed}:{index}")
            save_recording(
                workspace, path=f"/archive/recording-{seed}-{index}.wav", size=1, mtime_ns=1,
                content_sha256=content, status="embedded", duration_seconds=seconds * 0.96,
                embedding=StoredEmbedding(content, SYNTHETIC_EMBEDDER, sequence.embedding, None, 0.96),
            )
            truth[content] = sequence.frame_labels
            labels += [
                StrongLabel(content, second, target, float(sequence.frame_labels[second, column]), "test",
                            task_id=f"task-{index}", annotator="tester")
                for second in range(seconds) for column, target in enumerate(sequence.classes)
            ]
        upsert_strong_labels(workspace, labels)
    splits = {split_of_recording(content) for content in truth}
    assert splits == {"train", "test"}, "choose a seed that puts recordings in both splits"
    return truth

