"""LabeledSequence -> model-ready arrays, group-wise splits, batches and the training data summary."""

from __future__ import annotations

import dataclasses
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from classify.model import dequantize, input_encoding_of
from homesound.errors import HomesoundError, ProvenanceMismatchError
from homesound.sequences import LabeledSequence

MAX_GROUPS_LISTED = 200  # a summary lists the groups by name only while there are few of them
MAX_GROUPS_TO_STRATIFY = 2000


@dataclass(frozen=True)
class EncodedSequences:
    """Sequences as model input, with labels remapped onto one class list (NaN = not labeled)."""

    classes: tuple[str, ...]
    input_encoding: str
    keys: tuple[str, ...]
    groups: tuple[str, ...]
    splits: tuple[str, ...]
    features: tuple[np.ndarray, ...]  # float32 [T, D] each
    frame_targets: tuple[np.ndarray | None, ...]  # [T, C] float32, NaN unknown; None: no strong labels
    clip_targets: np.ndarray  # [N, C] float32, NaN unknown
    start_seconds: tuple[float, ...]
    hop_seconds: tuple[float, ...]
    lengths: np.ndarray  # [N] frames per sequence

    def __len__(self) -> int:
        return len(self.keys)


def classes_of(sequences: Iterable[LabeledSequence]) -> tuple[str, ...]:
    """The detector's classes come from the data: every target some sequence is labeled for, sorted."""
    return tuple(sorted({name for sequence in sequences for name in sequence.classes}))


def embedder_ids_of(sequences: Iterable[LabeledSequence]) -> Counter:
    return Counter(sequence.embedder_id for sequence in sequences)


def check_single_embedder(sequences: Sequence[LabeledSequence], allow_mixed: bool = False) -> tuple[str, ...]:
    """Embeddings of different embedders live in different spaces; mixing them needs a deliberate yes."""
    counts = embedder_ids_of(sequences)
    if len(counts) > 1 and not allow_mixed:
        listing = ", ".join(f"{embedder} ({n} sequences)" for embedder, n in counts.most_common())
        raise ProvenanceMismatchError(
            f"the training data comes from {len(counts)} different embedders: {listing}; choose one with "
            "--embedder ID, or pass --mix-embedders if they produce the same embedding space "
            "(e.g. AudioSet's released features and the official VGGish checkpoint)"
        )
    return tuple(embedder for embedder, _ in counts.most_common())


def clip_labels_on_frames(sequences: Iterable[LabeledSequence]) -> list[LabeledSequence]:
    """Whole-clip labels spread to every frame of the clip (frames already labeled keep their labels)."""
    spread = []
    for sequence in sequences:
        if sequence.clip_labels is None:
            spread.append(sequence)
            continue
        frames = np.tile(np.asarray(sequence.clip_labels, dtype=np.float32), (len(sequence.embedding), 1))
        if sequence.frame_labels is not None:
            frames = np.where(np.isnan(sequence.frame_labels), frames, sequence.frame_labels)
        spread.append(dataclasses.replace(sequence, clip_labels=None, frame_labels=frames))
    return spread


def cut_into_windows(sequences: Iterable[LabeledSequence], window_frames: int) -> list[LabeledSequence]:
    """Long strongly labeled sequences -> consecutive windows (more, shorter training examples).

    Sequences with clip labels stay whole (a clip label speaks for the whole clip); windows with
    no known label at all are dropped.
    """
    windows = []
    for sequence in sequences:
        if sequence.clip_labels is not None or len(sequence.embedding) <= window_frames:
            windows.append(sequence)
            continue
        for begin in range(0, len(sequence.embedding), window_frames):
            labels = sequence.frame_labels[begin:begin + window_frames]
            if np.isnan(labels).all():
                continue
            windows.append(dataclasses.replace(
                sequence,
                key=f"{sequence.key}+{begin}",
                embedding=sequence.embedding[begin:begin + window_frames],
                frame_labels=labels,
                start_seconds=sequence.start_seconds + begin * sequence.hop_seconds,
                class_scores=None if sequence.class_scores is None
                else sequence.class_scores[begin:begin + window_frames],
            ))
    return windows


