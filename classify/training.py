"""Fit a detector on labeled sequences: weak and strong labels in one loss, early stopping on validation AP."""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from classify.config import ModelConfig, TrainConfig
from classify.data import (
    Batch,
    EncodedSequences,
    batches,
    check_single_embedder,
    classes_of,
    clip_labels_on_frames,
    cut_into_windows,
    encode,
    sequence_level_targets,
    split_by_group,
    summarize,
)
from classify.detector import Detector
from classify.metrics import (
    average_precision,
    calibrate_at_fpr,
    calibrate_threshold,
    nan_mean,
    precision_recall_f1,
    roc_auc,
)
from classify.model import SequenceDetector, torch_threads
from homesound.errors import HomesoundError
from homesound.frames import VGGISH_FRAMES, FrameSpec
from homesound.sequences import LabeledSequence

_PROBABILITY_FLOOR = 1e-6


@dataclass(frozen=True)
class PositiveWeights:
    """Per-class weight of positive labels (negatives / positives), separately for each label kind."""

    frame: torch.Tensor  # [C]
    clip: torch.Tensor  # [C]


def positive_weights(data: EncodedSequences, indices: np.ndarray, cap: float) -> PositiveWeights:
    def ratio(positives: np.ndarray, negatives: np.ndarray) -> torch.Tensor:
        weights = np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0)
        return torch.tensor(np.clip(weights, 1.0 / cap, cap), dtype=torch.float32)

    clip = data.clip_targets[indices]
    frame_positive = np.zeros(len(data.classes))
    frame_negative = np.zeros(len(data.classes))
    for i in indices:
        frames = data.frame_targets[i]
        if frames is not None:
            frame_positive += np.nansum(frames > 0.5, axis=0)
            frame_negative += np.nansum(frames < 0.5, axis=0)
    return PositiveWeights(
        frame=ratio(frame_positive, frame_negative),
        clip=ratio(np.sum(clip > 0.5, axis=0), np.sum(clip < 0.5, axis=0)),
    )


def detection_loss(
    frame_logits: torch.Tensor,
    clip_probabilities: torch.Tensor,
    batch: Batch,
    weights: PositiveWeights,
    config: TrainConfig,
) -> torch.Tensor:
    """Strong labels train each second directly, weak labels train the pooled clip output.

    Each part is the mean over the labels present (NaN = unknown is masked out), so a batch may
    mix AudioSet clips and Label Studio seconds in any proportion.
    """
    total = frame_logits.new_zeros(())
    frame_known = ~torch.isnan(batch.frame_targets)
    if frame_known.any():
        targets = torch.nan_to_num(batch.frame_targets, nan=0.0)
        per_label = F.binary_cross_entropy_with_logits(
            frame_logits, targets, pos_weight=weights.frame, reduction="none"
        )
        total = total + config.strong_loss_weight * per_label[frame_known].mean()
    clip_known = ~torch.isnan(batch.clip_targets)
    if clip_known.any():
        targets = torch.nan_to_num(batch.clip_targets, nan=0.0)
        probabilities = clip_probabilities.clamp(_PROBABILITY_FLOOR, 1.0 - _PROBABILITY_FLOOR)
        per_label = -(weights.clip * targets * torch.log(probabilities) + (1 - targets) * torch.log1p(-probabilities))
        total = total + config.weak_loss_weight * per_label[clip_known].mean()
    return total


@dataclass(frozen=True)
class Predictions:
    frames: list[np.ndarray]  # per sequence [T, C]
    clips: np.ndarray  # [N, C] pooled like in training


def predict(
    model: SequenceDetector,
    data: EncodedSequences,
    indices: np.ndarray,
    batch_size: int,
    loss: Callable[[torch.Tensor, torch.Tensor, Batch], torch.Tensor] | None = None,
) -> tuple[Predictions, float]:
    """Frame and pooled clip probabilities for the chosen sequences, in the order of `indices`,
    and the mean of `loss` over them (NaN without one)."""
    model.eval()
    frames: dict[int, np.ndarray] = {}
    clips: dict[int, np.ndarray] = {}
    total = 0.0
    with torch.inference_mode():
        for batch in batches(data, indices, batch_size):
            logits, clip_probabilities = model(batch.features, batch.lengths)
            if loss is not None:
                total += loss(logits, clip_probabilities, batch).item() * len(batch.indices)
            probabilities = torch.sigmoid(logits).numpy()
            lengths = data.lengths[batch.indices]
            for row, i in enumerate(batch.indices):
                frames[int(i)] = probabilities[row, : lengths[row]]
                clips[int(i)] = clip_probabilities[row].numpy()
    predictions = Predictions(
        frames=[frames[int(i)] for i in indices],
        clips=np.stack([clips[int(i)] for i in indices]) if len(indices) else np.zeros((0, len(data.classes))),
    )
    return predictions, (total / max(len(indices), 1) if loss is not None else math.nan)


