import numpy as np
import pytest

from embed.resample import StreamingResampler, resample_whole


def stream(resampler, signal, rng):
    pieces, position = [], 0
    while position < len(signal):
        size = int(rng.integers(1, 40000))
        pieces.append(resampler.push(signal[position : position + size]))
        position += size
    pieces.append(resampler.finish())
    return np.concatenate(pieces)


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000, 96000, 192000, 16000, 44056])
def test_blockwise_equals_resampy_on_whole_signal(rate):
    rng = np.random.default_rng(rate)
    signal = rng.uniform(-1, 1, int(rate * 2.5) + 17)
    reference = resample_whole(signal, rate, 16000)
    result = stream(StreamingResampler(rate, 16000), signal, rng)
    assert result.shape == reference.shape
    np.testing.assert_allclose(result, reference, rtol=0, atol=1e-9)


def test_sine_keeps_its_frequency_and_level():
    rate = 44100
    t = np.arange(rate * 2) / rate
    out = stream(StreamingResampler(rate, 16000), 0.5 * np.sin(2 * np.pi * 1000 * t), np.random.default_rng(0))
    spectrum = np.abs(np.fft.rfft(out[4000:20000]))
    assert np.argmax(spectrum) * 16000 / 16000 == pytest.approx(1000, abs=2)
    assert np.sqrt(np.mean(out[4000:-4000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_short_signal_and_empty_finish():
    resampler = StreamingResampler(44100, 16000)
    assert len(resampler.push(np.ones(10))) == 0
    assert len(resampler.finish()) == int(10 * 16000 / 44100)
