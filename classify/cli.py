"""`homesound train`, `homesound evaluate` and `homesound detect`."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from classify.config import TrainConfig
from classify.compatibility import AUDIOSET_RELEASE
from classify.options import add_event_options, add_training_options, event_settings, training_configs
from embed.options import add_embedder_options, embedder_config_from_args
from homesound.config_defaults import default_of
from homesound.errors import HomesoundError


def register(subcommands: argparse._SubParsersAction) -> None:
    _register_train(subcommands)
    _register_evaluate(subcommands)
    _register_detect(subcommands)


def _register_train(subcommands: argparse._SubParsersAction) -> None:
    train = subcommands.add_parser(
        "train", help="train the laughter/crying detector on the workspace's labeled sequences",
        description="Train a GRU/LSTM detector on every labeled sequence in the workspace (AudioSet segments, "
                    "Label Studio labels); validation is split by source recording; thresholds are calibrated "
                    "on validation. Writes the model file and a training-curves PNG beside it.",
    )
    train.add_argument("--workspace", required=True, metavar="home.db")
    train.add_argument("--out", required=True, metavar="MODEL.pt")
    add_training_options(train)
    fitting = train.add_argument_group("training data")
    fitting.add_argument("--classes", help="comma-separated targets (default: every target in the data)")
    fitting.add_argument("--target-precision", type=float,
                         help="calibrate each threshold for this precision (default: best F1)")
    fitting.add_argument("--target-fpr", type=float,
                         help="calibrate each threshold so at most this share of negative validation windows fires "
                              "(e.g. 0.02; with --zero-shot the default is 0.02)")
    splits = ",".join(default_of(TrainConfig, "train_splits"))
    fitting.add_argument("--train-splits", default=splits, help=f"comma-separated splits to train on (default {splits})")
    fitting.add_argument("--embedder", help="use only sequences embedded by this embedder id, or by any embedder "
                         "of this model (vggish, yamnet)")
    fitting.add_argument("--mix-embedders", action="store_true",
                         help="allow sequences from several embedders (only if they share one embedding space)")
    fitting.add_argument("--accept-embedder", choices=(AUDIOSET_RELEASE,),
                         help="say that the workspace's VGGish archive is compatible with AudioSet's released "
                              "features (Google's checkpoint and official PCA): the model then reads it too; checked "
                              "against --official-pca and recorded in the model and the run")
    fitting.add_argument("--official-pca", metavar="vggish_pca_params.npz",
                         help="with --accept-embedder: the official PCA file the archive was embedded with")
    fitting.add_argument("--quiet", action="store_true", help="no progress bar")
    zero_shot = train.add_argument_group("zero-shot (no training)")
    zero_shot.add_argument("--zero-shot", action="store_true",
                           help="do not train: calibrate the zero-shot detector (YAMNet's own class scores) on the "
                                "labeled windows of the training splits and save it as MODEL (JSON)")
    train.set_defaults(handler=run_train)


def _register_evaluate(subcommands: argparse._SubParsersAction) -> None:
    evaluate = subcommands.add_parser(
        "evaluate", help="measure a detector on held-out labeled sequences; write report.json and PR curves",
        description="Per class: AP, ROC-AUC, P/R/F1 at the stored threshold, segment-based F1 (1 s), event-based "
                    "F1 (DCASE collars), PSDS and false alarms per hour.",
    )
    evaluate.add_argument("--model", required=True, metavar="MODEL.pt")
    evaluate.add_argument("--workspace", required=True, metavar="home.db")
    evaluate.add_argument("--split", help="evaluate on this split (default: every split the model did not train on)")
    evaluate.add_argument("--report", required=True, metavar="DIR")
    add_event_options(evaluate)
    evaluate.set_defaults(handler=run_evaluate)


def _register_detect(subcommands: argparse._SubParsersAction) -> None:
    detect = subcommands.add_parser(
        "detect", help="find laughter and crying events in audio files or in a workspace's recordings",
        description="Per-second probabilities -> events with hysteresis. Audio files are embedded on the fly; "
                    "with --workspace the stored embeddings are used and detections are written back.",
    )
    detect.add_argument("files", nargs="*", metavar="FILE", help="audio files (or use --workspace)")
    detect.add_argument("--workspace", metavar="home.db", help="detect in every embedded recording of the workspace")
    detect.add_argument("--model", required=True, metavar="MODEL.pt",
                        help="a trained detector, a zero-shot detector file, or `zero-shot` (YAMNet's own class "
                             "scores; needs --embedder yamnet or a workspace embedded with it)")
    detect.add_argument("--out", required=True, metavar="EVENTS", help="events.csv, events.json or events.parquet")
    detect.add_argument("--timeline", metavar="DIR", help="write a PNG per recording: probabilities and events")
    detect.add_argument("--probabilities", metavar="FILE",
                        help="also write per-frame probabilities (.csv or .parquet): path, start_seconds, one column "
                             "per class")
    add_event_options(detect)
    add_embedder_options(detect, "; default here: the model the detector was trained on")
    detect.set_defaults(handler=run_detect)


def _split_list(text: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip()) if text else ()


def run_train(args: argparse.Namespace) -> int:
    from classify.jobs import TrainJob, train_on_workspace

    if args.zero_shot:
        return _train_zero_shot(args)
    model, training = training_configs(args, target_precision=args.target_precision, target_fpr=args.target_fpr,
                                       train_splits=_split_list(args.train_splits))
    result = train_on_workspace(TrainJob(
        workspace=args.workspace, out=args.out, model=model, training=training,
        classes=_split_list(args.classes), embedder=args.embedder, mix_embedders=args.mix_embedders,
        progress=not args.quiet, accept_embedder=args.accept_embedder, official_pca=args.official_pca,
    ))
    _print_training_summary(result.detector, result.path, result.curves)
    for embedder_id, evidence in result.accepted.items():
        print(f"also reads {embedder_id} as {evidence['accepted_as']}: official PCA (sha256 "
              f"{evidence['pca_sha256'][:12]}...), checkpoint weights {str(evidence['weights_sha256'])[:12]}... "
              "recorded (not checkable offline)")
    return 0


def _train_zero_shot(args: argparse.Namespace) -> int:
    from classify.jobs import ZeroShotTrainJob, calibrate_zero_shot_on_workspace

    detector = calibrate_zero_shot_on_workspace(ZeroShotTrainJob(
        workspace=args.workspace, out=args.out, target_fpr=args.target_fpr,
        train_splits=_split_list(args.train_splits), embedder=args.embedder,
    )).detector
    calibration = detector.metrics["calibration"]
    print(f"zero-shot detector calibrated on {calibration['windows']} labeled windows from {calibration['groups']} "
          f"source recordings (splits {', '.join(calibration['splits'])}):")
    for label in detector.classes:
        detail = detector.threshold_details[label]
        if detail["rule"] == "target_fpr":
            print(f"  {label:<12} threshold {detail['threshold']:.3f}: false positives {detail['validation_fpr']:.1%} "
                  f"of {detail['negatives']} negative windows, recall {_fmt(detail['validation_recall'])} "
                  f"of {detail['positives']} positive windows")
        else:
            print(f"  {label:<12} threshold {detail['threshold']:.3f} (kept: {detail.get('note', 'no labels')})")
    print(f"model: {args.out}")
    return 0


def _print_training_summary(detector, out: Path, curves: Path) -> None:
    summary = detector.data_summary
    print(f"{summary['sequences']} labeled sequences from {summary['groups']} source recordings ({summary['frames']} s): "
          f"trained on {summary['training_windows']} windows, validated on {summary['validation_windows']}; "
          f"kept epoch {detector.metrics['best_epoch']} of {detector.metrics['epochs_run']}")
    if not detector.streamable:
        print("bidirectional model: offline only (cannot be used for streaming detection)")
    for label in detector.classes:
        counts = summary["per_class"][label]
        validation = detector.metrics["validation"][label]
        print(f"  {label:<12} positives: {counts['positive_sequences']} sequences / "
              f"{counts['strong_positive_frames']} labeled seconds   validation AP {_fmt(validation['average_precision'])}"
              f"   threshold {detector.thresholds[label]:.3f} ({detector.threshold_details[label]['rule']})")
    print(f"model: {out}\ntraining curves: {curves}")


def run_evaluate(args: argparse.Namespace) -> int:
    from classify.evaluation import summary_table
    from classify.jobs import EvaluateJob, evaluate_on_workspace

    result = evaluate_on_workspace(EvaluateJob(
        workspace=args.workspace, model=args.model, report=args.report, split=args.split,
        events=event_settings(args),
    ))
    print(summary_table(result.report))
    if result.skipped:
        print(f"({result.skipped} sequences from other embedders were skipped)")
    for warning in result.warnings:
        print(f"warning: {warning}")
    print(f"report: {result.written[0]}; PR curves: {', '.join(str(p) for p in result.written[1:])}")
    return 0


def run_detect(args: argparse.Namespace) -> int:
    from classify.detect_jobs import (
        DetectInFilesJob,
        DetectInWorkspaceJob,
        DetectionOutputs,
        detect_in_files,
        detect_in_workspace,
    )
    from classify.detector import load_detector

    if bool(args.files) == bool(args.workspace):
        raise HomesoundError("give audio files or --workspace home.db (one of them)")
    outputs = DetectionOutputs(events=args.out, probabilities=args.probabilities, timeline=args.timeline)
    def report_failure(path: str, reason: str) -> None:
        print(f"homesound detect: skipped {path}: {reason}", file=sys.stderr)

    if args.workspace:
        result = detect_in_workspace(DetectInWorkspaceJob(
            workspace=args.workspace, model=args.model, outputs=outputs, events=event_settings(args)))
    else:
        detector = load_detector(args.model)  # its training embedder is the default one
        events = event_settings(args)
        result = detect_in_files(DetectInFilesJob(
            files=tuple(args.files), model=args.model, outputs=outputs, events=events,
            embedder=embedder_config_from_args(args, default_model=detector.frames.model)), detector, report_failure)
    counts = ", ".join(f"{label}: {n}" for label, n in result.events_per_class.items())
    print(f"{len(result.detections)} recordings ({result.hours:.2f} h): {counts} events -> {args.out}")
    if result.failures:
        print(f"{len(result.failures)} files could not be read (see above)", file=sys.stderr)
    return 1 if result.failures else 0


def _fmt(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"
