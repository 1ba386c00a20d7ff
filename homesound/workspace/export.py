"""Workspace embeddings -> one Parquet file, one row per 0.96 s frame, for analysis elsewhere.

Columns: path, content_sha256, embedder_id, start_seconds (float64), embedding (fixed-size list in
the embedder's stored encoding: VGGish 128 uint8, AudioSet's quantized format, float = uint8 / 255
* 4 - 2; YAMNet 1024 float16), class_scores (YAMNet: fixed-size list of 521 float16, the columns
named in the metadata), then the recording's duration_seconds, sample_rate, channels and format
(repeated per row; Parquet's dictionary encoding stores them once), and raw_embedding (float32)
when asked for and stored. One embedding model per file (their vectors differ in size and
meaning). The file's key-value metadata `homesound` holds each embedder's provenance, frame facts
and class names as JSON. Written by row groups (memory stays flat), to a temporary name renamed
at the end.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from homesound import __version__
from homesound.errors import HomesoundError
from homesound.frames import UINT8_AUDIOSET, FrameSpec
from homesound.output_files import atomic_output
from homesound.workspace import Workspace, recordings
from homesound.workspace.core import utc_now

ROWS_PER_GROUP = 65536
DEQUANTIZE = {UINT8_AUDIOSET: "float = uint8 / 255 * 4 - 2", "float16": "float = float16 widened"}


@dataclass(frozen=True)
class EmbeddingsExport:
    workspace: str
    out: str  # the Parquet file to write
    embedder: str | None = None  # one embedder id, or a model name (vggish, yamnet) for all of its embedders
    with_raw: bool = False  # add raw_embedding (stored only for recordings embedded with --keep-raw)


@dataclass(frozen=True)
class ExportSummary:
    recordings: int
    rows: int
    embedders: tuple[str, ...]


def export_embeddings(config: EmbeddingsExport) -> ExportSummary:
    """The job behind `homesound export --out`: the workspace, opened read-only, to one Parquet file."""
    with Workspace(config.workspace, readonly=True) as workspace:
        workspace.require_current("recordings")
        return export_embeddings_parquet(workspace, config.out, embedder_id=config.embedder, with_raw=config.with_raw)


def export_embeddings_parquet(workspace: Workspace, out: str | os.PathLike, *, embedder_id: str | None = None,
                              with_raw: bool = False) -> ExportSummary:
    """`embedder_id`: one embedder's id, or a model name (vggish, yamnet) for all of its embedders."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    chosen = _chosen_embedders(workspace, embedder_id)
    spec = next(iter(chosen.values()), None)
    schema = _schema(pa, spec, with_raw)
    group: list[tuple] = []
    group_rows = total_rows = total_recordings = 0
    used: dict[str, dict] = {}
    with atomic_output(out, what="export") as partial, pq.ParquetWriter(partial, schema) as writer:
        for chosen_id in chosen:
            for row, stored in recordings.iter_embedded_recordings(workspace, chosen_id, with_raw=with_raw,
                                                                   with_class_scores=bool(spec.class_count)):
                if with_raw and stored.raw_embedding is None and len(stored.embedding):
                    raise HomesoundError(f"{row.path}: no raw embeddings stored (embedded without --keep-raw); "
                                         "export without --raw")
                used.setdefault(stored.embedder_id, _embedder_facts(workspace, stored.embedder_id))
                group.append((row, stored))
                group_rows += len(stored.embedding)
                total_rows += len(stored.embedding)
                total_recordings += 1
                if group_rows >= ROWS_PER_GROUP:
                    writer.write_table(_table(pa, schema, spec, group, with_raw))
                    group, group_rows = [], 0
        if group:
            writer.write_table(_table(pa, schema, spec, group, with_raw))
        writer.add_key_value_metadata({"homesound": json.dumps({
            "homesound_version": __version__, "exported_at": utc_now(), "workspace": str(workspace.path),
            "dequantize": DEQUANTIZE[spec.encoding] if spec else None, "embedders": used}, sort_keys=True)})
    return ExportSummary(total_recordings, total_rows, tuple(used))


