"""Frame facts (homesound.frames) and how the workspace stores embeddings and class scores by them."""

from __future__ import annotations

import numpy as np
import pytest

from homesound.frames import VGGISH_FRAMES, YAMNET_FRAMES, FrameSpec
from homesound.workspace import Workspace, recordings
from homesound.workspace.recordings import StoredEmbedding


def test_frame_spec_round_trips_and_dequantizes():
    for spec in (VGGISH_FRAMES, YAMNET_FRAMES):
        assert FrameSpec.from_dict(spec.to_dict()) == spec
        assert spec.hop_samples == 15360 and spec.window_samples == 15600
    assert VGGISH_FRAMES.dequantize(np.array([[0, 255]], np.uint8)).tolist() == [[-2.0, 2.0]]
    values = np.random.default_rng(0).random((3, 1024), dtype=np.float32)
    stored = YAMNET_FRAMES.encode(values)
    assert stored.dtype == np.float16
    np.testing.assert_allclose(YAMNET_FRAMES.dequantize(stored), values, atol=5e-4)
    np.testing.assert_array_equal(YAMNET_FRAMES.from_blob(YAMNET_FRAMES.to_blob(stored), 3), stored)
    with pytest.raises(ValueError):
        FrameSpec("x", 4, 1.0, 1.0, "int4")


def _save(workspace, sha, embedder_id, embedding, scores=None):
    recordings.save_recording(workspace, path=f"/audio/{sha}.wav", size=1, mtime_ns=1, content_sha256=sha,
                              status="embedded", duration_seconds=len(embedding) * 0.96,
                              embedding=StoredEmbedding(sha, embedder_id, embedding, None, 0.96, scores))


def test_workspace_keeps_frame_facts_class_names_and_scores(tmp_path):
    names = [f"class {index}" for index in range(YAMNET_FRAMES.class_count)]
    rng = np.random.default_rng(1)
    features = rng.random((4, 1024), dtype=np.float32)
    scores = rng.random((4, 521), dtype=np.float32)
    with Workspace(tmp_path / "w.db") as workspace:
        recordings.register_embedder(workspace, "yamnet-x", {"model": "yamnet"}, frames=YAMNET_FRAMES,
                                     class_names=names)
        recordings.register_embedder(workspace, "vggish-x", {"model": "vggish"})
        _save(workspace, "a" * 64, "yamnet-x", YAMNET_FRAMES.encode(features), scores)
        _save(workspace, "b" * 64, "vggish-x", np.full((2, 128), 7, np.uint8))
        with pytest.raises(ValueError, match="1024"):
            _save(workspace, "c" * 64, "yamnet-x", np.zeros((2, 128), np.uint8))
        with pytest.raises(ValueError, match="class scores"):
            _save(workspace, "d" * 64, "yamnet-x", YAMNET_FRAMES.encode(features), scores[:, :10])

    with Workspace(tmp_path / "w.db") as workspace:
        assert recordings.frame_spec(workspace, "yamnet-x") == YAMNET_FRAMES
        assert recordings.frame_spec(workspace, "vggish-x") == VGGISH_FRAMES
        assert recordings.class_names(workspace, "yamnet-x") == names
        assert recordings.class_names(workspace, "vggish-x") is None
        loaded = recordings.load_class_scores(workspace, "a" * 64, "yamnet-x")
        assert loaded.dtype == np.float32 and loaded.shape == (4, 521)
        np.testing.assert_allclose(loaded, scores, atol=2.5e-4)
        assert recordings.load_class_scores(workspace, "b" * 64, "vggish-x") is None
        stored = recordings.load_embedding(workspace, "a" * 64, "yamnet-x")
        assert stored.frames == YAMNET_FRAMES and stored.embedding.dtype == np.float16
        np.testing.assert_allclose(stored.features(), features, atol=5e-4)
        by_embedder = {s.embedder_id: s for _, s in recordings.iter_embedded_recordings(workspace)}
        assert by_embedder["vggish-x"].features()[0, 0] == pytest.approx(7 / 255 * 4 - 2)
        status = {e["embedder_id"]: e for e in recordings.status_section(workspace)["embedders"]}
        assert 0 < status["yamnet-x"]["stored_bytes"] <= 4 * (1024 + 521) * 2 + 64
        assert status["yamnet-x"]["model"] == "yamnet"
        with pytest.raises(Exception, match="no embedder"):
            recordings.frame_spec(workspace, "missing")


def test_embedders_registered_before_frame_facts_read_as_vggish(tmp_path):
    with Workspace(tmp_path / "w.db") as workspace:
        with workspace.transaction() as db:
            db.execute("INSERT INTO embedders(id, provenance_json, created_at) VALUES ('old', '{}', 'now')")
        assert recordings.frame_spec(workspace, "old") == VGGISH_FRAMES
