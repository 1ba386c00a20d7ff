"""Ontology, targets and segment selection on the real AudioSet metadata in ../shared/data/audioset."""

from __future__ import annotations

import dataclasses
import json

import pytest

from audioset_fetch.ontology import Ontology, load_class_indices
from audioset_fetch.segments import (
    ROLE_HARD_NEGATIVE,
    ROLE_POSITIVE,
    ROLE_RANDOM_NEGATIVE,
    read_segment_list,
    read_selection,
    select_segments,
    selection_counts,
    write_selection,
)
from audioset_fetch.targets import SelectionConfig, load_selection_config
from homesound.errors import HomesoundError

# The Laughter and Crying subtrees as listed on the AudioSet ontology pages, written out by hand.
LAUGHTER_MIDS = {"/m/01j3sz", "/t/dd00001", "/m/07r660_", "/m/07s04w4", "/m/07sq110", "/m/07rgt08"}
CRYING_MIDS = {"/m/0463cq4", "/t/dd00002", "/m/07qz6j3"}
BABBLING = "/m/0261r1"


@pytest.fixture(scope="module")
def metadata(shared_data):
    return shared_data / "audioset"


@pytest.fixture(scope="module")
def ontology(metadata):
    return Ontology.load(metadata / "ontology.json")


@pytest.fixture(scope="module")
def lists(metadata):
    return [read_segment_list(metadata / name) for name in ("balanced_train_segments.csv", "eval_segments.csv")]


@pytest.fixture(scope="module")
def selection(lists, ontology):
    return select_segments(lists, SelectionConfig(), ontology)


def test_targets_resolve_to_themselves_and_all_descendants(ontology):
    assert ontology.resolve("Laughter") == LAUGHTER_MIDS
    assert ontology.resolve("/m/01j3sz") == LAUGHTER_MIDS
    assert ontology.resolve("crying, SOBBING") == CRYING_MIDS
    assert {ontology.name(mid) for mid in ontology.resolve("Laughter")} >= {
        "Baby laughter", "Giggle", "Snicker", "Belly laugh", "Chuckle, chortle"}
    human_voice = ontology.resolve("Human voice")  # several levels deep, with shared children
    assert LAUGHTER_MIDS | CRYING_MIDS | {BABBLING} <= human_voice
    assert ontology.resolve("Babbling") == {BABBLING}


def test_an_unknown_class_name_suggests_close_names(ontology):
    with pytest.raises(HomesoundError, match="'Laughter'"):
        ontology.resolve("Laughters")


def test_class_indices_map_release_labels_to_mids_with_or_without_header(metadata, tmp_path):
    mids = load_class_indices(metadata / "class_labels_indices.csv")
    assert len(mids) == 527 and mids[0] == "/m/09x0r" and mids[526] == "/m/07hvw1"
    with_header = tmp_path / "with_header.csv"
    with_header.write_text("index,mid,display_name\n" + (metadata / "class_labels_indices.csv").read_text())
    assert load_class_indices(with_header) == mids


def test_segment_lists_parse_completely_in_their_original_format(lists):
    balanced, evaluation = lists
    assert (len(balanced.table), balanced.declared_segments, balanced.split) == (22160, 22160, "train")
    assert (len(evaluation.table), evaluation.declared_segments, evaluation.split) == (20371, 20371, "eval")
    assert not balanced.problems and not balanced.truncated
    first = balanced.table.iloc[0]
    assert (first.ytid, first.start_seconds, first.end_seconds, first.positive_labels) == (
        "--PJHxphWEs", 30.0, 40.0, "/m/09x0r,/t/dd00088")


def test_broken_lines_are_reported_and_skipped(tmp_path):
    path = tmp_path / "eval_segments.csv"
    path.write_text(
        "# Segments csv created today\n# num_ytids=4, num_segs=4, num_unique_labels=2, num_positive_labels=4\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        'aaa, 0.000, 10.000, "/m/01j3sz,/m/09x0r"\n'
        "bbb, zero, 10.000, \"/m/09x0r\"\n"
        "ccc, 0.000\n"
        'ddd, 5.500, 15.500, "/m/09x0r"\n'
    )
    segments = read_segment_list(path)
    assert list(segments.table.ytid) == ["aaa", "ddd"]
    assert segments.truncated and len(segments.problems) == 2
    assert segments.problems[0].startswith("line 5") and segments.problems[1].startswith("line 6")


