"""Streaming reader for AudioSet's released VGGish features (features.tar.gz or .tfrecord shards).

The release is ~2 million `tf.train.SequenceExample` records in TFRecord shards inside one large
tar.gz. Everything here streams: the archive is read front to back once (tarfile stream mode),
each shard record by record, so memory stays at one record however large the release.

TFRecord framing (per record): uint64 length, uint32 masked CRC-32C of the length bytes,
`length` bytes of data, uint32 masked CRC-32C of the data; all little-endian.
"""

from __future__ import annotations

import io
import os
import struct
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import google_crc32c
import numpy as np
from google.protobuf.message import DecodeError
from tensorflow.core.example import example_pb2

from homesound.errors import HomesoundError
from homesound.frames import VGGISH_FRAMES

EMBEDDING_BYTES = VGGISH_FRAMES.dimension  # the release is VGGish's uint8 features, one byte per value
MAX_FRAMES = 10  # a 10-second segment holds at most 10 VGGish frames (0.96 s each)
MAX_RECORD_BYTES = 1 << 24  # far above any real record; a larger length means a broken shard
TFRECORD_SUFFIX = ".tfrecord"
_HEADER = struct.Struct("<QI")
_CRC = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8


class FeatureSourceError(HomesoundError):
    """The feature archive or folder cannot be read on (missing, truncated, not a tar)."""


@dataclass(frozen=True)
class FeatureRecord:
    video_id: str
    start_seconds: float
    end_seconds: float
    labels: tuple[int, ...]  # indices into class_labels_indices.csv
    embedding: np.ndarray  # uint8 [T, 128], T <= 10
    shard: str
    index: int  # position of the record in its shard


@dataclass(frozen=True)
class MalformedRecord:
    shard: str
    index: int
    reason: str

    def __str__(self) -> str:
        return f"{self.shard} record {self.index}: {self.reason}"


@dataclass(frozen=True)
class UnwantedRecord:
    """A well-framed record the caller did not want; its embedding was not decoded."""

    video_id: str
    start_seconds: float
    shard: str
    index: int


def masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def read_features(
    source: str | os.PathLike,
    on_bytes: Callable[[int], None] | None = None,
    wanted: Callable[[str, float], bool] | None = None,
) -> Iterator[FeatureRecord | MalformedRecord | UnwantedRecord]:
    """Every record of a release, in order; malformed ones come back as MalformedRecord with a reason.

    `on_bytes(n)` is called as the source's bytes are consumed (for a progress bar with an ETA).
    `wanted(video_id, start_seconds)`: records it rejects come back as UnwantedRecord without their
    embedding being decoded, which is most of the work for a small selection from a large release.
    """
    shards_done, shard_name = 0, "none"
    try:
        for shard_name, stream in iter_shards(source, on_bytes):
            for index, data in enumerate(iter_tfrecord(stream, shard_name)):
                yield data if isinstance(data, MalformedRecord) else parse_record(data, shard_name, index, wanted)
            shards_done += 1
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise FeatureSourceError(
            f"{source} cannot be read past shard {shard_name} ({shards_done} shards read): {error}. "
            "If it is a truncated or damaged download, fetch it again "
            "(`homesound audioset download --what features` resumes); segments imported so far are kept."
        ) from error
    if shards_done == 0:
        raise FeatureSourceError(f"{source} holds no {TFRECORD_SUFFIX} shards; give the release's features.tar.gz "
                                 "or the folder it unpacks to")


def source_size(source: str | os.PathLike) -> int:
    """Bytes that read_features will consume from disk (the progress bar's total)."""
    path = Path(source)
    if path.is_dir():
        return sum(shard.stat().st_size for shard in _shard_files(path))
    return path.stat().st_size if path.exists() else 0


def iter_shards(
    source: str | os.PathLike, on_bytes: Callable[[int], None] | None = None
) -> Iterator[tuple[str, BinaryIO]]:
    """(name, stream) of each .tfrecord shard in a folder, a single shard file, or a (gzipped) tar."""
    path = Path(source)
    if path.is_dir():
        for shard in _shard_files(path):
            with shard.open("rb", buffering=0) as raw:
                yield str(shard.relative_to(path)), _buffered(raw, on_bytes)
    elif path.name.endswith(TFRECORD_SUFFIX) and path.is_file():
        with path.open("rb", buffering=0) as raw:
            yield path.name, _buffered(raw, on_bytes)
    elif path.is_file():
        yield from _tar_shards(path, on_bytes)
    else:
        raise FeatureSourceError(
            f"{path} not found; give features.tar.gz or a folder of .tfrecord shards "
            "(`homesound audioset download --what features` fetches the release)"
        )


def _shard_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob(f"*{TFRECORD_SUFFIX}") if p.is_file())