def encode(sequences: Sequence[LabeledSequence], classes: Sequence[str]) -> EncodedSequences:
    if not sequences:
        raise HomesoundError("no labeled sequences to use; import AudioSet segments or pull labels first")
    classes = tuple(classes)
    encodings = Counter(input_encoding_of(sequence.embedding) for sequence in sequences)
    if len(encodings) > 1:
        raise ProvenanceMismatchError(
            f"the sequences mix embedding encodings {dict(encodings)}; use uint8 post-processed or raw "
            "float32 embeddings throughout"
        )
    encoding = next(iter(encodings))
    clip_targets = np.full((len(sequences), len(classes)), np.nan, dtype=np.float32)
    frame_targets: list[np.ndarray | None] = []
    for row, sequence in enumerate(sequences):
        columns = [sequence.classes.index(name) if name in sequence.classes else -1 for name in classes]
        if sequence.clip_labels is not None:
            clip_targets[row] = _take_columns(np.asarray(sequence.clip_labels, dtype=np.float32)[None], columns)[0]
        frame_targets.append(
            None if sequence.frame_labels is None
            else _take_columns(np.asarray(sequence.frame_labels, dtype=np.float32), columns)
        )
    return EncodedSequences(
        classes=classes,
        input_encoding=encoding,
        keys=tuple(sequence.key for sequence in sequences),
        groups=tuple(sequence.group for sequence in sequences),
        splits=tuple(sequence.split for sequence in sequences),
        features=tuple(dequantize(sequence.embedding, encoding) for sequence in sequences),
        frame_targets=tuple(frame_targets),
        clip_targets=clip_targets,
        start_seconds=tuple(float(sequence.start_seconds) for sequence in sequences),
        hop_seconds=tuple(float(sequence.hop_seconds) for sequence in sequences),
        lengths=np.array([len(sequence.embedding) for sequence in sequences], dtype=np.int64),
    )


def _take_columns(labels: np.ndarray, columns: list[int]) -> np.ndarray:
    """labels [R, C_sequence] -> [R, C_model]; a class the sequence was never labeled for is NaN."""
    out = np.full((labels.shape[0], len(columns)), np.nan, dtype=np.float32)
    for target, source in enumerate(columns):
        if source >= 0:
            out[:, target] = labels[:, source]
    return out


def sequence_level_targets(data: EncodedSequences) -> np.ndarray:
    """[N, C] whether each sequence holds the class anywhere (clip label, else any strong positive)."""
    targets = data.clip_targets.copy()
    for row, frames in enumerate(data.frame_targets):
        if frames is None:
            continue
        known = ~np.isnan(frames)
        from_frames = np.where(known.any(axis=0), np.where(known, frames, -np.inf).max(axis=0), np.nan)
        targets[row] = np.where(np.isnan(targets[row]), from_frames, targets[row])
    return targets


