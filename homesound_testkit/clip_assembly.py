"""Long recordings with exact ground truth, assembled from labeled clips, for the tests and benchmarks
(never used by the product).

Each clip is decoded, mixed to mono, resampled to 16 kHz and cut to whole 0.96 s embedding frames,
then the clips are laid end to end. Every VGGish frame of the result lies inside one clip (its
25 ms analysis window reaches 15 ms into the next), so per-second labels are exact and one
embedding pass over the whole gives each clip's embeddings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from homesound.frames import SAMPLE_RATE, VGGISH_FRAMES

FRAME_SAMPLES = VGGISH_FRAMES.hop_samples  # one 0.96 s frame of the grid VGGish and YAMNet share
HOP_SECONDS = FRAME_SAMPLES / SAMPLE_RATE


@dataclass(frozen=True)
class PlacedClip:
    path: str
    label: str
    first_frame: int
    frames: int

    @property
    def start(self) -> float:
        return self.first_frame * HOP_SECONDS

    @property
    def end(self) -> float:
        return (self.first_frame + self.frames) * HOP_SECONDS


def frame_aligned(path: str | Path) -> np.ndarray:
    """A clip as 16 kHz mono float64, cut to a whole number of embedding frames."""
    from embed.audio_io import read_mono
    from embed.resample import resample_whole

    samples, rate = read_mono(path)
    if rate != SAMPLE_RATE:
        samples = resample_whole(samples, rate, SAMPLE_RATE)
    return samples[: len(samples) // FRAME_SAMPLES * FRAME_SAMPLES]


def assemble(clips: Iterable[tuple[str | Path, str]]) -> tuple[np.ndarray, list[PlacedClip]]:
    """(path, label) pairs -> one 16 kHz waveform and where each clip landed, in frames."""
    pieces, placed, frame = [], [], 0
    for path, label in clips:
        samples = frame_aligned(path)
        frames = len(samples) // FRAME_SAMPLES
        pieces.append(samples)
        placed.append(PlacedClip(str(path), label, frame, frames))
        frame += frames
    return (np.concatenate(pieces) if pieces else np.zeros(0)), placed


def frame_labels(placed: Iterable[PlacedClip], classes: tuple[str, ...], frames: int) -> np.ndarray:
    """[frames, C] 0/1: which class each frame of the assembled recording belongs to."""
    labels = np.zeros((frames, len(classes)), dtype=np.float32)
    for clip in placed:
        if clip.label in classes:
            labels[clip.first_frame: min(frames, clip.first_frame + clip.frames), classes.index(clip.label)] = 1.0
    return labels
