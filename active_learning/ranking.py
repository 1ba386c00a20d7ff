"""Which windows of unlabeled audio a person should label next: the pure ranking core.

The detector gives per-second (one embedding frame, 0.96 s) probabilities; a recording is cut into
fixed windows, each window gets an informativeness score from its seconds, and the picks are
spread over the embedding space (k-center greedy) so fifty picks are not fifty seconds of the
same cry. Optionally a share of the picks goes to the most confident detections, where a
confident mistake would otherwise never be seen.

When events are rare (crying and laughter are a few minutes of a day), plain uncertainty spends
the picks on doubtful background: three options keep the labels on the events.
- `per_class`: the picks are shared equally between the classes, each class's share ranked by
  that class's own uncertainty, so a rare class is not drowned by a common one.
- `confident_share`: picks for each class's most confident windows, in turn: the positives a
  person confirms teach the model what the event sounds like in this home.
- `prefilter_share`: only windows among the most likely ones for some class under a prior
  (the zero-shot detector's scores, else the model's own) are candidates at all.

The core works on arrays only (probabilities, MC-dropout samples, embeddings), not on models or
the workspace, so every strategy can be checked on numbers whose answer is known.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from active_learning.config import RankConfig
from homesound.frames import VGGISH_FRAMES

HOP_SECONDS = VGGISH_FRAMES.hop_seconds  # the frame grid all embedders share; callers pass each recording's
_EPSILON = 1e-12


@dataclass(frozen=True)
class RecordingPredictions:
    """What the detector said about one recording, and which spans of it are already taken."""

    recording: str  # content sha256
    path: str  # for people: where the audio is
    classes: tuple[str, ...]
    probabilities: np.ndarray  # [T, C] per-second probabilities
    samples: np.ndarray | None = None  # [S, T, C] MC-dropout samples, needed by BALD
    embedding: np.ndarray | None = None  # [T, D] float, for diversity
    excluded: tuple[tuple[float, float], ...] = ()  # (start, end) seconds already labeled or queued
    hop_seconds: float = HOP_SECONDS
    prior: np.ndarray | None = None  # [T, C] probabilities of a prior (zero-shot) model, for the prefilter

    def __post_init__(self) -> None:
        frames, classes = self.probabilities.shape
        if classes != len(self.classes):
            raise ValueError(f"{self.path}: probabilities have {classes} columns for {len(self.classes)} classes")
        if self.samples is not None and self.samples.shape[1:] != self.probabilities.shape:
            raise ValueError(f"{self.path}: MC samples must be [S, {frames}, {classes}], got {self.samples.shape}")
        if self.embedding is not None and len(self.embedding) != frames:
            raise ValueError(f"{self.path}: {len(self.embedding)} embedding frames for {frames} probability frames")
        if self.prior is not None and self.prior.shape != self.probabilities.shape:
            raise ValueError(f"{self.path}: prior must be [{frames}, {classes}], got {self.prior.shape}")


@dataclass(frozen=True)
class Candidate:
    """One window that could be shown to a person, summarised enough to pick and explain it."""

    recording: str
    path: str
    start_seconds: float
    end_seconds: float
    score: float  # informativeness under the strategy; higher is more worth labeling
    peak_seconds: float  # where in the recording the window is most uncertain
    peak_probabilities: tuple[float, ...]  # per class, at the peak second
    max_probabilities: tuple[float, ...]  # per class, over the window
    embedding: np.ndarray | None = field(default=None, compare=False, repr=False)  # mean over the window
    class_scores: tuple[float, ...] = ()  # per class informativeness (for per_class selection)
    class_peak_seconds: tuple[float, ...] = ()  # per class, where the window is most uncertain about it
    prior_max: tuple[float, ...] = ()  # per class, the prior's highest probability in the window


@dataclass(frozen=True)
class Pick:
    rank: int
    recording: str
    path: str
    start_seconds: float
    end_seconds: float
    strategy: str  # the strategy, or "confident" for the reserve share
    score: float
    reason: str
    max_probabilities: tuple[float, ...]


# ---- per-second informativeness: higher means a label here would teach the model more ------------

def binary_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Entropy in bits of independent yes/no decisions."""
    # float64: in float32, 1 - 1e-12 is 1.0 and a sure output would give 0 * log(0) = NaN.
    p = np.clip(np.asarray(probabilities, dtype=np.float64), _EPSILON, 1.0 - _EPSILON)
    return -(p * np.log2(p) + (1.0 - p) * np.log2(1.0 - p))


