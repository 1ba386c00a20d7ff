"""`homesound labels import`: folder trees and label CSVs of real clips -> workspace labels, groups and splits."""

import hashlib
import shutil

import numpy as np
import pandas as pd
import pytest

from classify.data import encode, split_by_group
from homesound.cli import main
from homesound.workspace import Workspace
from homesound.workspace.recordings import StoredEmbedding, register_embedder, save_recording
from homesound.workspace.training_data import iter_labeled_sequences, split_of_group

EMBEDDER = "test-embedder"


def file_sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def clips(shared_data) -> pd.DataFrame:
    table = pd.read_csv(shared_data / "clips.csv")
    table["file"] = [shared_data / p for p in table.path]
    return table


def pick(clips: pd.DataFrame, label: str, count: int, source: str | None = None) -> list:
    """`count` clips of a label (of one source recording if given), chosen by name, never by position."""
    rows = clips[(clips.label == label) & ((clips.source == source) if source else True) & (clips.seconds > 2)]
    return sorted(rows.file)[:count]


def embed_fake(workspace_path, files, failed=()) -> None:
    """Record files as embedded (real content hashes, made-up embeddings: labels do not look at them)."""
    with Workspace(workspace_path) as workspace:
        register_embedder(workspace, EMBEDDER, {"source": "test"})
        for index, path in enumerate(files):
            content = file_sha256(path)
            embedding = np.random.default_rng(index).integers(0, 255, (5, 128), dtype=np.uint8)
            save_recording(workspace, path=str(path), size=1, mtime_ns=1, content_sha256=content, status="embedded",
                           embedding=StoredEmbedding(content, EMBEDDER, embedding, None, 0.96))
        for path in failed:
            save_recording(workspace, path=str(path), size=1, mtime_ns=1, content_sha256=file_sha256(path),
                           status="failed", error="cannot decode")


def labels_table(workspace_path, table: str) -> list[tuple]:
    with Workspace(workspace_path) as workspace:
        columns = {"clip_labels": "content_sha256, target, value", "recording_groups": "content_sha256, group_name",
                   "strong_labels": "content_sha256, second, target, value"}[table]
        return sorted(tuple(row) for row in workspace.query(f"SELECT {columns} FROM {table}"))


