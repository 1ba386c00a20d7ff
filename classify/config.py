"""Configurations of the detector, its training and its events; each is saved inside the model file."""

from __future__ import annotations

from dataclasses import dataclass

from classify.events import EventRule

RNN_KINDS = ("gru", "lstm")
POOLING_KINDS = ("linear_softmax", "attention")
THRESHOLD_MODES = ("max_f1", "target_precision", "target_fpr")
CLIP_LABEL_MODES = ("pooled", "frames")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture: projection -> recurrent layers -> one sigmoid per class and second."""

    classes: tuple[str, ...] = ("laughter", "crying")
    input_size: int = 128
    projection_size: int = 64
    hidden_size: int = 64
    rnn: str = "gru"
    layers: int = 1
    dropout: float = 0.2
    bidirectional: bool = False  # sees the future: offline only, never streamed
    pooling: str = "linear_softmax"  # how per-second outputs become a clip output for weak labels

    def __post_init__(self) -> None:
        if self.rnn not in RNN_KINDS:
            raise ValueError(f"rnn must be one of {RNN_KINDS}, got {self.rnn!r}")
        if self.pooling not in POOLING_KINDS:
            raise ValueError(f"pooling must be one of {POOLING_KINDS}, got {self.pooling!r}")
        if not self.classes:
            raise ValueError("a detector needs at least one class")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be distinct, got {self.classes}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def causal(self) -> bool:
        return not self.bidirectional


@dataclass(frozen=True)
class TrainConfig:
    """How a detector is fitted; defaults train 20,000 ten-second sequences in well under a minute."""

    epochs: int = 40
    patience: int = 6  # epochs without a better validation AP before stopping
    batch_size: int = 256  # at most: small data sets use smaller batches, see min_batches_per_epoch
    min_batches_per_epoch: int = 16  # a few dozen labeled recordings still get enough optimizer steps
    window_frames: int = 20  # longer strongly labeled sequences are cut into windows of this many seconds
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    validation_fraction: float = 0.2  # of the training groups (source recordings), never of clips
    seed: int = 0
    # One torch thread: this small GRU gains little from two, and with any other process on a
    # 2-core machine two threads spin-wait (measured 10x slower; benchmarks/train_speed.py).
    num_threads: int = 1
    max_pos_weight: float = 50.0  # caps the imbalance correction for very rare classes
    weak_loss_weight: float = 1.0
    strong_loss_weight: float = 1.0
    threshold_mode: str = "max_f1"
    target_precision: float | None = None
    target_fpr: float | None = None  # threshold_mode "target_fpr": at most this share of negative windows fires
    train_splits: tuple[str, ...] = ("train",)
    # How whole-clip (weak) labels train the per-second outputs: "pooled" through the clip output
    # (linear softmax), or "frames": every frame of the clip carries its label. On the shared clips
    # (mostly 5 s) "frames" won the inner cross-validation of benchmarks/quality.py (mean AP 0.70 vs 0.66).
    clip_labels: str = "pooled"

    def __post_init__(self) -> None:
        if self.clip_labels not in CLIP_LABEL_MODES:
            raise ValueError(f"clip_labels must be one of {CLIP_LABEL_MODES}, got {self.clip_labels!r}")
        if self.threshold_mode not in THRESHOLD_MODES:
            raise ValueError(f"threshold_mode must be one of {THRESHOLD_MODES}, got {self.threshold_mode!r}")
        if (self.threshold_mode == "target_precision") != (self.target_precision is not None):
            raise ValueError("target_precision is given exactly when threshold_mode is 'target_precision'")
        if (self.threshold_mode == "target_fpr") != (self.target_fpr is not None):
            raise ValueError("target_fpr is given exactly when threshold_mode is 'target_fpr'")
        if self.target_fpr is not None and not 0.0 <= self.target_fpr < 1.0:
            raise ValueError(f"target_fpr must be in [0, 1), got {self.target_fpr}")
        if self.target_precision is not None and not 0.0 < self.target_precision <= 1.0:
            raise ValueError(f"target_precision must be in (0, 1], got {self.target_precision}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")
        if min(self.epochs, self.patience, self.batch_size, self.min_batches_per_epoch, self.window_frames) < 1:
            raise ValueError("epochs, patience, batch_size, min_batches_per_epoch and window_frames must be positive")


@dataclass(frozen=True)
class EventSettings:
    """How per-second probabilities become events; thresholds default to the model's calibrated ones."""

    on_threshold: float | None = None  # None: the model's per-class threshold
    off_threshold: float | None = None  # None: off_ratio * on threshold
    off_ratio: float = 0.7
    min_event_seconds: float = 0.96
    merge_gap_seconds: float = 1.92

    def __post_init__(self) -> None:
        if not 0.0 < self.off_ratio <= 1.0:
            raise ValueError(f"off_ratio must be in (0, 1], got {self.off_ratio}")

    def rules(self, thresholds: dict[str, float]) -> dict[str, EventRule]:
        rules = {}
        for label, calibrated in thresholds.items():
            on = calibrated if self.on_threshold is None else self.on_threshold
            off = self.off_ratio * on if self.off_threshold is None else min(self.off_threshold, on)
            rules[label] = EventRule(on, off, self.min_event_seconds, self.merge_gap_seconds)
        return rules
