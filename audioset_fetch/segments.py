"""AudioSet segment lists and the choice of training segments (positives, hard and random negatives).

Segment CSVs look like this (three comment lines, then one 10-second segment per line):

    # Segments csv created Sun Mar  5 10:54:31 2017
    # num_ytids=22160, num_segs=22160, num_unique_labels=527, num_positive_labels=52882
    # YTID, start_seconds, end_seconds, positive_labels
    --PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"

AudioSet's eval list stays eval: selection never moves a segment between splits, and a training
segment whose video also appears in eval is dropped so one video never sits on both sides.
"""

from __future__ import annotations

import csv
import json
import os
import re
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from audioset_fetch.ontology import Ontology
from audioset_fetch.config import ROLE_HARD_NEGATIVE, ROLE_POSITIVE, ROLE_RANDOM_NEGATIVE, SPLITS
from audioset_fetch.targets import SelectionConfig, TargetMapping, resolve_hard_negatives, resolve_targets
from homesound.errors import HomesoundError
from homesound.output_files import atomic_output

SEGMENT_COLUMNS = ("ytid", "start_seconds", "end_seconds", "positive_labels")
SELECTION_COLUMNS = ("ytid", "start_seconds", "end_seconds", "split", "source_list", "role", "hard_group",
                     "positive_labels")
SELECTION_FORMAT = "homesound-audioset-selection/1"


def segment_key(ytid: str, start_seconds: float) -> tuple[str, int]:
    """Identity of a segment: the released features store start times as float32, so use milliseconds."""
    return ytid, int(round(float(start_seconds) * 1000))


@dataclass(frozen=True)
class SegmentList:
    path: Path
    name: str  # "balanced_train_segments", "eval_segments", ...
    split: str  # "train" or "eval"
    table: pd.DataFrame  # SEGMENT_COLUMNS; positive_labels as the original "mid,mid" string
    declared_segments: int | None  # num_segs from the header, to notice a truncated file
    problems: tuple[str, ...]  # "line N: reason" for lines that were skipped

    @property
    def truncated(self) -> bool:
        return self.declared_segments is not None and self.declared_segments != len(self.table)


def split_of_list(path: Path) -> str:
    """The official file names say the split: eval_segments.csv, (un)balanced_train_segments.csv."""
    name = path.name.lower()
    if "eval" in name:
        return "eval"
    if "train" in name:
        return "train"
    raise HomesoundError(
        f"cannot tell the split of {path}: its name must contain 'train' or 'eval' like the official lists"
    )


def read_segment_list(path: str | os.PathLike) -> SegmentList:
    """One list, read line by line; broken lines are skipped and described in `problems`."""
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8")
    except FileNotFoundError:
        raise HomesoundError(
            f"{path} not found; fetch the lists with `homesound audioset download --what csv`") from None
    declared = None
    rows: list[tuple[str, float, float, str]] = []
    problems: list[str] = []
    with handle:
        for line_number, fields in enumerate(csv.reader(handle, skipinitialspace=True), start=1):
            if not fields:
                continue
            if fields[0].startswith("#"):
                match = re.search(r"num_segs=(\d+)", ",".join(fields))
                if match:
                    declared = int(match.group(1))
                continue
            if len(fields) != 4:
                problems.append(f"line {line_number}: expected 4 fields, found {len(fields)}")
                continue
            ytid, start, end, labels = (value.strip() for value in fields)
            try:
                start_seconds, end_seconds = float(start), float(end)
            except ValueError:
                problems.append(f"line {line_number}: start/end are not numbers: {start!r}, {end!r}")
                continue
            if not ytid or not labels:
                problems.append(f"line {line_number}: empty YTID or label list")
                continue
            rows.append((ytid, start_seconds, end_seconds, labels))
    table = pd.DataFrame(rows, columns=list(SEGMENT_COLUMNS))
    return SegmentList(path, path.stem, split_of_list(path), table, declared, tuple(problems))


@dataclass(frozen=True)
class Selection:
    table: pd.DataFrame  # SELECTION_COLUMNS + one 0/1 column per target
    mapping: TargetMapping
    config: SelectionConfig
    dropped_for_eval_overlap: int = 0  # training segments whose video is in eval


