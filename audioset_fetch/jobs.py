"""The jobs behind `homesound audioset`, as library functions: select segments, import their released
features into a workspace, download the official files, fetch clips' audio.

Each takes one frozen configuration and returns what it did as data; the command line only parses and
prints. The heavy modules (pandas, TensorFlow's record reader) load when a job runs, not on import.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from audioset_fetch.config import ImportConfig
from homesound.errors import HomesoundError

if TYPE_CHECKING:
    import pandas as pd

    from audioset_fetch.clips import ClipResult
    from audioset_fetch.importer import ImportReport
    from audioset_fetch.segments import Selection, SegmentList
    from audioset_fetch.targets import SelectionConfig

KNOWN_SEGMENT_LISTS = ("balanced_train_segments.csv", "unbalanced_train_segments.csv", "eval_segments.csv")
CLIPS_REPORT = "clips_report.csv"


@dataclass(frozen=True)
class SelectJob:
    """Choose positives and negatives from AudioSet's segment lists; None overrides nothing in the targets file."""

    out: str  # selection CSV to write
    metadata: str  # folder with ontology.json and the segment CSVs
    targets: str | None = None  # TOML or JSON file with [targets] and [negatives] (None: laughter, crying)
    segments: tuple[str, ...] = ()  # segment CSVs (empty: the official lists found in `metadata`)
    negative_ratio: float | None = None
    hard_fraction: float | None = None
    seed: int | None = None


@dataclass(frozen=True)
class SelectResult:
    lists: tuple[SegmentList, ...]  # as read, with the lines skipped
    selection: Selection
    config: SelectionConfig  # the targets file with the overrides applied
    target_classes: tuple[tuple[str, tuple[str, ...]], ...]  # (target, the ontology's names of its classes)
    counts: pd.DataFrame  # segments per target/role and split
    hard_groups: pd.DataFrame  # hard negatives per group (may be empty)
    out: Path


def select(job: SelectJob) -> SelectResult:
    """Read the segment lists, choose the segments and write the selection CSV."""
    from audioset_fetch.ontology import Ontology
    from audioset_fetch.segments import (
        hard_group_counts, read_segment_list, select_segments, selection_counts, write_selection,
    )
    from audioset_fetch.targets import load_selection_config

    metadata = Path(job.metadata)
    overrides = {key: value for key, value in (("negative_ratio", job.negative_ratio),
                                               ("hard_fraction", job.hard_fraction), ("seed", job.seed))
                 if value is not None}
    config = dataclasses.replace(load_selection_config(job.targets), **overrides)
    ontology = Ontology.load(metadata / "ontology.json")
    paths = [Path(path) for path in job.segments] or [
        metadata / name for name in KNOWN_SEGMENT_LISTS if (metadata / name).exists()]
    if not paths:
        raise HomesoundError(f"no segment lists in {metadata}; fetch them with `homesound audioset download "
                             f"--what csv --dest {metadata}` or pass --segments")
    lists = tuple(read_segment_list(path) for path in paths)
    selection = select_segments(list(lists), config, ontology)
    target_classes = tuple(
        (name, tuple(sorted(ontology.name(mid) for mid in mids)))
        for name, mids in zip(selection.mapping.names, selection.mapping.mids))
    write_selection(selection, job.out)
    return SelectResult(lists, selection, config, target_classes, selection_counts(selection),
                        hard_group_counts(selection), Path(job.out))


@dataclass(frozen=True)
class ImportJob:
    workspace: str  # workspace file, e.g. home.db
    config: ImportConfig
    progress: bool = True


@dataclass(frozen=True)
class ImportResult:
    report: ImportReport
    segment_counts: dict[str, dict[str, int]]  # the workspace's segments per split, then per target


def import_segments(job: ImportJob) -> ImportResult:
    """The selected segments' released features into the workspace (recorded as an `audioset import` run)."""
    from audioset_fetch.importer import import_features
    from homesound.workspace import Workspace
    from homesound.workspace.audioset import segment_counts

    with Workspace(job.workspace) as workspace:
        report = import_features(workspace, job.config, progress=job.progress)
        return ImportResult(report, segment_counts(workspace))


@dataclass(frozen=True)
class DownloadJob:
    dest: str  # destination folder
    what: tuple[str, ...] = ("csv", "ontology")  # of audioset_fetch.download.WHAT_CHOICES
    base_url: str | None = None  # None: $HOMESOUND_AUDIOSET_BASE_URL or the official location
    ontology_url: str | None = None
    sha256: tuple[tuple[str, str], ...] = ()  # (file name, expected hex digest)
    force: bool = False  # download again even if the file is there


def download(job: DownloadJob, report: Callable[[str], None] = print) -> list[Path]:
    """Fetch the official files, resuming partial downloads; each file's outcome goes to `report` as it
    ends, one failure does not stop the others, and DownloadError names them all at the end."""
    from audioset_fetch.download import download_all, official_files

    files = official_files(job.what, job.base_url, job.ontology_url)
    checksums = dict(job.sha256)
    unknown = set(checksums) - {remote.name for remote in files}
    if unknown:
        raise HomesoundError(f"--sha256 names {sorted(unknown)} are not among the files to download")
    files = [dataclasses.replace(remote, sha256=checksums.get(remote.name)) for remote in files]
    return download_all(files, job.dest, force=job.force, report=report)


@dataclass(frozen=True)
class ClipsJob:
    """Fetch the audio of the selected segments that match every filter given."""

    selection: str  # CSV written by `homesound audioset select`
    dest: str  # folder for the WAV files and clips_report.csv
    split: str | None = None
    role: str | None = None
    target: str | None = None  # only positives of this target
    limit: int | None = None  # at most this many segments
    timeout_seconds: float = 300.0  # per tool call
    progress: bool = True


@dataclass(frozen=True)
class ClipsResult:
    results: tuple[ClipResult, ...]
    report: Path  # clips_report.csv

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for result in self.results:
            counts[result.status] = counts.get(result.status, 0) + 1
        return dict(sorted(counts.items()))


def clips(job: ClipsJob) -> ClipsResult:
    """Fetch each chosen segment's audio (a missing tool or video is reported per segment), and write the
    report of every segment's outcome."""
    from audioset_fetch.clips import fetch_clips, write_report
    from audioset_fetch.segments import read_selection

    selection = read_selection(job.selection)
    names = selection.mapping.names
    if job.target is not None and job.target not in names:
        raise HomesoundError(f"--target {job.target!r}: the selection's targets are {', '.join(names)}")
    segments = [
        segment for segment in selection.segments.values()
        if (job.split is None or segment.split == job.split)
        and (job.role is None or segment.role == job.role)
        and (job.target is None or segment.targets[names.index(job.target)])
    ][: job.limit]
    results = fetch_clips(segments, job.dest, timeout_seconds=job.timeout_seconds, progress=job.progress)
    report = Path(job.dest) / CLIPS_REPORT
    write_report(results, report)
    return ClipsResult(tuple(results), report)
