"""Streaming reader of released AudioSet features: shards written here in the original schema."""

from __future__ import annotations

import os

import numpy as np
import pytest

from audioset_fetch.features import FeatureRecord, FeatureSourceError, MalformedRecord, read_features, source_size
from homesound_testkit.audioset import embedding_for, good_record, sequence_example, tar_folder, write_shard

FRAME = bytes(range(128))


def malformed_records() -> dict[str, bytes]:
    """One record per way the release's schema can be broken, with a word its reason must contain."""
    return {
        "128": sequence_example("shortframe", 0, 10, [1], [FRAME, FRAME[:127]]),
        "video_id": sequence_example(None, 0, 10, [1], [FRAME]),
        "labels": sequence_example("nolabels", 0, 10, None, [FRAME]),
        "int64_list": sequence_example("floatlabels", 0, 10, [1], [FRAME], labels_as_floats=True),
        "audio_embedding": sequence_example("noframes", 0, 10, [1], None),
        "expected 1..10": sequence_example("elevenframes", 0, 10, [1], [FRAME] * 11),
        "SequenceExample": b"\xff\xff\xff not a protobuf",
    }


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A small release: two shards of good and malformed records, as a folder and as a tar.gz."""
    root = tmp_path_factory.mktemp("release")
    folder = root / "audioset_v1_embeddings"
    good = [good_record(f"vid{i:03d}", 30.0, [0, i % 527], frames=10 - i % 3) for i in range(6)]
    bad = malformed_records()
    write_shard(folder / "bal_train" / "aa.tfrecord", [good[0], *bad.values(), good[1], good[2]])
    write_shard(folder / "eval" / "bb.tfrecord", good[3:])
    archive = tar_folder(folder, root / "features.tar.gz")
    return folder, archive, bad


def split_results(items):
    records = [item for item in items if isinstance(item, FeatureRecord)]
    problems = [item for item in items if isinstance(item, MalformedRecord)]
    return records, problems


def test_folder_and_tar_give_the_same_records_and_report_every_malformed_one(release):
    folder, archive, bad = release
    from_folder = split_results(list(read_features(folder)))
    from_tar = split_results(list(read_features(archive)))
    for records, problems in (from_folder, from_tar):
        assert [r.video_id for r in records] == [f"vid{i:03d}" for i in range(6)]
        assert len(problems) == len(bad)
        for (expected_word, _), problem in zip(bad.items(), problems):
            assert expected_word in problem.reason, problem
        assert all(p.shard.endswith("aa.tfrecord") for p in problems)
    first = from_tar[0][0]
    assert first.start_seconds == 30.0 and first.end_seconds == 40.0 and first.labels == (0, 0)
    for record in from_tar[0]:
        expected = embedding_for(record.video_id, len(record.embedding))
        assert record.embedding.dtype == np.uint8 and record.embedding.shape[1] == 128
        np.testing.assert_array_equal(record.embedding, expected)
    assert [r.shard for r in from_tar[0]][-1] == "audioset_v1_embeddings/eval/bb.tfrecord"


def test_a_corrupt_record_is_skipped_and_the_shard_goes_on(tmp_path):
    shard = write_shard(tmp_path / "x.tfrecord", [good_record(f"v{i}", 0, [1]) for i in range(3)])
    data = bytearray(shard.read_bytes())
    record_size = len(data) // 3
    data[record_size + 100] ^= 0xFF  # a bit flip inside the second record's payload
    shard.write_bytes(bytes(data))
    records, problems = split_results(list(read_features(shard)))
    assert [r.video_id for r in records] == ["v0", "v2"]
    assert len(problems) == 1 and "CRC" in problems[0].reason and problems[0].index == 1


def test_a_truncated_shard_keeps_the_records_before_the_cut(tmp_path):
    shard = write_shard(tmp_path / "x.tfrecord", [good_record(f"v{i}", 0, [1]) for i in range(3)])
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 50])
    records, problems = split_results(list(read_features(shard)))
    assert [r.video_id for r in records] == ["v0", "v1"]
    assert len(problems) == 1 and "truncated" in problems[0].reason


def test_a_truncated_archive_is_a_clear_error_after_the_records_before_it(tmp_path):
    folder = tmp_path / "audioset_v1_embeddings"
    for shard in range(4):
        write_shard(folder / "unbal_train" / f"{shard:02d}.tfrecord",
                    [good_record(f"s{shard}v{i}", 0, [1]) for i in range(200)])
    archive = tar_folder(folder, tmp_path / "features.tar.gz")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
    seen = []
    with pytest.raises(FeatureSourceError, match="cut.tar.gz.*download"):
        for item in read_features(cut):
            seen.append(item)
    assert len(seen) >= 200 and all(isinstance(item, FeatureRecord) for item in seen)


def test_reading_streams_the_archive(tmp_path):
    """The first records arrive after reading a small part of the archive, not all of it."""
    folder = tmp_path / "audioset_v1_embeddings"
    for shard in range(3):
        write_shard(folder / "unbal_train" / f"{shard:02d}.tfrecord",
                    [good_record(f"s{shard}v{i}", 0, [1]) for i in range(1000)])
    archive = tar_folder(folder, tmp_path / "features.tar.gz")
    consumed = []
    records = read_features(archive, consumed.append)
    next(records)
    total = source_size(archive)
    assert total == os.path.getsize(archive)
    assert 0 < sum(consumed) < total / 2
    assert sum(1 for _ in records) == 2999
    assert sum(consumed) == total


def test_a_missing_source_or_one_without_shards_is_a_clear_error(tmp_path):
    with pytest.raises(FeatureSourceError, match="not found"):
        list(read_features(tmp_path / "nothing.tar.gz"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FeatureSourceError, match="no .tfrecord shards"):
        list(read_features(tmp_path / "empty"))
    not_a_tar = tmp_path / "selection.csv"
    not_a_tar.write_text("ytid,start\n")
    with pytest.raises(FeatureSourceError, match="selection.csv cannot be read"):
        list(read_features(not_a_tar))
