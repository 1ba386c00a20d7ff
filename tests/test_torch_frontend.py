"""The torch front end (for the GPU path) equals the numpy one within float32 rounding."""

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch

from embed.frontend import waveform_to_examples
from embed.pipeline import waveform_chunks
from embed.random_weights import random_pca, random_weights
from embed.postprocess import PCAParams
from embed.resample import StreamingResampler
from embed.tflite import embedding_error
from embed.torch_frontend import TorchLogMel, TorchResampler
from embed.torch_network import TorchNetwork, to_torch_layout


@pytest.mark.parametrize("rate", [44100, 48000, 22050, 8000, 16000, 32000])
def test_resampler_equals_the_numpy_one(rate):
    samples = np.random.default_rng(rate).uniform(-0.9, 0.9, rate * 3 + 137)
    numpy = StreamingResampler(rate, 16000)
    expected = np.concatenate([numpy.push(samples[:rate]), numpy.push(samples[rate:]), numpy.finish()])
    got = TorchResampler(rate)(torch.from_numpy(samples)).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=2e-6)
    double = TorchResampler(rate, dtype=torch.float64)(torch.from_numpy(samples)).numpy()
    np.testing.assert_allclose(double, expected, atol=1e-12)  # same weights, only the summation order differs


def test_log_mel_equals_the_numpy_one():
    waveform = np.random.default_rng(0).uniform(-0.5, 0.5, 16000 * 5 + 999)
    waveform[:4000] = 0.0  # silence: the log offset dominates
    expected = waveform_to_examples(waveform)
    got = TorchLogMel()(torch.from_numpy(waveform)).numpy()
    assert got.shape == expected.shape == (5, 96, 64) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-5)
    assert TorchLogMel()(torch.zeros(15599)).shape == (0, 96, 64)


def test_torch_front_end_and_network_equal_the_numpy_path_on_a_real_clip(shared_data):
    clips = pd.read_csv(shared_data / "clips.csv")
    row = clips[(clips["format"] == "OGG/VORBIS") & (clips["samplerate"] == 44100)].iloc[0]
    samples, rate = soundfile.read(shared_data / row["path"], dtype="float64", always_2d=True)
    mono = samples.mean(axis=1)
    network = TorchNetwork(to_torch_layout(random_weights(0)))
    expected_examples = np.concatenate([waveform_to_examples(c) for c in waveform_chunks([mono], rate, 64)])
    got_examples = TorchLogMel()(TorchResampler(rate)(torch.from_numpy(mono)))
    pca = PCAParams(**{"eigen_vectors": random_pca(0)["pca_eigen_vectors"], "means": random_pca(0)["pca_means"]})
    error = embedding_error(network(expected_examples), network(got_examples), pca)
    assert error["examples"] >= 4
    assert error["max_relative_raw_error"] <= 1e-4 and error["max_uint8_difference"] <= 1, error