def expected_positives(segment_list, mids):
    return sum(1 for labels in segment_list.table.positive_labels if set(labels.split(",")) & mids)


def test_selection_counts_positives_negatives_and_keeps_eval_as_eval(selection, lists):
    table = selection.table
    balanced, evaluation = lists
    counts = selection_counts(selection)
    for split, segment_list in (("train", balanced), ("eval", evaluation)):
        rows = table[table.split == split]
        assert counts.loc["target laughter", split] == expected_positives(segment_list, LAUGHTER_MIDS)
        assert counts.loc["target crying", split] == expected_positives(segment_list, CRYING_MIDS)
        positives = (rows.role == ROLE_POSITIVE).sum()
        assert positives == expected_positives(segment_list, LAUGHTER_MIDS | CRYING_MIDS) > 100
        hard = (rows.role == ROLE_HARD_NEGATIVE).sum()
        random = (rows.role == ROLE_RANDOM_NEGATIVE).sum()
        assert hard + random == round(3.0 * positives)
        assert abs(hard - round(0.5 * (hard + random))) <= 1
        assert set(rows.source_list) == {segment_list.name}
    assert not set(table[table.split == "train"].ytid) & set(table[table.split == "eval"].ytid)
    assert not table.duplicated(["ytid", "start_seconds"]).any()


def test_negatives_carry_no_target_and_hard_ones_sound_alike(selection, ontology):
    table = selection.table
    negatives = table[table.role != ROLE_POSITIVE]
    for labels in negatives.positive_labels:
        assert not set(labels.split(",")) & (LAUGHTER_MIDS | CRYING_MIDS)
    assert (negatives[["laughter", "crying"]] == 0).all().all()
    hard = table[table.role == ROLE_HARD_NEGATIVE]
    for labels, group in zip(hard.positive_labels, hard.hard_group):
        assert set(labels.split(",")) & ontology.resolve(group), (labels, group)
    per_group = hard[hard.split == "train"].hard_group.value_counts()
    # equal shares: rare groups (babbling, child speech) are as present as speech and music
    assert per_group.max() - per_group.min() <= 1
    assert {"Babbling", "Child speech, kid speaking", "Speech", "Music", "Television", "Animal"} <= set(per_group.index)


def test_selection_is_seeded(lists, ontology, selection):
    again = select_segments(lists, SelectionConfig(), ontology)
    assert again.table.equals(selection.table)
    other = select_segments(lists, SelectionConfig(seed=1), ontology)
    positives = lambda t: set(t[t.role == ROLE_POSITIVE].ytid)  # noqa: E731
    negatives = lambda t: set(t[t.role != ROLE_POSITIVE].ytid)  # noqa: E731
    assert positives(other.table) == positives(selection.table)
    assert negatives(other.table) != negatives(selection.table)


def test_a_training_video_that_is_also_in_eval_is_dropped_from_training(lists, ontology, tmp_path):
    balanced, evaluation = lists
    eval_laughter = evaluation.table[evaluation.table.positive_labels.str.contains("/m/01j3sz")].iloc[0]
    leaked = balanced.table.copy()
    leaked.loc[len(leaked)] = [eval_laughter.ytid, 100.0, 110.0, "/m/01j3sz"]
    leaky = dataclasses.replace(balanced, table=leaked)
    result = select_segments([leaky, evaluation], SelectionConfig(), ontology)
    assert result.dropped_for_eval_overlap == 1
    assert set(result.table[result.table.ytid == eval_laughter.ytid].split) == {"eval"}


