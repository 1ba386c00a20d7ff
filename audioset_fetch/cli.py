"""`homesound audioset ...`: download AudioSet metadata/features, select segments, import, fetch clips."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from homesound.errors import HomesoundError

METADATA_ENV = "HOMESOUND_AUDIOSET_DIR"
KNOWN_SEGMENT_LISTS = ("balanced_train_segments.csv", "unbalanced_train_segments.csv", "eval_segments.csv")
SHOWN_PROBLEMS = 20


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("audioset", help="training data from AudioSet (released VGGish features)")
    commands = parser.add_subparsers(dest="audioset_command", metavar="ACTION", required=True)
    metadata_help = (f"folder with ontology.json, class_labels_indices.csv and segment CSVs "
                     f"(default ${METADATA_ENV} or ./audioset)")

    select = commands.add_parser(
        "select", help="choose positive and negative segments; prints counts per target and split")
    select.add_argument(
        "--targets", help="TOML or JSON file with [targets] and [negatives] (default: laughter, crying)")
    select.add_argument("--out", required=True, help="selection CSV to write")
    select.add_argument("--metadata", help=metadata_help)
    select.add_argument("--segments", nargs="+", help="segment CSVs (default: the official lists found in --metadata)")
    select.add_argument("--ratio", type=float, help="negatives per positive (overrides the targets file)")
    select.add_argument("--hard-fraction", type=float, help="share of hard negatives (overrides the targets file)")
    select.add_argument("--seed", type=int, help="random seed (overrides the targets file)")
    select.set_defaults(handler=run_select)

    importer = commands.add_parser("import", help="store the selected segments' released features in the workspace")
    importer.add_argument("features", help="features.tar.gz, a folder of .tfrecord shards, or one shard")
    importer.add_argument("--selection", required=True, help="CSV written by `homesound audioset select`")
    importer.add_argument("--workspace", required=True, help="workspace file, e.g. home.db")
    importer.add_argument("--metadata", help=metadata_help)
    importer.add_argument("--class-labels", help="class_labels_indices.csv (default: in --metadata)")
    importer.add_argument("--batch-size", type=int, default=500, help="segments per transaction (default 500)")
    importer.set_defaults(handler=run_import)

    download = commands.add_parser("download", help="fetch the official AudioSet files, resuming partial downloads")
    download.add_argument("--what", default="csv,ontology",
                          help="comma list of csv, ontology, features (default csv,ontology)")
    download.add_argument("--dest", default=None, help=f"destination folder (default ${METADATA_ENV} or ./audioset)")
    download.add_argument("--base-url",
                          help="AudioSet storage location (default: the official one, or $HOMESOUND_AUDIOSET_BASE_URL)")
    download.add_argument("--ontology-url", help="ontology.json address (default: the official GitHub one)")
    download.add_argument("--sha256", action="append", default=[], metavar="NAME=HEX",
                          help="expected SHA-256 of a file, e.g. features.tar.gz=ab12...; repeatable")
    download.add_argument("--force", action="store_true", help="download again even if the file is there")
    download.set_defaults(handler=run_download)

    clips = commands.add_parser("clips", help="fetch the audio of selected segments with yt-dlp + ffmpeg (optional)")
    clips.add_argument("--selection", required=True, help="CSV written by `homesound audioset select`")
    clips.add_argument("--dest", required=True, help="folder for the WAV files and clips_report.csv")
    clips.add_argument("--split", choices=("train", "eval"), help="only this split")
    clips.add_argument("--role", choices=("positive", "hard_negative", "random_negative"), help="only this role")
    clips.add_argument("--target", help="only positives of this target")
    clips.add_argument("--limit", type=int, help="at most this many segments")
    clips.add_argument("--timeout", type=float, default=300.0, help="seconds per tool call (default 300)")
    clips.set_defaults(handler=run_clips)


def _metadata_dir(args: argparse.Namespace) -> Path:
    return Path(args.metadata or os.environ.get(METADATA_ENV) or "audioset")


def run_select(args: argparse.Namespace) -> int:
    import dataclasses

    from audioset_fetch.ontology import Ontology
    from audioset_fetch.segments import (
        hard_group_counts,
        read_segment_list,
        select_segments,
        selection_counts,
        write_selection,
    )
    from audioset_fetch.targets import load_selection_config

    metadata = _metadata_dir(args)
    config = load_selection_config(args.targets)
    overrides = {key: value for key, value in (("negative_ratio", args.ratio), ("hard_fraction", args.hard_fraction),
                                               ("seed", args.seed)) if value is not None}
    config = dataclasses.replace(config, **overrides)
    ontology = Ontology.load(metadata / "ontology.json")
    paths = [Path(p) for p in args.segments] if args.segments else [
        metadata / name for name in KNOWN_SEGMENT_LISTS if (metadata / name).exists()]
    if not paths:
        raise HomesoundError(f"no segment lists in {metadata}; fetch them with `homesound audioset download "
                             f"--what csv --dest {metadata}` or pass --segments")
    lists = [read_segment_list(path) for path in paths]
    for item in lists:
        note = " (TRUNCATED: the header says %d; download it again)" % item.declared_segments if item.truncated else ""
        print(f"{item.path}: {len(item.table):,} segments, {item.split}{note}")
        for problem in item.problems[:SHOWN_PROBLEMS]:
            print(f"  skipped {problem}")
        if len(item.problems) > SHOWN_PROBLEMS:
            print(f"  ... and {len(item.problems) - SHOWN_PROBLEMS} more skipped lines")
    selection = select_segments(lists, config, ontology)
    if selection.dropped_for_eval_overlap:
        print(f"dropped {selection.dropped_for_eval_overlap} training segments whose video is in the eval list")
    print(f"\ntargets (mapping {selection.mapping.id}):")
    for name, mids in zip(selection.mapping.names, selection.mapping.mids):
        print(f"  {name}: {', '.join(sorted(ontology.name(mid) for mid in mids))}")
    print(f"\nsegments per target and split (negatives: {config.negative_ratio:g} per positive, "
          f"{config.hard_fraction:.0%} hard, seed {config.seed}):")
    print(selection_counts(selection).to_string())
    hard = hard_group_counts(selection)
    if len(hard):
        print("\nhard negatives per group:")
        print(hard.to_string())
    write_selection(selection, args.out)
    print(f"\nwrote {len(selection.table):,} segments to {args.out}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from audioset_fetch.importer import ImportConfig, import_features
    from homesound.workspace import Workspace
    from homesound.workspace.audioset import segment_counts

    class_labels = args.class_labels or str(_metadata_dir(args) / "class_labels_indices.csv")
    config = ImportConfig(features=args.features, selection=args.selection, class_labels=class_labels,
                          batch_size=args.batch_size)
    with Workspace(args.workspace) as workspace:
        report = import_features(workspace, config)
        counts = segment_counts(workspace)
    print(f"read {report.records:,} records in {report.seconds:.1f} s ({report.records_per_second:,.0f} records/s): "
          f"{report.added:,} segments added, {report.already_present:,} already in the workspace, "
          f"{report.not_selected:,} not selected, {report.malformed:,} malformed")
    if report.relabeled:
        print(f"relabeled {report.relabeled:,} stored segments to this selection's targets")
    if report.selected_not_in_release:
        print(f"{report.selected_not_in_release:,} selected segments were not in these features")
    for problem in report.problems[:SHOWN_PROBLEMS]:
        print(f"  skipped {problem}")
    if report.malformed > SHOWN_PROBLEMS:
        print(f"  ... and {report.malformed - SHOWN_PROBLEMS} more skipped records")
    for split, split_counts in sorted(counts.items()):
        print(f"workspace {split}: " + ", ".join(f"{name} {count:,}" for name, count in split_counts.items()))
    return 0


def run_download(args: argparse.Namespace) -> int:
    import dataclasses

    from audioset_fetch.download import download_all, official_files

    what = tuple(item.strip() for item in args.what.split(",") if item.strip())
    files = official_files(what, args.base_url, args.ontology_url)
    checksums = {}
    for item in args.sha256:
        name, _, value = item.partition("=")
        if not value:
            raise HomesoundError(f"--sha256 {item!r}: write NAME=HEX, e.g. features.tar.gz=3f5a...")
        checksums[name.strip()] = value.strip()
    unknown = set(checksums) - {remote.name for remote in files}
    if unknown:
        raise HomesoundError(f"--sha256 names {sorted(unknown)} are not among the files to download")
    files = [dataclasses.replace(remote, sha256=checksums.get(remote.name)) for remote in files]
    dest = Path(args.dest or os.environ.get(METADATA_ENV) or "audioset")
    download_all(files, dest, force=args.force)
    return 0


def run_clips(args: argparse.Namespace) -> int:
    from audioset_fetch.clips import fetch_clips, write_report
    from audioset_fetch.segments import read_selection

    selection = read_selection(args.selection)
    if args.target is not None and args.target not in selection.mapping.names:
        raise HomesoundError(
            f"--target {args.target!r}: the selection's targets are {', '.join(selection.mapping.names)}")
    segments = [
        segment for segment in selection.segments.values()
        if (args.split is None or segment.split == args.split)
        and (args.role is None or segment.role == args.role)
        and (args.target is None or segment.targets[selection.mapping.names.index(args.target)])
    ][: args.limit]
    results = fetch_clips(segments, args.dest, timeout_seconds=args.timeout)
    report_path = Path(args.dest) / "clips_report.csv"
    write_report(results, report_path)
    for result in results:
        if result.message:
            print(f"{result.ytid} {result.start_seconds:.3f}: {result.status}: {result.message}")
    statuses: dict[str, int] = {}
    for result in results:
        statuses[result.status] = statuses.get(result.status, 0) + 1
    print(", ".join(f"{status} {count}" for status, count in sorted(statuses.items())) or "no segments matched",
          f"(report: {report_path})")
    return 0