def least_confidence(probabilities: np.ndarray) -> np.ndarray:
    """[..., C] -> [...]: how far the least sure class decision is from certain (0 .. 0.5)."""
    return np.max(1.0 - np.maximum(probabilities, 1.0 - probabilities), axis=-1)


def margin_uncertainty(probabilities: np.ndarray) -> np.ndarray:
    """[..., C] -> [...]: 1 - gap between the two likeliest readings of the second.

    The readings are "nothing" and each class, so a second that is either laughter or crying
    (both high) counts as uncertain even though each class alone looks sure.
    """
    nothing = np.prod(1.0 - probabilities, axis=-1, keepdims=True)
    readings = np.concatenate([nothing, probabilities], axis=-1)
    readings = readings / np.maximum(readings.sum(axis=-1, keepdims=True), _EPSILON)
    top_two = -np.partition(-readings, 1, axis=-1)[..., :2]
    return 1.0 - (top_two[..., 0] - top_two[..., 1])


def entropy_uncertainty(probabilities: np.ndarray) -> np.ndarray:
    """[..., C] -> [...]: total entropy of the class decisions, in bits."""
    return binary_entropy(probabilities).sum(axis=-1)


def bald(samples: np.ndarray) -> np.ndarray:
    """[S, T, C] MC-dropout samples -> [T]: mutual information between label and weights, in bits.

    High where the dropout masks disagree (the model does not know), low where every mask is
    equally unsure (the audio itself is ambiguous) - the part labels cannot fix.
    """
    predictive = binary_entropy(samples.mean(axis=0))
    expected = binary_entropy(samples).mean(axis=0)
    return np.maximum(predictive - expected, 0.0).sum(axis=-1)


def bald_per_class(samples: np.ndarray) -> np.ndarray:
    """[S, T, C] -> [T, C]: BALD of each class decision (bald() is their sum)."""
    predictive = binary_entropy(samples.mean(axis=0))
    expected = binary_entropy(samples).mean(axis=0)
    return np.maximum(predictive - expected, 0.0)


FRAME_SCORES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "least-confidence": least_confidence,
    "margin": margin_uncertainty,
    "entropy": entropy_uncertainty,
}
# Each class decision on its own, [T, C] (margin's yes/no gap is 1 - |2p - 1|, as least-confidence doubled).
CLASS_FRAME_SCORES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "least-confidence": lambda p: 1.0 - np.maximum(p, 1.0 - p),
    "margin": lambda p: 1.0 - np.abs(2.0 * p - 1.0),
    "entropy": binary_entropy,
}
SCORE_UNITS = {"least-confidence": "", "margin": "", "entropy": " bits", "bald": " bits", "random": ""}


def frame_scores(predictions: RecordingPredictions, strategy: str) -> np.ndarray:
    """[T] informativeness of each second; random scores are drawn per window, not here."""
    if strategy == "bald":
        return bald(_mc_samples(predictions))
    if strategy == "random":
        return np.zeros(len(predictions.probabilities))
    return FRAME_SCORES[strategy](predictions.probabilities)


def class_frame_scores(predictions: RecordingPredictions, strategy: str) -> np.ndarray:
    """[T, C] informativeness of each second's decision about each class."""
    if strategy == "bald":
        return bald_per_class(_mc_samples(predictions))
    if strategy == "random":
        return np.zeros(predictions.probabilities.shape)
    return CLASS_FRAME_SCORES[strategy](np.asarray(predictions.probabilities, dtype=np.float64))


def _mc_samples(predictions: RecordingPredictions) -> np.ndarray:
    if predictions.samples is None:
        raise ValueError(f"{predictions.path}: BALD needs MC-dropout samples of the detector")
    return predictions.samples


# ---- windows ---------------------------------------------------------------------------------------

def window_bounds(duration_seconds: float, config: RankConfig) -> list[tuple[float, float]]:
    """Back-to-back windows from the start; a short tail counts if long enough."""
    bounds = []
    start = 0.0
    while start < duration_seconds - 1e-9:
        end = min(start + config.window_seconds, duration_seconds)
        if end - start >= config.min_window_fraction * config.window_seconds - 1e-9:
            bounds.append((round(start, 6), round(end, 6)))
        start += config.window_seconds
    return bounds


