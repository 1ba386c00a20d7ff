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


def _add_workspace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", required=True, metavar="home.db", help="the homesound workspace file")


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


def run_push(args: argparse.Namespace) -> int:
    from active_learning.round_trip import push
    from homesound.workspace import Workspace
    from homesound.workspace.runs import finish_run, start_run

    config = push_config_from_args(args)
    server = connect(args)
    with Workspace(args.workspace) as workspace:
        run_id = start_run(workspace, "push", config)
        try:
            summary = push(workspace, server, config, progress=sys.stderr.isatty())
        except BaseException as error:
            finish_run(workspace, run_id, "failed", {"error": str(error)})
            raise
        finish_run(workspace, run_id, "finished", vars(summary))
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
    from homesound.workspace.runs import finish_run, start_run

    server = connect(args)
    with Workspace(args.workspace) as workspace:
        run_id = start_run(workspace, "pull", {"server": server.url})
        try:
            summary = pull(workspace, server)
        except BaseException as error:
            finish_run(workspace, run_id, "failed", {"error": str(error)})
            raise
        finish_run(workspace, run_id, "finished", vars(summary))
    print(
        f"pulled from {server.url}: {summary.added} new, {summary.updated} edited, {summary.unchanged} unchanged "
        f"annotations; {summary.waiting} tasks not labeled yet"
    )
    return 0