def select_segments(lists: list[SegmentList], config: SelectionConfig, ontology: Ontology) -> Selection:
    mapping = resolve_targets(config, ontology)
    hard_groups = resolve_hard_negatives(config, ontology, mapping)
    by_split = {split: [item for item in lists if item.split == split] for split in SPLITS}
    eval_ytids = set().union(*(set(item.table["ytid"]) for item in by_split["eval"]))
    parts = []
    dropped = 0
    for split, split_lists in by_split.items():
        if not split_lists:
            continue
        segments = pd.concat(
            [item.table.assign(source_list=item.name) for item in split_lists], ignore_index=True
        )
        segments = segments.drop_duplicates(["ytid", "start_seconds"], keep="first")
        if split == "train":
            overlapping = segments["ytid"].isin(eval_ytids)
            dropped = int(overlapping.sum())
            segments = segments[~overlapping]
        rng = np.random.default_rng([config.seed, zlib.crc32(split.encode())])
        parts.append(_select_split(segments.reset_index(drop=True), split, mapping, hard_groups, config, rng))
    if not parts:
        raise HomesoundError("no segment lists given; pass --segments or a --metadata folder with the CSVs")
    table = pd.concat(parts, ignore_index=True).sort_values(["split", "ytid", "start_seconds"], kind="stable")
    return Selection(table.reset_index(drop=True), mapping, config, dropped)


def _select_split(
    segments: pd.DataFrame,
    split: str,
    mapping: TargetMapping,
    hard_groups: dict[str, frozenset[str]],
    config: SelectionConfig,
    rng: np.random.Generator,
) -> pd.DataFrame:
    # Work per distinct label list (far fewer than segments in the 2-million-line unbalanced list).
    codes, distinct = pd.factorize(segments["positive_labels"])
    label_sets = [frozenset(labels.split(",")) for labels in distinct]
    targets = np.array([mapping.multi_hot(labels) for labels in label_sets], dtype=np.uint8).reshape(
        len(label_sets), len(mapping.names)
    )[codes]
    positive = targets.any(axis=1)
    negative_pool = np.flatnonzero(~positive)
    wanted_negatives = min(int(round(config.negative_ratio * positive.sum())), len(negative_pool))
    wanted_hard = int(round(config.hard_fraction * wanted_negatives))

    group_members = {
        name: np.flatnonzero(~positive & np.fromiter((not s.isdisjoint(mids) for s in label_sets), bool)[codes])
        for name, mids in hard_groups.items()
    }
    taken = np.zeros(len(segments), dtype=bool)
    taken[positive] = True
    hard_rows, hard_names = _round_robin(group_members, wanted_hard, taken, rng)
    remaining = np.flatnonzero(~taken)
    random_rows = rng.choice(remaining, size=min(wanted_negatives - len(hard_rows), len(remaining)), replace=False)

    rows = np.concatenate([np.flatnonzero(positive), np.asarray(hard_rows, dtype=np.int64), np.sort(random_rows)])
    roles = ([ROLE_POSITIVE] * int(positive.sum()) + [ROLE_HARD_NEGATIVE] * len(hard_rows)
             + [ROLE_RANDOM_NEGATIVE] * len(random_rows))
    chosen = segments.iloc[rows].reset_index(drop=True)
    chosen.insert(3, "split", split)
    chosen["role"] = roles
    chosen["hard_group"] = [""] * int(positive.sum()) + hard_names + [""] * len(random_rows)
    for column, name in enumerate(mapping.names):
        chosen[name] = targets[rows, column]
    return chosen[list(SELECTION_COLUMNS) + list(mapping.names)]


def _round_robin(
    group_members: dict[str, np.ndarray], wanted: int, taken: np.ndarray, rng: np.random.Generator
) -> tuple[list[int], list[str]]:
    """Equal shares per hard-negative group, so rare confusers (babbling) are not drowned by speech/music.

    A group that runs out leaves its share to the others. Marks the chosen rows in `taken`.
    """
    queues = {name: iter(rng.permutation(members)) for name, members in group_members.items()}
    rows: list[int] = []
    names: list[str] = []
    while len(rows) < wanted and queues:
        for name in list(queues):
            if len(rows) >= wanted:
                break
            row = next((int(r) for r in queues[name] if not taken[r]), None)
            if row is None:
                del queues[name]
                continue
            taken[row] = True
            rows.append(row)
            names.append(name)
    return rows, names


