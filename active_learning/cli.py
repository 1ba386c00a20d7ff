"""`homesound rank`, `push`, `pull` and `round`: the active-learning loop from the command line.

Label Studio's address and key come from LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY or a config
file (see active_learning/label_studio.py), never from an option.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CONFIG_HELP = (
    "TOML file with url, api_key and local_files_document_root (default: $HOMESOUND_LABEL_STUDIO_CONFIG "
    "or ~/.config/homesound/label-studio.toml); LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY win over it"
)


def register(subcommands: argparse._SubParsersAction) -> None:
    rank = subcommands.add_parser(
        "rank", help="the windows most worth labeling next, with scores and reasons (queued for push)",
        description="Rank fixed windows of the workspace's unlabeled recordings by how much a label would teach "
                    "the detector, spread them over different sounds, print and export the table, and queue "
                    "the picks for `homesound push`. Windows already queued or labeled are never ranked again.",
    )
    _add_workspace(rank)
    rank.add_argument("--model", default="zero-shot", metavar="MODEL",
                      help="the detector: a file from `homesound train`, or zero-shot (default: YAMNet's own class "
                           "scores, for a workspace embedded with --embedder yamnet and nothing labeled yet)")
    _add_rank_options(rank)
    rank.add_argument("--out", metavar="FILE", help="also write the table as .csv or .parquet")
    rank.add_argument("--dry-run", action="store_true", help="print and export only; queue nothing")
    rank.set_defaults(handler=run_rank)

    push = subcommands.add_parser(
        "push", help="queued windows -> Label Studio tasks (clips with the model's guess)",
        description="Cut each queued window (with context) into a clip, and create one Label Studio task per "
                    "clip with the model's guess as pre-annotation. Safe to rerun: nothing is pushed twice.",
    )
    _add_workspace(push)
    _add_push_options(push)
    push.add_argument("--label-studio-config", metavar="FILE", help=CONFIG_HELP)
    push.set_defaults(handler=run_push)

    pull = subcommands.add_parser(
        "pull", help="finished Label Studio annotations -> per-second labels in the workspace",
        description="Fetch finished annotations of pushed windows; edited annotations replace earlier pulls.",
    )
    _add_workspace(pull)
    pull.add_argument("--label-studio-config", metavar="FILE", help=CONFIG_HELP)
    pull.set_defaults(handler=run_pull)

    _register_round(subcommands)


def _register_round(subcommands: argparse._SubParsersAction) -> None:
    from classify.options import add_training_options

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
    _add_rank_options(round_)
    _add_push_options(round_)
    round_.add_argument("--label-studio-config", metavar="FILE", help=CONFIG_HELP)
    round_.set_defaults(handler=run_round)


def _add_workspace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", required=True, metavar="home.db", help="the homesound workspace file")


def _add_rank_options(parser: argparse.ArgumentParser) -> None:
    from active_learning import AGGREGATES, STRATEGIES

    parser.add_argument("--top", type=int, default=50, help="windows to pick (default 50)")
    parser.add_argument("--strategy", choices=STRATEGIES, default="entropy",
                        help="informativeness: least-confidence, margin, entropy (default), bald (MC dropout), "
                             "or random (the baseline)")
    parser.add_argument("--window-seconds", type=float, default=5.0, help="window length (default 5)")
    parser.add_argument("--aggregate", choices=AGGREGATES, default="max",
                        help="a window's score from its seconds: the most uncertain one (max) or the mean")
    parser.add_argument("--no-diversity", action="store_true",
                        help="plain top scores, without k-center spreading over the embeddings")
    parser.add_argument("--diversity-pool", type=float, default=4.0,
                        help="k-center chooses among this many times --top of the best-scored windows (default 4)")
    parser.add_argument("--confident-share", type=float, default=0.0,
                        help="share of picks for the most confident detections, to catch confident mistakes")
    parser.add_argument("--confident-threshold", type=float, default=0.9,
                        help="a window counts as a confident detection of a class from this probability (default 0.9)")
    parser.add_argument("--per-class", action=argparse.BooleanOptionalAction, default=True,
                        help="share the picks equally between the classes, each ranked by its own uncertainty, so a "
                             "rare class is not drowned by a common one (default; --no-per-class: one score for all)")
    parser.add_argument("--prefilter-share", type=float, default=1.0,
                        help="rank only this share of the windows per class, the likeliest under the zero-shot "
                             "detector (YAMNet embeddings; else the model itself); default 1 = all windows")
    parser.add_argument("--mc-samples", type=int, default=20, help="dropout masks for bald (default 20)")
    parser.add_argument("--seed", type=int, default=0)


def rank_request_from_args(args: argparse.Namespace):
    from active_learning.loop import RankRequest
    from active_learning.ranking import RankConfig

    try:
        config = RankConfig(
            strategy=args.strategy, top=args.top, window_seconds=args.window_seconds, aggregate=args.aggregate,
            diversity=not args.no_diversity, diversity_pool=args.diversity_pool,
            confident_share=args.confident_share, confident_threshold=args.confident_threshold, seed=args.seed,
            per_class=args.per_class, prefilter_share=args.prefilter_share,
        )
    except ValueError as error:
        from homesound.errors import HomesoundError

        raise HomesoundError(str(error)) from error
    return RankRequest(rank=config, mc_samples=args.mc_samples)


def _add_push_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--clip-dir", metavar="DIR",
        help="where clips are written; must lie under Label Studio's LOCAL_FILES_DOCUMENT_ROOT "
             "(default: <workspace>-clips next to the workspace)",
    )
    parser.add_argument("--context-seconds", type=float, default=1.0,
                        help="audio kept before and after each window (default 1.0)")
    parser.add_argument("--project-title", default=None, help="Label Studio project to create or reuse")
    parser.add_argument("--push-batch-size", type=int, default=20, help="tasks per import request (default 20)")


def push_config_from_args(args: argparse.Namespace):
    from active_learning.round_trip import DEFAULT_PROJECT_TITLE, PushConfig

    workspace = Path(args.workspace)
    clip_dir = args.clip_dir or str(workspace.resolve().with_name(workspace.stem + "-clips"))
    return PushConfig(
        clip_dir=str(Path(clip_dir).resolve()),
        project_title=args.project_title or DEFAULT_PROJECT_TITLE,
        context_seconds=args.context_seconds,
        batch_size=args.push_batch_size,
    )


def connect(args: argparse.Namespace):
    from active_learning.label_studio import LabelStudio, load_settings

    return LabelStudio(load_settings(config_path=args.label_studio_config))


def run_rank(args: argparse.Namespace) -> int:
    from active_learning.loop import picks_table, queue_ranking, rank_workspace
    from active_learning.scoring import load_detector
    from homesound.workspace import Workspace
    from homesound.workspace.runs import RunStatus, finish_run, start_run

    request = rank_request_from_args(args)
    detector, model_id = load_detector(args.model)
    with Workspace(args.workspace, create=False) as workspace:
        ranking = rank_workspace(workspace, detector, request, progress=sys.stderr.isatty())
        table = picks_table(ranking.picks, tuple(detector.classes))
        if args.out:
            write_table(table, Path(args.out))
        queued = 0
        if not args.dry_run:
            run_id = start_run(workspace, "rank", {"request": request, "model": args.model, "model_id": model_id})
            queued = queue_ranking(workspace, ranking, model_id)
            finish_run(workspace, run_id, RunStatus.COMPLETED, {"picks": len(ranking.picks), "queued": queued})
    print_table(table, detector.classes)
    print(
        f"{len(ranking.picks)} windows from {ranking.recordings} recordings ({ranking.candidate_seconds / 3600:.2f} h "
        f"scored) by {request.rank.strategy}"
        + ("" if args.dry_run else f"; {queued} queued for `homesound push`")
        + (f"; table written to {args.out}" if args.out else "")
    )
    return 0


def write_table(table, path: Path) -> None:
    from homesound.errors import HomesoundError

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        table.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        table.to_parquet(path, index=False)
    else:
        raise HomesoundError(f"--out {path}: give a .csv or .parquet file name")


def print_table(table, classes) -> None:
    from active_learning.ranking import format_clock

    for row in table.itertuples(index=False):
        guesses = " ".join(f"{name}<={getattr(row, 'max_' + name):.2f}" for name in classes)
        print(f"{row.rank:>3}. {Path(row.recording).name} {format_clock(row.start_seconds)}-"
              f"{format_clock(row.end_seconds)}  {row.strategy} {row.score:.3f}  {guesses}")
        print(f"     {row.reason}")


def run_push(args: argparse.Namespace) -> int:
    from active_learning.round_trip import push
    from homesound.workspace import Workspace
    from homesound.workspace.runs import RunStatus, finish_run, start_run

    config = push_config_from_args(args)
    server = connect(args)
    with Workspace(args.workspace, create=False) as workspace:
        run_id = start_run(workspace, "push", config)
        try:
            summary = push(workspace, server, config, progress=sys.stderr.isatty())
        except BaseException as error:
            finish_run(workspace, run_id, RunStatus.FAILED, {"error": str(error)})
            raise
        finish_run(workspace, run_id, RunStatus.COMPLETED, vars(summary))
    print(
        f"pushed {summary.pushed} clips to {server.url}/projects/{summary.project_id}"
        + (f", noted {summary.adopted} already there" if summary.adopted else "")
        + (f"; {len(summary.failed)} could not be cut (kept queued):" if summary.failed else "")
    )
    for failure in summary.failed:
        print(f"  {failure}")
    return 1 if summary.failed else 0


def run_pull(args: argparse.Namespace) -> int:
    from active_learning.round_trip import pull
    from homesound.workspace import Workspace
    from homesound.workspace.runs import RunStatus, finish_run, start_run

    server = connect(args)
    with Workspace(args.workspace, create=False) as workspace:
        run_id = start_run(workspace, "pull", {"server": server.url})
        try:
            summary = pull(workspace, server)
        except BaseException as error:
            finish_run(workspace, run_id, RunStatus.FAILED, {"error": str(error)})
            raise
        finish_run(workspace, run_id, RunStatus.COMPLETED, vars(summary))
    print(
        f"pulled from {server.url}: {summary.added} new, {summary.updated} edited, {summary.unchanged} unchanged "
        f"annotations; {summary.waiting} tasks not labeled yet"
    )
    return 0


def run_round(args: argparse.Namespace) -> int:
    from active_learning.rounds import RoundConfig
    from active_learning.rounds import run_round as run_one_round
    from classify.options import training_configs

    workspace = Path(args.workspace)
    model_config, training = training_configs(args, prefix="train-")
    config = RoundConfig(
        workspace=str(workspace),
        models_dir=args.models_dir or str(workspace.resolve().with_name(workspace.stem + "-models")),
        rank=rank_request_from_args(args),
        push=push_config_from_args(args),
        model=args.model,
        model_config=model_config,
        training=training,
        embedder=args.embedder,
    )
    server = connect(args)  # before anything is written: a dead server or bad key stops the round here
    summary = run_one_round(config, server)
    pulled = summary["pulled"]
    metrics = summary.get("metrics") or {}
    aps = metrics.get("average_precision")
    warnings = metrics.get("warnings") or []
    source = {"zero-shot": "the zero-shot detector (no labels yet)", "given": "model",
              "trained": "trained model"}[summary["model_source"]]
    held_out = ""
    if aps and not warnings:
        held_out = f" (held-out AP {', '.join(f'{k} {v:.3f}' for k, v in aps.items() if v is not None)})"
    print(
        f"round {summary['round']}: pulled {pulled['added']} new and {pulled['updated']} edited annotations; "
        f"ranked with {source} {summary['model']}{held_out}"
        + f"; queued {summary['queued']} windows, {summary['pushed']} in Label Studio project {summary['project_id']}"
    )
    if aps and warnings:
        print("held-out AP " + ", ".join(f"{k} {v:.3f}" for k, v in aps.items() if v is not None)
              + " - not meaningful yet:")
    for warning in warnings:
        print(f"  warning: {warning}")
    return 0