def scored_pairs(
    data: EncodedSequences, indices: np.ndarray, predictions: Predictions, column: int, level: str
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, targets) of every known label of one class: per second ('frame') or per clip ('clip')."""
    if level == "clip":
        targets = data.clip_targets[indices, column]
        known = ~np.isnan(targets)
        return predictions.clips[known, column], targets[known]
    scores, targets = [], []
    for position, i in enumerate(indices):
        frames = data.frame_targets[i]
        if frames is not None:
            known = ~np.isnan(frames[:, column])
            scores.append(predictions.frames[position][known, column])
            targets.append(frames[known, column])
    if not scores:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.float32)
    return np.concatenate(scores), np.concatenate(targets)


def class_metrics(
    data: EncodedSequences,
    indices: np.ndarray,
    predictions: Predictions,
    thresholds: dict[str, float] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per class and label level (frame, clip): AP, ROC-AUC, and P/R/F1 at the threshold if given."""
    result: dict[str, dict[str, Any]] = {}
    for column, name in enumerate(data.classes):
        per_level: dict[str, Any] = {}
        for level in ("frame", "clip"):
            scores, targets = scored_pairs(data, indices, predictions, column, level)
            if not len(targets):
                continue
            entry = {
                "labels": len(targets),
                "positives": int((targets > 0.5).sum()),
                "average_precision": average_precision(scores, targets),
                "roc_auc": roc_auc(scores, targets),
            }
            if thresholds is not None:
                entry.update(precision_recall_f1(scores, targets, thresholds[name]))
            per_level[level] = entry
        per_level["average_precision"] = nan_mean(v["average_precision"] for v in per_level.values())
        result[name] = per_level
    return result


def mean_average_precision(metrics: dict[str, dict[str, Any]]) -> float:
    return nan_mean(entry["average_precision"] for entry in metrics.values())


def calibrate(
    data: EncodedSequences, indices: np.ndarray, predictions: Predictions, target_precision: float | None,
    target_fpr: float | None = None,
) -> dict[str, dict]:
    """Per-class thresholds on validation, on per-second labels where there are any (that is what
    detection thresholds), else on pooled clip outputs. With target_fpr: on validation windows
    instead, the lowest threshold at which at most that share of negative windows has a frame
    reaching it (a window that fires is a false alarm)."""
    details = {}
    if target_fpr is not None:
        targets = sequence_level_targets(data)[indices]
        window_max = np.stack([f.max(axis=0) if len(f) else np.zeros(len(data.classes)) for f in predictions.frames])
        for column, name in enumerate(data.classes):
            known = ~np.isnan(targets[:, column])
            details[name] = {**calibrate_at_fpr(window_max[known, column], targets[known, column], target_fpr),
                             "level": "window"}
        return details
    for column, name in enumerate(data.classes):
        for level in ("frame", "clip"):
            scores, targets = scored_pairs(data, indices, predictions, column, level)
            choice = calibrate_threshold(scores, targets, target_precision)
            if choice["rule"] != "default":
                break
        details[name] = {**choice, "level": level}
    return details