def overlaps(start: float, end: float, spans: Iterable[tuple[float, float]]) -> bool:
    return any(start < span_end and span_start < end for span_start, span_end in spans)


def candidate_windows(predictions: RecordingPredictions, config: RankConfig) -> list[Candidate]:
    """Every window of the recording not overlapping a labeled or queued span, with its score."""
    frames = len(predictions.probabilities)
    hop = predictions.hop_seconds
    scores = frame_scores(predictions, config.strategy)
    per_class = class_frame_scores(predictions, config.strategy) if config.per_class else None
    prior = predictions.prior if predictions.prior is not None else predictions.probabilities
    frame_starts = np.arange(frames) * hop
    candidates = []
    for start, end in window_bounds(frames * hop, config):
        if overlaps(start, end, predictions.excluded):
            continue
        inside = np.flatnonzero((frame_starts >= start - 1e-9) & (frame_starts < end - 1e-9))
        if len(inside) == 0:
            continue
        window_scores = scores[inside]
        peak = int(inside[np.argmax(window_scores)])
        score = float(_aggregate(window_scores, config.aggregate))
        class_scores = () if per_class is None else tuple(
            float(value) for value in _aggregate(per_class[inside], config.aggregate))
        class_peaks = () if per_class is None else tuple(
            float(inside[index] * hop) for index in np.argmax(per_class[inside], axis=0))
        embedding = None
        if predictions.embedding is not None:
            embedding = np.asarray(predictions.embedding[inside], dtype=np.float64).mean(axis=0)
        candidates.append(Candidate(
            recording=predictions.recording,
            path=predictions.path,
            start_seconds=start,
            end_seconds=end,
            score=score,
            peak_seconds=float(peak * hop),
            peak_probabilities=tuple(float(p) for p in predictions.probabilities[peak]),
            max_probabilities=tuple(float(p) for p in predictions.probabilities[inside].max(axis=0)),
            embedding=embedding,
            class_scores=class_scores,
            class_peak_seconds=class_peaks,
            prior_max=tuple(float(p) for p in prior[inside].max(axis=0)),
        ))
    return candidates


def _aggregate(scores: np.ndarray, how: str) -> np.ndarray:
    """A window's score from its seconds' ([n] or [n, C]): the highest, or the mean."""
    return scores.max(axis=0) if how == "max" else scores.mean(axis=0)


# ---- selection -------------------------------------------------------------------------------------

def k_center_greedy(
    points: np.ndarray, count: int, centers: np.ndarray | None = None, first: int = 0
) -> tuple[list[int], list[float]]:
    """Pick `count` rows of points, each the farthest from everything picked or given before.

    Returns the picked row indices in order and each one's distance to its nearest earlier
    center (inf for the first when no centers were given).
    """
    count = min(count, len(points))
    if count == 0:
        return [], []
    nearest = np.full(len(points), np.inf)
    if centers is not None and len(centers):
        for center in centers:
            nearest = np.minimum(nearest, np.linalg.norm(points - center, axis=1))
    picked: list[int] = []
    distances: list[float] = []
    for _ in range(count):
        index = first if not picked and not np.isfinite(nearest).any() else int(np.argmax(nearest))
        picked.append(index)
        distances.append(float(nearest[index]))
        nearest = np.minimum(nearest, np.linalg.norm(points - points[index], axis=1))
        nearest[index] = -np.inf
    return picked, distances


