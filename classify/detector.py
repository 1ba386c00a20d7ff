"""A trained detector with everything needed to use it safely: the model file and per-second inference.

The model file is a `torch.save`d dict of plain values and tensors (loadable with
`weights_only=True`): weights, architecture, classes, thresholds, the embeddings it expects
(embedder ids, provenance, uint8 or float32), what it was trained on and how well it did.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from classify.config import ModelConfig, TrainConfig
from classify.model import RecurrentState, SequenceDetector, dequantize, torch_threads
from homesound import __version__
from homesound.errors import HomesoundError
from homesound.frames import VGGISH_FRAMES, FrameSpec, check_embedder_id
from homesound.hashing import file_sha256
from homesound.output_files import atomic_output

MODEL_FORMAT = "homesound-detector"
MODEL_FORMAT_VERSION = 1
INFERENCE_BATCH = 64
INFERENCE_THREADS = 1


@dataclass
class Detector:
    model: SequenceDetector
    thresholds: dict[str, float]
    input_encoding: str
    embedder_ids: tuple[str, ...]
    embedder_provenance: dict[str, Any] = field(default_factory=dict)
    frames: FrameSpec = VGGISH_FRAMES  # the training embeddings' frame facts (files without them: VGGish)
    train_config: TrainConfig | None = None
    threshold_details: dict[str, Any] = field(default_factory=dict)
    data_summary: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    @property
    def classes(self) -> tuple[str, ...]:
        return self.model.config.classes

    @property
    def streamable(self) -> bool:
        return self.model.config.causal

    def check_embedder(self, embedder_id: str) -> None:
        """Embeddings of another embedder mean nothing to this model: refuse them clearly."""
        check_embedder_id(self.embedder_ids, self.frames, embedder_id)

    def model_input(self, embedding: np.ndarray, embedder_id: str) -> np.ndarray:
        self.check_embedder(embedder_id)
        if embedding.ndim != 2 or embedding.shape[1] != self.config.input_size:
            raise HomesoundError(f"embeddings must be [T, {self.config.input_size}], got {embedding.shape}")
        return dequantize(embedding, self.input_encoding)

    def probabilities(self, embedding: np.ndarray, embedder_id: str) -> np.ndarray:
        """Per-second probabilities [T, C] of one recording."""
        return self.probabilities_many([embedding], embedder_id)[0]

    def probabilities_many(self, embeddings: Sequence[np.ndarray], embedder_id: str) -> list[np.ndarray]:
        """Per-second probabilities of several recordings, batched by similar length."""
        features = [self.model_input(embedding, embedder_id) for embedding in embeddings]
        return predict_features(self.model, features)

    def stream(self) -> StreamingDetector:
        return StreamingDetector(self)

    def to_dict(self) -> dict:
        return {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "homesound_version": __version__,
            "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "state_dict": {name: tensor.detach().clone() for name, tensor in self.model.state_dict().items()},
            "model_config": _plain(self.config),
            "offline_only": not self.streamable,
            "classes": list(self.classes),
            "thresholds": {name: float(value) for name, value in self.thresholds.items()},
            "threshold_details": _plain(self.threshold_details),
            "input_encoding": self.input_encoding,
            "embedder_ids": list(self.embedder_ids),
            "embedder_provenance": _plain(self.embedder_provenance),
            "frames": self.frames.to_dict(),
            "train_config": _plain(self.train_config) if self.train_config else None,
            "data_summary": _plain(self.data_summary),
            "metrics": _plain(self.metrics),
            "history": _plain(self.history),
        }

    def save(self, path: str | os.PathLike) -> str:
        """Write atomically (a crash never leaves half a model); returns the file's sha256."""
        with atomic_output(path, what="model") as partial:
            torch.save(self.to_dict(), partial)
        return file_sha256(path)

    @classmethod
    def from_dict(cls, stored: dict) -> Detector:
        if stored.get("format") != MODEL_FORMAT:
            raise HomesoundError("not a homesound model file; give a detector written by homesound train")
        if stored.get("format_version", 0) > MODEL_FORMAT_VERSION:
            raise HomesoundError(
                f"this detector file has format v{stored['format_version']}; upgrade homesound (this is {__version__})"
            )
        model = SequenceDetector(_config(ModelConfig, stored["model_config"]))
        model.load_state_dict(stored["state_dict"])
        model.eval()
        return cls(
            model=model,
            thresholds=dict(stored["thresholds"]),
            input_encoding=stored["input_encoding"],
            embedder_ids=tuple(stored["embedder_ids"]),
            embedder_provenance=stored.get("embedder_provenance") or {},
            frames=FrameSpec.from_dict(stored["frames"]) if stored.get("frames") else VGGISH_FRAMES,
            train_config=_config(TrainConfig, stored["train_config"]) if stored.get("train_config") else None,
            threshold_details=stored.get("threshold_details") or {},
            data_summary=stored.get("data_summary") or {},
            metrics=stored.get("metrics") or {},
            history=stored.get("history") or [],
        )

    @classmethod
    def load(cls, path: str | os.PathLike, embedder_id: str | None = None) -> Detector:
        """Load a model file; with embedder_id, refuse it unless it was trained on that embedder."""
        path = Path(path)
        if not path.is_file():
            raise HomesoundError(f"detector file {path} does not exist; train one with `homesound train`, or use "
                                 "--model zero-shot (YAMNet's own class scores, no training)")
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # torch raises several types, with pages of advice, for foreign or damaged files
            raise HomesoundError(f"{path} is not a homesound model file (not one `homesound train` wrote, or "
                                 "damaged); give a detector written by homesound train") from None
        if not isinstance(stored, dict):
            raise HomesoundError(f"{path} is not a homesound model file; give a detector written by homesound train")
        try:
            detector = cls.from_dict(stored)
        except HomesoundError as error:
            raise HomesoundError(f"{path}: {error}") from error
        if embedder_id is not None:
            detector.check_embedder(embedder_id)
        return detector


