"""Jobs on a workspace: train, calibrate the zero-shot detector, evaluate, import labels (the library
functions behind `homesound train`, `train --zero-shot`, `evaluate` and `labels import`; detection is in
classify.detect_jobs).

Each job takes one frozen configuration, reads the workspace, records a run, and returns what it
made as data (the detector, its file, the report, warnings), so the command line only parses and
prints and `homesound round` calls the same functions in process.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from classify.config import EventSettings, ModelConfig, TrainConfig
from classify.labels_import import ImportConfig, LabelImport, import_labels, origin_of, read_source
from embed.discover import DEFAULT_EXTENSIONS
from homesound.config_defaults import default_of
from homesound.errors import HomesoundError
from homesound.sequences import LabeledSequence
from homesound.workspace.runs import recorded

# Held-out metrics below these sizes describe a recording or two, not the detector.
MIN_HELD_OUT_RECORDINGS = 5
MIN_HELD_OUT_POSITIVES = 20  # labeled positive seconds (or clips) per class


@dataclass(frozen=True)
class TrainJob:
    workspace: str
    out: str
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainConfig = field(default_factory=TrainConfig)
    classes: tuple[str, ...] = ()  # targets to learn; empty = every target in the data
    embedder: str | None = None  # only sequences of this embedder (id, or model name such as "yamnet")
    mix_embedders: bool = False  # several embedders, only if they share one embedding space
    progress: bool = True
    # "audioset-release": the model also reads the workspace's VGGish embedders that were embedded with this
    # official PCA file (classify.compatibility checks it and records the evidence in the model and the run).
    accept_embedder: str | None = None
    official_pca: str | None = None


@dataclass(frozen=True)
class TrainResult:
    detector: Any  # classify.detector.Detector
    path: Path
    sha256: str
    model_id: int
    run_id: int
    curves: Path  # the training-curves PNG beside the model
    accepted: dict[str, dict] = field(default_factory=dict)  # embedder id -> why it may be read (accept_embedder)


@dataclass(frozen=True)
class EvaluateJob:
    workspace: str
    model: str  # a model file, or "zero-shot"
    report: str  # directory for report.json and the PR curves
    split: str | None = None  # None: every split the model did not train on
    events: EventSettings = field(default_factory=EventSettings)


@dataclass(frozen=True)
class EvaluateResult:
    report: dict[str, Any]
    written: list[Path]  # report.json first, then the PR curves
    skipped: int  # held-out sequences of embedders the detector cannot read
    run_id: int
    warnings: tuple[str, ...]  # the held-out part is too small to mean much


def train_on_workspace(job: TrainJob) -> TrainResult:
    """Fit a detector on every labeled sequence the workspace holds (of the chosen embedder), save it with
    its training curves, and register model and run in the workspace."""
    from classify.plots import training_curves
    from classify.training import train_detector
    from homesound.workspace import Workspace
    from homesound.workspace.classify import register_model
    from homesound.workspace.recordings import embedder_provenance, frame_spec

    out = Path(job.out)
    with Workspace(job.workspace, create=False) as workspace:
        sequences = list(labeled_sequences(workspace, job.embedder))
        if not sequences:
            raise HomesoundError(
                f"workspace {job.workspace} holds no labeled sequences"
                + (f" embedded by {job.embedder}" if job.embedder else "")
                + "; import labels (homesound labels import, homesound audioset import) or pull them "
                  "(homesound pull) first"
            )
        trained_on = tuple(sorted({s.embedder_id for s in sequences}))
        provenance = {e: embedder_provenance(workspace, e) for e in trained_on}
        frames = _one_frame_spec({e: frame_spec(workspace, e) for e in provenance})
        accepted = _accepted_embedders(workspace, job, trained_on)
        config = {"model": dataclasses.asdict(job.model), "training": dataclasses.asdict(job.training),
                  "embedder": job.embedder, "mix_embedders": job.mix_embedders,
                  "accept_embedder": job.accept_embedder, "official_pca": job.official_pca, "out": str(out)}
        with recorded(workspace, "train", config) as run:
            detector = train_detector(
                sequences, job.model, job.training, classes=job.classes or None,
                allow_mixed_embedders=job.mix_embedders or bool(accepted), embedder_provenance=provenance,
                frames=frames, progress=job.progress,
            )
            if accepted:
                detector = dataclasses.replace(
                    detector, embedder_ids=tuple(dict.fromkeys((*detector.embedder_ids, *accepted))),
                    embedder_provenance={**detector.embedder_provenance, **{
                        e: {**(embedder_provenance(workspace, e) or {}), "acceptance": evidence}
                        for e, evidence in accepted.items()}},
                )
            detector.metrics["run_id"] = run.id
            digest = detector.save(out)
            curves = training_curves(detector.history, detector.metrics["best_epoch"],
                                     out.with_name(out.stem + "_training_curves.png"))
            model_id = register_model(
                workspace, path=str(out.resolve()), sha256=digest,
                config={"model": dataclasses.asdict(detector.config), "training": dataclasses.asdict(job.training)},
                classes=detector.classes, thresholds=detector.thresholds, embedder_ids=detector.embedder_ids,
                metrics=detector.metrics, run_id=run.id,
            )
            run.summary = {"model_id": model_id, "sha256": digest,
                           "validation_mean_ap": detector.metrics["validation_mean_average_precision"],
                           "accepted_embedders": accepted}
    return TrainResult(detector, out, digest, model_id, run.id, curves, accepted)


@dataclass(frozen=True)
class ZeroShotTrainJob:
    """`homesound train --zero-shot`: no training, YAMNet's own class scores with thresholds calibrated on the
    workspace's labeled windows."""

    workspace: str
    out: str  # the zero-shot detector file (JSON)
    target_fpr: float | None = None  # share of negative windows that may fire; None: calibration.DEFAULT_TARGET_FPR
    train_splits: tuple[str, ...] = default_of(TrainConfig, "train_splits")
    embedder: str | None = None  # only sequences of this embedder id


