"""`homesound labels import`: a folder of class folders or a labels CSV -> training labels in the workspace."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from homesound.errors import HomesoundError


def register(subcommands: argparse._SubParsersAction) -> None:
    labels = subcommands.add_parser(
        "labels", help="bring your own labels: import a folder per class or a labels CSV into the workspace",
        description="Labels for training the detector, from what you already have.")
    actions = labels.add_subparsers(dest="labels_command", metavar="ACTION", required=True)
    imports = actions.add_parser(
        "import", help="import labels for recordings already embedded in the workspace",
        description="SOURCE is a folder whose first-level folders name the class (crying/, laughter/; any other "
                    "folder = negative for every class), or a CSV with path, label, optional start and end "
                    "(seconds: strong labels for that span) and an optional group column (the source recording a "
                    "file was cut from: `group`, else `source`). CSV paths are relative to the CSV's folder. Files "
                    "the workspace has not embedded and bad rows are reported one line each and left out; the rest "
                    "is imported. Importing the same source again replaces what it imported before (no duplicates).")
    imports.add_argument("source", metavar="SOURCE", help="a folder of class folders, or labels.csv")
    imports.add_argument("--workspace", required=True, metavar="home.db")
    imports.add_argument("--classes", default="crying,laughter",
                         help="comma-separated class names (default crying,laughter); other labels are negatives")
    imports.add_argument("--group-column", metavar="NAME",
                         help="CSV column naming each file's source recording (default: group, else source)")
    imports.add_argument("--group-by-folder", action="store_true",
                         help="folder tree: files in one folder come from one recording (default: each file its own)")
    imports.add_argument("--extensions", metavar="LIST",
                         help="folder tree: audio file extensions ('wav,flac' replaces the default list, '+mp4' adds)")
    imports.set_defaults(handler=run_import)


def run_import(args: argparse.Namespace) -> int:
    from classify.labels_import import ImportConfig, import_labels, origin_of, read_source
    from embed.discover import parse_extensions
    from homesound.workspace import Workspace
    from homesound.workspace.runs import RunStatus, finish_run, start_run

    if not Path(args.workspace).is_file():
        raise HomesoundError(f"no workspace at {args.workspace}; embed your recordings first "
                             f"(homesound embed FOLDER --workspace {args.workspace})")
    try:
        config = ImportConfig(classes=tuple(c.strip() for c in args.classes.split(",") if c.strip()),
                              group_column=args.group_column, group_by_folder=args.group_by_folder)
    except ValueError as error:
        raise HomesoundError(f"--classes: {error}") from error
    rows, problems = read_source(args.source, config, parse_extensions(args.extensions))
    origin = origin_of(args.source)
    with Workspace(args.workspace, create=False) as workspace:
        run_id = start_run(workspace, "labels import", {"source": origin, **dataclasses.asdict(config)})
        try:
            result = import_labels(workspace, rows, origin, config, problems)
        except BaseException as error:
            finish_run(workspace, run_id, RunStatus.FAILED, {"error": str(error)})
            raise
        counts = result.counts
        finish_run(workspace, run_id, RunStatus.COMPLETED, {
            "rows": result.rows, "imported_rows": result.imported_rows, "recordings": result.recordings,
            "clip_labels": counts.clip_labels, "strong_labels": counts.strong_labels, "groups": counts.groups,
            "new": counts.new, "problems": len(result.problems)})
    for problem in result.problems:
        print(f"homesound labels import: {problem}", file=sys.stderr)
    print(f"{result.imported_rows} of {result.rows} rows imported from {args.source}: {result.recordings} recordings, "
          f"{counts.clip_labels} whole-recording labels, {counts.strong_labels} labeled frames, {counts.groups} "
          f"with a source group ({counts.new} new or changed)"
          + (f"; {len(result.problems)} left out (see above)" if result.problems else ""))
    return 1 if result.problems else 0
