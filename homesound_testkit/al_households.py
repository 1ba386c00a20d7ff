"""Long household recordings with known event times, assembled from the real clips over the background beds.

For benchmarks/al_simulation.py; never used by the product. A recording is a background bed (the
two ~1-minute household beds in ../shared/data, cut into random stretches and joined with short
cross-fades) with clips laid over it at known times: laughter and crying (the events) and household noises,
speech and room tone (hard negatives), each at a random level above the bed. Every 0.96 s frame
then has an exact label (positive when at least half a hop of it overlaps an event's sound).

Splits: clips are assigned to pool or test by `source` (the recording they were cut from) within
each (label, origin), so no recording feeds both sides. Event origins with a single source (the 88
pieces of one baby's laughter, DCASE's isolated laughs) are left out: whole on one side, they
would make the pool's laughter one baby and the test's other people, and the simulation would
measure that shift instead of the labeling policy. Single-source *negatives* (speech, room tone,
the DCASE office sounds) are split by time; the two beds are split by time too (the first 60 % of
each plays under the pool, the rest under test): they are the home, not labeled data.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

RATE = 16000
HOP_SECONDS = 0.96
WINDOW_SECONDS = 0.975
EVENTS = ("laughter", "crying")
NEGATIVES = ("noise", "speech", "silence")
BACKGROUND = "background"
TEST_FRACTION = 0.35
BED_POOL_FRACTION = 0.6
BED_RMS = 0.01  # the bed's level (-40 dBFS): a quiet room
SNR_DB = (0.0, 20.0)  # clips lie this far above the bed (uniform)
TRIM_DB = 40.0  # clip edges more than this below the clip's loudest 20 ms are silence, not event
CROSSFADE_SECONDS = 0.05


@dataclass(frozen=True)
class HouseholdRecipe:
    """What one set of recordings is made of: its clips (by path), event rate, length and seed."""

    name: str
    event_clips: tuple[str, ...]
    negative_clips: tuple[str, ...]
    bed_side: str  # "pool" or "test": which time part of the beds plays under it
    event_share: float  # of the seconds
    negative_share: float
    recording_seconds: float
    seed: int


@dataclass(frozen=True)
class Household:
    """One assembled recording: its YAMNet frames, class scores and every frame's true label."""

    key: str
    embedding: np.ndarray  # float16 [T, 1024]
    class_scores: np.ndarray  # float16 [T, 521]
    truth: np.ndarray  # float32 [T, len(EVENTS)] in {0, 1}
    source_of_frame: np.ndarray  # [T] index into sources ("" = bed only): what was heard


def read_clips(data: Path) -> list[dict]:
    with open(data / "clips.csv") as table:
        return list(csv.DictReader(table))


def split_by_source(rows: list[dict], seed: int = 0) -> dict[str, list[dict]]:
    """{"pool": clips, "test": clips}, source-disjoint within each (label, origin); see the module doc."""
    rng = np.random.default_rng(seed)
    sides: dict[str, list[dict]] = {"pool": [], "test": []}
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        if row["label"] != BACKGROUND:
            groups[(row["label"], row["origin"])].append(row)
    for (label, _), clips in sorted(groups.items()):
        clips = sorted(clips, key=lambda r: (r["source"], r["path"]))
        sources = sorted({r["source"] for r in clips})
        if len(sources) > 1:
            held_out, count = set(), 0
            for source in rng.permutation(sources):
                if count >= TEST_FRACTION * len(clips) or len(held_out) == len(sources) - 1:
                    break
                held_out.add(source)
                count += sum(r["source"] == source for r in clips)
            sides["pool"] += [r for r in clips if r["source"] not in held_out]
            sides["test"] += [r for r in clips if r["source"] in held_out]
        elif label not in EVENTS:  # one source of a negative: split by time (its pieces in order)
            cut = round(len(clips) * (1 - TEST_FRACTION))
            sides["pool"] += clips[:cut]
            sides["test"] += clips[cut:]
    return sides


