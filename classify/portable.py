"""The detector without torch: its weights in one .npz and a numpy GRU/LSTM step equal to torch's.

A smart-home hub has no room for PyTorch. The causal detector is small (a projection, one or two
recurrent layers, a linear output), so numpy runs it as fast as torch does at one embedding per
second. The file keeps what the model file keeps for safe use: classes, calibrated thresholds,
the embedder it was trained on and how its input is decoded. Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from homesound.errors import HomesoundError
from homesound.frames import VGGISH_FRAMES, FrameSpec, audioset_uint8_to_float, check_embedder_id
from homesound.output_files import atomic_output

PORTABLE_FORMAT = "homesound-portable-detector"
PORTABLE_FORMAT_VERSION = 1
INPUT_DTYPES = {"audioset_uint8": np.uint8, "raw_float32": np.float32, "float16": np.float16}


def export_portable(detector, path: str | os.PathLike, source_sha256: str | None = None) -> Path:
    """classify.detector.Detector (causal) -> .npz; written atomically."""
    config = detector.config
    if not detector.streamable:
        raise HomesoundError("this detector is bidirectional (offline only); train a causal one for a hub")
    weights = {name: tensor.detach().cpu().numpy().astype(np.float32)
               for name, tensor in detector.model.state_dict().items()}
    arrays = {
        "projection_weight": weights["projection.0.weight"], "projection_bias": weights["projection.0.bias"],
        "classifier_weight": weights["classifier.weight"], "classifier_bias": weights["classifier.bias"],
        "input_lookup": audioset_uint8_to_float(np.arange(256, dtype=np.uint8)),  # the table training used
    }
    for layer in range(config.layers):
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            arrays[f"rnn_{kind}_l{layer}"] = weights[f"rnn.{kind}_l{layer}"]
    metadata = {
        "format": PORTABLE_FORMAT, "format_version": PORTABLE_FORMAT_VERSION,
        "rnn": config.rnn, "layers": config.layers, "hidden_size": config.hidden_size,
        "input_size": config.input_size, "classes": list(detector.classes),
        "thresholds": {name: float(value) for name, value in detector.thresholds.items()},
        "input_encoding": detector.input_encoding, "embedder_ids": list(detector.embedder_ids),
        "embedder_provenance": detector.embedder_provenance, "source_model_sha256": source_sha256,
        "frames": detector.frames.to_dict(),
    }
    path = Path(path)
    with atomic_output(path, what="portable detector") as partial, partial.open("wb") as stream:
        np.savez(stream, metadata=np.array(json.dumps(metadata, default=str)), **arrays)  # a stream: no .npz added
    return path


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class RecurrentLayer:
    weight_ih: np.ndarray  # [gates * H, inputs], torch's gate order (GRU: r, z, n; LSTM: i, f, g, o)
    weight_hh: np.ndarray  # [gates * H, H]
    bias_ih: np.ndarray
    bias_hh: np.ndarray


class PortableDetector:
    def __init__(self, metadata: dict[str, Any], arrays: dict[str, np.ndarray]):
        self.metadata = metadata
        self.rnn = metadata["rnn"]
        self.hidden_size = int(metadata["hidden_size"])
        self.input_size = int(metadata["input_size"])
        self.classes = tuple(metadata["classes"])
        self.thresholds = dict(metadata["thresholds"])
        self.input_encoding = metadata["input_encoding"]
        self.embedder_ids = tuple(metadata["embedder_ids"])
        self.embedder_provenance = metadata.get("embedder_provenance") or {}
        self.frames = FrameSpec.from_dict(metadata["frames"]) if metadata.get("frames") else VGGISH_FRAMES
        self.projection = (arrays["projection_weight"].T.copy(), arrays["projection_bias"])
        self.classifier = (arrays["classifier_weight"].T.copy(), arrays["classifier_bias"])
        self.input_lookup = arrays["input_lookup"]
        self.layers = [RecurrentLayer(*(arrays[f"rnn_{kind}_l{layer}"] for kind in
                                        ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
                       for layer in range(int(metadata["layers"]))]

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PortableDetector":
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in stored.files}
        except (OSError, ValueError) as error:
            raise HomesoundError(f"{path} is not a readable portable detector ({error}); export it again") from None
        metadata = json.loads(str(arrays.pop("metadata", "{}")))
        if metadata.get("format") != PORTABLE_FORMAT:
            raise HomesoundError(f"{path} is not a homesound portable detector")
        if metadata.get("format_version", 0) > PORTABLE_FORMAT_VERSION:
            raise HomesoundError(f"{path} has format v{metadata['format_version']}; upgrade homesound")
        return cls(metadata, arrays)

    def check_embedder(self, embedder_id: str) -> None:
        check_embedder_id(self.embedder_ids, self.frames, embedder_id)

    def model_input(self, embedding: np.ndarray, embedder_id: str) -> np.ndarray:
        self.check_embedder(embedder_id)
        if embedding.ndim != 2 or embedding.shape[1] != self.input_size:
            raise HomesoundError(f"embeddings must be [T, {self.input_size}], got {embedding.shape}")
        expected = INPUT_DTYPES[self.input_encoding]
        if embedding.dtype != expected:
            raise HomesoundError(f"this detector expects {self.input_encoding} embeddings, got {embedding.dtype}")
        return self.input_lookup[embedding] if expected == np.uint8 else embedding.astype(np.float32)

    def initial_state(self) -> list:
        zeros = np.zeros(self.hidden_size, np.float32)
        return [zeros if self.rnn == "gru" else (zeros, zeros) for _ in self.layers]

    def advance(self, features: np.ndarray, state: list) -> tuple[np.ndarray, list]:
        """features [T, D] float32 after `state` -> (logits [T, C], new state), one step at a time."""
        weight, bias = self.projection
        inputs = np.maximum(features @ weight + bias, 0.0).astype(np.float32)
        state = list(state)
        outputs = np.empty((len(inputs), self.hidden_size), np.float32)
        for t, x in enumerate(inputs):
            for number, layer in enumerate(self.layers):
                state[number] = self._gru(layer, x, state[number]) if self.rnn == "gru" else \
                    self._lstm(layer, x, state[number])
                x = state[number] if self.rnn == "gru" else state[number][0]
            outputs[t] = x
        weight, bias = self.classifier
        return outputs @ weight + bias, state

    def _gru(self, layer: RecurrentLayer, x: np.ndarray, h: np.ndarray) -> np.ndarray:
        size = self.hidden_size
        gi = layer.weight_ih @ x + layer.bias_ih
        gh = layer.weight_hh @ h + layer.bias_hh
        reset = _sigmoid(gi[:size] + gh[:size])
        update = _sigmoid(gi[size:2 * size] + gh[size:2 * size])
        candidate = np.tanh(gi[2 * size:] + reset * gh[2 * size:])
        return ((1.0 - update) * candidate + update * h).astype(np.float32)

    def _lstm(self, layer: RecurrentLayer, x: np.ndarray, state: tuple) -> tuple[np.ndarray, np.ndarray]:
        h, c = state
        size = self.hidden_size
        gates = layer.weight_ih @ x + layer.bias_ih + layer.weight_hh @ h + layer.bias_hh
        i, f = _sigmoid(gates[:size]), _sigmoid(gates[size:2 * size])
        g, o = np.tanh(gates[2 * size:3 * size]), _sigmoid(gates[3 * size:])
        c = (f * c + i * g).astype(np.float32)
        return (o * np.tanh(c)).astype(np.float32), c

    def probabilities(self, embedding: np.ndarray, embedder_id: str) -> np.ndarray:
        """Per-second probabilities [T, C] of a whole sequence (the same numbers a stream gives)."""
        logits, _ = self.advance(self.model_input(embedding, embedder_id), self.initial_state())
        return _sigmoid(logits)

    def stream(self) -> "PortableStream":
        return PortableStream(self)


class PortableStream:
    """Same interface as classify.detector.StreamingDetector: hidden state carried between pushes."""

    def __init__(self, detector: PortableDetector):
        self.detector = detector
        self.state = detector.initial_state()

    def push(self, embeddings: np.ndarray, embedder_id: str) -> np.ndarray:
        single = embeddings.ndim == 1
        features = self.detector.model_input(embeddings[None] if single else embeddings, embedder_id)
        logits, self.state = self.detector.advance(features, self.state)
        probabilities = _sigmoid(logits)
        return probabilities[0] if single else probabilities

    def reset(self) -> None:
        self.state = self.detector.initial_state()
