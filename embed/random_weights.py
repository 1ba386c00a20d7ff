"""Deterministic random VGGish weights in Google's three distribution formats.

Real weights come from the internet (TF Hub, storage.googleapis.com), which tests, CI and
offline machines do not have. These files have exactly the real formats (TF1 checkpoint with
the original variable names, vggish_pca_params.npz, Hub-signature SavedModel), so every loading
path runs for real; the embeddings they give are meaningless for detection.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embed.network import CONV_LAYERS, DENSE_LAYERS, expected_shapes
from embed.postprocess import PCA_EIGEN_VECTORS, PCA_MEANS
from embed.savedmodel import export_hub_savedmodel
from homesound.output_files import output_error, prepare_folder

MANIFEST = "random-weights.json"  # written last: its presence says all three files are complete


@dataclass(frozen=True)
class RandomVGGishFiles:
    checkpoint: Path  # vggish_model.ckpt (TF1 checkpoint prefix)
    pca: Path  # vggish_pca_params.npz
    savedmodel: Path  # directory with the Hub signature


def random_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """He-scaled so activations neither vanish nor explode through the 9 layers."""
    rng = np.random.default_rng(seed)
    weights = {}
    relu_layers = {scope: True for scope, *_ in CONV_LAYERS} | {scope: relu for scope, _, _, relu in DENSE_LAYERS}
    for name, shape in expected_shapes().items():
        if name.endswith("/biases"):
            weights[name] = (0.01 * rng.standard_normal(shape)).astype(np.float32)
            continue
        fan_in = int(np.prod(shape[:-1]))
        gain = 2.0 if relu_layers[name.rsplit("/", 1)[0]] else 1.0
        weights[name] = (rng.standard_normal(shape) * np.sqrt(gain / fan_in)).astype(np.float32)
    return weights


def random_pca(seed: int = 0, scale: float = 8.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    size = expected_shapes()["vggish/fc2/biases"][0]
    orthonormal, _ = np.linalg.qr(rng.standard_normal((size, size)))
    return {PCA_EIGEN_VECTORS: orthonormal / scale, PCA_MEANS: 0.1 * rng.standard_normal((size, 1))}


def write_checkpoint(weights: dict[str, np.ndarray], path: str | os.PathLike, *, v1_format: bool = False) -> None:
    """A TF1 checkpoint with Google's variable names (V1 = the single file Google released)."""
    import tensorflow as tf

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        # Fed through placeholders: constants of this size would make graph building very slow.
        feeds = {name: tf.compat.v1.placeholder(tf.float32, value.shape) for name, value in weights.items()}
        variables = [tf.compat.v1.Variable(feeds[name], name=name) for name in weights]
        version = tf.compat.v1.train.SaverDef.V1 if v1_format else tf.compat.v1.train.SaverDef.V2
        saver = tf.compat.v1.train.Saver(variables, write_version=version)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer(),
                        {feeds[name]: value for name, value in weights.items()})
            saver.save(session, str(path), write_meta_graph=False, write_state=False)


def _files(directory: Path) -> RandomVGGishFiles:
    return RandomVGGishFiles(directory / "vggish_model.ckpt", directory / "vggish_pca_params.npz",
                             directory / "vggish_savedmodel")


def _manifest(seed: int, v1_format: bool) -> dict:
    return {"seed": seed, "checkpoint_format": "V1" if v1_format else "V2", "random": True}


def existing_random_vggish(directory: str | os.PathLike, seed: int = 0, *,
                           v1_format: bool = False) -> RandomVGGishFiles | None:
    """The files if a complete earlier run wrote them with the same seed and format (no TensorFlow needed)."""
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    files = _files(directory)
    complete = files.pca.is_file() and (files.savedmodel / "saved_model.pb").is_file() and (
        files.checkpoint.is_file() or files.checkpoint.with_name(files.checkpoint.name + ".index").is_file())
    return files if complete and manifest == _manifest(seed, v1_format) else None


def write_random_vggish(directory: str | os.PathLike, seed: int = 0, *, v1_format: bool = False) -> RandomVGGishFiles:
    directory = prepare_folder(directory, "--out folder")
    files = _files(directory)
    (directory / MANIFEST).unlink(missing_ok=True)
    weights = random_weights(seed)
    try:
        write_checkpoint(weights, files.checkpoint, v1_format=v1_format)
        np.savez(files.pca, **random_pca(seed))
        export_hub_savedmodel(weights, files.savedmodel)
        (directory / MANIFEST).write_text(json.dumps(_manifest(seed, v1_format), sort_keys=True))
    except OSError as error:
        raise output_error(directory, error, "random weights into") from None
    return files
