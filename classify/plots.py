"""PNG figures: training curves, precision-recall curves, per-recording timelines (matplotlib, Agg)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from classify.events import Event


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(history: Sequence[dict], best_epoch: int, path: str | Path) -> Path:
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    figure, (loss_axis, ap_axis) = plt.subplots(1, 2, figsize=(11, 4))
    loss_axis.plot(epochs, [h["train_loss"] for h in history], label="train")
    loss_axis.plot(epochs, [h["validation_loss"] for h in history], label="validation")
    loss_axis.set(xlabel="epoch", ylabel="loss", title="Loss")
    classes = sorted({name for h in history for name in h["validation_ap_per_class"]})
    for name in classes:
        ap_axis.plot(epochs, [_nan(h["validation_ap_per_class"].get(name)) for h in history], label=name)
    ap_axis.plot(epochs, [_nan(h["validation_ap"]) for h in history], "k--", label="mean")
    ap_axis.set(xlabel="epoch", ylabel="average precision", title="Validation AP", ylim=(0, 1.02))
    for axis in (loss_axis, ap_axis):
        axis.axvline(best_epoch, color="grey", linestyle=":", label=f"kept (epoch {best_epoch})")
        axis.legend(loc="best", fontsize="small")
        axis.grid(alpha=0.3)
    return _save(figure, path)


def precision_recall_curves(label: str, curves: dict[str, tuple[np.ndarray, np.ndarray]], threshold: float,
                            path: str | Path) -> Path:
    """One PR curve per label level (per second, per clip), with the stored threshold marked."""
    from sklearn.metrics import precision_recall_curve

    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.5, 5))
    drawn = False
    for level, (scores, targets) in curves.items():
        if not (targets > 0.5).any():
            continue
        drawn = True
        precision, recall, thresholds = precision_recall_curve(targets > 0.5, scores)
        line, = axis.plot(recall, precision, label=f"per {'second' if level == 'frame' else 'clip'}")
        at = np.searchsorted(thresholds, threshold)
        if at < len(thresholds):
            axis.plot(recall[at], precision[at], "o", color=line.get_color())
    axis.set(xlabel="recall", ylabel="precision", title=f"{label} (dot: threshold {threshold:.2f})",
             xlim=(0, 1.02), ylim=(0, 1.02))
    axis.grid(alpha=0.3)
    if drawn:
        axis.legend(loc="lower left")
    else:
        axis.text(0.5, 0.5, "no positive labels held out: no curve", ha="center", va="center")
    return _save(figure, path)


def timeline(
    probabilities: np.ndarray,
    classes: Sequence[str],
    events: Sequence[Event],
    thresholds: dict[str, float],
    title: str,
    path: str | Path,
    hop_seconds: float,
) -> Path:
    plt = _pyplot()
    edges = np.arange(len(probabilities) + 1) * hop_seconds
    figure, axes = plt.subplots(len(classes), 1, figsize=(12, 1.8 * len(classes) + 0.6), sharex=True, squeeze=False)
    for column, (axis, label) in enumerate(zip(axes[:, 0], classes)):
        axis.stairs(probabilities[:, column], edges, label=f"p({label})")
        axis.axhline(thresholds[label], color="grey", linestyle="--", linewidth=0.8)
        for event in events:
            if event.label == label:
                axis.axvspan(event.start, event.end, color="tab:orange", alpha=0.3)
        axis.set(ylim=(0, 1.02), ylabel=label)
        axis.grid(alpha=0.3)
    axes[0, 0].set_title(title, fontsize="medium")
    axes[-1, 0].set_xlabel("seconds (shaded: detected events, dashed: threshold)")
    return _save(figure, path)


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    _pyplot().close(figure)
    return path


def _nan(value) -> float:
    return math.nan if value is None else float(value)
