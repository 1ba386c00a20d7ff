"""`homesound labels import`: a folder of class folders or a labels CSV -> training labels in the workspace."""

from __future__ import annotations

import argparse
import sys

from classify.labels_import import ImportConfig
from homesound.config_defaults import default_of
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
    classes = ",".join(default_of(ImportConfig, "classes"))
    imports.add_argument("--classes", default=classes,
                         help=f"comma-separated class names (default {classes}); other labels are negatives")
    imports.add_argument("--group-column", metavar="NAME",
                         help="CSV column naming each file's source recording (default: group, else source)")
    imports.add_argument("--group-by-folder", action="store_true",
                         help="folder tree: files in one folder come from one recording (default: each file its own)")
    imports.add_argument("--extensions", metavar="LIST",
                         help="folder tree: audio file extensions ('wav,flac' replaces the default list, '+mp4' adds)")
    imports.set_defaults(handler=run_import)


def run_import(args: argparse.Namespace) -> int:
    from classify.jobs import LabelsImportJob, import_labels_to_workspace
    from embed.discover import parse_extensions

    try:
        config = ImportConfig(classes=tuple(c.strip() for c in args.classes.split(",") if c.strip()),
                              group_column=args.group_column, group_by_folder=args.group_by_folder)
    except ValueError as error:
        raise HomesoundError(f"--classes: {error}") from error
    result = import_labels_to_workspace(LabelsImportJob(workspace=args.workspace, source=args.source, config=config,
                                                        extensions=parse_extensions(args.extensions)))
    counts = result.counts
    for problem in result.problems:
        print(f"homesound labels import: {problem}", file=sys.stderr)
    print(f"{result.imported_rows} of {result.rows} rows imported from {args.source}: {result.recordings} recordings, "
          f"{counts.clip_labels} whole-recording labels, {counts.strong_labels} labeled frames, {counts.groups} "
          f"with a source group ({counts.new} new or changed)"
          + (f"; {len(result.problems)} left out (see above)" if result.problems else ""))
    return 1 if result.problems else 0