def selection_counts(selection: Selection) -> pd.DataFrame:
    """Segments per target and role (rows) and split (columns): what an import will bring in."""
    table = selection.table
    rows = {}
    for name in selection.mapping.names:
        rows[f"target {name}"] = table[table[name] == 1].groupby("split").size()
    for role in (ROLE_POSITIVE, ROLE_HARD_NEGATIVE, ROLE_RANDOM_NEGATIVE):
        rows[role.replace("_", " ")] = table[table["role"] == role].groupby("split").size()
    rows["all segments"] = table.groupby("split").size()
    counts = pd.DataFrame(rows).T.reindex(columns=list(SPLITS)).fillna(0).astype(int)
    return counts[[split for split in SPLITS if split in table["split"].values]]


def hard_group_counts(selection: Selection) -> pd.DataFrame:
    hard = selection.table[selection.table["role"] == ROLE_HARD_NEGATIVE]
    counts = hard.groupby(["hard_group", "split"]).size().unstack(fill_value=0)
    return counts[[split for split in SPLITS if split in counts.columns]]


def write_selection(selection: Selection, path: str | os.PathLike) -> None:
    """CSV with the resolved target mapping and the selection settings in comment lines on top."""
    with atomic_output(path, what="selection") as partial, partial.open("w", newline="", encoding="utf-8") as handle:
        handle.write(f"# {SELECTION_FORMAT}\n")
        handle.write(f"# targets: {selection.mapping.to_json()}\n")
        handle.write(f"# config: {json.dumps(asdict(selection.config), sort_keys=True)}\n")
        handle.write(f"# dropped_for_eval_overlap: {selection.dropped_for_eval_overlap}\n")
        selection.table.to_csv(handle, index=False, float_format="%.3f")


@dataclass(frozen=True)
class SelectedSegment:
    ytid: str
    start_seconds: float
    end_seconds: float
    split: str
    source_list: str
    role: str
    targets: tuple[int, ...]  # multi-hot over the selection's target names


@dataclass(frozen=True)
class SelectionFile:
    mapping: TargetMapping
    config_json: str
    segments: dict[tuple[str, int], SelectedSegment]  # by segment_key


def read_selection(path: str | os.PathLike) -> SelectionFile:
    path = Path(path)
    header: dict[str, str] = {}
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            first = handle.readline()
            if first.strip() != f"# {SELECTION_FORMAT}":
                raise HomesoundError(f"{path} is not a selection made by `homesound audioset select`")
            position = handle.tell()
            line = handle.readline()
            while line.startswith("#"):
                key, _, value = line[1:].partition(":")
                header[key.strip()] = value.strip()
                position = handle.tell()
                line = handle.readline()
            handle.seek(position)
            table = pd.read_csv(handle, dtype={"ytid": str, "split": str, "source_list": str, "role": str},
                                keep_default_na=False)
    except FileNotFoundError:
        raise HomesoundError(
            f"selection {path} not found; make it with `homesound audioset select --out {path}`") from None
    if "targets" not in header:
        raise HomesoundError(f"{path} lacks its targets header; make it again with `homesound audioset select`")
    mapping = TargetMapping.from_json(header["targets"])
    missing = [column for column in SELECTION_COLUMNS + mapping.names if column not in table.columns]
    if missing:
        raise HomesoundError(f"{path} lacks columns {missing}; make it again with `homesound audioset select`")
    bad_splits = set(table["split"]) - set(SPLITS)
    if bad_splits:
        raise HomesoundError(f"{path}: unknown splits {sorted(bad_splits)}")
    targets = table[list(mapping.names)].to_numpy(dtype=np.int64)
    segments = {}
    for row, (ytid, start, end, split, source_list, role) in enumerate(zip(
        table["ytid"], table["start_seconds"], table["end_seconds"], table["split"], table["source_list"], table["role"]
    )):
        segments[segment_key(ytid, start)] = SelectedSegment(
            ytid, float(start), float(end), split, source_list, role, tuple(int(v) for v in targets[row])
        )
    return SelectionFile(mapping, header.get("config", "{}"), segments)
