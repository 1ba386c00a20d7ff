"""VGGish's fixed parameters, as published with Google's reference implementation.

They are not options: changing any of them makes embeddings incompatible with AudioSet's
released features, which is the whole point of this stage.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VGGishParams:
    sample_rate: int = 16000
    stft_window_seconds: float = 0.025
    stft_hop_seconds: float = 0.010
    mel_bands: int = 64
    mel_min_hz: float = 125.0
    mel_max_hz: float = 7500.0
    log_offset: float = 0.01
    example_frames: int = 96  # 0.96 s of 10 ms frames, non-overlapping
    embedding_size: int = 128
    quantize_min: float = -2.0
    quantize_max: float = 2.0
    resample_filter: str = "kaiser_best"  # resampy's default, as the reference uses

    @property
    def window_samples(self) -> int:
        return int(round(self.sample_rate * self.stft_window_seconds))  # 400

    @property
    def hop_samples(self) -> int:
        return int(round(self.sample_rate * self.stft_hop_seconds))  # 160

    @property
    def fft_length(self) -> int:
        return 1 << (self.window_samples - 1).bit_length()  # next power of two: 512

    @property
    def example_samples(self) -> int:
        """Samples between the starts of consecutive examples (15360 = 0.96 s)."""
        return self.example_frames * self.hop_samples

    @property
    def example_overlap_samples(self) -> int:
        """Extra samples the last frame of an example reads past the next example's start (240)."""
        return self.window_samples - self.hop_samples

    @property
    def example_seconds(self) -> float:
        return self.example_samples / self.sample_rate


VGGISH = VGGishParams()
