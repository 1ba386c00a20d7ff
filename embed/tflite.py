"""VGGish as TensorFlow Lite for small hubs: conversion (needs TensorFlow) and a runtime (does not).

Only the network is converted ([N, 96, 64] log-mel examples -> [N, 128] raw embeddings); the
front end stays the exact numpy one and the AudioSet post-processing stays numpy, so a float32
TFLite network gives the embeddings of the model it came from (the export measures how close).
The runtime is Google's `ai-edge-litert` interpreter; TensorFlow's tf.lite is the fallback.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Iterable, Mapping

import numpy as np

from embed.embedder import ChunkFrames
from embed.frontend import waveform_to_examples
from embed.params import VGGISH
from embed.postprocess import PCAParams, postprocess
from homesound.errors import ModelSourceError
from homesound.frames import VGGISH_FRAMES
from homesound.output_files import atomic_output

log = logging.getLogger(__name__)

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
LITERT_HINT = "install the TFLite runtime: pip install ai-edge-litert"


# --- conversion (TensorFlow) ------------------------------------------------------------------------------


def network_weights(embedder) -> dict[str, np.ndarray]:
    """The VGGish variables of a loaded embedder (checkpoint, SavedModel or TF Hub) by Google's names."""
    network = getattr(embedder, "network", None)
    if network is not None and hasattr(network, "weights"):  # CheckpointEmbedder: built from Google's names
        return {name: variable.numpy() for name, variable in network.weights.items()}
    if network is not None:  # the torch backend: its converted weights, back in Google's layout
        from embed.torch_network import google_weights

        return google_weights(network.module)
    return savedmodel_weights(embedder.model, embedder.source)


def savedmodel_weights(model, source: str) -> dict[str, np.ndarray]:
    """The VGGish variables of a loaded SavedModel (ours or TF Hub's) by Google's names."""
    from embed.network import expected_shapes

    variables = getattr(model, "variables", None)
    if variables is None:
        variables = [v for function in model.__call__.concrete_functions for v in function.variables]
    by_name = {_normalized(v.name): v for v in variables}
    weights = {}
    for name, shape in expected_shapes().items():
        wanted = _normalized(name)
        found = [variable for key, variable in by_name.items() if key == wanted or key.endswith("_" + wanted)]
        if len(found) != 1 or tuple(found[0].shape) != shape:
            raise ModelSourceError(f"VGGish model {source}: cannot find variable {name} {shape} "
                                   "to convert; convert Google's vggish_model.ckpt instead")
        weights[name] = found[0].numpy()
    return weights


def _normalized(name: str) -> str:
    return name.split(":")[0].replace("/", "_")


