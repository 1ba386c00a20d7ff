"""Household recordings for the active-learning tests: real clips back to back, event times known."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 44100
CLIP_SECONDS = 5


def household_recording(shared_data: Path, path: Path, scene: tuple[str, ...], offset: int = 0) -> list[tuple[str, float, float]]:
    """Write one 5 s real clip per label in scene (44.1 kHz clips of at least 5 s, in path order, the
    offset-th of each label on); return the (label, start, end) of each piece in the recording."""
    with open(shared_data / "clips.csv") as table:
        rows = sorted((r for r in csv.DictReader(table)
                       if r["samplerate"] == str(RATE) and float(r["seconds"]) >= CLIP_SECONDS),
                      key=lambda r: r["path"])
    used: dict[str, int] = {}
    pieces, spans = [], []
    for index, label in enumerate(scene):
        choice = [r for r in rows if r["label"] == label][offset + used.get(label, 0)]
        used[label] = used.get(label, 0) + 1
        samples, _ = sf.read(shared_data / choice["path"], dtype="float32", always_2d=True)
        pieces.append(samples[: CLIP_SECONDS * RATE, :1])
        spans.append((label, float(index * CLIP_SECONDS), float((index + 1) * CLIP_SECONDS)))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.concatenate(pieces), RATE)
    return spans
