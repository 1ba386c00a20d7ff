"""Long synthetic recordings and archives of the shared real clips, for the embedding benchmarks (never
used by the product). Speed does not depend on what the audio says, so noise, tones and pauses stand
in for hours of home audio."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np

from homesound_testkit.shared_data import find_shared_data

LONG_FORMATS = (("long_44k_stereo.wav", 44100, 2), ("long_48k_mono.flac", 48000, 1), ("long_16k_mono.wav", 16000, 1))


def make_recording(path: Path, seconds: float, rate: int = 44100, channels: int = 2) -> None:
    """Noise with tones and pauses, written block by block (a 3-hour file never sits in memory)."""
    import soundfile

    rng = np.random.default_rng(0)
    with soundfile.SoundFile(path, "w", rate, channels, subtype="PCM_16") as out:
        for start in range(0, int(seconds * rate), rate * 60):
            n = min(rate * 60, int(seconds * rate) - start)
            t = (start + np.arange(n)) / rate
            signal = 0.1 * rng.standard_normal((n, channels)) + 0.3 * np.sin(2 * np.pi * 440 * t)[:, None]
            out.write(signal * (np.sin(2 * np.pi * t / 7.0)[:, None] > 0))


def shared_clips() -> Path:
    data = find_shared_data()
    if data is None or not (data / "clips").is_dir():
        raise SystemExit("../shared/data/clips not found")
    return data / "clips"


def build_archive(root: Path, clips: int, long_minutes: list[float]) -> float:
    """Copies of the real clips in their label folders, plus long recordings; returns seconds of audio."""
    import soundfile

    seconds = 0.0
    sources = sorted(shared_clips().rglob("*.*"))[:clips]
    for source in sources:
        target = root / "clips" / source.parent.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
        seconds += soundfile.info(str(source)).duration
    (root / "long").mkdir(parents=True)
    for index, ((name, rate, channels), minutes) in enumerate(zip(itertools.cycle(LONG_FORMATS), long_minutes)):
        path = root / "long" / f"{index}_{name}"
        make_recording(path, minutes * 60, rate=rate, channels=channels)
        seconds += minutes * 60
    return seconds
