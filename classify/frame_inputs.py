"""What a detector reads per frame, and from which embedders: one place for trained and zero-shot detectors.

A trained detector reads embeddings (the stored encoding, or the raw float32 ones); the zero-shot
detector reads the embedder's own class scores (YAMNet's 521 AudioSet scores), and any embedder
whose class names it knows will do. Callers that hold an embedder's output or a workspace's
stored frames hand over everything they have and get back the one array the detector reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from classify.zero_shot import CLASS_SCORES
from homesound.errors import HomesoundError

RAW_FLOAT32 = "raw_float32"


def reads_class_scores(detector) -> bool:
    return detector.input_encoding == CLASS_SCORES


def reads_raw_embeddings(detector) -> bool:
    return detector.input_encoding == RAW_FLOAT32


def check_source(detector, embedder_id: str, class_names: Sequence[str] | None) -> None:
    """Before any audio is read: does this embedder give what the detector reads?"""
    detector.check_embedder(embedder_id)
    if reads_class_scores(detector):
        detector.check_class_names(class_names, embedder_id)


def pick_input(detector, *, embedding: np.ndarray, raw_embedding: np.ndarray | None = None,
               class_scores: np.ndarray | None = None, what: str = "this recording") -> np.ndarray:
    """The array the detector reads, from what an embedder gave or the workspace stored."""
    if reads_class_scores(detector):
        if class_scores is None:
            raise HomesoundError(f"{what}: no class scores stored; the zero-shot detector needs recordings "
                                 "embedded by YAMNet (homesound embed --embedder yamnet)")
        return class_scores
    if reads_raw_embeddings(detector):
        if raw_embedding is None:
            raise HomesoundError(f"{what}: no raw float32 embedding stored; this detector needs raw "
                                 "embeddings (re-embed keeping them)")
        return raw_embedding
    return embedding


def workspace_embedders(workspace, detector) -> tuple[str, ...]:
    """The workspace's embedders whose frames this detector can read."""
    if not reads_class_scores(detector):
        return tuple(detector.embedder_ids)
    from homesound.errors import ProvenanceMismatchError
    from homesound.workspace.recordings import class_names

    usable = []
    for row in workspace.query("SELECT id FROM embedders ORDER BY created_at, id"):
        try:
            detector.check_class_names(class_names(workspace, row["id"]), row["id"])
        except ProvenanceMismatchError:
            continue
        usable.append(row["id"])
    return tuple(usable)


def readable_sequence(detector, sequence) -> bool:
    """Can the detector score this labeled sequence (right embedder, class scores where needed)?"""
    if reads_class_scores(detector):
        return sequence.class_scores is not None and sequence.class_scores.shape[1] == detector.class_count
    return sequence.embedder_id in detector.embedder_ids


def expected_inputs(detector) -> str:
    """For messages: what the detector needs."""
    if reads_class_scores(detector):
        return "YAMNet class scores (recordings embedded with --embedder yamnet)"
    from classify.compatibility import AUDIOSET_RELEASE

    hint = ""
    if AUDIOSET_RELEASE in detector.embedder_ids:
        hint = (f" (an archive embedded with Google's VGGish checkpoint and official PCA can be read too: train with "
                f"--accept-embedder {AUDIOSET_RELEASE} --official-pca vggish_pca_params.npz)")
    return "embeddings from " + ", ".join(detector.embedder_ids) + hint
