"""Embeddings: three VGGish sources agree, block-wise equals whole-file, AudioSet post-processing."""

import http.server
import threading

import numpy as np
import pytest
import soundfile

from embed.frontend import waveform_to_examples
from embed.pipeline import embed_file, embed_waveform
from embed.postprocess import PCAParams, postprocess
from embed.random_weights import random_weights, write_checkpoint
from embed.resample import resample_whole
from embed.embedder import load_embedder
from homesound.errors import ModelSourceError
from homesound.frames import audioset_uint8_to_float


def reference_embeddings(embedder, samples, rate):
    """The reference's order of work: mono, whole-signal resampy, whole-signal log-mel, network."""
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    if rate != 16000:
        mono = resample_whole(mono, rate, 16000)
    return embedder.run_network(waveform_to_examples(mono))


def test_blockwise_file_equals_whole_file_reference(tmp_path, checkpoint_embedder):
    rng = np.random.default_rng(3)
    samples = rng.uniform(-0.3, 0.3, (44100 * 70 + 1234, 2))  # > one 64-example chunk, stereo
    path = tmp_path / "long.wav"
    soundfile.write(path, samples, 44100, subtype="FLOAT")
    result = embed_file(path, checkpoint_embedder)
    decoded = soundfile.read(path, dtype="float64")[0]
    reference = reference_embeddings(checkpoint_embedder, decoded, 44100)
    assert result.raw_embedding.shape == reference.shape == (72, 128)
    np.testing.assert_allclose(result.raw_embedding, reference, rtol=1e-4, atol=1e-4)
    assert np.abs(result.embedding.astype(int) - postprocess(reference, checkpoint_embedder.pca)).max() <= 1
    np.testing.assert_allclose(result.start_seconds, np.arange(72) * 0.96)
    assert result.audio["channels"] == 2 and result.audio["seconds"] == pytest.approx(len(samples) / 44100)


def test_three_sources_give_the_same_embeddings(vggish_files, checkpoint_embedder, shared_data):
    savedmodel = load_embedder(str(vggish_files.savedmodel), str(vggish_files.pca))
    clip = next((shared_data / "clips" / "crying").glob("*.ogg"))
    from_checkpoint = embed_file(clip, checkpoint_embedder)
    from_savedmodel = embed_file(clip, savedmodel)
    assert len(from_checkpoint) >= 4
    np.testing.assert_allclose(from_savedmodel.raw_embedding, from_checkpoint.raw_embedding, rtol=1e-4, atol=1e-3)
    assert np.abs(from_savedmodel.embedding.astype(int) - from_checkpoint.embedding).max() <= 1
    assert from_savedmodel.embedder_id != from_checkpoint.embedder_id  # provenance says which made them


def test_released_v1_checkpoint_format(tmp_path, vggish_files, checkpoint_embedder):
    single_file = tmp_path / "vggish_model.ckpt"
    write_checkpoint(random_weights(0), single_file, v1_format=True)
    assert single_file.is_file()
    embedder = load_embedder(str(single_file), str(vggish_files.pca))
    waveform = np.random.default_rng(0).uniform(-0.5, 0.5, 16000 * 3)
    np.testing.assert_array_equal(
        embed_waveform(waveform, 16000, embedder).raw_embedding,
        embed_waveform(waveform, 16000, checkpoint_embedder).raw_embedding,
    )


def test_hub_handle_downloads_once_into_tfhub_cache(tmp_path, monkeypatch, local_hub, vggish_files,
                                                    checkpoint_embedder):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "hub-cache"))
    handle = f"http://127.0.0.1:{local_hub.server_port}/google/vggish/1"
    waveform = np.random.default_rng(1).uniform(-0.5, 0.5, 16000 * 4)
    first = embed_waveform(waveform, 16000, load_embedder(handle, str(vggish_files.pca)))
    second = embed_waveform(waveform, 16000, load_embedder(handle, str(vggish_files.pca)))
    assert len(local_hub.requests) == 1  # the second load came from the cache
    assert any((tmp_path / "hub-cache").iterdir())
    np.testing.assert_array_equal(first.raw_embedding, second.raw_embedding)
    expected = embed_waveform(waveform, 16000, checkpoint_embedder).raw_embedding
    np.testing.assert_allclose(first.raw_embedding, expected, rtol=1e-4, atol=1e-3)
    assert first.provenance["source_kind"] == "hub" and first.provenance["source"] == handle


