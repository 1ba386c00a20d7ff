"""`--backend torch`: any VGGish source (checkpoint, SavedModel, TF Hub) run by the PyTorch network.

Google's variables are converted once into a torch-native file (embed/torch_weights.py); after
that, loading needs no TensorFlow. On the CPU the exact numpy front end makes the examples, as for
the TF checkpoint network; on CUDA the torch front end makes them on the GPU. The provenance
records the backend and device but the embedder id does not change: in float32 the torch network
gives the TF network's embeddings (relative error < 1e-4, uint8 within 1; tests/test_torch_equality.py).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import torch

from embed.frontend import waveform_to_examples
from embed.params import VGGISH
from embed.postprocess import PCAParams
from embed.torch_frontend import TorchLogMel
from embed.torch_network import TorchNetwork
from embed.torch_weights import convert_source, find_converted
from embed.embedder import EmbedderConfig, EmbedderSource
from embed.vggish import Runtime, VGGishEmbedder, _split_like, resolve_runtime, source_sha256
from homesound.errors import HomesoundError
from homesound.hashing import file_sha256

log = logging.getLogger(__name__)


def torch_device(name: str) -> torch.device:
    """A torch device the user named, or one clear message."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise HomesoundError(f"--device {name}: not a device name; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HomesoundError(f"--device {name}: PyTorch {torch.__version__} sees no CUDA GPU here; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise HomesoundError(f"--device {name}: only cpu and cuda are supported")
    return device


class TorchEmbedder(VGGishEmbedder):
    def __init__(self, located: EmbedderSource, config: EmbedderConfig):
        self.kind = located.kind
        runtime: Runtime = located.runtime or resolve_runtime(config)
        device = torch_device(runtime.device)
        converted = runtime.converted or find_converted(located.kind, located.source, located.location)
        if converted is None:
            log.info("converting VGGish %s for torch (once; needs TensorFlow)", located.source)
            converted = convert_source(located.kind, located.source, located.location,
                                       source_sha256(located.kind, located.location))
        try:
            self.network = TorchNetwork(converted.weights, device=str(device), precision=runtime.precision,
                                        batch_size=config.batch_size, channels_last=device.type == "cpu")
        except ValueError as error:
            raise HomesoundError(f"--precision {runtime.precision}: {error}") from None
        self.log_mel = TorchLogMel(device=device) if device.type == "cuda" else None
        self.converted_path = str(converted.path)
        super().__init__(located.source, converted.source_sha256, PCAParams.load(located.pca),
                         file_sha256(located.pca), config, replace(runtime, converted=None))
        if runtime.precision != "float32":
            self.precision_deviation = self.measure_precision_deviation()
            log.warning("VGGish in %s, not float32 (embedder id %s, not AudioSet-compatible): %s", runtime.precision,
                        self.embedder_id, ", ".join(f"{k} {v:.3g}" for k, v in self.precision_deviation.items()))

    def raw_embeddings(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        if self.log_mel is None:
            examples = [waveform_to_examples(chunk) for chunk in chunks]
            stacked = np.concatenate(examples) if examples else np.zeros((0, VGGISH.example_frames, VGGISH.mel_bands))
            return _split_like(self.run_network(stacked), examples)
        examples = [self.log_mel(torch.from_numpy(np.asarray(chunk))) for chunk in chunks]
        if not examples:
            return []
        raw = self.network.run(torch.cat(examples)).cpu().numpy()
        return _split_like(raw, examples)

    def run_network(self, examples: np.ndarray) -> np.ndarray:
        return self.network(np.asarray(examples, dtype=np.float32))

    def measure_precision_deviation(self, count: int = 8) -> dict[str, float]:
        """How far this precision is from float32, on log-mel-like random examples (printed, never silent)."""
        from embed.tflite import embedding_error

        examples = np.random.default_rng(0).normal(-2.0, 2.0, (count, VGGISH.example_frames, VGGISH.mel_bands))
        examples = examples.astype(np.float32)
        error = embedding_error(self.network(examples, precision="float32"), self.run_network(examples), self.pca)
        return {key: error[key] for key in ("max_relative_raw_error", "max_uint8_difference", "uint8_values_differing")}
