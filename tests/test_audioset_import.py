"""Import released features into a workspace and read them back as labeled sequences."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audioset_fetch.importer import ImportConfig, import_features, split_of_shard
from audioset_fetch.ontology import Ontology, load_class_indices
from audioset_fetch.segments import ROLE_POSITIVE, read_segment_list, read_selection, select_segments, write_selection
from audioset_fetch.targets import SelectionConfig
from homesound.cli import main
from homesound.workspace import Workspace
from homesound.workspace.audioset import EMBEDDER_ID, audioset_sequences, segment_counts
from homesound.workspace.recordings import embedder_provenance
from homesound.workspace.runs import list_runs
from homesound_testkit.audioset import (
    embedding_for,
    good_record,
    sequence_example,
    tar_folder,
    write_shard,
)


@pytest.fixture(scope="module")
def metadata(shared_data):
    return shared_data / "audioset"


@pytest.fixture(scope="module")
def selection_path(metadata, tmp_path_factory):
    ontology = Ontology.load(metadata / "ontology.json")
    lists = [read_segment_list(metadata / name) for name in ("balanced_train_segments.csv", "eval_segments.csv")]
    selection = select_segments(lists, SelectionConfig(negative_ratio=1.0), ontology)
    path = tmp_path_factory.mktemp("selection") / "selection.csv"
    write_selection(selection, path)
    return path


def labels_of(segment_labels: str, class_mids: tuple[str, ...]) -> list[int]:
    index = {mid: i for i, mid in enumerate(class_mids)}
    return [index[mid] for mid in segment_labels.split(",")]


@pytest.fixture(scope="module")
def release(metadata, selection_path, tmp_path_factory):
    """Shards in the release's layout: selected and unselected segments, malformed records, a misplaced one."""
    class_mids = load_class_indices(metadata / "class_labels_indices.csv")
    balanced = read_segment_list(metadata / "balanced_train_segments.csv").table
    evaluation = read_segment_list(metadata / "eval_segments.csv").table
    selection = read_selection(selection_path)
    chosen = {key for key in selection.segments}
    by_split = {"train": [], "eval": []}
    for table, split in ((balanced, "train"), (evaluation, "eval")):
        for row in table.itertuples():
            selected = (row.ytid, int(round(row.start_seconds * 1000))) in chosen
            by_split[split].append((row, selected))
    train_selected = [row for row, selected in by_split["train"] if selected][:40]
    train_unselected = [row for row, selected in by_split["train"] if not selected][:15]
    eval_selected = [row for row, selected in by_split["eval"] if selected][:25]
    misplaced = [row for row, selected in by_split["eval"] if selected][25]
    bad_label, bad_frame = [row for row, selected in by_split["train"] if selected][40:42]

    def record(row, frames=10):
        return good_record(row.ytid, row.start_seconds, labels_of(row.positive_labels, class_mids), frames)

    folder = tmp_path_factory.mktemp("release") / "audioset_v1_embeddings"
    write_shard(folder / "bal_train" / "a0.tfrecord", [record(r, 10 - i % 2) for i, r in enumerate(train_selected[:20])]
                + [record(r) for r in train_unselected] + [record(misplaced)]
                + [sequence_example(bad_label.ytid, bad_label.start_seconds, bad_label.start_seconds + 10, [999],
                                    [bytes(128)] * 10)])
    write_shard(folder / "bal_train" / "a1.tfrecord", [record(r) for r in train_selected[20:]]
                + [sequence_example(bad_frame.ytid, bad_frame.start_seconds, bad_frame.start_seconds + 10, [0],
                                    [bytes(100)])])
    write_shard(folder / "eval" / "b0.tfrecord", [record(r) for r in eval_selected])
    archive = tar_folder(folder, folder.parent / "features.tar.gz")
    expected = {
        "train": {(r.ytid, round(r.start_seconds, 3)) for r in train_selected},
        "eval": {(r.ytid, round(r.start_seconds, 3)) for r in eval_selected},
    }
    labels = {r.ytid: set(r.positive_labels.split(",")) for r in train_selected + eval_selected}
    return archive, folder, expected, selection, labels


def import_command(features, selection_path, workspace, metadata, *extra):
    return main(["audioset", "import", str(features), "--selection", str(selection_path),
                 "--workspace", str(workspace), "--metadata", str(metadata), *extra])


def test_import_stores_selected_segments_and_the_provider_reads_them_back(
    release, selection_path, metadata, tmp_path, capsys
):
    archive, _, expected, selection, _ = release
    workspace_path = tmp_path / "home.db"
    assert import_command(archive, selection_path, workspace_path, metadata) == 0
    printed = capsys.readouterr().out
    assert "65 segments added" in printed and "15 not selected" in printed and "3 malformed" in printed
    assert "is in a train shard but selected as eval" in printed
    assert "label indices [999]" in printed and "has 100 bytes" in printed

    with Workspace(workspace_path) as workspace:
        for split in ("train", "eval"):
            sequences = list(audioset_sequences(workspace, split))
            assert {(s.group, round(s.start_seconds, 3)) for s in sequences} == expected[split]
            for sequence in sequences:
                segment = selection.segments[(sequence.group, int(round(sequence.start_seconds * 1000)))]
                assert sequence.split == split == segment.split
                assert sequence.classes == ("laughter", "crying")
                assert sequence.clip_labels.tolist() == list(segment.targets)
                assert sequence.frame_labels is None and sequence.embedder_id == EMBEDDER_ID
                assert sequence.key == f"audioset:{sequence.group}:{sequence.start_seconds:.3f}"
                expected_embedding = embedding_for(sequence.group, len(sequence.embedding))
                np.testing.assert_array_equal(sequence.embedding, expected_embedding)
        assert {len(s.embedding) for s in audioset_sequences(workspace, "train")} == {9, 10}
        positives = [s for s in audioset_sequences(workspace) if s.clip_labels.any()]
        assert positives and all(selection.segments[(s.group, int(round(s.start_seconds * 1000)))].role
                                 == ROLE_POSITIVE for s in positives)
        provenance = embedder_provenance(workspace, EMBEDDER_ID)
        assert "AudioSet released features" in provenance["source"] and "8 bits" in provenance["postprocess"]
        counts = segment_counts(workspace)
        assert counts["train"]["segments"] == 40 and counts["eval"]["segments"] == 25