def recipes(sides: dict[str, list[dict]], event_share: float, events_per_class: dict[str, int],
            recording_seconds: float, negative_share: float, seed: int) -> list[HouseholdRecipe]:
    """Pool and test recipes at one event rate: the first events_per_class[side] clips of each event
    class (in a seeded order) and enough negatives for negative_share of the seconds."""
    rng = np.random.default_rng(seed)
    made = []
    for side in ("pool", "test"):
        clips = sides[side]
        chosen: list[str] = []
        for label in EVENTS:
            paths = sorted(r["path"] for r in clips if r["label"] == label)
            chosen += [paths[i] for i in rng.permutation(len(paths))[: events_per_class[side]]]
        negatives = sorted(r["path"] for r in clips if r["label"] in NEGATIVES)
        made.append(HouseholdRecipe(
            name=f"{side}-{event_share:.2f}", event_clips=tuple(chosen),
            negative_clips=tuple(negatives[i] for i in rng.permutation(len(negatives))), bed_side=side,
            event_share=event_share, negative_share=negative_share, recording_seconds=recording_seconds,
            seed=seed + (0 if side == "pool" else 1),
        ))
    return made


# ---- audio -----------------------------------------------------------------------------------------

def load_clip(data: Path, path: str) -> np.ndarray:
    """A clip at 16 kHz mono, with silent edges trimmed (ESC-50 pads its clips with digital silence)."""
    from embed.audio_io import read_mono
    from embed.resample import resample_whole

    samples, rate = read_mono(data / path)
    if rate != RATE:
        samples = resample_whole(samples, rate, RATE)
    return trim_silence(np.asarray(samples, dtype=np.float32))


def trim_silence(samples: np.ndarray) -> np.ndarray:
    step = RATE // 50
    frames = len(samples) // step
    if frames < 2:
        return samples
    loudness = np.sqrt((samples[: frames * step].reshape(frames, step).astype(np.float64) ** 2).mean(axis=1) + 1e-20)
    loud = np.flatnonzero(20 * np.log10(loudness / loudness.max()) > -TRIM_DB)
    return samples[loud[0] * step: (loud[-1] + 1) * step]


def bed_parts(data: Path, rows: list[dict], side: str) -> list[np.ndarray]:
    """The time part of each background bed that plays under this side, at BED_RMS."""
    from embed.audio_io import read_mono

    parts = []
    for row in sorted((r for r in rows if r["label"] == BACKGROUND), key=lambda r: r["path"]):
        samples, rate = read_mono(data / row["path"])
        assert rate == RATE, f"{row['path']}: beds are 16 kHz"
        cut = int(len(samples) * BED_POOL_FRACTION)
        part = np.asarray(samples[:cut] if side == "pool" else samples[cut:], dtype=np.float32)
        parts.append(part * np.float32(BED_RMS / np.sqrt((part.astype(np.float64) ** 2).mean())))
    return parts


def bed_track(parts: list[np.ndarray], samples: int, rng: np.random.Generator) -> np.ndarray:
    """Random 5-20 s stretches of the beds joined with cross-fades, `samples` long."""
    fade = int(CROSSFADE_SECONDS * RATE)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    track = np.zeros(0, dtype=np.float32)
    while len(track) < samples:
        part = parts[rng.integers(len(parts))]
        length = min(len(part), int(rng.uniform(5, 20) * RATE))
        start = int(rng.integers(0, len(part) - length + 1))
        piece = part[start:start + length].copy()
        if len(track) >= fade:
            piece[:fade] = piece[:fade] * ramp + track[-fade:] * ramp[::-1]
            track = track[:-fade]
        track = np.concatenate([track, piece])
    return track[:samples]


