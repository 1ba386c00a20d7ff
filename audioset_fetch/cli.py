"""`homesound audioset ...`: download AudioSet metadata/features, select segments, import, fetch clips."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from audioset_fetch.config import ROLES, SPLITS, ImportConfig
from audioset_fetch.jobs import ClipsJob, DownloadJob
from homesound.config_defaults import default_of
from homesound.errors import HomesoundError

METADATA_ENV = "HOMESOUND_AUDIOSET_DIR"
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
    batch_size = default_of(ImportConfig, "batch_size")
    importer.add_argument("--batch-size", type=int, default=batch_size,
                          help=f"segments per transaction (default {batch_size})")
    importer.set_defaults(handler=run_import)

    download = commands.add_parser("download", help="fetch the official AudioSet files, resuming partial downloads")
    what = ",".join(default_of(DownloadJob, "what"))
    download.add_argument("--what", default=what, help=f"comma list of csv, ontology, features (default {what})")
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
    clips.add_argument("--split", choices=SPLITS, help="only this split")
    clips.add_argument("--role", choices=ROLES, help="only this role")
    clips.add_argument("--target", help="only positives of this target")
    clips.add_argument("--limit", type=int, help="at most this many segments")
    timeout = default_of(ClipsJob, "timeout_seconds")
    clips.add_argument("--timeout", type=float, default=timeout, help=f"seconds per tool call (default {timeout:g})")
    clips.set_defaults(handler=run_clips)


def _metadata_dir(args: argparse.Namespace) -> Path:
    return Path(args.metadata or os.environ.get(METADATA_ENV) or "audioset")


def run_select(args: argparse.Namespace) -> int:
    from audioset_fetch.jobs import SelectJob, select

    result = select(SelectJob(out=args.out, metadata=str(_metadata_dir(args)), targets=args.targets,
                              segments=tuple(args.segments or ()), negative_ratio=args.ratio,
                              hard_fraction=args.hard_fraction, seed=args.seed))
    for item in result.lists:
        note = " (TRUNCATED: the header says %d; download it again)" % item.declared_segments if item.truncated else ""
        print(f"{item.path}: {len(item.table):,} segments, {item.split}{note}")
        for problem in item.problems[:SHOWN_PROBLEMS]:
            print(f"  skipped {problem}")
        if len(item.problems) > SHOWN_PROBLEMS:
            print(f"  ... and {len(item.problems) - SHOWN_PROBLEMS} more skipped lines")
    selection, config = result.selection, result.config
    if selection.dropped_for_eval_overlap:
        print(f"dropped {selection.dropped_for_eval_overlap} training segments whose video is in the eval list")
    print(f"\ntargets (mapping {selection.mapping.id}):")
    for name, classes in result.target_classes:
        print(f"  {name}: {', '.join(classes)}")
    print(f"\nsegments per target and split (negatives: {config.negative_ratio:g} per positive, "
          f"{config.hard_fraction:.0%} hard, seed {config.seed}):")
    print(result.counts.to_string())
    if len(result.hard_groups):
        print("\nhard negatives per group:")
        print(result.hard_groups.to_string())
    print(f"\nwrote {len(selection.table):,} segments to {args.out}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from audioset_fetch.jobs import ImportJob, import_segments

    class_labels = args.class_labels or str(_metadata_dir(args) / "class_labels_indices.csv")
    config = ImportConfig(features=args.features, selection=args.selection, class_labels=class_labels,
                          batch_size=args.batch_size)
    result = import_segments(ImportJob(args.workspace, config))
    report = result.report
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
    for split, split_counts in sorted(result.segment_counts.items()):
        print(f"workspace {split}: " + ", ".join(f"{name} {count:,}" for name, count in split_counts.items()))
    return 0


def run_download(args: argparse.Namespace) -> int:
    from audioset_fetch.jobs import download

    checksums = []
    for item in args.sha256:
        name, _, value = item.partition("=")
        if not value:
            raise HomesoundError(f"--sha256 {item!r}: write NAME=HEX, e.g. features.tar.gz=3f5a...")
        checksums.append((name.strip(), value.strip()))
    download(DownloadJob(dest=args.dest or os.environ.get(METADATA_ENV) or "audioset",
                         what=tuple(item.strip() for item in args.what.split(",") if item.strip()),
                         base_url=args.base_url, ontology_url=args.ontology_url, sha256=tuple(checksums),
                         force=args.force))
    return 0


def run_clips(args: argparse.Namespace) -> int:
    from audioset_fetch.jobs import clips

    result = clips(ClipsJob(selection=args.selection, dest=args.dest, split=args.split, role=args.role,
                            target=args.target, limit=args.limit, timeout_seconds=args.timeout))
    for clip in result.results:
        if clip.message:
            print(f"{clip.ytid} {clip.start_seconds:.3f}: {clip.status}: {clip.message}")
    counts = result.status_counts()
    print(", ".join(f"{status} {count}" for status, count in counts.items()) or "no segments matched",
          f"(report: {result.report})")
    return 0
