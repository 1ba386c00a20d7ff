"""`homesound rank`, `push`, `pull` and `round`: the active-learning loop from the command line.

Each command parses its options into one configuration, calls one job of active_learning.jobs and prints
what it returns. Label Studio's address and key come from LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY or a
config file (see active_learning/label_studio.py), never from an option.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from active_learning.options import (
    add_label_studio_config,
    add_push_options,
    add_rank_options,
    beside_workspace,
    push_config_from_args,
    rank_request_from_args,
)


def register(subcommands: argparse._SubParsersAction) -> None:
    from classify.options import add_training_options
    from classify.zero_shot import BUILTIN_NAME

    rank = subcommands.add_parser(
        "rank", help="the windows most worth labeling next, with scores and reasons (queued for push)",
        description="Rank fixed windows of the workspace's unlabeled recordings by how much a label would teach "
                    "the detector, spread them over different sounds, print and export the table, and queue "
                    "the picks for `homesound push`. Windows already queued or labeled are never ranked again.",
    )
    _add_workspace(rank)
    rank.add_argument("--model", default=BUILTIN_NAME, metavar="MODEL",
                      help="the detector: a file from `homesound train`, or zero-shot (default: YAMNet's own class "
                           "scores, for a workspace embedded with --embedder yamnet and nothing labeled yet)")
    add_rank_options(rank)
    rank.add_argument("--out", metavar="FILE", help="also write the table as .csv or .parquet")
    rank.add_argument("--dry-run", action="store_true", help="print and export only; queue nothing")
    rank.set_defaults(handler=run_rank)

    push = subcommands.add_parser(
        "push", help="queued windows -> Label Studio tasks (clips with the model's guess)",
        description="Cut each queued window (with context) into a clip, and create one Label Studio task per "
                    "clip with the model's guess as pre-annotation. Safe to rerun: nothing is pushed twice.",
    )
    _add_workspace(push)
    add_push_options(push)
    add_label_studio_config(push)
    push.set_defaults(handler=run_push)

    pull = subcommands.add_parser(
        "pull", help="finished Label Studio annotations -> per-second labels in the workspace",
        description="Fetch finished annotations of pushed windows; edited annotations replace earlier pulls.",
    )
    _add_workspace(pull)
    add_label_studio_config(pull)
    pull.set_defaults(handler=run_pull)

    round_ = subcommands.add_parser(
        "round", help="one active-learning round: pull -> train -> evaluate -> rank -> push",
        description="Pull finished annotations, train a new detector on everything labeled (as homesound train "
                    "does), evaluate it on held-out labels (as homesound evaluate does), rank the unlabeled windows "
                    "with it and push the picks to Label Studio. A workspace with recordings and no labels starts "
                    "with the zero-shot detector (YAMNet's own class scores). The round is recorded in the workspace.",
    )
    _add_workspace(round_)
    round_.add_argument("--model", metavar="MODEL",
                        help="rank with this detector (a model file, or zero-shot) instead of training one")
    round_.add_argument("--models-dir", metavar="DIR",
                        help="where each round's model and evaluation go (default: <workspace>-models)")
    round_.add_argument("--embedder", help="train on the labels of this embedder (id, or vggish / yamnet) when "
                                           "the workspace holds labels of several")
    add_training_options(round_, prefix="train-")
    add_rank_options(round_)
    add_push_options(round_)
    add_label_studio_config(round_)
    round_.set_defaults(handler=run_round)


def _add_workspace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", required=True, metavar="home.db", help="the homesound workspace file")


def connect(args: argparse.Namespace):
    from active_learning.label_studio import LabelStudio, load_settings

    return LabelStudio(load_settings(config_path=args.label_studio_config))


def run_rank(args: argparse.Namespace) -> int:
    from active_learning.jobs import RankJob, rank
    from active_learning.ranking import format_clock

    job = RankJob(workspace=args.workspace, model=args.model, request=rank_request_from_args(args), out=args.out,
                  dry_run=args.dry_run, progress=sys.stderr.isatty())
    result = rank(job)
    for row in result.table.itertuples(index=False):
        guesses = " ".join(f"{name}<={getattr(row, 'max_' + name):.2f}" for name in result.classes)
        print(f"{row.rank:>3}. {Path(row.recording).name} {format_clock(row.start_seconds)}-"
              f"{format_clock(row.end_seconds)}  {row.strategy} {row.score:.3f}  {guesses}")
        print(f"     {row.reason}")
    print(
        f"{len(result.table)} windows from {result.recordings} recordings ({result.candidate_seconds / 3600:.2f} h "
        f"scored) by {job.request.rank.strategy}"
        + ("" if job.dry_run else f"; {result.queued} queued for `homesound push`")
        + (f"; table written to {job.out}" if job.out else "")
    )
    return 0


def run_push(args: argparse.Namespace) -> int:
    from active_learning.jobs import PushJob, push

    job = PushJob(workspace=args.workspace, push=push_config_from_args(args), progress=sys.stderr.isatty())
    server = connect(args)
    summary = push(job, server)
    print(
        f"pushed {summary.pushed} clips to {server.url}/projects/{summary.project_id}"
        + (f", noted {summary.adopted} already there" if summary.adopted else "")
        + (f"; {len(summary.failed)} could not be cut (kept queued):" if summary.failed else "")
    )
    for failure in summary.failed:
        print(f"  {failure}")
    return 1 if summary.failed else 0


def run_pull(args: argparse.Namespace) -> int:
    from active_learning.jobs import PullJob, pull

    server = connect(args)
    summary = pull(PullJob(workspace=args.workspace), server)
    print(
        f"pulled from {server.url}: {summary.added} new, {summary.updated} edited, {summary.unchanged} unchanged "
        f"annotations; {summary.waiting} tasks not labeled yet"
    )
    return 0


def run_round(args: argparse.Namespace) -> int:
    from active_learning.jobs import RoundConfig
    from active_learning.jobs import run_round as run_one_round
    from classify.options import training_configs

    model_config, training = training_configs(args, prefix="train-")
    config = RoundConfig(
        workspace=args.workspace,
        models_dir=args.models_dir or str(beside_workspace(args.workspace, "models")),
        rank=rank_request_from_args(args),
        push=push_config_from_args(args),
        model=args.model,
        model_config=model_config,
        training=training,
        embedder=args.embedder,
    )
    server = connect(args)  # before anything is written: a dead server or bad key stops the round here
    result = run_one_round(config, server)
    metrics = result.model.metrics or {}
    aps = metrics.get("average_precision")
    warnings = metrics.get("warnings") or []
    source = {"zero-shot": "the zero-shot detector (no labels yet)", "given": "model",
              "trained": "trained model"}[result.model.how]
    held_out = ""
    if aps and not warnings:
        held_out = f" (held-out AP {', '.join(f'{k} {v:.3f}' for k, v in aps.items() if v is not None)})"
    print(
        f"round {result.round_id}: pulled {result.pulled.added} new and {result.pulled.updated} edited annotations; "
        f"ranked with {source} {result.model.path}{held_out}"
        + f"; queued {result.queued} windows, {result.pushed.pushed + result.pushed.adopted} in Label Studio "
          f"project {result.pushed.project_id}"
    )
    if aps and warnings:
        print("held-out AP " + ", ".join(f"{k} {v:.3f}" for k, v in aps.items() if v is not None)
              + " - not meaningful yet:")
    for warning in warnings:
        print(f"  warning: {warning}")
    return 0