def select(
    candidates: Sequence[Candidate],
    classes: Sequence[str],
    config: RankConfig,
    labeled_embeddings: np.ndarray | None = None,
) -> list[Pick]:
    """The `top` windows to label, each with the reason it was chosen."""
    rng = np.random.default_rng(config.seed)
    candidates = prefiltered(candidates, len(classes), config)
    confident_count = min(round(config.top * config.confident_share), config.top)
    confident = _most_confident(candidates, len(classes), config, confident_count)
    taken = {id(candidate) for candidate, _ in confident}
    remaining = [candidate for candidate in candidates if id(candidate) not in taken]
    count = config.top - len(confident)

    if config.strategy == "random":
        order = rng.permutation(len(remaining))[:count]
        draws = rng.random(len(order))
        chosen = [(remaining[i], "random pick (the baseline)", float(u)) for i, u in zip(order, draws)]
    elif config.per_class:
        chosen = _per_class(remaining, classes, config, count, labeled_embeddings)
    else:
        chosen = _most_informative(remaining, classes, config, count, labeled_embeddings)

    note = _prefilter_note(config, classes)
    picks = [(candidate, config.strategy, score, reason + note) for candidate, reason, score in chosen]
    picks += [
        (candidate, "confident", candidate.max_probabilities[column],
         _confident_reason(candidate, classes, column) + note)
        for candidate, column in confident
    ]
    return [
        Pick(
            rank=rank, recording=candidate.recording, path=candidate.path,
            start_seconds=candidate.start_seconds, end_seconds=candidate.end_seconds,
            strategy=strategy, score=score, reason=reason, max_probabilities=candidate.max_probabilities,
        )
        for rank, (candidate, strategy, score, reason) in enumerate(picks, start=1)
    ]


def prefiltered(candidates: Sequence[Candidate], class_count: int, config: RankConfig) -> list[Candidate]:
    """The candidates among the prefilter_share most likely windows of some class under the prior
    (at least diversity_pool x top of them, so a small pool is never exhausted)."""
    if config.prefilter_share >= 1.0 or not candidates:
        return list(candidates)
    per_class = max(math.ceil(config.prefilter_share * len(candidates)),
                    math.ceil(config.diversity_pool * config.top / max(class_count, 1)))
    kept: set[int] = set()
    for column in range(class_count):
        ordered = sorted(candidates, key=lambda c: (-c.prior_max[column], c.recording, c.start_seconds))
        kept.update(id(candidate) for candidate in ordered[:per_class])
    return [candidate for candidate in candidates if id(candidate) in kept]


def taken_embeddings(predictions: RecordingPredictions) -> list[np.ndarray]:
    """Mean embedding of each span already labeled or queued: k-center picks away from them."""
    if predictions.embedding is None:
        return []
    frame_starts = np.arange(len(predictions.embedding)) * predictions.hop_seconds
    means = []
    for start, end in predictions.excluded:
        inside = (frame_starts >= start - 1e-9) & (frame_starts < end - 1e-9)
        if inside.any():
            means.append(np.asarray(predictions.embedding[inside], dtype=np.float64).mean(axis=0))
    return means


def rank_windows(
    recordings: Iterable[RecordingPredictions],
    config: RankConfig,
    labeled_embeddings: np.ndarray | None = None,
) -> list[Pick]:
    """Candidates of all recordings, then the selection; the one call the CLI and benchmark make.

    Recordings are read once, one at a time (only window summaries are kept), so hours of audio
    fit in memory.
    """
    candidates: list[Candidate] = []
    centers = [] if labeled_embeddings is None else list(labeled_embeddings)
    classes: tuple[str, ...] | None = None
    for predictions in recordings:
        if classes is not None and predictions.classes != classes:
            raise ValueError(f"{predictions.path}: classes {predictions.classes} differ from {classes}")
        classes = predictions.classes
        candidates.extend(candidate_windows(predictions, config))
        if config.diversity:
            centers.extend(taken_embeddings(predictions))
    return select(candidates, classes or (), config, np.stack(centers) if centers else None)


def _most_confident(
    candidates: Sequence[Candidate], class_count: int, config: RankConfig, count: int
) -> list[tuple[Candidate, int]]:
    """Each class's surest windows (at or above confident_threshold), the classes taking turns."""
    if count == 0 or class_count == 0:
        return []
    queues = [
        sorted((c for c in candidates if c.max_probabilities[column] >= config.confident_threshold),
               key=lambda c, column=column: (-c.max_probabilities[column], c.recording, c.start_seconds))
        for column in range(class_count)
    ]
    chosen: list[tuple[Candidate, int]] = []
    taken: set[int] = set()
    positions = [0] * class_count
    while len(chosen) < count:
        progressed = False
        for column, ordered in enumerate(queues):
            while positions[column] < len(ordered) and id(ordered[positions[column]]) in taken:
                positions[column] += 1
            if positions[column] < len(ordered) and len(chosen) < count:
                candidate = ordered[positions[column]]
                chosen.append((candidate, column))
                taken.add(id(candidate))
                progressed = True
        if not progressed:
            break
    return chosen


