"""VGGish's front end in PyTorch (resampling and log-mel), so a GPU running the network is not fed by one core.

The same weights and steps as the numpy front end: resampy's kaiser_best weights tabulated per
output phase (embed/resample.py's own table) applied as matrix products, 25 ms periodic Hann
frames every 10 ms, 512-point |rFFT|, the same HTK mel matrix, log(mel + 0.01), non-overlapping
96x64 examples. It works on whole signals (a GPU has the memory; blocks of the product bound it).
Float32 by default, with IEEE float32 matrix products (no TF32): equal to the float64 numpy front
end within float32 rounding (tests/test_torch_frontend.py).
"""

from __future__ import annotations

import numpy as np
import torch

from embed.frontend import mel_matrix, periodic_hann
from embed.params import VGGISH
from embed.resample import StreamingResampler
from embed.torch_network import float32_precision

GROUPS_PER_PRODUCT = 16384  # resampling groups per matrix product (~70 s of 44.1 kHz audio)
FRAMES_PER_PRODUCT = 96 * 512  # log-mel frames per FFT batch (~8 minutes)


class TorchResampler:
    """A whole mono signal at `rate_in` -> resampy's whole-signal kaiser_best result at `rate_out`."""

    def __init__(self, rate_in: int, rate_out: int = VGGISH.sample_rate, *, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, filter_table: tuple[np.ndarray, int] | None = None):
        """filter_table: resampy's (half window, precision) when resampy is not installed (as in embed/resample.py)."""
        self.rate_in, self.rate_out = int(rate_in), int(rate_out)
        self.device = torch.device(device)
        self.dtype = dtype
        reference = StreamingResampler(rate_in, rate_out, VGGISH.resample_filter, filter_table)
        self.passthrough = reference.passthrough
        if self.passthrough:
            return
        if reference.polyphase is None:
            raise ValueError(f"{rate_in} -> {rate_out} Hz has too many phases for a table; use embed.resample")
        phases, self.period_in, self.period_out, self.lowest = reference.polyphase
        self.width = phases.shape[1]
        self.phases = torch.tensor(phases.T, dtype=dtype).to(self.device)  # [width, period_out]

    def output_length(self, samples: int) -> int:
        return samples if self.passthrough else int(samples * float(self.rate_out) / float(self.rate_in))

    def __call__(self, samples: torch.Tensor) -> torch.Tensor:
        samples = samples.to(self.device, self.dtype)
        if self.passthrough:
            return samples
        total = self.output_length(len(samples))
        groups = -(-total // self.period_out)
        if groups == 0:
            return samples.new_zeros(0)
        left = -self.lowest  # zeros before the signal, as resampy sees them
        needed = (groups - 1) * self.period_in + self.width
        padded = torch.nn.functional.pad(samples, (left, max(0, needed - left - len(samples))))
        outputs = []
        with float32_precision(self.device, "float32"):
            for first in range(0, groups, GROUPS_PER_PRODUCT):
                count = min(GROUPS_PER_PRODUCT, groups - first)
                start = first * self.period_in
                rows = padded[start:start + (count - 1) * self.period_in + self.width].unfold(0, self.width,
                                                                                            self.period_in)
                outputs.append((rows @ self.phases).reshape(-1))
        return torch.cat(outputs)[:total]


class TorchLogMel:
    """A 16 kHz mono signal -> [K, 96, 64] float32 log-mel examples (a trailing partial example dropped)."""

    def __init__(self, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        self.device = torch.device(device)
        self.dtype = dtype
        self.window = torch.tensor(periodic_hann(VGGISH.window_samples), dtype=dtype).to(self.device)
        self.mel = torch.tensor(mel_matrix(), dtype=dtype).to(self.device)

    def __call__(self, waveform: torch.Tensor) -> torch.Tensor:
        waveform = waveform.to(self.device, self.dtype)
        frames = 0 if len(waveform) < VGGISH.window_samples else 1 + (
            len(waveform) - VGGISH.window_samples) // VGGISH.hop_samples
        count = frames // VGGISH.example_frames
        if count == 0:
            return torch.zeros((0, VGGISH.example_frames, VGGISH.mel_bands), device=self.device)
        windows = waveform.unfold(0, VGGISH.window_samples, VGGISH.hop_samples)[:count * VGGISH.example_frames]
        parts = []
        with float32_precision(self.device, "float32"):
            for first in range(0, len(windows), FRAMES_PER_PRODUCT):
                block = windows[first:first + FRAMES_PER_PRODUCT] * self.window
                magnitude = torch.fft.rfft(block, n=VGGISH.fft_length).abs()
                parts.append(torch.log(magnitude @ self.mel + VGGISH.log_offset))
        log_mel = torch.cat(parts)
        return log_mel.reshape(count, VGGISH.example_frames, VGGISH.mel_bands).to(torch.float32)
