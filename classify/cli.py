"""`homesound train`, `homesound evaluate` and `homesound detect`."""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

from classify.options import add_event_options, add_training_options, event_settings, training_configs
from embed.options import add_embedder_options, embedder_config_from_args
from homesound.errors import AudioDecodeError, HomesoundError

WORKSPACE_BATCH = 16  # recordings run through the model together (memory: a few MB per hour each)


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
    fitting.add_argument("--train-splits", default="train", help="comma-separated splits to train on (default train)")
    fitting.add_argument("--embedder", help="use only sequences embedded by this embedder id, or by any embedder "
                         "of this model (vggish, yamnet)")
    fitting.add_argument("--mix-embedders", action="store_true",
                         help="allow sequences from several embedders (only if they share one embedding space)")
    fitting.add_argument("--accept-embedder", choices=("audioset-release",),
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
        return run_zero_shot_calibration(args)
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


def run_zero_shot_calibration(args: argparse.Namespace) -> int:
    from classify.calibration import DEFAULT_TARGET_FPR, calibrate_zero_shot
    from classify.zero_shot import ZeroShotDetector
    from homesound.workspace import Workspace
    from homesound.workspace.classify import register_model
    from homesound.workspace.runs import RunStatus, finish_run, start_run
    from homesound.workspace.training_data import iter_labeled_sequences

    target_fpr = DEFAULT_TARGET_FPR if args.target_fpr is None else args.target_fpr
    if not 0.0 <= target_fpr < 1.0:
        raise HomesoundError(f"--target-fpr {target_fpr}: give a rate in [0, 1), e.g. 0.02")
    splits = _split_list(args.train_splits)
    with Workspace(args.workspace, create=False) as workspace:
        sequences = [s for s in iter_labeled_sequences(workspace) if s.split in splits and s.class_scores is not None
                     and (args.embedder is None or s.embedder_id == args.embedder)]
        run_id = start_run(workspace, "train", {"zero_shot": True, "target_fpr": target_fpr,
                                                "train_splits": list(splits), "out": args.out})
        try:
            detector = calibrate_zero_shot(ZeroShotDetector.builtin(), sequences, target_fpr)
            detector.metrics["run_id"] = run_id
            digest = detector.save(args.out)
            model_id = register_model(
                workspace, path=str(Path(args.out).resolve()), sha256=digest, config=detector.to_dict()["config"],
                classes=detector.classes, thresholds=detector.thresholds, embedder_ids=detector.calibrated_on,
                metrics=detector.metrics, run_id=run_id)
        except BaseException as error:
            finish_run(workspace, run_id, RunStatus.FAILED, {"error": str(error)})
            raise
        finish_run(workspace, run_id, RunStatus.COMPLETED, {"model_id": model_id, "sha256": digest,
                                              "thresholds": detector.thresholds})
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
    from classify.detection import (
        PROBABILITY_FORMATS,
        check_output_path,
        events_per_class,
        events_table,
        probabilities_table,
        write_events,
        write_table,
    )
    from classify.detector import load_detector

    if bool(args.files) == bool(args.workspace):
        raise HomesoundError("give audio files or --workspace home.db (one of them)")
    check_output_path(args.out)
    if args.probabilities:
        check_output_path(args.probabilities, PROBABILITY_FORMATS, "--probabilities")
    detector = load_detector(args.model)
    settings = event_settings(args)
    if args.workspace:
        detections, failures = _detect_workspace(args, detector, settings), 0
    else:
        detections, failures = _detect_files(args, detector, settings)
    write_events(events_table(detections), args.out)
    if args.probabilities:
        write_table(probabilities_table(detections, detector.classes), args.probabilities)
    hours = detector.frames.seconds(sum(len(d.probabilities) for d in detections)) / 3600
    counts = ", ".join(f"{label}: {n}" for label, n in events_per_class(detections, detector.classes).items())
    print(f"{len(detections)} recordings ({hours:.2f} h): {counts} events -> {args.out}")
    if failures:
        print(f"{failures} files could not be read (see above)", file=sys.stderr)
    return 1 if failures else 0


def _detect_files(args, detector, settings):
    from tqdm.auto import tqdm

    from classify.detection import RecordingDetection, detect_events
    from classify.frame_inputs import check_source, pick_input
    from embed.embedder import load_embedder
    from embed.pipeline import embed_file

    embedder = load_embedder(config=embedder_config_from_args(args, default_model=detector.frames.model))
    check_source(detector, embedder.embedder_id, embedder.class_names)  # before any audio is decoded
    detections, failures = [], 0
    for name in tqdm(args.files, desc="detect", unit="file", disable=len(args.files) < 2):
        try:
            embeddings = embed_file(name, embedder)
        except AudioDecodeError as error:
            failures += 1
            print(f"homesound detect: skipped {error}", file=sys.stderr)
            continue
        embedding = pick_input(detector, embedding=embeddings.embedding, raw_embedding=embeddings.raw_embedding,
                               class_scores=embeddings.class_scores, what=str(name))
        ((probabilities, events),) = detect_events(detector, [embedding], embeddings.embedder_id, settings)
        detections.append(RecordingDetection(str(name), None, probabilities, events, detector.frames.hop_seconds))
        _timeline(args, detector, detections[-1], settings)
    return detections, failures


def _detect_workspace(args, detector, settings):
    from itertools import islice

    from tqdm.auto import tqdm

    from classify.detection import RecordingDetection, detect_events
    from classify.detector import model_sha256
    from classify.frame_inputs import (
        expected_inputs,
        pick_input,
        reads_class_scores,
        reads_raw_embeddings,
        workspace_embedders,
    )
    from homesound.workspace import Workspace
    from homesound.workspace.classify import register_model, replace_detections
    from homesound.workspace.recordings import iter_embedded_recordings
    from homesound.workspace.runs import RunStatus, finish_run, start_run

    raw, scores = reads_raw_embeddings(detector), reads_class_scores(detector)
    detections = []
    # Embeddings are read lazily through a second connection, so committing detections never
    # touches the open SELECT; with WAL the reader keeps its snapshot.
    with Workspace(args.workspace, create=False) as workspace, Workspace(args.workspace, create=False) as reader:
        model_id = register_model(
            workspace, path=str(Path(args.model).resolve()) if Path(args.model).exists() else args.model,
            sha256=model_sha256(args.model, detector),
            config={"model": vars(detector.config)}, classes=detector.classes, thresholds=detector.thresholds,
            embedder_ids=detector.embedder_ids, metrics=detector.metrics,
        )
        run_id = start_run(workspace, "detect", {"model_id": model_id, "events": dataclasses.asdict(settings)})
        done: dict[str, RecordingDetection] = {}  # by content: the same audio under two paths is done once
        try:
            for embedder_id in workspace_embedders(reader, detector):
                rows = iter(tqdm(iter_embedded_recordings(reader, embedder_id, with_raw=raw, with_class_scores=scores),
                                 desc="detect", unit="recording"))  # one iterator: islice on the bar itself restarts it
                while batch := list(islice(rows, WORKSPACE_BATCH)):
                    fresh = {stored.content_sha256: (recording, stored) for recording, stored in batch
                             if stored.content_sha256 not in done}
                    embeddings = [pick_input(detector, embedding=stored.embedding, raw_embedding=stored.raw_embedding,
                                             class_scores=stored.class_scores, what=recording.path)
                                  for recording, stored in fresh.values()]
                    hops = [stored.hop_seconds for _, stored in fresh.values()]
                    results = detect_events(detector, embeddings, embedder_id, settings, hops)
                    for (content, (recording, stored)), (probabilities, events) in zip(fresh.items(), results):
                        replace_detections(workspace, model_id, content, events, len(probabilities), run_id)
                        done[content] = RecordingDetection(recording.path, content, probabilities, events,
                                                           stored.hop_seconds)
                        _timeline(args, detector, done[content], settings)
                    for recording, stored in batch:
                        detections.append(RecordingDetection(recording.path, *_tail(done[stored.content_sha256])))
        except BaseException as error:
            finish_run(workspace, run_id, RunStatus.FAILED, {"error": str(error), "recordings": len(done)})
            raise
        finish_run(workspace, run_id, RunStatus.COMPLETED, {"recordings": len(done),
                                              "events": sum(len(d.events) for d in done.values())})
    if not detections:
        raise HomesoundError(f"workspace {args.workspace} has no recordings with {expected_inputs(detector)}; "
                             f"run homesound embed with the same embedder first (--embedder {detector.frames.model})")
    return detections


def _tail(detection):
    return detection.content_sha256, detection.probabilities, detection.events, detection.hop_seconds


def _timeline(args, detector, detection, settings) -> None:
    if not args.timeline:
        return
    from classify.plots import timeline

    name = Path(detection.recording).stem + (f"-{detection.content_sha256[:8]}" if detection.content_sha256 else "")
    taken = args.__dict__.setdefault("_timeline_names", set())
    name = next(candidate for candidate in (name if i == 0 else f"{name}-{i}" for i in range(len(taken) + 1))
                if candidate not in taken)
    taken.add(name)
    thresholds = {label: rule.on_threshold for label, rule in settings.rules(detector.thresholds).items()}
    timeline(detection.probabilities, detector.classes, detection.events, thresholds,
             str(detection.recording), Path(args.timeline) / f"{name}.png", detection.hop_seconds)


def _fmt(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"
