"""Workspace embeddings -> one Parquet file, one row per 0.96 s example, for analysis elsewhere.

Columns: path, content_sha256, embedder_id, start_seconds (float64), embedding (fixed-size list of
128 uint8, AudioSet's quantized format: float = uint8 / 255 * 4 - 2), then the recording's
duration_seconds, sample_rate, channels and format (repeated per row; Parquet's dictionary
encoding stores them once), and raw_embedding (fixed-size list of 128 float32) when asked for and
stored. The file's key-value metadata `homesound` holds each embedder's provenance as JSON.
Written by row groups (memory stays flat), to a temporary name renamed at the end.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from homesound import __version__
from homesound.errors import HomesoundError
from homesound.output_files import atomic_output
from homesound.workspace import Workspace, recordings
from homesound.workspace.core import utc_now

ROWS_PER_GROUP = 65536
EMBEDDING_SIZE = 128


@dataclass(frozen=True)
class ExportSummary:
    recordings: int
    rows: int
    embedders: tuple[str, ...]


def export_embeddings_parquet(workspace: Workspace, out: str | os.PathLike, *, embedder_id: str | None = None,
                              with_raw: bool = False) -> ExportSummary:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema(pa, with_raw)
    group: list[tuple] = []
    group_rows = total_rows = total_recordings = 0
    used: dict[str, dict | None] = {}
    with atomic_output(out, what="export") as partial, pq.ParquetWriter(partial, schema) as writer:
        for row, stored in recordings.iter_embedded_recordings(workspace, embedder_id, with_raw=with_raw):
            if with_raw and stored.raw_embedding is None and len(stored.embedding):
                raise HomesoundError(f"{row.path}: no raw embeddings stored (embedded without --keep-raw); "
                                     "export without --raw")
            used.setdefault(stored.embedder_id, recordings.embedder_provenance(workspace, stored.embedder_id))
            group.append((row, stored))
            group_rows += len(stored.embedding)
            total_rows += len(stored.embedding)
            total_recordings += 1
            if group_rows >= ROWS_PER_GROUP:
                writer.write_table(_table(pa, schema, group, with_raw))
                group, group_rows = [], 0
        if group:
            writer.write_table(_table(pa, schema, group, with_raw))
        writer.add_key_value_metadata({"homesound": json.dumps({
            "homesound_version": __version__, "exported_at": utc_now(), "workspace": str(workspace.path),
            "dequantize": "float = uint8 / 255 * 4 - 2", "embedders": used}, sort_keys=True)})
    return ExportSummary(total_recordings, total_rows, tuple(used))


def _schema(pa, with_raw: bool):
    fields = [
        pa.field("path", pa.dictionary(pa.int32(), pa.string())),
        pa.field("content_sha256", pa.dictionary(pa.int32(), pa.string())),
        pa.field("embedder_id", pa.dictionary(pa.int32(), pa.string())),
        pa.field("start_seconds", pa.float64()),
        pa.field("embedding", pa.list_(pa.uint8(), EMBEDDING_SIZE)),
        pa.field("duration_seconds", pa.float64()),
        pa.field("sample_rate", pa.int32()),
        pa.field("channels", pa.int32()),
        pa.field("format", pa.dictionary(pa.int32(), pa.string())),
    ]
    if with_raw:
        fields.append(pa.field("raw_embedding", pa.list_(pa.float32(), EMBEDDING_SIZE)))
    return pa.schema(fields)


def _table(pa, schema, items: list[tuple], with_raw: bool):
    lengths = np.array([len(stored.embedding) for _, stored in items])

    def per_row(values: list, arrow_type):
        """One value per recording, repeated for each of its rows."""
        return pa.array(np.repeat(np.array(values, dtype=object), lengths).tolist(), arrow_type)

    def matrices(arrays: list[np.ndarray], dtype, arrow_type):
        flat = np.concatenate([np.asarray(array, dtype).reshape(-1) for array in arrays])
        return pa.FixedSizeListArray.from_arrays(pa.array(flat, arrow_type), EMBEDDING_SIZE)

    columns = {
        "path": per_row([row.path for row, _ in items], pa.string()).dictionary_encode(),
        "content_sha256": per_row([row.content_sha256 for row, _ in items], pa.string()).dictionary_encode(),
        "embedder_id": per_row([stored.embedder_id for _, stored in items], pa.string()).dictionary_encode(),
        "start_seconds": pa.array(np.concatenate([stored.start_seconds for _, stored in items]), pa.float64()),
        "embedding": matrices([stored.embedding for _, stored in items], np.uint8, pa.uint8()),
        "duration_seconds": per_row([row.duration_seconds for row, _ in items], pa.float64()),
        "sample_rate": per_row([row.sample_rate for row, _ in items], pa.int32()),
        "channels": per_row([row.channels for row, _ in items], pa.int32()),
        "format": per_row([row.format for row, _ in items], pa.string()).dictionary_encode(),
    }
    if with_raw:
        empty = np.zeros((0, EMBEDDING_SIZE), np.float32)
        columns["raw_embedding"] = matrices(
            [empty if stored.raw_embedding is None else stored.raw_embedding for _, stored in items],
            np.float32, pa.float32())
    return pa.Table.from_pydict(columns, schema=schema)
