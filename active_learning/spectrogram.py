"""A picture of each clip for the person labeling it: its spectrogram, the window to label, the model's guess.

Shown above the audio player in Label Studio, so a cry or a laugh can be seen as well as heard,
and the person sees what the model thought (its per-second probabilities and thresholds) before
correcting it. Written next to the clip, as a PNG the server serves like the clip.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from homesound.output_files import atomic_output

FFT_SECONDS = 0.032
HOP_SECONDS = 0.008
MAX_HZ = 8000.0
FLOOR_DB = -80.0
_COLORS = ("#2ca02c", "#d62728", "#1f77b4", "#ff7f0e", "#9467bd")  # as the labeling config colours the classes


def spectrogram_db(samples: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times [T], frequencies [F], power in dB [F, T]) of a mono signal: Hann-windowed STFT, up to MAX_HZ."""
    size = max(16, int(round(FFT_SECONDS * rate)))
    hop = max(1, int(round(HOP_SECONDS * rate)))
    samples = np.asarray(samples, dtype=np.float64)
    if len(samples) < size:
        samples = np.pad(samples, (0, size - len(samples)))
    count = 1 + (len(samples) - size) // hop
    frames = np.lib.stride_tricks.sliding_window_view(samples, size)[::hop][:count] * np.hanning(size)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    frequencies = np.fft.rfftfreq(size, 1.0 / rate)
    keep = frequencies <= MAX_HZ
    decibels = 10.0 * np.log10(power[:, keep].T + 1e-12)
    decibels = np.maximum(decibels, decibels.max() + FLOOR_DB)
    return (np.arange(count) * hop + size / 2) / rate, frequencies[keep], decibels


def write_clip_picture(clip: str | os.PathLike, out: str | os.PathLike, clip_start: float,
                       window: tuple[float, float], guess: Mapping[str, Any] | None) -> Path:
    """PNG of the clip (times in the clip's own seconds, as Label Studio plays it): spectrogram on top, the
    model's per-second probabilities per class with their thresholds below, the window to label shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples, rate = sf.read(str(clip), dtype="float32", always_2d=True)
    times, frequencies, decibels = spectrogram_db(samples.mean(axis=1), rate)
    duration = len(samples) / rate
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 3.6), sharex=True,
                                         gridspec_kw={"height_ratios": [3, 1.3]})
    top.pcolormesh(times, frequencies / 1000.0, decibels, shading="auto", cmap="magma")
    top.set_ylabel("kHz")
    for axis in (top, bottom):
        axis.axvspan(window[0] - clip_start, window[1] - clip_start, color="white" if axis is top else "grey",
                     alpha=0.12, linewidth=0)
        axis.axvline(window[0] - clip_start, color="grey", linewidth=0.8, linestyle="--")
        axis.axvline(window[1] - clip_start, color="grey", linewidth=0.8, linestyle="--")
    if guess:
        hop = float(guess["hop_seconds"])
        classes = list(guess["classes"])
        probabilities = np.asarray(guess["probabilities"], dtype=np.float64).reshape(-1, len(classes))
        starts = float(guess["start_seconds"]) + np.arange(len(probabilities)) * hop - clip_start
        for column, name in enumerate(classes):
            color = _COLORS[column % len(_COLORS)]
            bottom.step(starts, probabilities[:, column], where="post", color=color, label=name)
            threshold = (guess.get("thresholds") or {}).get(name)
            if threshold is not None:
                bottom.axhline(float(threshold), color=color, linewidth=0.7, linestyle=":")
        bottom.legend(loc="upper right", fontsize=7, ncol=len(classes))
    bottom.set_ylim(0.0, 1.0)
    bottom.set_ylabel("model")
    bottom.set_xlabel("seconds into the clip (dashed: the window to label; dotted: the model's thresholds)")
    bottom.set_xlim(0.0, duration)
    figure.tight_layout()
    out = Path(out)
    try:
        with atomic_output(out, what="spectrogram picture") as partial:
            figure.savefig(partial, dpi=80, format="png")
    finally:
        plt.close(figure)
    return out