def test_rerun_adds_nothing(release, selection_path, metadata, tmp_path, capsys):
    archive, folder, expected, _, _ = release
    workspace_path = tmp_path / "home.db"
    assert import_command(folder, selection_path, workspace_path, metadata) == 0
    capsys.readouterr()
    assert import_command(archive, selection_path, workspace_path, metadata) == 0
    assert "0 segments added, 65 already in the workspace" in capsys.readouterr().out
    with Workspace(workspace_path) as workspace:
        assert len(list(audioset_sequences(workspace))) == 65
        runs = list_runs(workspace, "audioset import")
        assert [run["status"] for run in runs] == ["completed", "completed"]


def test_a_broken_archive_keeps_what_was_imported_and_a_rerun_completes_it(release, selection_path, metadata,
                                                                           tmp_path, capsys):
    archive, _, expected, _, _ = release
    cut = tmp_path / "features.tar.gz"
    data = archive.read_bytes()
    cut.write_bytes(data[: len(data) * 3 // 4])  # ends inside the eval shard
    workspace_path = tmp_path / "home.db"
    assert import_command(cut, selection_path, workspace_path, metadata, "--batch-size", "7") == 2
    assert "download" in capsys.readouterr().err
    with Workspace(workspace_path) as workspace:
        kept = {(s.group, round(s.start_seconds, 3)) for s in audioset_sequences(workspace)}
        assert expected["train"] <= kept and kept < expected["train"] | expected["eval"]
        failed = list_runs(workspace, "audioset import")[-1]
        assert failed["status"] == "failed" and "download" in json.loads(failed["summary_json"])["error"]
    cut.write_bytes(data)
    assert import_command(cut, selection_path, workspace_path, metadata) == 0
    with Workspace(workspace_path) as workspace:
        sequences = list(audioset_sequences(workspace))
        assert len(sequences) == len({s.key for s in sequences}) == 65


def test_ctrl_c_keeps_the_batches_read_and_marks_the_run_interrupted(release, selection_path, metadata, tmp_path,
                                                                    monkeypatch):
    import audioset_fetch.importer as importer

    archive, _, _, _, _ = release
    real_read_features = importer.read_features

    def stopped_after_20_records(*args, **kwargs):
        for number, item in enumerate(real_read_features(*args, **kwargs)):
            if number == 20:
                raise KeyboardInterrupt  # where Ctrl-C or SIGTERM (homesound.cli.Stopped) lands
            yield item

    monkeypatch.setattr(importer, "read_features", stopped_after_20_records)
    workspace_path = tmp_path / "home.db"
    config = ImportConfig(str(archive), str(selection_path), str(metadata / "class_labels_indices.csv"), batch_size=7)
    with Workspace(workspace_path) as workspace, pytest.raises(KeyboardInterrupt):
        import_features(workspace, config, progress=False)
    with Workspace(workspace_path) as workspace:
        run = list_runs(workspace, "audioset import")[-1]
        kept = len(list(audioset_sequences(workspace)))
    summary = json.loads(run["summary_json"])
    assert run["status"] == "interrupted" and summary["records"] == 20
    assert 0 < kept == summary["added"]  # the last partial batch too: what was read is kept


def test_another_target_mapping_relabels_stored_segments(release, selection_path, metadata, tmp_path):
    archive, _, _, _, labels = release
    workspace_path = tmp_path / "home.db"
    with Workspace(workspace_path) as workspace:
        class_labels = str(metadata / "class_labels_indices.csv")
        import_features(workspace, ImportConfig(str(archive), str(selection_path), class_labels), progress=False)
        before = {s.key: s for s in audioset_sequences(workspace)}

        ontology = Ontology.load(metadata / "ontology.json")
        lists = [read_segment_list(metadata / "eval_segments.csv")]
        config = SelectionConfig(targets=(("baby_cry", ("Baby cry, infant cry",)),), negative_ratio=0.0)
        other_path = tmp_path / "baby.csv"
        write_selection(select_segments(lists, config, ontology), other_path)
        report = import_features(workspace, ImportConfig(str(archive), str(other_path), class_labels), progress=False)
        assert report.relabeled == 65
        after = {s.key: s for s in audioset_sequences(workspace)}
    assert after.keys() == before.keys()
    assert {s.classes for s in after.values()} == {("baby_cry",)}
    for sequence in after.values():
        assert sequence.clip_labels.tolist() == [float("/t/dd00002" in labels[sequence.group])]
    assert any(sequence.clip_labels[0] == 1 for sequence in after.values())


def test_shard_folders_of_the_release_imply_splits():
    assert split_of_shard("audioset_v1_embeddings/bal_train/a.tfrecord") == "train"
    assert split_of_shard("audioset_v1_embeddings/unbal_train/a.tfrecord") == "train"
    assert split_of_shard("audioset_v1_embeddings/eval/a.tfrecord") == "eval"
    assert split_of_shard("shards/a.tfrecord") is None