def _tar_shards(path: Path, on_bytes: Callable[[int], None] | None) -> Iterator[tuple[str, BinaryIO]]:
    with path.open("rb", buffering=0) as raw:
        with tarfile.open(fileobj=_buffered(raw, on_bytes), mode="r|*") as archive:
            for member in archive:
                if member.isfile() and member.name.endswith(TFRECORD_SUFFIX):
                    stream = archive.extractfile(member)
                    if stream is not None:
                        yield member.name, stream


def iter_tfrecord(stream: BinaryIO, shard: str) -> Iterator[bytes | MalformedRecord]:
    """Record payloads of one shard. A bad data CRC skips that record; a bad length ends the shard."""
    index = 0
    while True:
        header = stream.read(_HEADER.size)
        if not header:
            return
        if len(header) < _HEADER.size:
            yield MalformedRecord(shard, index, "shard ends inside a record header (truncated shard)")
            return
        length, length_crc = _HEADER.unpack(header)
        if masked_crc32c(header[:8]) != length_crc or length > MAX_RECORD_BYTES:
            yield MalformedRecord(shard, index, "corrupt record length (CRC mismatch); rest of the shard skipped")
            return
        data = stream.read(length)
        footer = stream.read(_CRC.size)
        if len(data) < length or len(footer) < _CRC.size:
            yield MalformedRecord(shard, index, "shard ends inside a record (truncated shard)")
            return
        if masked_crc32c(data) != _CRC.unpack(footer)[0]:
            yield MalformedRecord(shard, index, "corrupt record data (CRC mismatch)")
        else:
            yield data
        index += 1


def parse_record(
    data: bytes, shard: str, index: int, wanted: Callable[[str, float], bool] | None = None
) -> FeatureRecord | MalformedRecord | UnwantedRecord:
    """Check a serialized SequenceExample against the release's schema and decode it."""
    try:
        example = example_pb2.SequenceExample.FromString(data)
    except DecodeError as error:
        return MalformedRecord(shard, index, f"not a tf.train.SequenceExample ({error})")
    context = example.context.feature
    try:
        video_id = _single(context, "video_id", "bytes_list").decode("utf-8")
        start = float(_single(context, "start_time_seconds", "float_list"))
        end = float(_single(context, "end_time_seconds", "float_list"))
        labels = tuple(int(label) for label in _values(context, "labels", "int64_list"))
    except (_SchemaError, UnicodeDecodeError) as error:
        return MalformedRecord(shard, index, str(error))
    if not video_id:
        return MalformedRecord(shard, index, "empty video_id")
    if not labels:
        return MalformedRecord(shard, index, f"{video_id}: no labels")
    if wanted is not None and not wanted(video_id, start):
        return UnwantedRecord(video_id, start, shard, index)
    lists = example.feature_lists.feature_list
    if "audio_embedding" not in lists:
        return MalformedRecord(shard, index, f"{video_id}: missing feature list 'audio_embedding'")
    frames = lists["audio_embedding"].feature
    if not 0 < len(frames) <= MAX_FRAMES:
        return MalformedRecord(shard, index, f"{video_id}: {len(frames)} embedding frames, expected 1..{MAX_FRAMES}")
    chunks = []
    for number, frame in enumerate(frames):
        values = frame.bytes_list.value
        if len(values) != 1 or len(values[0]) != EMBEDDING_BYTES:
            size = len(values[0]) if len(values) == 1 else f"{len(values)} values"
            return MalformedRecord(
                shard, index, f"{video_id}: embedding frame {number} has {size} bytes, expected {EMBEDDING_BYTES}"
            )
        chunks.append(values[0])
    embedding = np.frombuffer(b"".join(chunks), dtype=np.uint8).reshape(len(chunks), EMBEDDING_BYTES)
    return FeatureRecord(video_id, start, end, labels, embedding, shard, index)


class _SchemaError(ValueError):
    pass


def _values(context, key: str, kind: str):
    if key not in context:
        raise _SchemaError(f"missing context feature '{key}'")
    feature = context[key]
    if feature.WhichOneof("kind") != kind:
        raise _SchemaError(f"context feature '{key}' is {feature.WhichOneof('kind')}, expected {kind}")
    return getattr(feature, kind).value


def _single(context, key: str, kind: str):
    values = _values(context, key, kind)
    if len(values) != 1:
        raise _SchemaError(f"context feature '{key}' has {len(values)} values, expected 1")
    return values[0]


class _CountingReader(io.RawIOBase):
    """Wraps a binary file and reports how many bytes were consumed from it."""

    def __init__(self, raw: BinaryIO, on_bytes: Callable[[int], None] | None):
        self._raw = raw
        self._on_bytes = on_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self._raw.readinto(buffer)
        if self._on_bytes is not None and count:
            self._on_bytes(count)
        return count


def _buffered(raw: BinaryIO, on_bytes: Callable[[int], None] | None) -> BinaryIO:
    return io.BufferedReader(_CountingReader(raw, on_bytes), buffer_size=1 << 20)
