"""The model, training and event options several commands share (train and round; detect, evaluate
and listen), with their defaults and choices taken from classify.config."""

from __future__ import annotations

import argparse

from classify.config import (
    CLIP_LABEL_MODES,
    POOLING_KINDS,
    RNN_KINDS,
    EventSettings,
    ModelConfig,
    TrainConfig,
)
from homesound.config_defaults import default_of
from homesound.errors import HomesoundError


def add_training_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """The model and fitting options of `homesound train` (also offered by `homesound round`, as --train-...)."""
    model = parser.add_argument_group("model")
    model.add_argument(f"--{prefix}rnn", choices=RNN_KINDS, default=default_of(ModelConfig, "rnn"))
    model.add_argument(f"--{prefix}hidden-size", type=int, default=default_of(ModelConfig, "hidden_size"))
    model.add_argument(f"--{prefix}projection-size", type=int, default=default_of(ModelConfig, "projection_size"))
    model.add_argument(f"--{prefix}layers", type=int, default=default_of(ModelConfig, "layers"))
    model.add_argument(f"--{prefix}dropout", type=float, default=default_of(ModelConfig, "dropout"))
    model.add_argument(f"--{prefix}pooling", choices=POOLING_KINDS, default=default_of(ModelConfig, "pooling"),
                       help="how per-second outputs pool into a clip output for weak labels")
    model.add_argument(f"--{prefix}bidirectional", action="store_true",
                       help="look at the future too: better offline, but the model cannot stream (offline only)")
    fitting = parser.add_argument_group("training")
    fitting.add_argument(f"--{prefix}epochs", type=int, default=default_of(TrainConfig, "epochs"))
    fitting.add_argument(f"--{prefix}patience", type=int, default=default_of(TrainConfig, "patience"),
                         help="epochs without better validation AP before stopping")
    fitting.add_argument(f"--{prefix}batch-size", type=int, default=default_of(TrainConfig, "batch_size"))
    fitting.add_argument(f"--{prefix}learning-rate", type=float, default=default_of(TrainConfig, "learning_rate"))
    fitting.add_argument(f"--{prefix}validation-fraction", type=float,
                         default=default_of(TrainConfig, "validation_fraction"))
    fitting.add_argument(f"--{prefix}seed", type=int, default=default_of(TrainConfig, "seed"))
    threads = default_of(TrainConfig, "num_threads")
    fitting.add_argument(f"--{prefix}threads", type=int, default=threads,
                         help=f"CPU threads for torch (default {threads}: faster for this small model on a shared "
                              "machine)")
    fitting.add_argument(f"--{prefix}clip-labels", choices=CLIP_LABEL_MODES, default=default_of(TrainConfig, "clip_labels"),
                         help="whole-clip labels train the pooled clip output (default) or every frame of the clip "
                              "(better on short labeled clips: benchmarks/quality.py)")


def training_configs(args: argparse.Namespace, prefix: str = "", *, target_precision: float | None = None,
                     target_fpr: float | None = None,
                     train_splits: tuple[str, ...] = default_of(TrainConfig, "train_splits"),
                     ) -> tuple[ModelConfig, TrainConfig]:
    """(ModelConfig, TrainConfig) from the options add_training_options added."""
    value = lambda name: getattr(args, (prefix + name).replace("-", "_"))  # noqa: E731
    try:
        model = ModelConfig(
            projection_size=value("projection-size"), hidden_size=value("hidden-size"), rnn=value("rnn"),
            layers=value("layers"), dropout=value("dropout"), bidirectional=value("bidirectional"),
            pooling=value("pooling"),
        )
        training = TrainConfig(
            epochs=value("epochs"), patience=value("patience"), batch_size=value("batch-size"),
            learning_rate=value("learning-rate"), validation_fraction=value("validation-fraction"),
            seed=value("seed"), num_threads=value("threads"),
            threshold_mode=("target_precision" if target_precision is not None
                            else "target_fpr" if target_fpr is not None else "max_f1"),
            target_precision=target_precision, target_fpr=target_fpr, train_splits=train_splits,
            clip_labels=value("clip-labels"),
        )
    except ValueError as error:
        raise HomesoundError(str(error)) from error
    return model, training


def add_event_options(parser: argparse.ArgumentParser) -> None:
    """Hysteresis options: how per-second probabilities become events (detect, evaluate, listen)."""
    events = parser.add_argument_group("events (hysteresis)")
    events.add_argument("--on", type=float, dest="on_threshold",
                        help="probability that starts an event (default: the model's calibrated threshold per class)")
    events.add_argument("--off", type=float, dest="off_threshold",
                        help="probability below which an event stops (default: --off-ratio x on)")
    events.add_argument("--off-ratio", type=float, default=default_of(EventSettings, "off_ratio"))
    min_event = default_of(EventSettings, "min_event_seconds")
    events.add_argument("--min-event", type=float, default=min_event, dest="min_event_seconds",
                        help=f"drop events shorter than this many seconds (default {min_event:g})")
    merge_gap = default_of(EventSettings, "merge_gap_seconds")
    events.add_argument("--merge-gap", type=float, default=merge_gap, dest="merge_gap_seconds",
                        help=f"join events separated by at most this many seconds (default {merge_gap:g})")


def event_settings(args: argparse.Namespace) -> EventSettings:
    """EventSettings from the options add_event_options added; a bad value is the user's to fix."""
    try:
        return EventSettings(on_threshold=args.on_threshold, off_threshold=args.off_threshold,
                             off_ratio=args.off_ratio, min_event_seconds=args.min_event_seconds,
                             merge_gap_seconds=args.merge_gap_seconds)
    except ValueError as error:
        raise HomesoundError(f"event options: {error}") from error
