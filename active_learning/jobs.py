"""The active-learning jobs on a workspace: rank, push, pull, and one round of all of them.

Each takes one frozen configuration (and the Label Studio client where it talks to one), records its run
through homesound.workspace.runs.recorded, and returns what it did as data, so active_learning/cli.py only
parses and prints. A round is plain calls: pull -> classify.jobs.train_on_workspace ->
classify.jobs.evaluate_on_workspace -> rank -> push.

Every model that ranks windows is registered in the workspace (models table; the zero-shot detector too,
by the digest of its configuration), and queue and rounds refer to it by that id.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from active_learning import round_trip
from active_learning.config import PushConfig, RankRequest
from active_learning.label_studio import LabelStudio
from active_learning.loop import picks_table, queue_ranking, rank_workspace
from active_learning.round_trip import PullSummary, PushSummary
from classify.config import ModelConfig, TrainConfig
from homesound.errors import HomesoundError
from homesound.output_files import write_table
from homesound.workspace import Workspace
from homesound.workspace import active_learning as queue
from homesound.workspace.runs import RunStatus, recorded

TABLE_SUFFIXES = (".csv", ".parquet")


@dataclass(frozen=True)
class RankJob:
    workspace: str
    model: str  # a model file, or "zero-shot" (classify.zero_shot.BUILTIN_NAME)
    request: RankRequest
    out: str | None = None  # also write the table here (.csv or .parquet)
    dry_run: bool = False  # rank and write the table only: queue, register and record nothing
    progress: bool = False


@dataclass(frozen=True)
class RankResult:
    table: Any  # pandas.DataFrame of the picks (loop.picks_table)
    classes: tuple[str, ...]
    recordings: int
    candidate_seconds: float
    queued: int  # 0 on a dry run
    model_id: int | None  # the registered model; None on a dry run
    run_id: int | None


@dataclass(frozen=True)
class PushJob:
    workspace: str
    push: PushConfig
    progress: bool = False


@dataclass(frozen=True)
class PullJob:
    workspace: str


@dataclass(frozen=True)
class RoundConfig:
    workspace: str
    models_dir: str
    rank: RankRequest
    push: PushConfig
    model: str | None = None  # rank with this detector (a file, or "zero-shot") instead of choosing one
    model_config: ModelConfig = field(default_factory=ModelConfig)
    training: TrainConfig = field(default_factory=TrainConfig)
    embedder: str | None = None  # train on this embedder's labels (id or model name) when several are labeled


@dataclass(frozen=True)
class RoundModel:
    path: str  # what `--model` would name: a file, or "zero-shot"
    how: str  # "given", "trained" or "zero-shot"
    metrics: dict | None = None  # held-out evaluation of a trained model


@dataclass(frozen=True)
class RoundResult:
    round_id: int
    run_id: int
    pulled: PullSummary
    model: RoundModel
    model_id: int  # its registered row
    queued: int
    pushed: PushSummary


def rank(job: RankJob) -> RankResult:
    """Rank the workspace's unlabeled windows with the job's model, write the table, and (unless a dry run)
    queue the picks for push under the registered model."""
    from classify.detector import load_detector

    if job.out is not None and Path(job.out).suffix not in TABLE_SUFFIXES:
        raise HomesoundError(f"--out {job.out}: give a .csv or .parquet file name")
    detector = load_detector(job.model)
    with Workspace(job.workspace, create=False) as workspace, \
            (contextlib.nullcontext() if job.dry_run else recorded(workspace, "rank", job)) as run:
        ranking = rank_workspace(workspace, detector, job.request, progress=job.progress)
        table = picks_table(ranking.picks, tuple(detector.classes))
        if job.out is not None:
            write_table(table, job.out, what="ranking table")
        model_id, queued = None, 0
        if run is not None:
            model_id = _register(workspace, job.model, detector)
            queued = queue_ranking(workspace, ranking, model_id)
            run.summary = {"picks": len(ranking.picks), "queued": queued, "model_id": model_id}
    return RankResult(table, tuple(detector.classes), ranking.recordings, ranking.candidate_seconds, queued,
                      model_id, None if run is None else run.id)


def push(job: PushJob, server: LabelStudio) -> PushSummary:
    """Queued windows -> Label Studio tasks; windows whose clip could not be cut stay queued."""
    with Workspace(job.workspace, create=False) as workspace, recorded(workspace, "push", job.push) as run:
        summary = round_trip.push(workspace, server, job.push, progress=job.progress)
        run.summary = vars(summary)
        if summary.failed:
            run.status = RunStatus.COMPLETED_WITH_FAILURES
    return summary


def pull(job: PullJob, server: LabelStudio) -> PullSummary:
    """Finished annotations of pushed windows -> annotations and per-second labels in the workspace."""
    with Workspace(job.workspace, create=False) as workspace, \
            recorded(workspace, "pull", {"server": server.url}) as run:
        summary = round_trip.pull(workspace, server)
        run.summary = vars(summary)
    return summary


def run_round(config: RoundConfig, server: LabelStudio) -> RoundResult:
    """One round: pull -> choose (train and evaluate) a model -> rank -> push, recorded as a `round` run
    and as a row of al_rounds linked to it (labels added, the model, its held-out metrics)."""
    from classify.detector import load_detector

    progress: dict[str, Any] = {}  # the run's summary, filled as the round goes: a failed round says how far it got
    round_id = model_id = chosen = None
    with Workspace(config.workspace, create=False) as workspace:
        try:
            with recorded(workspace, "round", config) as run:
                round_id = queue.start_round(workspace, config, run.id)
                run.summary = progress
                progress["round"] = round_id
                pulled = round_trip.pull(workspace, server, round_id)
                progress["pulled"] = {"added": pulled.added, "updated": pulled.updated, "waiting": pulled.waiting}

                chosen = choose_model(workspace, config, round_id)
                progress["model"], progress["model_source"] = chosen.path, chosen.how
                detector = load_detector(chosen.path)
                model_id = _register(workspace, chosen.path, detector)
                ranking = rank_workspace(workspace, detector, config.rank)
                progress["queued"] = queue_ranking(workspace, ranking, model_id, round_id)
                pushed = round_trip.push(workspace, server, config.push, progress=False)
                progress.update(pushed=pushed.pushed + pushed.adopted, project_id=pushed.project_id,
                                clips_not_cut=len(pushed.failed))
                if pushed.failed:
                    run.status = RunStatus.COMPLETED_WITH_FAILURES
        finally:
            if round_id is not None:
                queue.finish_round(workspace, round_id, model_id=model_id, labels_added=_labels_added(progress),
                                   metrics=chosen.metrics if chosen else None)
    return RoundResult(round_id, run.id, pulled, chosen, model_id, progress["queued"], pushed)


def choose_model(workspace: Workspace, config: RoundConfig, round_id: int) -> RoundModel:
    """The user's model; else one trained (and evaluated) on the workspace's labels; else zero-shot."""
    from classify.jobs import TrainJob, labeled_sequences, train_on_workspace
    from classify.zero_shot import BUILTIN_NAME

    if config.model:
        return RoundModel(config.model, "given")
    if next(labeled_sequences(workspace, config.embedder), None) is None:
        return RoundModel(BUILTIN_NAME, "zero-shot")
    path = Path(config.models_dir) / f"round-{round_id:03d}.pt"
    train_on_workspace(TrainJob(
        workspace=config.workspace, out=str(path), model=config.model_config, training=config.training,
        embedder=config.embedder, progress=False,
    ))
    return RoundModel(str(path), "trained", _evaluate(config, round_id, path))


def _evaluate(config: RoundConfig, round_id: int, model_path: Path) -> dict:
    """Held-out metrics of the new model, with why they may not mean much yet; none held out is noted."""
    from classify.jobs import EvaluateJob, evaluate_on_workspace

    report_dir = Path(config.models_dir) / f"round-{round_id:03d}-evaluation"
    try:
        result = evaluate_on_workspace(EvaluateJob(workspace=config.workspace, model=str(model_path),
                                                   report=str(report_dir)))
    except HomesoundError as error:
        return {"skipped": str(error), "warnings": ["nothing held out to evaluate on yet"]}
    report = result.report
    return {
        "report": str(result.written[0]),
        "average_precision": {
            label: entry.get("frame", entry.get("clip", {})).get("average_precision")
            for label, entry in report["classes"].items()
        },
        "held_out": {
            "recordings": report["groups"],
            "positives": {label: sum(entry[level]["positives"] for level in ("frame", "clip") if level in entry)
                          for label, entry in report["classes"].items()},
        },
        "warnings": list(result.warnings),
    }


def _register(workspace: Workspace, model: str, detector) -> int:
    """The models row of what `--model` named (a file, or the built-in zero-shot detector by its digest)."""
    from classify.detector import model_sha256
    from homesound.workspace.classify import register_detector

    return register_detector(workspace, model, model_sha256(model, detector), detector)


def _labels_added(progress: dict) -> int | None:
    pulled = progress.get("pulled")
    return None if pulled is None else pulled["added"] + pulled["updated"]
