"""Import the selected segments from AudioSet's released features into the workspace.

One pass over the release; segments are written in batches, one transaction each, so a kill
loses at most the batch in flight and a rerun adds only what is missing.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath

from tqdm import tqdm

from audioset_fetch.config import ImportConfig
from audioset_fetch.features import FeatureRecord, MalformedRecord, UnwantedRecord, read_features, source_size
from audioset_fetch.ontology import load_class_indices
from audioset_fetch.segments import SelectedSegment, read_selection, segment_key
from homesound.workspace import audioset as audioset_store
from homesound.workspace.core import Workspace
from homesound.workspace.recordings import register_embedder
from homesound.workspace.runs import recorded

MAX_REPORTED_PROBLEMS = 200
PROGRESS_EVERY = 1000  # records between updates of the progress bar's counts
# Folder names inside the release: audioset_v1_embeddings/{bal_train,unbal_train,eval}/*.tfrecord
SHARD_FOLDER_SPLITS = {"bal_train": "train", "unbal_train": "train", "eval": "eval"}


@dataclass
class ImportReport:
    records: int = 0
    added: int = 0
    already_present: int = 0
    not_selected: int = 0
    malformed: int = 0
    selected_not_in_release: int = 0
    relabeled: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)  # the first MAX_REPORTED_PROBLEMS reasons

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def note_problem(self, problem: str) -> None:
        self.malformed += 1
        if len(self.problems) < MAX_REPORTED_PROBLEMS:
            self.problems.append(problem)


def split_of_shard(shard: str) -> str | None:
    """The split a shard's folder in the release implies, or None for a shard outside those folders."""
    for folder in PurePosixPath(shard.replace("\\", "/")).parts[:-1]:
        if folder in SHARD_FOLDER_SPLITS:
            return SHARD_FOLDER_SPLITS[folder]
    return None


def import_features(workspace: Workspace, config: ImportConfig, *, progress: bool = True) -> ImportReport:
    selection = read_selection(config.selection)
    class_mids = load_class_indices(config.class_labels)
    mapping = selection.mapping
    report = ImportReport()
    register_embedder(workspace, audioset_store.EMBEDDER_ID, audioset_store.EMBEDDER_PROVENANCE)
    report.relabeled = audioset_store.use_target_mapping(
        workspace, mapping.id, mapping.to_json(), mapping.names, mapping.multi_hot
    )
    found: set[tuple[str, int]] = set()
    batch: list[audioset_store.AudioSetSegment] = []
    started = time.perf_counter()

    def wanted(video_id: str, start_seconds: float) -> bool:
        return segment_key(video_id, start_seconds) in selection.segments

    def summary() -> dict:
        report.seconds = time.perf_counter() - started
        report.selected_not_in_release = len(selection.segments) - len(found)
        counts = {key: value for key, value in asdict(report).items() if key != "problems"}
        return {**counts, "first_problems": report.problems[:20]}

    run_config = {**asdict(config), "target_mapping_id": mapping.id, "selection_config": selection.config_json}
    with recorded(workspace, "audioset import", run_config) as run:
        run.summary = summary

        def flush() -> None:
            added = audioset_store.save_segments(workspace, batch, mapping.id, run.id)
            report.added += added
            report.already_present += len(batch) - added
            batch.clear()

        try:
            with tqdm(total=source_size(config.features), unit="B", unit_scale=True, desc="audioset import",
                      disable=not progress) as bar:
                for item in read_features(config.features, bar.update, wanted):
                    report.records += 1
                    if report.records % PROGRESS_EVERY == 0:
                        bar.set_postfix(records=report.records, kept=len(found), bad=report.malformed, refresh=False)
                    if isinstance(item, MalformedRecord):
                        report.note_problem(str(item))
                        continue
                    if isinstance(item, UnwantedRecord):
                        report.not_selected += 1
                        continue
                    key = segment_key(item.video_id, item.start_seconds)
                    chosen = selection.segments[key]
                    segment = _segment(item, chosen, class_mids, mapping.multi_hot)
                    if isinstance(segment, str):
                        report.note_problem(f"{item.shard} record {item.index}: {segment}")
                        continue
                    found.add(key)
                    batch.append(segment)
                    if len(batch) >= config.batch_size:
                        flush()
                bar.set_postfix(records=report.records, kept=len(found), bad=report.malformed)
        finally:
            flush()  # what was read before a failure or an interruption is valid: keep it
    return report


def _segment(record: FeatureRecord, chosen: SelectedSegment, class_mids: tuple[str, ...], multi_hot):
    """The workspace row for a selected record, or the reason it cannot be one."""
    shard_split = split_of_shard(record.shard)
    if shard_split is not None and shard_split != chosen.split:
        return f"{record.video_id} is in a {shard_split} shard but selected as {chosen.split}; not mixing splits"
    unknown = [label for label in record.labels if not 0 <= label < len(class_mids)]
    if unknown:
        return (f"{record.video_id}: label indices {unknown} outside class_labels_indices.csv "
                f"({len(class_mids)} classes)")
    label_mids = tuple(class_mids[label] for label in record.labels)
    return audioset_store.AudioSetSegment(
        ytid=record.video_id,
        start_ms=segment_key(record.video_id, record.start_seconds)[1],
        start_seconds=chosen.start_seconds,
        end_seconds=chosen.end_seconds,
        split=chosen.split,
        source_list=chosen.source_list,
        selection_role=chosen.role,
        label_mids=label_mids,
        targets=multi_hot(label_mids),
        embedding=record.embedding,
    )