def convert_network(weights: Mapping[str, np.ndarray], quantization: str = "float32",
                    representative_examples: np.ndarray | None = None) -> bytes:
    """A .tflite flatbuffer of the VGGish network; int8 needs representative examples [N, 96, 64]."""
    import tensorflow as tf

    from embed.network import build_network

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    network = build_network(weights)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([network.__call__.get_concrete_function()], network)
    if quantization in ("float16", "dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantization == "int8":
        if representative_examples is None or not len(representative_examples):
            raise ValueError("int8 quantization needs representative examples")

        def representative() -> Iterable[list[np.ndarray]]:
            for example in representative_examples:
                yield [example[None].astype(np.float32)]

        converter.representative_dataset = representative
    return converter.convert()


# --- runtime (no TensorFlow) ------------------------------------------------------------------------------


def load_interpreter(model_path: str, threads: int | None = None, model_content: bytes | None = None):
    """(interpreter, runtime name): ai-edge-litert when installed, else TensorFlow's tf.lite.

    `model_content`, if given, is the flatbuffer itself (model_path then only names it in messages).
    """
    try:
        from ai_edge_litert.interpreter import Interpreter

        runtime = "ai-edge-litert"
    except ImportError:
        try:
            import tensorflow as tf
        except ImportError:
            raise ModelSourceError(f"no TFLite runtime to run {model_path}; {LITERT_HINT}") from None
        log.warning("ai-edge-litert is not installed: running %s with TensorFlow's tf.lite (%s)", model_path,
                    LITERT_HINT)
        Interpreter, runtime = tf.lite.Interpreter, "tensorflow-tflite"
    try:
        if model_content is not None:
            return Interpreter(model_content=model_content, num_threads=threads), runtime
        return Interpreter(model_path=str(model_path), num_threads=threads), runtime
    except (ValueError, RuntimeError) as error:
        raise ModelSourceError(f"{model_path} is not a loadable TFLite model ({error})") from None


def with_outputs(model_content: bytes, tensor_names: list[str], origin: str) -> bytes:
    """The same model with the named internal tensors added to its outputs (no-op if they already are).

    Reading an intermediate tensor otherwise needs the interpreter to keep every tensor alive
    (experimental_preserve_all_tensors); as an output only that tensor is kept. Rewrites the
    flatbuffer with TFLite's own schema (shipped with ai-edge-litert, or TensorFlow), nothing else.
    """
    import flatbuffers

    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        from tensorflow.lite.python import schema_py_generated as schema
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(model_content), 0)
        graph = model.subgraphs[0]
    except Exception as error:  # a truncated or foreign file fails anywhere inside the generated reader
        raise ModelSourceError(f"{origin} is not a TFLite model ({type(error).__name__}: {error})") from None
    names = [tensor.name.decode() for tensor in graph.tensors]
    outputs = list(graph.outputs)
    for name in tensor_names:
        if name not in names:
            raise ModelSourceError(f"{origin} has no tensor named {name}; is it the right model?")
        if names.index(name) not in outputs:
            outputs.append(names.index(name))
    if outputs == list(graph.outputs):
        return model_content
    graph.outputs = outputs
    builder = flatbuffers.Builder(len(model_content) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


class TFLiteNetwork:
    """The converted network: [N, 96, 64] float32 examples -> [N, 128] raw embeddings."""

    def __init__(self, model_path: str, threads: int | None = None):
        self.model_path = str(model_path)
        self.interpreter, self.runtime = load_interpreter(model_path, threads)
        self._input = self.interpreter.get_input_details()[0]["index"]
        self._output = self.interpreter.get_output_details()[0]["index"]
        self._batch = 0

    def __call__(self, examples: np.ndarray) -> np.ndarray:
        if not len(examples):
            return np.zeros((0, VGGISH.embedding_size), np.float32)
        if len(examples) != self._batch:
            self.interpreter.resize_tensor_input(self._input, [len(examples), VGGISH.example_frames,
                                                              VGGISH.mel_bands])
            self.interpreter.allocate_tensors()
            self._batch = len(examples)
        self.interpreter.set_tensor(self._input, np.ascontiguousarray(examples, dtype=np.float32))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output).copy()


class TFLiteEmbedder:
    """VGGish on a hub: the exact numpy front end + a TFLite network + AudioSet post-processing.

    It answers to the embedder id of the model it was converted from (recorded at export with
    the measured difference), because detectors are trained on that model's embeddings.
    """

    frames = VGGISH_FRAMES
    class_names = None

    def __init__(self, network: TFLiteNetwork, pca: PCAParams, embedder_id: str, provenance: dict):
        self.network = network
        self.pca = pca
        self.embedder_id = embedder_id
        self.provenance = dict(provenance)

    def raw_embeddings(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        examples = [waveform_to_examples(chunk) for chunk in chunks]
        if not examples:
            return []
        raw = self.network(np.concatenate(examples))
        return np.split(raw, np.cumsum([len(e) for e in examples])[:-1])

    def embed_chunks(self, chunks: list[np.ndarray]) -> list[ChunkFrames]:
        return [ChunkFrames(raw) for raw in self.raw_embeddings(chunks)]

    def postprocess(self, raw: np.ndarray) -> np.ndarray:
        return postprocess(raw, self.pca)


def embedding_error(reference_raw: np.ndarray, raw: np.ndarray, pca: PCAParams) -> dict[str, float]:
    """How far `raw` is from `reference_raw`: raw float error and AudioSet uint8 disagreement."""
    if not len(reference_raw):
        return {"examples": 0}
    difference = np.abs(raw.astype(np.float64) - reference_raw)
    scale = float(np.abs(reference_raw).max()) or 1.0
    quantized = postprocess(raw, pca).astype(np.int16) - postprocess(reference_raw, pca).astype(np.int16)
    return {
        "examples": int(len(raw)),
        "max_abs_raw_error": float(difference.max()),
        "mean_abs_raw_error": float(difference.mean()),
        "max_relative_raw_error": float(difference.max() / scale),
        "uint8_values_differing": float(np.mean(quantized != 0)),
        "max_uint8_difference": int(np.abs(quantized).max()),
    }


def run_in_batches(function: Callable[[np.ndarray], np.ndarray], examples: np.ndarray, size: int = 32
                   ) -> np.ndarray:
    parts = [function(examples[start:start + size]) for start in range(0, len(examples), size)]
    return np.concatenate(parts) if parts else np.zeros((0, VGGISH.embedding_size), np.float32)


def save_model(data: bytes, path: str | os.PathLike) -> None:
    with atomic_output(path, what="TFLite model") as partial:
        partial.write_bytes(data)