class StreamingDetector:
    """Feeds embeddings one (or a few) at a time, hidden state carried: identical to the offline outputs."""

    def __init__(self, detector: Detector):
        if not detector.streamable:
            raise HomesoundError(
                "this detector is bidirectional (offline only); train a causal one for streaming detection"
            )
        self.detector = detector
        self.state: RecurrentState | None = None

    def push(self, embeddings: np.ndarray, embedder_id: str) -> np.ndarray:
        """embeddings [n, D] (or one [D]) -> probabilities [n, C] (or [C])."""
        single = embeddings.ndim == 1
        features = self.detector.model_input(embeddings[None] if single else embeddings, embedder_id)
        if not len(features):
            return np.zeros((0, len(self.detector.classes)), dtype=np.float32)
        with torch.inference_mode(), torch_threads(INFERENCE_THREADS):
            logits, self.state = self.detector.model.advance(torch.from_numpy(features)[None], self.state)
        probabilities = torch.sigmoid(logits[0]).numpy()
        return probabilities[0] if single else probabilities

    def reset(self) -> None:
        self.state = None


def predict_features(model: SequenceDetector, features: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per-second probabilities for model-ready float32 sequences, in their order."""
    model.eval()
    empty = np.zeros((0, len(model.config.classes)), dtype=np.float32)  # shorter than one 0.96 s frame
    results: list[np.ndarray] = [empty] * len(features)
    order = np.array([i for i in np.argsort([len(f) for f in features], kind="stable") if len(features[i])])
    with torch.inference_mode(), torch_threads(INFERENCE_THREADS):
        for start in range(0, len(order), INFERENCE_BATCH):
            chunk = order[start:start + INFERENCE_BATCH]
            lengths = np.array([len(features[i]) for i in chunk])
            batch = np.zeros((len(chunk), lengths.max(), model.config.input_size), dtype=np.float32)
            for row, i in enumerate(chunk):
                batch[row, : lengths[row]] = features[i]
            padded = not (lengths == lengths.max()).all()
            logits, _ = model(torch.from_numpy(batch), torch.from_numpy(lengths) if padded else None)
            probabilities = torch.sigmoid(logits).numpy()
            for row, i in enumerate(chunk):
                results[i] = probabilities[row, : lengths[row]]
    return results


def _plain(value: Any) -> Any:
    """JSON-safe plain values (dataclasses, tuples, numpy scalars), so weights_only loading accepts them."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _config(kind, values: dict):
    names = {f.name for f in dataclasses.fields(kind)}
    return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names})


def load_detector(model: str | os.PathLike, embedder_id: str | None = None):
    """A trained detector file, a zero-shot detector file (JSON), or the name `zero-shot` (no file)."""
    from classify.zero_shot import BUILTIN_NAME, ZeroShotDetector, is_zero_shot_file

    if str(model) == BUILTIN_NAME and not Path(model).exists():
        return ZeroShotDetector.builtin()
    if is_zero_shot_file(model):
        return ZeroShotDetector.load(model)
    return Detector.load(model, embedder_id)


def model_sha256(model: str | os.PathLike, detector) -> str:
    """The identity of what `--model` named: its file's sha256, or the built-in zero-shot detector's digest."""
    from classify.zero_shot import BUILTIN_NAME

    if str(model) == BUILTIN_NAME and not Path(model).exists():
        return detector.digest()
    return file_sha256(model)
