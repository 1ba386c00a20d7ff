"""Labels a user already has -> the workspace's training labels (`homesound labels import`).

Two kinds of source:
- a folder tree whose first-level folder names the class (`crying/`, `laughter/`); a file under any
  other folder (`speech/`, `noise/`, ...) is a negative for every class;
- a CSV with `path`, `label`, optional `start` and `end` (seconds: a strong label for that span;
  without them the label is for the whole file) and an optional group column (the source
  recording a file was cut from: `group`, else `source`, or any column named with --group-column).
  Paths are relative to the CSV's folder.

A label names what is there: its class is present (1) and every other class absent (0); a label
that is no class (`speech`, `noise`) is absent for all. Where two labels of one file overlap,
present wins. Files are matched to the workspace's recordings by path (as given or resolved) or,
failing that, by content hash; a file the workspace does not have or has not embedded, and every
bad row, gets one message and is left out; the rest is imported. Importing one source again
replaces what it imported before (homesound.workspace.training_data.replace_imported_labels).
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from homesound.errors import HomesoundError
from homesound.hashing import file_sha256
from homesound.workspace import Workspace
from homesound.workspace.training_data import (
    ClipLabel,
    ImportCounts,
    ImportedLabels,
    StrongLabel,
    replace_imported_labels,
    seconds_to_frames,
)

DEFAULT_CLASSES = ("crying", "laughter")
GROUP_COLUMNS = ("group", "source")  # tried in this order when no --group-column is given
LABEL_SEPARATORS = r"[;|]"  # "crying;laughter": both present in that file or span
IMPORT_ORIGIN_PREFIX = "import:"


@dataclass(frozen=True)
class ImportConfig:
    classes: tuple[str, ...] = DEFAULT_CLASSES
    group_column: str | None = None  # CSV: None = the first of GROUP_COLUMNS the file has
    group_by_folder: bool = False  # folder tree: the folder holding a file is its group (else the file is)
    min_overlap: float = 0.5  # share of a frame a strong span must cover to label it

    def __post_init__(self) -> None:
        if not self.classes or any(not name for name in self.classes):
            raise ValueError("give at least one class name")


@dataclass(frozen=True)
class LabelRow:
    where: str  # "labels.csv:12" or the file's path: names the row in messages
    path: Path  # absolute
    targets: tuple[tuple[str, float], ...]  # (class, 0/1) for every class
    start: float | None = None  # seconds; None with end None: the whole file
    end: float | None = None
    group: str | None = None


@dataclass(frozen=True)
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class LabelImport:
    origin: str
    rows: int  # rows (files) the source holds, bad ones included
    imported_rows: int
    recordings: int
    counts: ImportCounts | None
    problems: list[Problem] = field(default_factory=list)


def targets_of(label: str, classes: Sequence[str]) -> tuple[tuple[str, float], ...]:
    """A label (case-insensitive; several joined by ';' or '|') -> (class, present 1 / absent 0) for every class."""
    named = {part.strip().lower() for part in re.split(LABEL_SEPARATORS, label)}
    return tuple((name, 1.0 if name.lower() in named else 0.0) for name in classes)


# --- reading sources (pure: files in, rows and problems out) ---------------------------------------------


def read_folder_tree(root: str | os.PathLike, config: ImportConfig,
                     extensions: Iterable[str]) -> tuple[list[LabelRow], list[Problem]]:
    """One row per audio file below `root`; its first folder under root is its label."""
    from embed.discover import discover

    root = Path(root).absolute()
    found = discover([root], extensions)
    rows, problems = [], [Problem(p.path, p.reason) for p in found.problems if p.is_file]
    for file in sorted(found.files, key=lambda f: f.path):
        relative = Path(file.path).relative_to(root)
        if len(relative.parts) < 2:
            problems.append(Problem(file.path, "not inside a class folder (e.g. crying/, laughter/, other/); skipped"))
            continue
        group = str(Path(root.name, *relative.parts[:-1])) if config.group_by_folder else None
        rows.append(LabelRow(file.path, Path(file.path), targets_of(relative.parts[0], config.classes), group=group))
    return rows, problems


def read_label_csv(path: str | os.PathLike, config: ImportConfig) -> tuple[list[LabelRow], list[Problem]]:
    """One row per CSV line; bad lines become problems (the header must have path and label)."""
    path = Path(path).absolute()
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [name.strip() for name in reader.fieldnames or ()]
            lines = [({(k or "").strip(): (v or "").strip() if isinstance(v, str) else v for k, v in line.items()},
                      reader.line_num) for line in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise HomesoundError(f"cannot read labels CSV {path}: {error}") from error
    missing = [name for name in ("path", "label") if name not in columns]
    if missing:
        raise HomesoundError(f"{path} has no {' and no '.join(missing)} column (columns: {', '.join(columns) or 'none'}); "
                             "a labels CSV needs path and label, optionally start, end and group")
    group_column = config.group_column or next((name for name in GROUP_COLUMNS if name in columns), None)
    if config.group_column and config.group_column not in columns:
        raise HomesoundError(f"{path} has no column {config.group_column!r} (--group-column); "
                             f"columns: {', '.join(columns)}")
    rows, problems = [], []
    for values, line in lines:
        where = f"{path.name}:{line}"
        try:
            rows.append(_csv_row(values, where, path.parent, config, group_column))
        except ValueError as error:
            problems.append(Problem(where, str(error)))
    return rows, problems


def _csv_row(values: dict, where: str, folder: Path, config: ImportConfig, group_column: str | None) -> LabelRow:
    if None in values or any(value is None for value in values.values()):
        raise ValueError("wrong number of fields; skipped")
    if not values.get("path"):
        raise ValueError("no path; skipped")
    if not values.get("label"):
        raise ValueError(f"{values['path']}: no label; skipped")
    start, end = _seconds(values.get("start"), "start"), _seconds(values.get("end"), "end")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"{values['path']}: end {end} is not after start {start}; skipped")
    group = values.get(group_column) if group_column else None
    return LabelRow(where, (folder / values["path"]).absolute(), targets_of(values["label"], config.classes),
                    start, end, group or None)


def _seconds(text: str | None, name: str) -> float | None:
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a number of seconds; skipped") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} {text!r} must be a non-negative number of seconds; skipped")
    return value


# --- matching and storing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Known:
    content_sha256: str | None
    status: str
    error: str | None


def import_labels(workspace: Workspace, rows: Sequence[LabelRow], origin: str, config: ImportConfig,
                  problems: Sequence[Problem] = ()) -> LabelImport:
    """Match rows to embedded recordings and store their labels under `origin` (replacing its earlier import)."""
    entries = len(rows) + len(problems)  # the source's rows (files), bad ones included
    problems = list(problems)
    by_path = {row["path"]: _Known(row["content_sha256"], row["status"], row["error"])
               for row in workspace.query("SELECT path, content_sha256, status, error FROM recordings")}
    by_resolved = {os.path.realpath(path): known for path, known in by_path.items()}
    by_content = {known.content_sha256: known for known in by_path.values() if known.content_sha256}
    embedded = {row["content_sha256"]: (row["frames"], row["hop_seconds"]) for row in workspace.query(
        "SELECT content_sha256, MAX(frames) AS frames, MIN(hop_seconds) AS hop_seconds FROM embeddings"
        " GROUP BY content_sha256")}
    hashed: dict[Path, str | None] = {}

    def content_of(row: LabelRow) -> str | None:
        known = by_path.get(str(row.path)) or by_resolved.get(os.path.realpath(row.path))
        content = known.content_sha256 if known else None
        if content is None:  # not known by this name: the same audio may be there under another
            if row.path not in hashed:
                hashed[row.path] = _file_sha256(row.path)
            content = hashed[row.path]
            if content is None:
                problems.append(Problem(row.where, f"{row.path}: no such file (or unreadable), and not in the "
                                                   "workspace; skipped"))
                return None
            known = by_content.get(content, known)
            if known is None:
                problems.append(Problem(row.where, f"{row.path}: not in the workspace; embed it first "
                                                   f"(homesound embed ... --workspace {workspace.path}), then import again"))
                return None
        if content not in embedded:
            reason = f": {known.error}" if known.error else ""
            problems.append(Problem(row.where, f"{row.path}: not embedded yet (status {known.status}{reason}); "
                                               "embed it, then import again"))
            return None
        return content

    clip: dict[tuple[str, str], float] = {}
    strong: dict[tuple[str, int, str], float] = {}
    groups: dict[str, str] = {}
    imported = 0
    for row in rows:
        content = content_of(row)
        if content is None:
            continue
        frames, hop = embedded[content]
        if row.start is None and row.end is None:
            for target, value in row.targets:
                clip[(content, target)] = max(value, clip.get((content, target), 0.0))
        else:
            start, end = row.start or 0.0, row.end if row.end is not None else frames * hop
            covered = [i for i in seconds_to_frames(start, end, hop, config.min_overlap) if i < frames]
            if not covered:
                problems.append(Problem(row.where, f"{row.path}: span {start:g}-{end:g} s covers no whole "
                                                   f"{hop:g} s frame of the recording ({frames * hop:.2f} s); skipped"))
                continue
            for second in covered:
                for target, value in row.targets:
                    key = (content, second, target)
                    strong[key] = max(value, strong.get(key, 0.0))
        if row.group is not None:
            if groups.setdefault(content, row.group) != row.group:
                problems.append(Problem(row.where, f"{row.path}: group {row.group!r} differs from the group "
                                                   f"{groups[content]!r} given before for the same audio; kept the first"))
        imported += 1
    labels = ImportedLabels(
        origin=origin,
        clip_labels=tuple(ClipLabel(c, t, v) for (c, t), v in sorted(clip.items())),
        strong_labels=tuple(StrongLabel(c, s, t, v, origin="import", task_id=origin)
                            for (c, s, t), v in sorted(strong.items())),
        groups=tuple(sorted(groups.items())),
    )
    counts = replace_imported_labels(workspace, labels)
    recordings = len({c for c, _ in clip} | {c for c, _, _ in strong})
    return LabelImport(origin, entries, imported, recordings, counts, problems)


def origin_of(source: str | os.PathLike) -> str:
    """The stable name of a source: the same file or folder imported again replaces its labels."""
    return IMPORT_ORIGIN_PREFIX + str(Path(source).resolve())


def _file_sha256(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None


def read_source(source: str | os.PathLike, config: ImportConfig,
                extensions: Iterable[str]) -> tuple[list[LabelRow], list[Problem]]:
    """A folder (tree of class folders) or a .csv file."""
    source = Path(source)
    if source.is_dir():
        return read_folder_tree(source, config, extensions)
    if not source.exists():
        raise HomesoundError(f"{source} does not exist; give a folder of class folders or a labels CSV")
    if source.suffix.lower() != ".csv":
        raise HomesoundError(f"{source}: give a folder of class folders (crying/, laughter/, ...) or a .csv file")
    return read_label_csv(source, config)

