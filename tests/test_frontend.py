"""The log-mel front end against independent facts, not against itself."""

import numpy as np
import pytest

from embed.frontend import (
    ExampleChunker, example_count, example_start_seconds, frame_count, hertz_to_mel, log_mel_spectrogram,
    mel_matrix, periodic_hann, waveform_to_examples,
)
from embed.params import VGGISH

RATE = 16000


def test_parameters_are_vggish():
    assert (VGGISH.window_samples, VGGISH.hop_samples, VGGISH.fft_length) == (400, 160, 512)
    assert (VGGISH.example_samples, VGGISH.example_overlap_samples) == (15360, 240)
    assert VGGISH.example_seconds == pytest.approx(0.96)


def test_htk_mel_scale_known_points():
    assert hertz_to_mel(0.0) == 0.0
    assert hertz_to_mel(700.0) == pytest.approx(1127.0 * np.log(2.0))
    assert hertz_to_mel(1000.0) == pytest.approx(999.985, abs=0.01)  # HTK's 1000 Hz ~ 1000 mel


def test_periodic_hann_is_periodic():
    window = periodic_hann(400)
    assert window[0] == 0.0 and window[200] == pytest.approx(1.0)
    assert window[1] == pytest.approx(window[399])  # periodic: symmetric about N/2, no repeated end


def test_mel_matrix_shape_and_edges():
    weights = mel_matrix()
    assert weights.shape == (257, 64)
    assert np.all(weights[0] == 0.0)  # DC never contributes
    bin_hz = np.linspace(0, 8000, 257)
    assert np.all(weights[bin_hz < 125.0] == 0.0)
    assert np.all(weights[bin_hz > 7500.0] == 0.0)
    assert np.all(weights.max(axis=0) > 0.5)  # every band is reached by some FFT bin


@pytest.mark.parametrize("frequency", [250.0, 1000.0, 3000.0, 6000.0])
def test_pure_tone_lands_in_its_mel_band(frequency):
    t = np.arange(RATE) / RATE
    log_mel = log_mel_spectrogram(0.5 * np.sin(2 * np.pi * frequency * t))
    loudest_band = int(np.argmax(log_mel.mean(axis=0)))
    edges = np.linspace(hertz_to_mel(125.0), hertz_to_mel(7500.0), 66)
    centers_hz = 700.0 * (np.exp(edges[1:-1] / 1127.0) - 1.0)
    assert abs(loudest_band - int(np.argmin(np.abs(centers_hz - frequency)))) <= 1


def test_silence_is_log_offset():
    examples = waveform_to_examples(np.zeros(RATE * 2))
    assert examples.shape == (2, 96, 64)
    assert np.allclose(examples, np.log(0.01))


@pytest.mark.parametrize(
    "samples, frames, examples",
    [(0, 0, 0), (399, 0, 0), (400, 1, 0), (15599, 95, 0), (15600, 96, 1), (15360 * 2 + 239, 191, 1),
     (15360 * 2 + 240, 192, 2), (16000 * 10, 998, 10)],
)
def test_frame_and_example_counts_around_boundaries(samples, frames, examples):
    assert frame_count(samples) == frames
    assert example_count(samples) == examples
    assert waveform_to_examples(np.zeros(samples)).shape == (examples, 96, 64)


def test_example_start_times():
    assert np.allclose(example_start_seconds(3), [0.0, 0.96, 1.92])
    assert np.allclose(example_start_seconds(2, first_index=5), [4.8, 5.76])


@pytest.mark.parametrize("per_chunk", [1, 3, 7])
def test_chunked_examples_equal_whole_waveform(per_chunk):
    rng = np.random.default_rng(per_chunk)
    waveform = rng.uniform(-1, 1, 15360 * 11 + 5000)
    whole = waveform_to_examples(waveform)
    chunker = ExampleChunker(per_chunk)
    chunks, position = [], 0
    while position < len(waveform):
        size = int(rng.integers(1, 20000))
        chunks += chunker.push(waveform[position : position + size])
        position += size
    chunks += chunker.finish()
    assert [first for first, _ in chunks] == list(np.cumsum([0] + [len(waveform_to_examples(c)) for _, c in chunks])[:-1])
    pieces = np.concatenate([waveform_to_examples(chunk) for _, chunk in chunks])
    assert np.array_equal(pieces, whole)
