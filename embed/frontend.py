"""VGGish's log-mel front end as pure functions on arrays (float64, like the reference).

waveform (16 kHz mono) -> STFT magnitude (25 ms periodic Hann, 10 ms hop, 512-point FFT)
-> 64 HTK mel bands 125-7500 Hz -> log(mel + 0.01) -> non-overlapping [96, 64] examples.
"""

from __future__ import annotations

import functools

import numpy as np

from embed.params import VGGISH, VGGishParams


def hertz_to_mel(frequencies_hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale."""
    return 1127.0 * np.log1p(np.asarray(frequencies_hz, dtype=np.float64) / 700.0)


@functools.lru_cache(maxsize=4)
def mel_matrix(params: VGGishParams = VGGISH) -> np.ndarray:
    """[fft bins, mel bands] triangular weights; the DC bin contributes nothing, as in HTK."""
    fft_bins = params.fft_length // 2 + 1
    bin_mels = hertz_to_mel(np.linspace(0.0, params.sample_rate / 2.0, fft_bins))
    edges = np.linspace(hertz_to_mel(params.mel_min_hz), hertz_to_mel(params.mel_max_hz), params.mel_bands + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mels[:, None] - lower) / (center - lower)
    falling = (upper - bin_mels[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    weights.setflags(write=False)
    return weights


@functools.lru_cache(maxsize=4)
def periodic_hann(length: int) -> np.ndarray:
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi / length * np.arange(length))
    window.setflags(write=False)
    return window


def frame_count(samples: int, params: VGGishParams = VGGISH) -> int:
    if samples < params.window_samples:
        return 0
    return 1 + (samples - params.window_samples) // params.hop_samples


def example_count(samples: int, params: VGGishParams = VGGISH) -> int:
    """How many whole 0.96 s examples a waveform of this many 16 kHz samples gives."""
    return frame_count(samples, params) // params.example_frames


def example_start_seconds(count: int, first_index: int = 0, params: VGGishParams = VGGISH) -> np.ndarray:
    return (first_index + np.arange(count, dtype=np.float64)) * params.example_seconds


def log_mel_spectrogram(waveform: np.ndarray, params: VGGishParams = VGGISH) -> np.ndarray:
    """[frames, 64] log-mel of a 16 kHz mono waveform."""
    waveform = np.asarray(waveform, dtype=np.float64)
    frames = frame_count(len(waveform), params)
    if frames == 0:
        return np.zeros((0, params.mel_bands), dtype=np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(waveform, params.window_samples)[:: params.hop_samples]
    magnitude = np.abs(np.fft.rfft(windows[:frames] * periodic_hann(params.window_samples), params.fft_length))
    return np.log(magnitude @ mel_matrix(params) + params.log_offset)


def waveform_to_examples(waveform: np.ndarray, params: VGGishParams = VGGISH) -> np.ndarray:
    """[N, 96, 64] float32 examples of a 16 kHz mono waveform; a trailing partial example is dropped."""
    log_mel = log_mel_spectrogram(waveform, params)
    count = len(log_mel) // params.example_frames
    examples = log_mel[: count * params.example_frames].reshape(count, params.example_frames, params.mel_bands)
    return examples.astype(np.float32)


class ExampleChunker:
    """Cuts a 16 kHz stream into waveform chunks that each hold whole examples.

    A chunk of K examples is K * 15360 + 240 samples: its examples are exactly those a
    whole-file pass computes at the same positions, so block-wise equals whole-file.
    """

    def __init__(self, examples_per_chunk: int, params: VGGishParams = VGGISH):
        if examples_per_chunk < 1:
            raise ValueError("examples_per_chunk must be >= 1")
        self.params = params
        self.examples_per_chunk = examples_per_chunk
        self._pending: list[np.ndarray] = []
        self._pending_samples = 0
        self.next_example = 0  # index of the first example of the next chunk

    def push(self, samples: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Add samples; return the (first example index, waveform) chunks now complete."""
        if len(samples):
            self._pending.append(np.asarray(samples, dtype=np.float64))
            self._pending_samples += len(samples)
        return self._drain(self.examples_per_chunk)

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """The remaining whole examples; a trailing partial example is dropped."""
        chunks = self._drain(self.examples_per_chunk)
        chunks += self._drain(1)
        self._pending, self._pending_samples = [], 0
        return chunks

    def _drain(self, minimum_examples: int) -> list[tuple[int, np.ndarray]]:
        hop, overlap = self.params.example_samples, self.params.example_overlap_samples
        available = max(0, (self._pending_samples - overlap) // hop)
        if available < minimum_examples:
            return []
        count = available - available % minimum_examples if minimum_examples > 1 else available
        buffer = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        chunks = []
        for start in range(0, count, self.examples_per_chunk):
            size = min(self.examples_per_chunk, count - start)
            chunks.append((self.next_example + start, buffer[start * hop : (start + size) * hop + overlap]))
        rest = buffer[count * hop :]
        self._pending, self._pending_samples = [rest], len(rest)
        self.next_example += count
        return chunks