@dataclass(frozen=True)
class ZeroShotTrainResult:
    detector: Any  # classify.zero_shot.ZeroShotDetector, with threshold_details and metrics["calibration"]
    path: Path
    sha256: str
    model_id: int
    run_id: int


def calibrate_zero_shot_on_workspace(job: ZeroShotTrainJob) -> ZeroShotTrainResult:
    """Calibrate the built-in zero-shot detector's thresholds on the labeled windows of the training splits,
    save it, and register model and run in the workspace."""
    from classify.calibration import DEFAULT_TARGET_FPR, calibrate_zero_shot
    from classify.zero_shot import ZeroShotDetector
    from homesound.workspace import Workspace
    from homesound.workspace.classify import register_model
    from homesound.workspace.training_data import iter_labeled_sequences

    target_fpr = DEFAULT_TARGET_FPR if job.target_fpr is None else job.target_fpr
    if not 0.0 <= target_fpr < 1.0:
        raise HomesoundError(f"--target-fpr {target_fpr}: give a rate in [0, 1), e.g. 0.02")
    with Workspace(job.workspace, create=False) as workspace:
        sequences = [s for s in iter_labeled_sequences(workspace)
                     if s.split in job.train_splits and s.class_scores is not None
                     and (job.embedder is None or s.embedder_id == job.embedder)]
        config = {"zero_shot": True, "target_fpr": target_fpr, "train_splits": list(job.train_splits), "out": job.out}
        with recorded(workspace, "train", config) as run:
            detector = calibrate_zero_shot(ZeroShotDetector.builtin(), sequences, target_fpr)
            detector.metrics["run_id"] = run.id
            digest = detector.save(job.out)
            model_id = register_model(
                workspace, path=str(Path(job.out).resolve()), sha256=digest, config=detector.to_dict()["config"],
                classes=detector.classes, thresholds=detector.thresholds, embedder_ids=detector.calibrated_on,
                metrics=detector.metrics, run_id=run.id)
            run.summary = {"model_id": model_id, "sha256": digest, "thresholds": detector.thresholds}
    return ZeroShotTrainResult(detector, Path(job.out), digest, model_id, run.id)


def _accepted_embedders(workspace, job: TrainJob, trained_on: tuple[str, ...]) -> dict[str, dict]:
    """The archive embedders the user's --accept-embedder statement lets the model read (checked), or none."""
    if job.accept_embedder is None:
        if job.official_pca is not None:
            raise HomesoundError("--official-pca goes with --accept-embedder audioset-release")
        return {}
    if job.official_pca is None:
        raise HomesoundError(f"--accept-embedder {job.accept_embedder} needs --official-pca vggish_pca_params.npz "
                             "(the PCA file the archive was embedded with), so homesound can check the claim")
    from classify.compatibility import accept_workspace_embedders

    return accept_workspace_embedders(workspace, job.accept_embedder, job.official_pca, trained_on)


def labeled_sequences(workspace, embedder: str | None = None) -> Iterator[LabeledSequence]:
    """Every labeled sequence in the workspace, or those of one embedder (its id, or its model's name)."""
    from homesound.workspace.recordings import frame_spec
    from homesound.workspace.training_data import iter_labeled_sequences

    models: dict[str, str] = {}  # embedder id -> model name

    def chosen(embedder_id: str) -> bool:
        if embedder in (None, embedder_id):
            return True
        models.setdefault(embedder_id, frame_spec(workspace, embedder_id).model)
        return models[embedder_id] == embedder

    return (sequence for sequence in iter_labeled_sequences(workspace) if chosen(sequence.embedder_id))


