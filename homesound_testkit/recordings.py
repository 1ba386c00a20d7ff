"""Long synthetic recordings and archives of the shared real clips, for the embedding benchmarks (never
used by the product). Speed does not depend on what the audio says, so noise, tones and pauses stand
in for hours of home audio."""

from __future__ import annotations

import itertools
import shutil
from dataclasses import dataclass
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


@dataclass(frozen=True)
class BenchmarkArchive:
    files: int
    seconds: float  # of audio
    description: str  # one line for the benchmark's report


def build_archive(root: Path, clips: int, long_minutes: str) -> BenchmarkArchive:
    """`clips` real clips (chosen by label from clips.csv, the labels taking turns; seeded) in their label
    folders, plus one long synthetic recording per entry of the comma-separated `long_minutes`."""
    import pandas as pd
    import soundfile

    data = find_shared_data()
    if data is None or not (data / "clips.csv").is_file():
        raise SystemExit("../shared/data/clips.csv not found")
    table = pd.read_csv(data / "clips.csv").sample(frac=1.0, random_state=0)
    table = table.assign(turn=table.groupby("label").cumcount()).sort_values(["turn", "label"], kind="stable")
    seconds = 0.0
    for relative in table["path"].head(clips):
        source = data / relative
        target = root / "clips" / source.parent.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
        seconds += soundfile.info(str(source)).duration
    minutes = [float(m) for m in long_minutes.split(",") if m]
    (root / "long").mkdir(parents=True)
    for index, ((name, rate, channels), length) in enumerate(zip(itertools.cycle(LONG_FORMATS), minutes)):
        make_recording(root / "long" / f"{index}_{name}", length * 60, rate=rate, channels=channels)
        seconds += length * 60
    files = sum(1 for path in root.rglob("*") if path.is_file())
    return BenchmarkArchive(files, seconds, f"archive: {files} files, {seconds / 3600:.2f} h of audio (shared clips + "
                                            f"{len(minutes)} long synthetic recordings: {long_minutes} min)")
