"""One round of the loop: pull what people labeled -> train -> evaluate -> rank -> push.

Training and evaluation are classify's own library functions (classify.jobs), so a round trains
exactly as `homesound train` does. The model a round ranks with is, in this order: the one the
user names; one trained on every label in the workspace (pulled, or imported with `homesound
labels import`); or, in a workspace that has recordings and nothing else, the zero-shot detector
(YAMNet's own laughter and crying scores) - so the very first round needs no model at all.
The round is recorded in the workspace (labels added, the model, its held-out metrics and why
they may not mean much yet, what was pushed), also when a step fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from active_learning.label_studio import LabelStudio
from active_learning.loop import RankRequest, queue_ranking, rank_workspace
from active_learning.round_trip import PushConfig, pull, push
from active_learning.scoring import load_detector
from classify.config import ModelConfig, TrainConfig
from classify.jobs import EvaluateJob, TrainJob, evaluate_on_workspace, train_on_workspace
from homesound.errors import HomesoundError
from homesound.workspace import Workspace
from homesound.workspace import active_learning as queue

ZERO_SHOT = "zero-shot"


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


def run_round(config: RoundConfig, server: LabelStudio) -> dict:
    with Workspace(config.workspace, create=False) as workspace:
        round_id = queue.start_round(workspace, config, config.model)
    summary: dict = {"round": round_id}
    try:
        with Workspace(config.workspace, create=False) as workspace:
            pulled = pull(workspace, server, round_id)
        summary["pulled"] = {"added": pulled.added, "updated": pulled.updated, "waiting": pulled.waiting}

        chosen = choose_model(config, round_id)
        summary["model"], summary["model_source"] = chosen.path, chosen.how
        detector, model_id = load_detector(chosen.path)
        with Workspace(config.workspace, create=False) as workspace:
            ranking = rank_workspace(workspace, detector, config.rank)
            summary["queued"] = queue_ranking(workspace, ranking, model_id, round_id)
            pushed = push(workspace, server, config.push, progress=False)
        summary["pushed"] = pushed.pushed + pushed.adopted
        summary["project_id"] = pushed.project_id
        summary["clips_not_cut"] = len(pushed.failed)
    except BaseException as error:
        with Workspace(config.workspace, create=False) as workspace:
            queue.finish_round(
                workspace, round_id, "failed", labels_added=_labels_added(summary),
                summary={**summary, "error": str(error)},
            )
        raise
    with Workspace(config.workspace, create=False) as workspace:
        queue.finish_round(
            workspace, round_id, "finished", model_id=model_id, labels_added=_labels_added(summary),
            metrics=chosen.metrics, summary=summary,
        )
    summary["metrics"] = chosen.metrics
    return summary


def choose_model(config: RoundConfig, round_id: int) -> RoundModel:
    """The user's model; else one trained (and evaluated) on the workspace's labels; else zero-shot."""
    if config.model:
        return RoundModel(config.model, "given")
    if not _has_labels(config):
        return RoundModel(ZERO_SHOT, "zero-shot")
    path = Path(config.models_dir) / f"round-{round_id:03d}.pt"
    train_on_workspace(TrainJob(
        workspace=config.workspace, out=str(path), model=config.model_config, training=config.training,
        embedder=config.embedder, progress=False,
    ))
    return RoundModel(str(path), "trained", _evaluate(config, round_id, path))


def _has_labels(config: RoundConfig) -> bool:
    from classify.jobs import labeled_sequences

    with Workspace(config.workspace, create=False) as workspace:
        return next(labeled_sequences(workspace, config.embedder), None) is not None


def _evaluate(config: RoundConfig, round_id: int, model_path: Path) -> dict:
    """Held-out metrics of the new model, with why they may not mean much yet; none held out is noted."""
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


def _labels_added(summary: dict) -> int | None:
    pulled = summary.get("pulled")
    return None if pulled is None else pulled["added"] + pulled["updated"]
