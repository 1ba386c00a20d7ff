"""The torch VGGish gives the TF network's embeddings: real clips of every shared format, every weights format.

Weights are the deterministic random ones of embed/random_weights.py in Google's real file formats
(TF1 checkpoint V2 and the released single-file V1, Hub-signature SavedModel).
"""

import numpy as np
import pandas as pd
import pytest
import soundfile

from embed.frontend import waveform_to_examples
from embed.pipeline import embed_file
from embed.random_weights import random_weights, write_checkpoint
from embed.resample import resample_whole
from embed.tflite import embedding_error
from embed.torch_network import TorchNetwork, google_weights, to_torch_layout
from embed.embedder import EmbedderConfig, load_embedder

RELATIVE_TOLERANCE = 1e-4  # the project's promise: raw embedding relative error, and uint8 within 1


def assert_equal_embeddings(reference_raw, raw, pca):
    assert raw.shape == reference_raw.shape and len(raw)
    error = embedding_error(reference_raw, raw, pca)
    assert error["max_relative_raw_error"] <= RELATIVE_TOLERANCE, error
    assert error["max_uint8_difference"] <= 1, error
    return error


@pytest.fixture(scope="module")
def tf_embedder(vggish_files):
    return load_embedder(config=EmbedderConfig(str(vggish_files.checkpoint), str(vggish_files.pca), backend="tf"))


@pytest.fixture(scope="module")
def torch_embedder(vggish_files):
    return load_embedder(config=EmbedderConfig(str(vggish_files.checkpoint), str(vggish_files.pca), backend="torch"))


def one_clip_per_format(shared_data):
    clips = pd.read_csv(shared_data / "clips.csv")
    chosen = clips[clips["seconds"] < 10].groupby("format").head(1)  # by the format column, never by position
    assert set(chosen["format"]) == set(clips["format"]) and len(chosen) >= 4
    return [(row.format, shared_data / row.path) for row in chosen.itertuples()]


@pytest.mark.slow
def test_torch_equals_tf_on_real_clips_of_every_format(shared_data, tf_embedder, torch_embedder):
    for file_format, path in one_clip_per_format(shared_data):
        expected, got = embed_file(path, tf_embedder), embed_file(path, torch_embedder)
        assert_equal_embeddings(expected.raw_embedding, got.raw_embedding, torch_embedder.pca)
        assert np.abs(got.embedding.astype(int) - expected.embedding).max() <= 1, file_format
        assert got.embedder_id == expected.embedder_id  # equal outputs: same id, whichever backend
        assert (got.provenance["backend"], expected.provenance["backend"]) == ("torch", "tf")


@pytest.mark.slow
def test_torch_pipeline_equals_google_reference_order_of_work(shared_data, tf_embedder, torch_embedder):
    """Google's order: decode whole, resample whole with resampy, log-mel whole, TF network in one call."""
    for file_format, path in one_clip_per_format(shared_data):
        samples, rate = soundfile.read(path, dtype="float64", always_2d=True)
        mono = samples.mean(axis=1)
        reference = tf_embedder.run_network(waveform_to_examples(resample_whole(mono, rate, 16000) if rate != 16000
                                                                 else mono))
        assert_equal_embeddings(reference, embed_file(path, torch_embedder).raw_embedding, torch_embedder.pca)


@pytest.mark.slow
def test_every_weights_format_converts_to_the_same_network(tmp_path, vggish_files, torch_embedder):
    v1 = tmp_path / "v1" / "vggish_model.ckpt"
    write_checkpoint(random_weights(0), v1, v1_format=True)
    assert v1.is_file()  # the single file Google released
    expected = google_weights(torch_embedder.network.module)
    for source in (v1, vggish_files.savedmodel):
        embedder = load_embedder(config=EmbedderConfig(str(source), str(vggish_files.pca), backend="torch"))
        converted = google_weights(embedder.network.module)
        for name, value in expected.items():
            np.testing.assert_array_equal(converted[name], value, err_msg=f"{source}: {name}")
        tf_id = load_embedder(config=EmbedderConfig(str(source), str(vggish_files.pca), backend="tf")).embedder_id
        assert embedder.embedder_id == tf_id
    for name, value in random_weights(0).items():
        np.testing.assert_array_equal(expected[name], value)  # Google's layout survives the round trip


@pytest.mark.slow
def test_torch_network_equals_tf_network_on_log_mel_examples(tf_embedder):
    examples = np.random.default_rng(5).normal(-1.5, 2.0, (100, 96, 64)).astype(np.float32)  # not a batch multiple
    network = TorchNetwork(to_torch_layout(random_weights(0)), batch_size=32)
    assert_equal_embeddings(tf_embedder.run_network(examples), network(examples), tf_embedder.pca)
    cl = TorchNetwork(to_torch_layout(random_weights(0)), batch_size=64, channels_last=True)
    np.testing.assert_allclose(cl(examples), network(examples), rtol=1e-4, atol=1e-4 * np.abs(network(examples)).max())


def test_lower_precision_is_opt_in_measured_and_has_its_own_id(vggish_files, torch_embedder, caplog):
    bf16 = load_embedder(config=EmbedderConfig(str(vggish_files.checkpoint), str(vggish_files.pca),
                                               backend="torch", precision="bf16"))
    assert bf16.embedder_id != torch_embedder.embedder_id and bf16.provenance["precision"] == "bf16"
    assert "precision" not in torch_embedder.provenance
    assert bf16.precision_deviation["max_relative_raw_error"] > RELATIVE_TOLERANCE  # why it is not the default
    assert "bf16, not float32" in caplog.text and "max_relative_raw_error" in caplog.text
