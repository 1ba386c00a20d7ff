"""The detector network: per-second probabilities of each class from a sequence of VGGish embeddings.

Causal by default, so `step` (one embedding at a time, hidden state carried) gives the same
per-second outputs as `forward` on the whole sequence: the model that was evaluated offline is
the model that listens live.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from classify.config import ModelConfig
from homesound.errors import HomesoundError
from homesound.frames import audioset_uint8_to_float

# How stored embeddings become model input, decided by their provenance (dtype of the array).
AUDIOSET_UINT8 = "audioset_uint8"  # post-processed like AudioSet's release: (x / 255) * 4 - 2
RAW_FLOAT32 = "raw_float32"  # the embedder's float output before quantization, used as is
FLOAT16 = "float16"  # stored as half precision (YAMNet in the workspace), read as float32
INPUT_ENCODINGS = (AUDIOSET_UINT8, RAW_FLOAT32, FLOAT16)

# GRU carries one tensor of state, LSTM a pair (h, c).
RecurrentState = torch.Tensor | tuple[torch.Tensor, torch.Tensor]

_POOLING_EPSILON = 1e-7


def input_encoding_of(embedding: np.ndarray) -> str:
    if embedding.dtype == np.uint8:
        return AUDIOSET_UINT8
    if embedding.dtype == np.float32:
        return RAW_FLOAT32
    if embedding.dtype == np.float16:
        return FLOAT16
    raise ValueError(f"embeddings must be uint8 (AudioSet post-processed), float16 or float32, got {embedding.dtype}")


def dequantize(embedding: np.ndarray, encoding: str) -> np.ndarray:
    """Model input as float32 [T, D]; refuses arrays that do not match the expected encoding."""
    actual = input_encoding_of(embedding)
    if actual != encoding:
        raise HomesoundError(
            f"this detector expects {encoding} embeddings but got {actual}; "
            "use the embeddings it was trained on (uint8 post-processed or raw float32)"
        )
    if encoding == AUDIOSET_UINT8:
        return audioset_uint8_to_float(embedding)
    return np.ascontiguousarray(embedding, dtype=np.float32)


class SequenceDetector(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.projection = nn.Sequential(
            nn.Linear(config.input_size, config.projection_size), nn.ReLU(), nn.Dropout(config.dropout)
        )
        recurrent = nn.GRU if config.rnn == "gru" else nn.LSTM
        self.rnn = recurrent(
            config.projection_size,
            config.hidden_size,
            num_layers=config.layers,
            batch_first=True,
            bidirectional=config.bidirectional,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        features = config.hidden_size * (2 if config.bidirectional else 1)
        self.output_dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(features, len(config.classes))
        self.attention = nn.Linear(features, len(config.classes)) if config.pooling == "attention" else None

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """features [B, T, D] (lengths [B] when padded) -> (frame logits [B, T, C], clip probabilities [B, C])."""
        projected = self.projection(features)
        if lengths is not None and self.config.bidirectional:
            # Only the backward direction would see padding; pack so it starts at each true end.
            packed = nn.utils.rnn.pack_padded_sequence(projected, lengths.cpu(), batch_first=True, enforce_sorted=False)
            hidden, _ = self.rnn(packed)
            hidden, _ = nn.utils.rnn.pad_packed_sequence(hidden, batch_first=True, total_length=features.shape[1])
        else:
            hidden, _ = self.rnn(projected)  # causal: padding after the end cannot reach earlier outputs
        hidden = self.output_dropout(hidden)
        frame_logits = self.classifier(hidden)
        mask = _valid_frames(features.shape[0], features.shape[1], lengths, features.device)
        return frame_logits, self._pool(hidden, frame_logits, mask)

    def _pool(self, hidden: torch.Tensor, frame_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Clip probability from per-second ones, so weak (clip) labels can train per-second outputs."""
        probabilities = torch.sigmoid(frame_logits)
        valid = mask.unsqueeze(-1).to(probabilities.dtype)
        if self.attention is None:
            # Linear softmax: loud seconds dominate, quiet ones barely count.
            numerator = (probabilities * probabilities * valid).sum(dim=1)
            denominator = (probabilities * valid).sum(dim=1)
            return (numerator + _POOLING_EPSILON) / (denominator + _POOLING_EPSILON)
        attention_logits = self.attention(hidden).masked_fill(~mask.unsqueeze(-1), float("-inf"))
        weights = torch.softmax(attention_logits, dim=1)
        return (weights * probabilities).sum(dim=1).clamp(_POOLING_EPSILON, 1.0 - _POOLING_EPSILON)

    def initial_state(self, batch_size: int = 1) -> RecurrentState:
        layers = self.config.layers * (2 if self.config.bidirectional else 1)
        zeros = torch.zeros(layers, batch_size, self.config.hidden_size)
        return zeros if self.config.rnn == "gru" else (zeros, zeros.clone())

    def advance(
        self, features: torch.Tensor, state: RecurrentState | None = None
    ) -> tuple[torch.Tensor, RecurrentState]:
        """Continue a stream: features [B, T, D] after `state` -> (frame logits [B, T, C], new state)."""
        if self.config.bidirectional:
            raise HomesoundError(
                "this detector is bidirectional (offline only): it needs the whole recording; "
                "train a causal one (without --bidirectional) for streaming"
            )
        if state is None:
            state = self.initial_state(features.shape[0])
        hidden, state = self.rnn(self.projection(features), state)
        return self.classifier(self.output_dropout(hidden)), state

    def step(self, frame: torch.Tensor, state: RecurrentState | None = None) -> tuple[torch.Tensor, RecurrentState]:
        """One embedding per stream, frame [B, D] -> (logits [B, C], new state)."""
        logits, state = self.advance(frame.unsqueeze(1), state)
        return logits[:, 0], state


def _valid_frames(batch: int, frames: int, lengths: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    if lengths is None:
        return torch.ones(batch, frames, dtype=torch.bool, device=device)
    return torch.arange(frames, device=device).unsqueeze(0) < lengths.to(device).unsqueeze(1)


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run torch with `count` CPU threads, then restore the previous setting.

    This network is small: a second thread gains little and, when another process shares a
    2-core machine, spin-waits (measured 5-10x slower in benchmarks/train_speed.py and detect_speed.py).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
