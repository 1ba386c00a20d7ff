"""What the detector says about stored recordings: per-second probabilities and MC-dropout samples."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from homesound.errors import HomesoundError


def mc_dropout_probabilities(
    detector, embeddings: Sequence[np.ndarray], embedder_id: str, count: int, seed: int = 0
) -> list[np.ndarray]:
    """[S, T, C] per recording: the detector run `count` times with dropout left on (one mask each).

    The spread between the runs is the model's own doubt, which BALD turns into a score.
    """
    import torch
    from torch import nn

    model = getattr(detector, "model", None)
    if model is None:
        raise HomesoundError(f"the {detector.kind} detector has no dropout to sample, so BALD cannot rank with it; "
                             "choose another --strategy (e.g. entropy)")
    dropouts = [module for module in model.modules() if isinstance(module, nn.Dropout) and module.p > 0]
    if not dropouts:
        raise ValueError("this detector has no dropout, so MC-dropout (BALD) cannot sample it; use another strategy")
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model.eval()
    for module in dropouts:
        module.train()
    try:
        samples = []
        with torch.inference_mode():
            for embedding in embeddings:
                features = torch.from_numpy(detector.model_input(embedding, embedder_id))
                logits, _ = model(features.unsqueeze(0).expand(count, -1, -1).contiguous())
                samples.append(torch.sigmoid(logits).numpy())
        return samples
    finally:
        model.eval()
        torch.random.set_rng_state(generator_state)
