"""Zero-shot thresholds from labeled windows: per class, the lowest threshold whose false-positive
rate on negative windows stays at a target (a window fires when any of its frames reaches it).

Windows are the labeled sequences as training sees them: a clip with a whole-clip label is one
window; a long strongly labeled stretch is cut into windows of `window_frames` frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from classify.data import cut_into_windows, encode, sequence_level_targets
from classify.metrics import calibrate_at_fpr
from classify.zero_shot import ZeroShotDetector
from homesound.errors import HomesoundError
from homesound.sequences import LabeledSequence

DEFAULT_TARGET_FPR = 0.02
DEFAULT_WINDOW_FRAMES = 20


def window_scores(detector, sequences: Sequence[LabeledSequence]) -> np.ndarray:
    """[N, C] each sequence's highest zero-shot probability per class (0 for an empty one)."""
    scores = np.zeros((len(sequences), len(detector.classes)), dtype=np.float32)
    for row, sequence in enumerate(sequences):
        probabilities = detector.probabilities(sequence.class_scores, sequence.embedder_id)
        if len(probabilities):
            scores[row] = probabilities.max(axis=0)
    return scores


def calibrate_zero_shot(detector: ZeroShotDetector, sequences: Sequence[LabeledSequence],
                        target_fpr: float = DEFAULT_TARGET_FPR,
                        window_frames: int = DEFAULT_WINDOW_FRAMES) -> ZeroShotDetector:
    """The detector with per-class thresholds at `target_fpr` on these labeled windows (classes
    without negative windows keep their threshold)."""
    usable = [s for s in sequences if s.class_scores is not None]
    if not usable:
        raise HomesoundError("no labeled recordings with class scores to calibrate on: import labels for "
                             "recordings embedded by YAMNet (homesound labels import), or use the zero-shot "
                             "detector uncalibrated (--model zero-shot)")
    windows = cut_into_windows(usable, window_frames)
    targets = sequence_level_targets(encode(windows, detector.classes))
    scores = window_scores(detector, windows)
    thresholds, details = dict(detector.thresholds), {}
    for column, name in enumerate(detector.classes):
        known = ~np.isnan(targets[:, column])
        choice = calibrate_at_fpr(scores[known, column], targets[known, column], target_fpr)
        if choice["rule"] == "default":
            choice = {**choice, "threshold": thresholds[name], "rule": "kept"}
        thresholds[name] = choice["threshold"]
        details[name] = {**choice, "level": "window", "window_frames": window_frames}
    summary = {"windows": len(windows), "sequences": len(usable),
               "groups": len({s.group for s in usable}), "splits": sorted({s.split for s in usable})}
    return detector.with_thresholds(thresholds, details, sorted({s.embedder_id for s in usable}),
                                    {"calibration": summary})
