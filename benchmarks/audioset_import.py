"""How fast `homesound audioset import` reads the released features and stores selected segments.

Builds a release-like tar.gz with one record per segment of the real balanced-train and eval lists
(../shared/data/audioset; ~42k records, random embeddings), selects with the default targets, and
times a plain read and an import into a fresh workspace, then the idempotent rerun.

    python benchmarks/audioset_import.py [--limit N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audioset_fetch.features import read_features  # noqa: E402
from audioset_fetch.importer import ImportConfig, import_features  # noqa: E402
from audioset_fetch.ontology import Ontology, load_class_indices  # noqa: E402
from audioset_fetch.segments import read_segment_list, select_segments, write_selection  # noqa: E402
from audioset_fetch.targets import SelectionConfig  # noqa: E402
from homesound.workspace import Workspace  # noqa: E402
from homesound_testkit.audioset import good_record, tar_folder, write_shard  # noqa: E402
from homesound_testkit.shared_data import find_shared_data  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="records per list (default: all)")
    args = parser.parse_args()
    shared = find_shared_data()
    if shared is None:
        sys.exit("../shared/data (AudioSet metadata) is missing beside the checkout")
    metadata = shared / "audioset"
    class_index = {mid: i for i, mid in enumerate(load_class_indices(metadata / "class_labels_indices.csv"))}
    lists = [read_segment_list(metadata / name) for name in ("balanced_train_segments.csv", "eval_segments.csv")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "audioset_v1_embeddings"
        started = time.perf_counter()
        records = 0
        for segment_list, subfolder in zip(lists, ("bal_train", "eval")):
            table = segment_list.table.iloc[: args.limit]
            for shard, first in enumerate(range(0, len(table), 500)):
                rows = table.iloc[first:first + 500]
                write_shard(folder / subfolder / f"{shard:04d}.tfrecord", [
                    good_record(row.ytid, row.start_seconds, [class_index[m] for m in row.positive_labels.split(",")])
                    for row in rows.itertuples()])
                records += len(rows)
        archive = tar_folder(folder, tmp / "features.tar.gz")
        print(f"wrote {records:,} records ({archive.stat().st_size / 1e6:.1f} MB tar.gz) "
              f"in {time.perf_counter() - started:.1f} s")

        started = time.perf_counter()
        read = sum(1 for _ in read_features(archive))
        seconds = time.perf_counter() - started
        print(f"read only:      {read:,} records in {seconds:.2f} s = {read / seconds:,.0f} records/s")

        selection = select_segments(lists, SelectionConfig(), Ontology.load(metadata / "ontology.json"))
        write_selection(selection, tmp / "selection.csv")
        config = ImportConfig(str(archive), str(tmp / "selection.csv"), str(metadata / "class_labels_indices.csv"))
        with Workspace(tmp / "home.db") as workspace:
            for label in ("import", "rerun"):
                report = import_features(workspace, config, progress=False)
                print(f"{label + ':':15} {report.records:,} records in {report.seconds:.2f} s = "
                      f"{report.records_per_second:,.0f} records/s ({report.added:,} added, "
                      f"{report.already_present:,} already there, {report.not_selected:,} not selected)")


if __name__ == "__main__":
    main()
