"""AudioSet feature records and shards in the release's exact schema (TFRecord SequenceExamples in a
.tar.gz), for the audioset_fetch tests and the import benchmark; never used by the product."""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path
from typing import Iterable

import numpy as np


def embedding_for(video_id: str, frames: int = 10) -> np.ndarray:
    """A deterministic uint8 [frames, 128] embedding per video, so tests can check what was stored."""
    return np.random.default_rng(zlib.crc32(video_id.encode())).integers(0, 256, (frames, 128), dtype=np.uint8)


def sequence_example(
    video_id: str | None,
    start: float = 0.0,
    end: float = 10.0,
    labels: Iterable[int] | None = (0,),
    frames: list[bytes] | None = None,
    *,
    labels_as_floats: bool = False,
) -> bytes:
    """A serialized tf.train.SequenceExample like the release's; None leaves a field out."""
    import tensorflow as tf

    context = {}
    if video_id is not None:
        context["video_id"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[video_id.encode()]))
    context["start_time_seconds"] = tf.train.Feature(float_list=tf.train.FloatList(value=[start]))
    context["end_time_seconds"] = tf.train.Feature(float_list=tf.train.FloatList(value=[end]))
    if labels is not None:
        labels = list(labels)
        context["labels"] = (tf.train.Feature(float_list=tf.train.FloatList(value=[float(x) for x in labels]))
                             if labels_as_floats else tf.train.Feature(int64_list=tf.train.Int64List(value=labels)))
    feature_lists = {}
    if frames is not None:
        feature_lists["audio_embedding"] = tf.train.FeatureList(
            feature=[tf.train.Feature(bytes_list=tf.train.BytesList(value=[frame])) for frame in frames]
        )
    example = tf.train.SequenceExample(
        context=tf.train.Features(feature=context),
        feature_lists=tf.train.FeatureLists(feature_list=feature_lists),
    )
    return example.SerializeToString()


def good_record(video_id: str, start: float, labels: Iterable[int], frames: int = 10) -> bytes:
    embedding = embedding_for(video_id, frames)
    return sequence_example(video_id, start, start + 10.0, labels, [row.tobytes() for row in embedding])


def write_shard(path: Path, records: Iterable[bytes]) -> Path:
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return path


def tar_folder(folder: Path, archive: Path, arcname: str = "audioset_v1_embeddings") -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=arcname)
    return archive
