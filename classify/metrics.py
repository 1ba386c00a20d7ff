"""Score metrics and threshold calibration over (probability, 0/1 target) pairs, via scikit-learn."""

from __future__ import annotations

import math

import numpy as np


def both_classes_present(targets: np.ndarray) -> bool:
    return bool(len(targets)) and bool((targets > 0.5).any()) and bool((targets < 0.5).any())


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """AP, or NaN where it is undefined (no positives, or nothing to rank)."""
    from sklearn.metrics import average_precision_score

    if not len(targets) or not (targets > 0.5).any():
        return math.nan
    return float(average_precision_score(targets > 0.5, scores))


def roc_auc(scores: np.ndarray, targets: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if not both_classes_present(targets):
        return math.nan
    return float(roc_auc_score(targets > 0.5, scores))


def precision_recall_f1(scores: np.ndarray, targets: np.ndarray, threshold: float) -> dict:
    from sklearn.metrics import precision_recall_fscore_support

    if not len(targets):
        return {"precision": math.nan, "recall": math.nan, "f1": math.nan, "support": 0}
    precision, recall, f1, _ = precision_recall_fscore_support(
        targets > 0.5, scores >= threshold, average="binary", zero_division=0.0
    )
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1),
            "support": int((targets > 0.5).sum())}


def calibrate_threshold(scores: np.ndarray, targets: np.ndarray, target_precision: float | None = None) -> dict:
    """The decision threshold with the best F1, or the lowest one reaching target_precision.

    Returns the threshold with how it was chosen; with no positives or negatives to learn from,
    0.5 with reason "default".
    """
    from sklearn.metrics import precision_recall_curve

    if not both_classes_present(targets):
        return {"threshold": 0.5, "rule": "default", "note": "validation has no positives or no negatives"}
    precision, recall, thresholds = precision_recall_curve(targets > 0.5, scores)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    # Each threshold is a score seen on validation; between it and the next lower score the
    # decision is the same, so take the middle: a margin for scores of recordings not seen yet.
    thresholds = (thresholds + np.concatenate([[min(0.0, thresholds[0])], thresholds[:-1]])) / 2
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    if target_precision is not None:
        reaching = np.flatnonzero(precision >= target_precision)
        if len(reaching):
            best = reaching[np.argmax(recall[reaching])]
            return _choice(thresholds[best], "target_precision", precision[best], recall[best], f1[best])
        note = f"precision {target_precision} is never reached on validation; used the best F1 instead"
        best = int(np.argmax(f1))
        return {**_choice(thresholds[best], "max_f1", precision[best], recall[best], f1[best]), "note": note}
    best = int(np.argmax(f1))
    return _choice(thresholds[best], "max_f1", precision[best], recall[best], f1[best])


def _choice(threshold: float, rule: str, precision: float, recall: float, f1: float) -> dict:
    return {"threshold": float(threshold), "rule": rule, "validation_precision": float(precision),
            "validation_recall": float(recall), "validation_f1": float(f1)}


def nan_mean(values) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def threshold_at_fpr(negative_scores: np.ndarray, target_fpr: float) -> float:
    """The lowest threshold at which at most `target_fpr` of the negatives score >= it.

    Lowest, so recall is as high as that false-positive rate allows; just above the highest
    negative that must be rejected (ties are rejected together), by one float32 step, so the
    comparison holds for float32 probabilities as well as for float64 ones.
    """
    if not 0.0 <= target_fpr < 1.0:
        raise ValueError(f"target false-positive rate must be in [0, 1), got {target_fpr}")
    scores = np.sort(np.asarray(negative_scores, dtype=np.float64))[::-1]
    allowed = math.floor(target_fpr * len(scores) + 1e-9)
    if allowed >= len(scores):
        return 0.0
    return float(np.nextafter(np.float32(scores[allowed]), np.float32(np.inf)))


def calibrate_at_fpr(scores: np.ndarray, targets: np.ndarray, target_fpr: float) -> dict:
    """Threshold at a target false-positive rate on labeled windows, with the recall it gives there."""
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets)
    negatives, positives = scores[targets < 0.5], scores[targets > 0.5]
    if not len(negatives):
        return {"threshold": 0.5, "rule": "default", "note": "no negative windows to calibrate on",
                "positives": int(len(positives)), "negatives": 0}
    threshold = threshold_at_fpr(negatives, target_fpr)
    return {"threshold": threshold, "rule": "target_fpr", "target_fpr": float(target_fpr),
            "validation_fpr": float((negatives >= threshold).mean()),
            "validation_recall": float((positives >= threshold).mean()) if len(positives) else math.nan,
            "positives": int(len(positives)), "negatives": int(len(negatives))}
