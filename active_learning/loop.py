"""Rank the workspace's unlabeled audio with a detector and queue the picks for labeling.

The I/O shell around active_learning.ranking: it reads embedded recordings from the workspace,
asks the detector (and, for BALD, its MC-dropout samples), ranks, and queues the picks together
with the model's per-second guess around each window, so `push` can pre-annotate without the model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from active_learning.config import RankRequest
from active_learning.ranking import Pick, RecordingPredictions, rank_windows
from active_learning.scoring import mc_dropout_probabilities
from classify.frame_inputs import expected_inputs, pick_input, reads_class_scores, workspace_embedders
from homesound.errors import HomesoundError
from homesound.workspace import Workspace
from homesound.workspace import active_learning as queue
from homesound.workspace.recordings import iter_embedded_recordings

PREDICTION_CONTEXT_SECONDS = 3.0  # model output kept around each window: covers any clip context


@dataclass
class Ranking:
    picks: list[Pick]
    predictions: dict[str, dict]  # window key -> the model's guess around the window (for pre-annotation)
    recordings: int
    candidate_seconds: float


def rank_workspace(
    workspace: Workspace, detector, request: RankRequest, *, progress: bool = False
) -> Ranking:
    """Score every embedded recording the detector can read, skipping spans already queued or labeled."""
    taken = queue.taken_spans(workspace)
    probabilities_by_recording: dict[str, np.ndarray] = {}
    hop_by_recording: dict[str, float] = {}
    seconds = 0.0

    def recordings() -> Iterator[RecordingPredictions]:
        nonlocal seconds
        seen: set[str] = set()
        for embedder_id in workspace_embedders(workspace, detector):
            prior = _zero_shot_prior(workspace, embedder_id, detector) if request.rank.prefilter_share < 1 else None
            rows = iter_embedded_recordings(workspace, embedder_id,
                                            with_class_scores=reads_class_scores(detector) or prior is not None)
            for recording, stored in tqdm(rows, desc="rank", unit="recording", disable=not progress):
                if recording.content_sha256 in seen or not len(stored.embedding):
                    continue
                seen.add(recording.content_sha256)
                frames = pick_input(detector, embedding=stored.embedding, class_scores=stored.class_scores,
                                    what=recording.path)
                probabilities = detector.probabilities(frames, embedder_id)
                samples = None
                if request.rank.strategy == "bald":
                    samples = mc_dropout_probabilities(
                        detector, [frames], embedder_id, request.mc_samples, request.rank.seed
                    )[0]
                probabilities_by_recording[recording.content_sha256] = probabilities
                hop_by_recording[recording.content_sha256] = stored.hop_seconds
                seconds += len(probabilities) * stored.hop_seconds
                yield RecordingPredictions(
                    recording=recording.content_sha256,
                    path=recording.path,
                    classes=tuple(detector.classes),
                    probabilities=probabilities,
                    samples=samples,
                    embedding=_diversity_space(detector, frames, stored, embedder_id) if request.rank.diversity else None,
                    excluded=tuple(taken.get(recording.content_sha256, ())),
                    hop_seconds=stored.hop_seconds,
                    prior=None if prior is None or stored.class_scores is None else prior(stored.class_scores),
                )

    picks = rank_windows(recordings(), request.rank)
    if not probabilities_by_recording:
        raise HomesoundError(
            f"no embedded recordings in the workspace that this detector can read (it needs {expected_inputs(detector)}); "
            "run `homesound embed` on your archive first"
        )
    predictions = {
        queue.window_key(p.recording, p.start_seconds, p.end_seconds): guess_around(
            probabilities_by_recording[p.recording], hop_by_recording[p.recording], p, detector
        )
        for p in picks
    }
    return Ranking(picks, predictions, len(probabilities_by_recording), seconds)


def _diversity_space(detector, frames: np.ndarray, stored, embedder_id: str) -> np.ndarray:
    """What k-center spreads picks over: the embeddings (for the zero-shot detector too, not its class scores)."""
    return stored.features() if reads_class_scores(detector) else detector.model_input(frames, embedder_id)


def _zero_shot_prior(workspace: Workspace, embedder_id: str, detector):
    """The prefilter's prior: class scores [T, K] -> the zero-shot detector's probabilities in the detector's
    class order. None when the embedder has no class scores it reads (VGGish) or the detector has classes it
    does not know: the prefilter then uses the detector's own probabilities."""
    from classify.zero_shot import ZeroShotDetector
    from homesound.errors import ProvenanceMismatchError
    from homesound.workspace.recordings import class_names

    zero_shot = ZeroShotDetector.builtin()
    try:
        zero_shot.check_class_names(class_names(workspace, embedder_id), embedder_id)
    except ProvenanceMismatchError:
        return None
    if not set(detector.classes) <= set(zero_shot.classes):
        return None
    columns = [zero_shot.classes.index(name) for name in detector.classes]
    return lambda class_scores: zero_shot.probabilities(class_scores)[:, columns]


def guess_around(probabilities: np.ndarray, hop_seconds: float, pick: Pick, detector) -> dict:
    """The model's per-second output around a window, stored with it for the pre-annotation."""
    first = max(0, int((pick.start_seconds - PREDICTION_CONTEXT_SECONDS) // hop_seconds))
    last = min(len(probabilities), int(np.ceil((pick.end_seconds + PREDICTION_CONTEXT_SECONDS) / hop_seconds)))
    return {
        "classes": list(detector.classes),
        "hop_seconds": hop_seconds,
        "start_seconds": first * hop_seconds,
        "probabilities": np.round(probabilities[first:last], 4).tolist(),
        "thresholds": {name: float(value) for name, value in detector.thresholds.items()},
    }


def queue_ranking(
    workspace: Workspace, ranking: Ranking, model_id: int, round_id: int | None = None
) -> int:
    """Queue the picks (one transaction) as ranked by the registered model `model_id`; returns how many were new."""
    windows = [
        queue.QueuedWindow(
            content_sha256=p.recording, recording_path=p.path, start_seconds=p.start_seconds,
            end_seconds=p.end_seconds, rank=p.rank, strategy=p.strategy, score=p.score, reason=p.reason,
            predictions=ranking.predictions[queue.window_key(p.recording, p.start_seconds, p.end_seconds)],
        )
        for p in ranking.picks
    ]
    return queue.queue_windows(workspace, windows, model_id=model_id, round_id=round_id)


def picks_table(picks: list[Pick], classes: tuple[str, ...]):
    """The ranked picks as a DataFrame: what `homesound rank` prints and exports."""
    import pandas as pd

    rows = []
    for pick in picks:
        row = {
            "rank": pick.rank,
            "recording": pick.path,
            "start_seconds": pick.start_seconds,
            "end_seconds": pick.end_seconds,
            "strategy": pick.strategy,
            "score": pick.score,
            **{f"max_{name}": p for name, p in zip(classes, pick.max_probabilities)},
            "reason": pick.reason,
            "content_sha256": pick.recording,
            "window_key": queue.window_key(pick.recording, pick.start_seconds, pick.end_seconds),
        }
        rows.append(row)
    return pd.DataFrame(rows)