def split_by_group(data: EncodedSequences, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/validation indices with no source recording on both sides, stratified by what each holds."""
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    groups = np.asarray(data.groups)
    distinct = np.unique(groups)
    if len(distinct) < 2:
        raise HomesoundError(
            f"all {len(data)} training sequences come from one source recording ({distinct[0]}); "
            "validation needs sequences from at least two recordings"
        )
    folds = min(len(distinct), max(2, round(1.0 / validation_fraction)))
    shuffle = GroupShuffleSplit(n_splits=1, test_size=validation_fraction, random_state=seed)
    if len(distinct) > MAX_GROUPS_TO_STRATIFY:
        # Thousands of groups (AudioSet): a random group split is balanced already, and
        # StratifiedGroupKFold's search grows with groups x folds (14 s for 12,500 groups).
        train, validation = next(shuffle.split(np.zeros(len(data)), groups=groups))
        return np.sort(train), np.sort(validation)
    # Few groups (labeled household recordings): stratify on the classes present, so each class
    # has positives on both sides where possible.
    presence = np.nan_to_num(sequence_level_targets(data), nan=0.0) > 0.5
    strata = np.array(["".join("1" if p else "0" for p in row) for row in presence])
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "least populated class has only n members"
            train, validation = next(splitter.split(np.zeros(len(data)), strata, groups))
    except ValueError:  # too few groups per stratum to stratify: plain group-wise split
        train, validation = next(shuffle.split(np.zeros(len(data)), groups=groups))
    return np.sort(train), np.sort(validation)


@dataclass(frozen=True)
class Batch:
    features: torch.Tensor  # [B, T, D]
    lengths: torch.Tensor | None  # [B], None when every sequence has the full length
    frame_targets: torch.Tensor  # [B, T, C], NaN where unknown or padded
    clip_targets: torch.Tensor  # [B, C], NaN where unknown
    indices: np.ndarray  # rows of the EncodedSequences


def batches(
    data: EncodedSequences, indices: np.ndarray, batch_size: int, rng: np.random.Generator | None = None
) -> Iterator[Batch]:
    """Batches of near-equal length (no padding for equal-length data such as AudioSet's 10 s segments).

    With rng: shuffled within equal lengths and in batch order (training); without: in index order.
    """
    lengths = data.lengths[indices]
    if rng is None:
        order = indices[np.argsort(lengths, kind="stable")]
    else:
        order = indices[np.lexsort((rng.random(len(indices)), lengths))]
    chunks = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    if rng is not None:
        chunks = [chunks[i] for i in rng.permutation(len(chunks))]
    for chunk in chunks:
        yield collate(data, chunk)


def collate(data: EncodedSequences, chunk: np.ndarray) -> Batch:
    lengths = data.lengths[chunk]
    frames = int(lengths.max())
    classes = len(data.classes)
    if (lengths == frames).all():
        features = np.stack([data.features[i] for i in chunk])
    else:
        features = np.zeros((len(chunk), frames, data.features[chunk[0]].shape[1]), dtype=np.float32)
        for row, i in enumerate(chunk):
            features[row, : lengths[row]] = data.features[i]
    frame_targets = np.full((len(chunk), frames, classes), np.nan, dtype=np.float32)
    for row, i in enumerate(chunk):
        if data.frame_targets[i] is not None:
            frame_targets[row, : lengths[row]] = data.frame_targets[i]
    return Batch(
        features=torch.from_numpy(features),
        lengths=None if (lengths == frames).all() else torch.from_numpy(lengths),
        frame_targets=torch.from_numpy(frame_targets),
        clip_targets=torch.from_numpy(data.clip_targets[chunk]),
        indices=chunk,
    )


def summarize(data: EncodedSequences, embedder_ids: Sequence[str], sequences: Sequence[LabeledSequence]) -> dict:
    """What a model was trained on: counts per class, per source kind, per split and per group.

    `data` is what training saw (windows of long sequences); `sequences` what the sources gave.
    """
    presence = sequence_level_targets(data)
    per_class = {}
    for column, name in enumerate(data.classes):
        labeled_seconds = positive_seconds = 0
        for frames in data.frame_targets:
            if frames is not None:
                known = ~np.isnan(frames[:, column])
                labeled_seconds += int(known.sum())
                positive_seconds += int((frames[known, column] > 0.5).sum())
        per_class[name] = {
            "positive_sequences": int((presence[:, column] > 0.5).sum()),
            "negative_sequences": int((presence[:, column] < 0.5).sum()),
            "weak_labeled_sequences": int((~np.isnan(data.clip_targets[:, column])).sum()),
            "strong_labeled_frames": labeled_seconds,
            "strong_positive_frames": positive_seconds,
        }
    groups = Counter(sequence.group for sequence in sequences)
    return {
        "sequences": len(sequences),
        "windows": len(data),
        "frames": int(data.lengths.sum()),
        "groups": len(groups),
        "embedder_ids": list(embedder_ids),
        "input_encoding": data.input_encoding,
        "per_class": per_class,
        "per_source_kind": dict(Counter(sequence.key.split(":", 1)[0] for sequence in sequences)),
        "per_split": dict(Counter(sequence.split for sequence in sequences)),
        "sequences_per_group": dict(groups.most_common(MAX_GROUPS_LISTED)),
        "groups_listed": min(len(groups), MAX_GROUPS_LISTED),
    }
