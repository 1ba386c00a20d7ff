"""The network: streaming equals the whole-sequence forward; padding never leaks; input dequantization."""

import numpy as np
import pytest
import torch

from classify.config import ModelConfig
from classify.model import (
    AUDIOSET_UINT8,
    RAW_FLOAT32,
    SequenceDetector,
    dequantize,
    input_encoding_of,
)
from homesound.errors import HomesoundError


def _model(**overrides) -> SequenceDetector:
    torch.manual_seed(0)
    model = SequenceDetector(ModelConfig(projection_size=16, hidden_size=12, **overrides))
    return model.eval()


@pytest.mark.parametrize("rnn", ["gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 2])
def test_stepping_one_second_at_a_time_equals_the_full_forward(rnn, layers):
    model = _model(rnn=rnn, layers=layers)
    features = torch.randn(3, 40, 128)
    with torch.inference_mode():
        full, _ = model(features)
        state = None
        stepped = []
        for t in range(features.shape[1]):
            logits, state = model.step(features[:, t], state)
            stepped.append(logits)
        # Chunks of uneven size carry the state the same way.
        chunked, state = [], None
        for begin, end in [(0, 7), (7, 8), (8, 40)]:
            logits, state = model.advance(features[:, begin:end], state)
            chunked.append(logits)
    assert torch.allclose(torch.stack(stepped, dim=1), full, atol=1e-6)
    assert torch.allclose(torch.cat(chunked, dim=1), full, atol=1e-6)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_never_changes_the_outputs_of_real_seconds(bidirectional):
    model = _model(bidirectional=bidirectional, pooling="attention")
    long, short = torch.randn(1, 12, 128), torch.randn(1, 5, 128)
    padded = torch.zeros(2, 12, 128)
    padded[0], padded[1, :5] = long[0], short[0]
    with torch.inference_mode():
        batch_logits, batch_clips = model(padded, torch.tensor([12, 5]))
        alone_logits, alone_clips = model(short)
    assert torch.allclose(batch_logits[1, :5], alone_logits[0], atol=1e-6)
    assert torch.allclose(batch_clips[1], alone_clips[0], atol=1e-6)


def test_bidirectional_model_is_offline_only():
    model = _model(bidirectional=True)
    assert not model.config.causal
    with pytest.raises(HomesoundError, match="offline only"):
        model.step(torch.randn(1, 128))


@pytest.mark.parametrize("pooling", ["linear_softmax", "attention"])
def test_clip_probability_lies_between_the_seconds(pooling):
    model = _model(pooling=pooling)
    with torch.inference_mode():
        logits, clips = model(torch.randn(4, 10, 128))
    probabilities = torch.sigmoid(logits)
    assert torch.all(clips <= probabilities.max(dim=1).values + 1e-6)
    assert torch.all(clips >= probabilities.min(dim=1).values - 1e-6)


def test_dequantization_follows_the_embeddings_provenance():
    quantized = np.array([[0, 255, 128]], dtype=np.uint8)
    assert input_encoding_of(quantized) == AUDIOSET_UINT8
    assert np.allclose(dequantize(quantized, AUDIOSET_UINT8), [[-2.0, 2.0, 128 / 255 * 4 - 2]])
    raw = np.array([[0.25, -1.5]], dtype=np.float32)
    assert input_encoding_of(raw) == RAW_FLOAT32
    assert np.array_equal(dequantize(raw, RAW_FLOAT32), raw)
    with pytest.raises(HomesoundError, match="expects audioset_uint8"):
        dequantize(raw, AUDIOSET_UINT8)
    with pytest.raises(ValueError):
        input_encoding_of(raw.astype(np.float64))