def test_target_file_in_toml_and_json_configures_everything(lists, ontology, tmp_path):
    toml_path = tmp_path / "targets.toml"
    toml_path.write_text(
        '[targets]\nbaby_cry = ["Baby cry, infant cry"]\nany_laugh = ["/m/01j3sz"]\n\n'
        '[negatives]\nratio = 1.0\nhard_fraction = 1.0\nhard = ["Babbling"]\nseed = 7\n'
    )
    json_path = tmp_path / "targets.json"
    json_path.write_text(json.dumps({
        "targets": {"baby_cry": ["Baby cry, infant cry"], "any_laugh": ["/m/01j3sz"]},
        "negatives": {"ratio": 1.0, "hard_fraction": 1.0, "hard": ["Babbling"], "seed": 7},
    }))
    config = load_selection_config(toml_path)
    assert config == load_selection_config(json_path)
    assert config.targets == (("baby_cry", ("Baby cry, infant cry",)), ("any_laugh", ("/m/01j3sz",)))
    result = select_segments(lists, config, ontology)
    assert result.mapping.names == ("baby_cry", "any_laugh")
    train = result.table[result.table.split == "train"]
    hard = train[train.role == ROLE_HARD_NEGATIVE]
    assert all(BABBLING in labels.split(",") for labels in hard.positive_labels)
    targets = LAUGHTER_MIDS | {"/t/dd00002"}
    babbling_only = sum(1 for labels in lists[0].table.positive_labels
                        if BABBLING in labels.split(",") and not set(labels.split(",")) & targets)
    positives = (train.role == ROLE_POSITIVE).sum()
    assert len(hard) == min(positives, babbling_only)  # babbling runs out: the rest is random
    assert (train.role == ROLE_RANDOM_NEGATIVE).sum() == positives - len(hard)


@pytest.mark.parametrize("text, message", [
    ('[targets]\n"Bad Name" = ["Laughter"]\n', "lower-case"),
    ("[targets]\nlaughter = []\n", "non-empty list"),
    ("[negatives]\nratio = -1\n", "ratio"),
    ("[negatives]\nsped = 1\n", "unknown"),
    ("[targets\n", "not valid TOML"),
])
def test_bad_target_files_are_clear_errors(tmp_path, text, message):
    path = tmp_path / "targets.toml"
    path.write_text(text)
    with pytest.raises(HomesoundError, match=message):
        load_selection_config(path)


def test_selection_file_round_trip_carries_the_target_mapping(selection, tmp_path):
    path = tmp_path / "selection.csv"
    write_selection(selection, path)
    loaded = read_selection(path)
    assert loaded.mapping == selection.mapping and loaded.mapping.id == selection.mapping.id
    assert len(loaded.segments) == len(selection.table)
    assert json.loads(loaded.config_json)["negative_ratio"] == 3.0
    row = selection.table[selection.table.role == ROLE_POSITIVE].iloc[0]
    segment = next(s for s in loaded.segments.values() if s.ytid == row.ytid and s.start_seconds == row.start_seconds)
    assert (segment.split, segment.role, segment.targets) == (row.split, ROLE_POSITIVE, (row.laughter, row.crying))


def test_select_command_prints_counts_per_target_and_split(metadata, tmp_path, capsys):
    from homesound.cli import main

    out = tmp_path / "selection.csv"
    code = main(["audioset", "select", "--metadata", str(metadata), "--ratio", "2", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and out.exists()
    lines = {line.split()[0] + " " + line.split()[1]: line.split()[2:] for line in printed.splitlines()
             if line.startswith("target ")}
    table = read_selection(out)
    for target in ("laughter", "crying"):
        index = table.mapping.names.index(target)
        for column, split in enumerate(("train", "eval")):
            expected = sum(1 for s in table.segments.values() if s.split == split and s.targets[index])
            assert int(lines[f"target {target}"][column]) == expected > 0
    assert "hard negatives per group" in printed and "Babbling" in printed


def test_select_without_metadata_says_how_to_get_it(tmp_path, capsys):
    from homesound.cli import main

    code = main(["audioset", "select", "--metadata", str(tmp_path), "--out", str(tmp_path / "s.csv")])
    assert code == 2
    assert "homesound audioset download" in capsys.readouterr().err
