"""One round of the loop: pull what people labeled -> train -> evaluate -> rank -> push.

Training and evaluation are classify's own `homesound train` / `homesound evaluate`, run in
process, so a round trains exactly as a person would by hand. The round is recorded in the
workspace (labels added, the model, its held-out metrics, what was pushed), also when a step
fails, so `homesound status` can show the history.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from active_learning.label_studio import LabelStudio
from active_learning.loop import RankRequest, queue_ranking, rank_workspace
from active_learning.round_trip import PushConfig, pull, push
from active_learning.scoring import load_detector
from homesound.errors import HomesoundError
from homesound.workspace import Workspace
from homesound.workspace import active_learning as queue

# Runs a homesound subcommand in process, e.g. ["train", "--workspace", ...] -> exit code.
SubcommandRunner = Callable[[Sequence[str]], int]


@dataclass(frozen=True)
class RoundConfig:
    workspace: str
    models_dir: str
    rank: RankRequest
    push: PushConfig
    model: str | None = None  # use this detector instead of training one (e.g. the very first round)
    train_options: tuple[str, ...] = field(default_factory=tuple)  # passed to `homesound train`


def run_round(config: RoundConfig, server: LabelStudio, run_subcommand: SubcommandRunner) -> dict:
    with Workspace(config.workspace, create=False) as workspace:
        round_id = queue.start_round(workspace, config, config.model)
    summary: dict = {"round": round_id}
    try:
        with Workspace(config.workspace) as workspace:
            pulled = pull(workspace, server, round_id)
        summary["pulled"] = {"added": pulled.added, "updated": pulled.updated, "waiting": pulled.waiting}

        model_path, trained = _model_for_round(config, round_id, run_subcommand)
        summary["model"] = str(model_path)
        metrics = _evaluate(config, round_id, model_path, run_subcommand) if trained else None

        detector, model_id = load_detector(str(model_path))
        with Workspace(config.workspace) as workspace:
            ranking = rank_workspace(workspace, detector, config.rank)
            summary["queued"] = queue_ranking(workspace, ranking, model_id, round_id)
            pushed = push(workspace, server, config.push, progress=False)
        summary["pushed"] = pushed.pushed + pushed.adopted
        summary["project_id"] = pushed.project_id
        summary["clips_not_cut"] = len(pushed.failed)
    except BaseException as error:
        with Workspace(config.workspace) as workspace:
            queue.finish_round(
                workspace, round_id, "failed", labels_added=_labels_added(summary),
                summary={**summary, "error": str(error)},
            )
        raise
    with Workspace(config.workspace) as workspace:
        queue.finish_round(
            workspace, round_id, "finished", model_id=model_id, labels_added=_labels_added(summary),
            metrics=metrics, summary=summary,
        )
    summary["metrics"] = metrics
    return summary


def _model_for_round(config: RoundConfig, round_id: int, run_subcommand: SubcommandRunner) -> tuple[Path, bool]:
    if config.model:
        return Path(config.model), False
    path = Path(config.models_dir) / f"round-{round_id:03d}.pt"
    code = run_subcommand(["train", "--workspace", config.workspace, "--out", str(path), "--quiet",
                           *config.train_options])
    if code != 0:
        raise HomesoundError(f"training in round {round_id} failed (exit {code}); see the message above")
    return path, True


def _evaluate(config: RoundConfig, round_id: int, model_path: Path, run_subcommand: SubcommandRunner) -> dict:
    """Held-out metrics of the new model; a workspace without held-out labels yet is noted, not fatal."""
    report_dir = Path(config.models_dir) / f"round-{round_id:03d}-evaluation"
    try:
        code = run_subcommand(["evaluate", "--model", str(model_path), "--workspace", config.workspace,
                               "--report", str(report_dir)])
    except HomesoundError as error:
        return {"skipped": str(error)}
    if code != 0:
        return {"skipped": f"evaluate exited with {code}"}
    report = json.loads((report_dir / "report.json").read_text())
    return {
        "report": str(report_dir / "report.json"),
        "average_precision": {
            label: entry.get("frame", entry.get("clip", {})).get("average_precision")
            for label, entry in report.get("classes", {}).items()
        },
    }


def _labels_added(summary: dict) -> int | None:
    pulled = summary.get("pulled")
    return None if pulled is None else pulled["added"] + pulled["updated"]