def assemble(recipe: HouseholdRecipe, data: Path, rows: list[dict], clip_audio: dict[str, np.ndarray]):
    """Waveforms of the recipe's recordings and, per recording, the (label, start, end, path) it holds.

    Events are dealt out so each recording holds about event_share of its seconds in events, and
    negatives fill negative_share; the rest is bed. Items go in a random order with random gaps.
    """
    rng = np.random.default_rng(recipe.seed)
    label_of = {r["path"]: r["label"] for r in rows}
    event_seconds = sum(len(clip_audio[p]) for p in recipe.event_clips) / RATE
    total_seconds = event_seconds / recipe.event_share
    count = max(1, round(total_seconds / recipe.recording_seconds))
    events = [recipe.event_clips[i] for i in rng.permutation(len(recipe.event_clips))]
    negatives = list(recipe.negative_clips)
    parts = bed_parts(data, rows, recipe.bed_side)
    recordings = []
    next_negative = 0
    for number in range(count):
        mine = events[number::count]
        seconds = sum(len(clip_audio[p]) for p in mine) / RATE / recipe.event_share
        items, negative_seconds = list(mine), 0.0
        while negative_seconds < recipe.negative_share * seconds and negatives:
            path = negatives[next_negative % len(negatives)]
            next_negative += 1
            items.append(path)
            negative_seconds += len(clip_audio[path]) / RATE
        items = [items[i] for i in rng.permutation(len(items))]
        length = int(seconds * RATE)
        busy = sum(len(clip_audio[p]) for p in items)
        if busy > length:
            length = busy
        cuts = np.sort(rng.integers(0, length - busy + 1, size=len(items)))
        track = bed_track(parts, length, rng)
        bed_rms = float(np.sqrt((track.astype(np.float64) ** 2).mean()))
        placed, position, used = [], 0, 0
        for path, cut in zip(items, cuts):
            start = int(cut) + used
            clip = clip_audio[path]
            clip_rms = float(np.sqrt((clip.astype(np.float64) ** 2).mean())) or 1.0
            gain = bed_rms * 10 ** (rng.uniform(*SNR_DB) / 20) / clip_rms
            track[start:start + len(clip)] += clip * np.float32(gain)
            placed.append((label_of[path], start / RATE, (start + len(clip)) / RATE, path))
            used += len(clip)
            position = start + len(clip)
        assert position <= len(track)
        recordings.append((f"{recipe.name}-{number:02d}", np.clip(track, -1.0, 1.0), placed))
    return recordings


def frame_truth(placed, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """[T, EVENTS] labels (1 where half a hop or more of the frame is an event) and [T] the clip heard."""
    truth = np.zeros((frames, len(EVENTS)), dtype=np.float32)
    heard = np.full(frames, "", dtype=object)
    starts = np.arange(frames) * HOP_SECONDS
    for label, start, end, path in placed:
        overlap = np.clip(np.minimum(starts + WINDOW_SECONDS, end) - np.maximum(starts, start), 0, None)
        inside = overlap >= HOP_SECONDS / 2
        heard[inside] = path
        if label in EVENTS:
            truth[inside, EVENTS.index(label)] = 1.0
    return truth, heard.astype(str)


# ---- YAMNet ----------------------------------------------------------------------------------------

def build_households(recipe: HouseholdRecipe, data: Path, model: Path, cache_dir: Path,
                     progress=None) -> list[Household]:
    """The recipe's recordings, embedded with homesound's YAMNet (the .tflite) once and cached under
    cache_dir by recipe."""
    digest = hashlib.sha256(json.dumps(
        {"recipe": asdict(recipe), "model": hashlib.sha256(model.read_bytes()).hexdigest(),
         "constants": [RATE, HOP_SECONDS, WINDOW_SECONDS, BED_RMS, SNR_DB, TRIM_DB, BED_POOL_FRACTION, 2]},
        sort_keys=True).encode()).hexdigest()[:16]
    cache = cache_dir / f"{recipe.name}-{digest}.npz"
    if cache.is_file():
        stored = np.load(cache)
        keys = [str(k) for k in stored["keys"]]
        return [Household(key, stored[f"{key}/embedding"], stored[f"{key}/class_scores"], stored[f"{key}/truth"],
                          stored[f"{key}/heard"]) for key in keys]
    from embed.embedder import EmbedderConfig, load_embedder
    from embed.pipeline import embed_waveform

    rows = read_clips(data)
    clip_audio = {path: load_clip(data, path) for path in (*recipe.event_clips, *recipe.negative_clips)}
    yamnet = load_embedder(str(model), config=EmbedderConfig(model="yamnet", threads=1))
    households = []
    for key, waveform, placed in assemble(recipe, data, rows, clip_audio):
        embedded = embed_waveform(waveform, RATE, yamnet)
        truth, heard = frame_truth(placed, len(embedded))
        households.append(Household(key, embedded.raw_embedding.astype(np.float16),
                                    embedded.class_scores.astype(np.float16), truth, heard))
        if progress:
            progress(len(embedded) * HOP_SECONDS)
    cache_dir.mkdir(parents=True, exist_ok=True)
    arrays = {"keys": np.array([h.key for h in households])}
    for h in households:
        arrays.update({f"{h.key}/embedding": h.embedding, f"{h.key}/class_scores": h.class_scores,
                       f"{h.key}/truth": h.truth, f"{h.key}/heard": h.source_of_frame})
    partial = cache.with_name(cache.name + ".partial.npz")
    np.savez(partial, **arrays)
    partial.replace(cache)
    return households