def test_unreachable_hub_is_one_clear_error(tmp_path, monkeypatch, local_hub, vggish_files):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "hub-cache"))
    with pytest.raises(ModelSourceError, match="cannot fetch VGGish"):
        load_embedder(f"http://127.0.0.1:{local_hub.server_port}/nothing/here/1", str(vggish_files.pca))


def test_pca_download_goes_to_cache(tmp_path, monkeypatch, vggish_files):
    from embed.vggish import download_pca

    class PcaServer(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if not self.path.endswith("vggish_pca_params.npz"):
                self.send_error(404)
                return
            body = vggish_files.pca.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PcaServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path))
        path = download_pca(f"http://127.0.0.1:{server.server_port}/audioset/vggish_pca_params.npz")
        assert open(path, "rb").read() == vggish_files.pca.read_bytes()
        with pytest.raises(ModelSourceError, match="cannot download.*404"):
            download_pca(f"http://127.0.0.1:{server.server_port}/gone.npz")
    finally:
        server.shutdown()
        server.server_close()


def test_postprocess_matches_audioset_definition():
    rng = np.random.default_rng(0)
    pca = PCAParams(np.linalg.qr(rng.standard_normal((128, 128)))[0], rng.standard_normal((128, 1)))
    raw = rng.standard_normal((5, 128)).astype(np.float32) * 3
    projected = np.array([pca.eigen_vectors @ (row[:, None] - pca.means) for row in raw])[:, :, 0]
    expected = np.floor((np.clip(projected, -2, 2) + 2) * 255 / 4).astype(np.uint8)  # truncation, not rounding
    np.testing.assert_array_equal(postprocess(raw, pca), expected)


def test_quantization_truncates_and_dequantizes_the_audioset_way():
    pca = PCAParams(np.eye(128), np.zeros((128, 1)))
    raw = np.full((1, 128), -2.0 + 4.0 * 100.7 / 255.0)  # 100.7 steps up: truncates to 100
    raw[0, 0], raw[0, 1] = 5.0, -5.0
    quantized = postprocess(raw, pca)
    assert quantized[0, 2] == 100 and quantized[0, 0] == 255 and quantized[0, 1] == 0
    assert audioset_uint8_to_float(quantized[0, :3]).tolist() == pytest.approx([2.0, -2.0, -2.0 + 4.0 * 100 / 255])


def test_short_silent_and_odd_inputs(checkpoint_embedder):
    assert len(embed_waveform(np.zeros(15599), 16000, checkpoint_embedder)) == 0
    silence = embed_waveform(np.zeros(16000 * 2), 16000, checkpoint_embedder)
    assert len(silence) == 2 and np.array_equal(silence.embedding[0], silence.embedding[1])
    broken = np.random.default_rng(0).uniform(-0.5, 0.5, 16000 * 2)
    broken[::100] = np.nan
    assert np.all(np.isfinite(embed_waveform(broken, 16000, checkpoint_embedder).raw_embedding))
    eight_channels = np.random.default_rng(1).uniform(-0.5, 0.5, (192000 * 2, 8))
    assert len(embed_waveform(eight_channels, 192000, checkpoint_embedder)) == 2
    assert len(embed_waveform(np.zeros(8000 * 2), 8000, checkpoint_embedder)) == 2


def test_bad_sources_are_clear(tmp_path, vggish_files):
    with pytest.raises(ModelSourceError, match="not found"):
        load_embedder(str(tmp_path / "nope.ckpt"), str(vggish_files.pca))
    with pytest.raises(ModelSourceError, match="saved_model.pb"):
        load_embedder(str(tmp_path), str(vggish_files.pca))
    bogus = tmp_path / "vggish_model.ckpt"
    bogus.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelSourceError, match="not a readable TensorFlow checkpoint"):
        load_embedder(str(bogus), str(vggish_files.pca))
    lonely = tmp_path / "lonely" / "savedmodel"
    lonely.mkdir(parents=True)
    (lonely / "saved_model.pb").write_bytes((vggish_files.savedmodel / "saved_model.pb").read_bytes())
    with pytest.raises(ModelSourceError, match="no PCA parameters"):
        load_embedder(str(lonely))
    bad_pca = tmp_path / "pca.npz"
    np.savez(bad_pca, something_else=np.zeros(3))
    with pytest.raises(ModelSourceError, match="pca_eigen_vectors"):
        load_embedder(str(vggish_files.checkpoint), str(bad_pca))