def _per_class(
    candidates: Sequence[Candidate],
    classes: Sequence[str],
    config: RankConfig,
    count: int,
    labeled_embeddings: np.ndarray | None,
) -> list[tuple[Candidate, str, float]]:
    """count picks shared equally between the classes, each class ranked by its own uncertainty;
    with diversity, each class's picks also keep away from the other classes' picks."""
    chosen: list[tuple[Candidate, str, float]] = []
    taken: set[int] = set()
    centers = [] if labeled_embeddings is None else list(labeled_embeddings)
    for column in range(len(classes)):
        share = count // len(classes) + (1 if column < count % len(classes) else 0)
        remaining = [c for c in candidates if id(c) not in taken]
        picked = _most_informative(remaining, classes, config, share, np.stack(centers) if centers else None, column)
        chosen += picked
        taken.update(id(candidate) for candidate, _, _ in picked)
        centers += [candidate.embedding for candidate, _, _ in picked if candidate.embedding is not None]
    chosen.sort(key=lambda item: (-item[2], item[0].recording, item[0].start_seconds))
    return chosen


def _most_informative(
    candidates: Sequence[Candidate],
    classes: Sequence[str],
    config: RankConfig,
    count: int,
    labeled_embeddings: np.ndarray | None,
    column: int | None = None,
) -> list[tuple[Candidate, str, float]]:
    """The count most informative windows (about class `column`, or all classes), spread by k-center."""
    if count <= 0:
        return []

    def score(candidate: Candidate) -> float:
        return candidate.score if column is None else candidate.class_scores[column]

    by_score = sorted(candidates, key=lambda c: (-score(c), c.recording, c.start_seconds))
    with_embeddings = all(c.embedding is not None for c in by_score)
    if not config.diversity or not with_embeddings or len(by_score) <= count:
        return [(c, _uncertainty_reason(c, classes, config, column), score(c)) for c in by_score[:count]]

    pool = by_score[: max(count, math.ceil(config.diversity_pool * count))]
    points = np.stack([c.embedding for c in pool])
    picked, distances = k_center_greedy(points, count, labeled_embeddings)
    chosen = []
    for index, distance in zip(picked, distances):
        candidate = pool[index]
        spread = (
            "the most uncertain window" if not np.isfinite(distance)
            else f"{distance:.2f} from the nearest other pick or labeled window"
        )
        reason = (
            f"{_uncertainty_reason(candidate, classes, config, column)}; k-center among the {len(pool)} most "
            f"uncertain windows: {spread}"
        )
        chosen.append((candidate, reason, score(candidate)))
    chosen.sort(key=lambda item: (-item[2], item[0].recording, item[0].start_seconds))
    return chosen


def _uncertainty_reason(
    candidate: Candidate, classes: Sequence[str], config: RankConfig, column: int | None = None
) -> str:
    how = "peak" if config.aggregate == "max" else "mean"
    probabilities = ", ".join(f"{name} {p:.2f}" for name, p in zip(classes, candidate.peak_probabilities))
    if column is not None:
        return (
            f"{config.strategy} about {classes[column]} {how} {candidate.class_scores[column]:.3f}"
            f"{SCORE_UNITS[config.strategy]}, most uncertain at {format_clock(candidate.class_peak_seconds[column])} "
            f"({classes[column]} {candidate.max_probabilities[column]:.2f} at most in the window; picked for "
            f"{classes[column]}'s share)"
        )
    return (
        f"{config.strategy} {how} {candidate.score:.3f}{SCORE_UNITS[config.strategy]}; "
        f"most uncertain at {format_clock(candidate.peak_seconds)} ({probabilities})"
    )


def _confident_reason(candidate: Candidate, classes: Sequence[str], column: int) -> str:
    return (
        f"confident {classes[column]} detection (p={candidate.max_probabilities[column]:.2f}); "
        "shown to confirm what it sounds like here, or to catch a confident mistake"
    )


def _prefilter_note(config: RankConfig, classes: Sequence[str]) -> str:
    if config.prefilter_share >= 1.0:
        return ""
    return f"; among the {config.prefilter_share:.0%} likeliest windows of some class under the prior"


def format_clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