def train_detector(
    sequences: Sequence[LabeledSequence],
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    *,
    classes: Sequence[str] | None = None,
    allow_mixed_embedders: bool = False,
    embedder_provenance: dict[str, Any] | None = None,
    frames: FrameSpec = VGGISH_FRAMES,
    progress: bool = True,
) -> Detector:
    """Train on the sequences of `train_config.train_splits`; validation groups are held out of those.

    `frames` are the embedder's frame facts: the model's input size, and what its file records.
    """
    train_config = train_config or TrainConfig()
    usable = [s for s in sequences if s.split in train_config.train_splits]
    if not usable:
        found = sorted({s.split for s in sequences})
        raise HomesoundError(
            f"no training sequences in splits {list(train_config.train_splits)} (found splits: {found or 'none'})"
        )
    embedder_ids = check_single_embedder(usable, allow_mixed_embedders)
    classes = tuple(classes) if classes else classes_of(usable)
    model_config = dataclasses.replace(model_config or ModelConfig(), classes=classes, input_size=frames.dimension)
    wrong = [s.key for s in usable if s.embedding.shape[1] != frames.dimension]
    if wrong:
        raise HomesoundError(f"{len(wrong)} sequences (e.g. {wrong[0]}) are not {frames.dimension}-d "
                             f"{frames.model} embeddings; train on one embedder's embeddings")
    if train_config.clip_labels == "frames":
        usable = clip_labels_on_frames(usable)
    data = encode(cut_into_windows(usable, train_config.window_frames), classes)
    train_indices, validation_indices = split_by_group(data, train_config.validation_fraction, train_config.seed)

    with torch_threads(train_config.num_threads):
        model, history, best_epoch = _fit(data, train_indices, validation_indices, model_config, train_config, progress)
        validation, _ = predict(model, data, validation_indices, train_config.batch_size)
    threshold_details = calibrate(data, validation_indices, validation, train_config.target_precision,
                                  train_config.target_fpr)
    thresholds = {name: detail["threshold"] for name, detail in threshold_details.items()}
    validation_metrics = class_metrics(data, validation_indices, validation, thresholds)
    return Detector(
        model=model,
        thresholds=thresholds,
        input_encoding=data.input_encoding,
        embedder_ids=embedder_ids,
        embedder_provenance=dict(embedder_provenance or {}),
        frames=frames,
        train_config=train_config,
        threshold_details=threshold_details,
        data_summary={
            **summarize(data, embedder_ids, usable),
            "training_windows": len(train_indices),
            "validation_windows": len(validation_indices),
            "validation_groups": len({data.groups[i] for i in validation_indices}),
        },
        metrics={
            "validation": validation_metrics,
            "validation_mean_average_precision": mean_average_precision(validation_metrics),
            "best_epoch": best_epoch,
            "epochs_run": len(history),
        },
        history=history,
    )


def _fit(
    data: EncodedSequences,
    train_indices: np.ndarray,
    validation_indices: np.ndarray,
    model_config: ModelConfig,
    config: TrainConfig,
    progress: bool,
) -> tuple[SequenceDetector, list[dict], int]:
    from tqdm.auto import tqdm

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = SequenceDetector(model_config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    weights = positive_weights(data, train_indices, config.max_pos_weight)
    history: list[dict] = []
    best_ap, best_loss, best_epoch, best_state = -math.inf, math.inf, 0, copy.deepcopy(model.state_dict())
    bar = tqdm(range(1, config.epochs + 1), desc="train", unit="epoch", disable=not progress, leave=True)
    batch_size = max(1, min(config.batch_size, math.ceil(len(train_indices) / config.min_batches_per_epoch)))
    for epoch in bar:
        started = time.perf_counter()
        model.train()
        losses = []
        for batch in batches(data, train_indices, batch_size, rng):
            frame_logits, clip_probabilities = model(batch.features, batch.lengths)
            loss = detection_loss(frame_logits, clip_probabilities, batch, weights, config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
        seconds = time.perf_counter() - started
        validation, validation_loss = predict(
            model, data, validation_indices, config.batch_size,
            loss=lambda logits, clips, batch: detection_loss(logits, clips, batch, weights, config),
        )
        validation_metrics = class_metrics(data, validation_indices, validation)
        validation_ap = mean_average_precision(validation_metrics)
        history.append({
            "epoch": epoch,
            "train_loss": float(np.mean(losses)),
            "validation_loss": validation_loss,
            "validation_ap": validation_ap,
            "validation_ap_per_class": {name: m["average_precision"] for name, m in validation_metrics.items()},
            "train_seconds": seconds,
            "sequences_per_second": len(train_indices) / max(seconds, 1e-9),
        })
        if _better(validation_ap, validation_loss, best_ap, best_loss):
            best_epoch, best_state = epoch, copy.deepcopy(model.state_dict())
            best_ap, best_loss = max(best_ap, _or(validation_ap, -math.inf)), validation_loss
        bar.set_postfix(loss=f"{history[-1]['train_loss']:.4f}", val_loss=f"{validation_loss:.4f}",
                        val_ap=f"{validation_ap:.3f}", best=best_epoch,
                        seq_s=f"{history[-1]['sequences_per_second']:.0f}")
        if epoch - best_epoch >= config.patience:
            break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return model, history, best_epoch


_AP_TOLERANCE = 0.01


def _better(ap: float, loss: float, best_ap: float, best_loss: float) -> bool:
    """Clearly higher validation AP wins; within a hundredth of the best AP seen (noise on a small
    validation set, or 1.0 on easy data) the lower validation loss wins, being better calibrated.

    Without validation positives AP is undefined and the loss alone decides.
    """
    if math.isnan(ap):
        return loss < best_loss
    return ap > best_ap + _AP_TOLERANCE or (ap >= best_ap - _AP_TOLERANCE and loss < best_loss)


def _or(value: float, fallback: float) -> float:
    return fallback if math.isnan(value) else value
