"""The one data interface between the stages that produce labeled embeddings and the detector.

AudioSet segments (weak, clip-level labels) and Label Studio windows (strong, per-second
labels) both arrive as LabeledSequence, so classify/ trains on either or both; `mask_runs`
finds the stretches of frames (labeled, positive, above a threshold) that such sequences are cut from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabeledSequence:
    key: str  # unique, e.g. "audioset:YTID:30.000" or "recording:<sha256>:120.0"
    group: str  # the source recording (YouTube id, content hash): splits never divide a group
    split: str  # "train", "eval", ... as the producer assigned it
    embedding: np.ndarray  # [T, 128]: uint8 post-processed (AudioSet format) or float32 raw
    embedder_id: str  # provenance of the embedding; a model refuses other ids
    classes: tuple[str, ...]  # target names, the column order of the labels below
    clip_labels: np.ndarray | None = None  # [C] in {0, 1}: weak label for the whole sequence
    frame_labels: np.ndarray | None = None  # [T, C] in {0, 1}, NaN where unknown: strong labels
    start_seconds: float = 0.0  # where the sequence starts in its source recording
    hop_seconds: float = 0.96
    class_scores: np.ndarray | None = None  # [T, K] the embedder's own class scores (YAMNet), if it has them

    def __post_init__(self) -> None:
        if self.embedding.ndim != 2:
            raise ValueError(f"{self.key}: embedding must be [T, D], got {self.embedding.shape}")
        if self.clip_labels is None and self.frame_labels is None:
            raise ValueError(f"{self.key}: a labeled sequence needs clip_labels or frame_labels")
        if self.clip_labels is not None and self.clip_labels.shape != (len(self.classes),):
            raise ValueError(f"{self.key}: clip_labels must be [{len(self.classes)}]")
        if self.frame_labels is not None and self.frame_labels.shape != (len(self.embedding), len(self.classes)):
            raise ValueError(f"{self.key}: frame_labels must be [{len(self.embedding)}, {len(self.classes)}]")
        if self.class_scores is not None and len(self.class_scores) != len(self.embedding):
            raise ValueError(f"{self.key}: class_scores must have one row per embedding frame")


def mask_runs(mask: np.ndarray, join_gap: int = 0) -> list[tuple[int, int]]:
    """[begin, end) of each run of True in a 1-D mask, in order.

    Runs separated by at most `join_gap` False entries become one, so that a context of that many
    frames around a run never reaches into the next (no labeled frame is used in two sequences).
    """
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool).reshape(-1), [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    runs: list[tuple[int, int]] = []
    for begin, end in zip(edges[0::2].tolist(), edges[1::2].tolist()):
        if runs and begin - runs[-1][1] <= join_gap:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((begin, end))
    return runs