def evaluate_on_workspace(job: EvaluateJob) -> EvaluateResult:
    """Score a detector on the workspace's held-out labeled sequences; write report.json and PR curves."""
    from classify.detector import load_detector
    from classify.evaluation import evaluate_detector, write_report
    from classify.frame_inputs import expected_inputs, readable_sequence
    from homesound.workspace import Workspace
    from homesound.workspace.training_data import iter_labeled_sequences

    detector = load_detector(job.model)
    trained_on = set(detector.train_config.train_splits) if getattr(detector, "train_config", None) else {"train"}
    with Workspace(job.workspace, create=False) as workspace:
        candidates = [s for s in iter_labeled_sequences(workspace, job.split)
                      if job.split is not None or s.split not in trained_on]
        sequences = [s for s in candidates if readable_sequence(detector, s)]
        skipped = len(candidates) - len(sequences)
        if not sequences:
            where = f"split {job.split!r}" if job.split else f"splits other than {sorted(trained_on)}"
            raise HomesoundError(
                f"no labeled sequences in {where} with {expected_inputs(detector)}"
                + (f" ({skipped} from other embedders)" if skipped else "")
            )
        config = {"model": str(job.model), "split": job.split or "held-out", "events": dataclasses.asdict(job.events),
                  "report": str(job.report)}
        with recorded(workspace, "evaluate", config) as run:
            evaluation = evaluate_detector(detector, sequences, job.events)
            warnings = held_out_warnings(evaluation.report)
            written = write_report(evaluation, job.report, extra={
                **config, "run_id": run.id, "skipped_other_embedders": skipped, "warnings": list(warnings)})
            run.summary = {"mean_average_precision": evaluation.report["mean_average_precision"],
                           "sequences": evaluation.report["sequences"], "warnings": list(warnings)}
    return EvaluateResult(evaluation.report, written, skipped, run.id, warnings)


def held_out_warnings(
    report: Mapping[str, Any],
    min_recordings: int = MIN_HELD_OUT_RECORDINGS,
    min_positives: int = MIN_HELD_OUT_POSITIVES,
) -> tuple[str, ...]:
    """Why the report's numbers should not be trusted yet: too few source recordings, or too few positives
    of a class (an AP of 1.000 from one recording says nothing about the next)."""
    warnings = []
    if report["groups"] < min_recordings:
        warnings.append(f"the held-out part comes from {report['groups']} source recording"
                        f"{'s' if report['groups'] != 1 else ''} (fewer than {min_recordings}): its metrics are "
                        "anecdotes; label more recordings before trusting them")
    for label, entry in report["classes"].items():
        positives = sum(entry[level]["positives"] for level in ("frame", "clip") if level in entry)
        if positives < min_positives:
            warnings.append(f"{label}: {positives} positive labels held out (fewer than {min_positives}): its AP "
                            "is not meaningful yet")
    return tuple(warnings)


def _one_frame_spec(specs: Mapping[str, Any]):
    """The frame facts shared by the training embedders; VGGish and YAMNet frames do not mix."""
    models = {spec.model: embedder for embedder, spec in specs.items()}
    if len(set(specs.values())) > 1:
        raise HomesoundError(f"the labeled data is embedded by {' and '.join(models)} ({', '.join(models.values())}); "
                             "their embeddings do not mix: choose one with --embedder ID")
    return next(iter(specs.values()))


@dataclass(frozen=True)
class LabelsImportJob:
    """`homesound labels import`: a folder of class folders or a labels CSV -> training labels."""

    workspace: str
    source: str  # a folder of class folders, or labels.csv
    config: ImportConfig = field(default_factory=ImportConfig)
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS  # folder tree: audio file extensions


def import_labels_to_workspace(job: LabelsImportJob) -> LabelImport:
    """Read the source and store its labels for the recordings the workspace has embedded (replacing what the
    same source imported before); rows it cannot use come back as problems and the rest is imported."""
    from homesound.workspace import Workspace

    if not Path(job.workspace).is_file():
        raise HomesoundError(f"no workspace at {job.workspace}; embed your recordings first "
                             f"(homesound embed FOLDER --workspace {job.workspace})")
    config = job.config
    rows, problems = read_source(job.source, config, job.extensions)
    origin = origin_of(job.source)
    with Workspace(job.workspace, create=False) as workspace:
        with recorded(workspace, "labels import", {"source": origin, **dataclasses.asdict(config)}) as run:
            result = import_labels(workspace, rows, origin, config, problems)
            counts = result.counts
            run.summary = {
                "rows": result.rows, "imported_rows": result.imported_rows, "recordings": result.recordings,
                "clip_labels": counts.clip_labels, "strong_labels": counts.strong_labels, "groups": counts.groups,
                "new": counts.new, "problems": len(result.problems)}
    return result