def test_folder_tree(tmp_path, clips, capsys):
    root = tmp_path / "my labels"
    (cry, cry_unembedded), (laugh,), (speech,) = pick(clips, "crying", 2), pick(clips, "laughter", 1), \
        pick(clips, "speech", 1)
    for folder, source in (("crying", cry), ("crying", cry_unembedded), ("Laughter", laugh), ("other", speech)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(source, root / folder / source.name)
    shutil.copy(laugh, root / "laughter-copy.flac")  # not inside a class folder
    (root / "other" / "nested").mkdir()
    shutil.copy(laugh, root / "other" / "nested" / "same-audio-as-laugh.ogg")  # known by content, not by path
    workspace = tmp_path / "home.db"
    embed_fake(workspace, [root / "crying" / cry.name, root / "Laughter" / laugh.name, root / "other" / speech.name])

    assert main(["labels", "import", str(root), "--workspace", str(workspace)]) == 1
    captured = capsys.readouterr()
    problems = captured.err.strip().splitlines()
    assert len(problems) == 2
    assert "laughter-copy.flac: not inside a class folder" in problems[0] or "laughter-copy.flac" in problems[1]
    assert any(cry_unembedded.name in line and "not in the workspace" in line for line in problems)
    assert "4 of 6 rows imported" in captured.out
    expected = {
        (file_sha256(cry), "crying", 1.0), (file_sha256(cry), "laughter", 0.0),
        (file_sha256(laugh), "crying", 0.0), (file_sha256(laugh), "laughter", 1.0),  # also via the nested copy
        (file_sha256(speech), "crying", 0.0), (file_sha256(speech), "laughter", 0.0),
    }
    assert set(labels_table(workspace, "clip_labels")) == expected
    assert labels_table(workspace, "recording_groups") == []  # each file is its own recording

    assert main(["status", "--workspace", str(workspace)]) == 0
    status = capsys.readouterr().out
    assert "[training_data]" in status and "recordings_labeled" in status


def test_csv_with_bad_rows_strong_spans_groups_and_reruns(tmp_path, clips, capsys):
    folder = tmp_path / "data"
    (folder / "audio").mkdir(parents=True)
    source = clips[clips.label == "laughter"].source.value_counts().index[0]  # the long home recording
    pieces = [shutil.copy(p, folder / "audio" / p.name) for p in pick(clips, "laughter", 3, source)]
    cry, failed, unembedded = (shutil.copy(p, folder / "audio" / p.name) for p in pick(clips, "crying", 3))
    workspace = tmp_path / "home.db"
    embed_fake(workspace, [*pieces, cry], failed=[failed])
    rows = [
        "path,label,start,end,source",
        f"audio/{pieces[0].name},laughter,,,baby-laughs",
        f"audio/{pieces[1].name},laughter,,,baby-laughs",
        f"audio/{pieces[2].name},Laughter,,,baby-laughs",
        f"audio/{cry.name},crying,1.0,3.0,cry-session",  # strong: frames 1 and 2 (0.96 s each)
        f"audio/{cry.name},speech,2.5,4.8,cry-session",  # overlaps frame 2 (crying wins) and labels 3, 4 negative
        f"audio/{cry.name},laughter,abc,5,cry-session",  # bad start
        f"audio/{cry.name},crying,3,2,cry-session",  # end before start
        f"audio/{cry.name},,,,cry-session",  # no label
        f"audio/{failed.name},crying,,,other",  # known but not embedded
        f"audio/{unembedded.name},crying,,,other",  # not in the workspace
        "audio/missing.wav,crying,,,other",  # no such file
    ]
    csv_path = folder / "labels.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    assert main(["labels", "import", str(csv_path), "--workspace", str(workspace)]) == 1
    captured = capsys.readouterr()
    problems = captured.err.strip().splitlines()
    assert len(problems) == 6
    for line, text in zip(problems, ["labels.csv:7: start 'abc'", "labels.csv:8:", "labels.csv:9:", "labels.csv:10:",
                                     "labels.csv:11:", "labels.csv:12:"]):
        assert text in line
    assert "not embedded yet (status failed: cannot decode)" in problems[3]
    assert "not in the workspace" in problems[4] and "no such file" in problems[5]
    assert "5 of 11 rows imported" in captured.out

    crying = file_sha256(cry)
    strong = labels_table(workspace, "strong_labels")
    assert [(s, t, v) for c, s, t, v in strong if c == crying] == [
        (1, "crying", 1.0), (1, "laughter", 0.0), (2, "crying", 1.0), (2, "laughter", 0.0),
        (3, "crying", 0.0), (3, "laughter", 0.0), (4, "crying", 0.0), (4, "laughter", 0.0)]
    groups = dict(labels_table(workspace, "recording_groups"))
    assert {groups[file_sha256(p)] for p in pieces} == {"baby-laughs"} and groups[crying] == "cry-session"
    stored = [labels_table(workspace, t) for t in ("clip_labels", "strong_labels", "recording_groups")]

    assert main(["labels", "import", str(csv_path), "--workspace", str(workspace)]) == 1  # rerun: no duplicates
    assert "(0 new or changed)" in capsys.readouterr().out
    assert [labels_table(workspace, t) for t in ("clip_labels", "strong_labels", "recording_groups")] == stored

    csv_path.write_text("\n".join(rows[:4] + [f"audio/{cry.name},crying,0,1.2,cry-session"]) + "\n")
    assert main(["labels", "import", str(csv_path), "--workspace", str(workspace)]) == 0  # an edit replaces
    assert [(s, t, v) for c, s, t, v in labels_table(workspace, "strong_labels") if c == crying] == [
        (0, "crying", 1.0), (0, "laughter", 0.0)]

    with Workspace(workspace) as ws:
        sequences = list(iter_labeled_sequences(ws))
    pieces_seen = [s for s in sequences if s.group == "baby-laughs"]
    assert len(pieces_seen) == 3 and {s.split for s in pieces_seen} == {split_of_group("baby-laughs")}
    assert all(s.clip_labels.tolist() == [0.0, 1.0] for s in pieces_seen)


def test_groups_keep_pieces_of_one_recording_on_one_side(tmp_path, clips):
    """Imported with clips.csv's `source` as group, a split never divides a source recording."""
    chosen = pd.concat([clips[clips.label == label].sort_values("path").groupby("source").head(4)
                        for label in ("crying", "laughter", "noise")])
    chosen = chosen[chosen.seconds > 2]
    workspace = tmp_path / "home.db"
    embed_fake(workspace, list(chosen.file))
    csv_path = tmp_path / "clips.csv"
    chosen.assign(path=[str(p) for p in chosen.file])[["path", "label", "source"]].to_csv(csv_path, index=False)
    assert main(["labels", "import", str(csv_path), "--workspace", str(workspace), "--group-column", "source"]) == 0
    with Workspace(workspace) as ws:
        sequences = list(iter_labeled_sequences(ws))
    assert len(sequences) == len(chosen)
    assert {s.group for s in sequences} == set(chosen.source)
    data = encode(sequences, ("crying", "laughter"))
    train, validation = split_by_group(data, 0.3, seed=0)
    groups = np.asarray(data.groups)
    assert len(train) and len(validation)
    assert not set(groups[train]) & set(groups[validation])
    assert chosen.groupby("source").size().max() > 1  # some source really has several pieces


def test_unusable_sources_are_one_clear_message(tmp_path, capsys):
    workspace = tmp_path / "home.db"
    embed_fake(workspace, [])
    (tmp_path / "bad.csv").write_text("file,class\nx.wav,crying\n")
    assert main(["labels", "import", str(tmp_path / "bad.csv"), "--workspace", str(workspace)]) == 2
    assert "no path and no label column" in capsys.readouterr().err
    assert main(["labels", "import", str(tmp_path / "nope.csv"), "--workspace", str(workspace)]) == 2
    assert main(["labels", "import", str(tmp_path / "bad.csv"), "--workspace", str(tmp_path / "none.db")]) == 2
    assert "no workspace" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()


def test_clip_labels_can_train_every_frame():
    from classify.config import TrainConfig
    from classify.data import clip_labels_on_frames
    from homesound.sequences import LabeledSequence

    weak = LabeledSequence(key="a", group="g", split="train", embedding=np.zeros((3, 4), np.float32),
                           embedder_id="e", classes=("crying", "laughter"),
                           clip_labels=np.array([1.0, np.nan], np.float32))
    strong = LabeledSequence(key="b", group="g", split="train", embedding=np.zeros((2, 4), np.float32),
                             embedder_id="e", classes=("crying",), frame_labels=np.array([[0.0], [1.0]], np.float32))
    spread, same = clip_labels_on_frames([weak, strong])
    assert spread.clip_labels is None and spread.frame_labels.shape == (3, 2)
    assert (spread.frame_labels[:, 0] == 1).all() and np.isnan(spread.frame_labels[:, 1]).all()
    assert same is strong
    with pytest.raises(ValueError, match="clip_labels"):
        TrainConfig(clip_labels="everywhere")