def _chosen_embedders(workspace: Workspace, wanted: str | None) -> dict[str, FrameSpec]:
    """The embedders to export with their frame facts, all of one model (their vectors go in one column)."""
    ids = [row["embedder_id"] for row in workspace.query("SELECT DISTINCT embedder_id FROM embeddings ORDER BY 1")]
    specs = {embedder: recordings.frame_spec(workspace, embedder) for embedder in ids}
    chosen = {embedder: spec for embedder, spec in specs.items() if wanted in (None, embedder, spec.model)}
    models = sorted({spec.model for spec in chosen.values()})
    if len({(spec.dimension, spec.encoding, spec.class_count) for spec in chosen.values()}) > 1:
        raise HomesoundError(f"the workspace holds {' and '.join(models)} embeddings, which do not fit one "
                             f"column; export one model per file: --embedder {' or --embedder '.join(models)}")
    return chosen


def _embedder_facts(workspace: Workspace, embedder_id: str) -> dict:
    return {"provenance": recordings.embedder_provenance(workspace, embedder_id),
            "frames": recordings.frame_spec(workspace, embedder_id).to_dict(),
            "class_names": recordings.class_names(workspace, embedder_id)}


def _arrow_type(pa, dtype: np.dtype):
    return {np.dtype("u1"): pa.uint8(), np.dtype("<f2"): pa.float16(), np.dtype("<f4"): pa.float32()}[np.dtype(dtype)]


def _schema(pa, spec: FrameSpec | None, with_raw: bool):
    dimension = spec.dimension if spec else 0
    fields = [
        pa.field("path", pa.dictionary(pa.int32(), pa.string())),
        pa.field("content_sha256", pa.dictionary(pa.int32(), pa.string())),
        pa.field("embedder_id", pa.dictionary(pa.int32(), pa.string())),
        pa.field("start_seconds", pa.float64()),
        pa.field("embedding", pa.list_(_arrow_type(pa, spec.stored_dtype if spec else np.uint8), dimension)),
    ]
    if spec is not None and spec.class_count:
        fields.append(pa.field("class_scores", pa.list_(pa.float16(), spec.class_count)))
    fields += [
        pa.field("duration_seconds", pa.float64()),
        pa.field("sample_rate", pa.int32()),
        pa.field("channels", pa.int32()),
        pa.field("format", pa.dictionary(pa.int32(), pa.string())),
    ]
    if with_raw:
        fields.append(pa.field("raw_embedding", pa.list_(pa.float32(), dimension)))
    return pa.schema(fields)


def _table(pa, schema, spec: FrameSpec, items: list[tuple], with_raw: bool):
    lengths = np.array([len(stored.embedding) for _, stored in items])

    def per_row(values: list, arrow_type):
        """One value per recording, repeated for each of its rows."""
        return pa.array(np.repeat(np.array(values, dtype=object), lengths).tolist(), arrow_type)

    def matrices(arrays: list[np.ndarray], dtype, width: int):
        flat = np.concatenate([np.asarray(array, dtype).reshape(-1) for array in arrays])
        return pa.FixedSizeListArray.from_arrays(pa.array(flat, _arrow_type(pa, dtype)), width)

    columns = {
        "path": per_row([row.path for row, _ in items], pa.string()).dictionary_encode(),
        "content_sha256": per_row([row.content_sha256 for row, _ in items], pa.string()).dictionary_encode(),
        "embedder_id": per_row([stored.embedder_id for _, stored in items], pa.string()).dictionary_encode(),
        "start_seconds": pa.array(np.concatenate([stored.start_seconds for _, stored in items]), pa.float64()),
        "embedding": matrices([stored.embedding for _, stored in items], spec.stored_dtype, spec.dimension),
        "duration_seconds": per_row([row.duration_seconds for row, _ in items], pa.float64()),
        "sample_rate": per_row([row.sample_rate for row, _ in items], pa.int32()),
        "channels": per_row([row.channels for row, _ in items], pa.int32()),
        "format": per_row([row.format for row, _ in items], pa.string()).dictionary_encode(),
    }
    if spec.class_count:
        columns["class_scores"] = matrices([stored.class_scores for _, stored in items], np.dtype("<f2"),
                                           spec.class_count)
    if with_raw:
        empty = np.zeros((0, spec.dimension), np.float32)
        columns["raw_embedding"] = matrices(
            [empty if stored.raw_embedding is None else stored.raw_embedding for _, stored in items],
            np.dtype("<f4"), spec.dimension)
    return pa.Table.from_pydict(columns, schema=schema)
