"""The VGGish network in TensorFlow, built from Google's released variable names.

Architecture of Google's vggish_slim: 3x3 SAME convolutions with ReLU (64, 128, 2x256, 2x512),
2x2 max pools after conv1, conv2, conv3 and conv4, flatten, fc1 (2x4096, ReLU) and fc2 (128,
no activation: the embedding).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from embed.params import VGGISH
from homesound.errors import ModelSourceError

CONV_LAYERS = (  # (scope, input channels, output channels, max-pool after)
    ("vggish/conv1", 1, 64, True),
    ("vggish/conv2", 64, 128, True),
    ("vggish/conv3/conv3_1", 128, 256, False),
    ("vggish/conv3/conv3_2", 256, 256, True),
    ("vggish/conv4/conv4_1", 256, 512, False),
    ("vggish/conv4/conv4_2", 512, 512, True),
)
FLATTENED = 6 * 4 * 512  # 96x64 halved four times, 512 channels
DENSE_LAYERS = (  # (scope, inputs, outputs, relu)
    ("vggish/fc1/fc1_1", FLATTENED, 4096, True),
    ("vggish/fc1/fc1_2", 4096, 4096, True),
    ("vggish/fc2", 4096, VGGISH.embedding_size, False),
)


def expected_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for scope, inputs, outputs, _ in CONV_LAYERS:
        shapes[f"{scope}/weights"] = (3, 3, inputs, outputs)
        shapes[f"{scope}/biases"] = (outputs,)
    for scope, inputs, outputs, _ in DENSE_LAYERS:
        shapes[f"{scope}/weights"] = (inputs, outputs)
        shapes[f"{scope}/biases"] = (outputs,)
    return shapes


def check_shapes(shapes: Mapping[str, tuple[int, ...]], origin: str) -> None:
    for name, shape in expected_shapes().items():
        if name not in shapes:
            raise ModelSourceError(f"{origin}: variable {name} is missing; is this Google's vggish_model.ckpt?")
        if tuple(shapes[name]) != shape:
            raise ModelSourceError(f"{origin}: variable {name} has shape {tuple(shapes[name])}, expected {shape}")


class CheckpointWeights(Mapping):
    """VGGish variables of a TF1 checkpoint (V1 single file, as released, or V2 index+data).

    Read one tensor at a time when asked, so loading never holds a second copy of all weights.
    """

    def __init__(self, path: str):
        import tensorflow as tf

        try:
            self._reader = tf.train.load_checkpoint(path)
        except (tf.errors.OpError, ValueError) as error:
            raise ModelSourceError(
                f"VGGish checkpoint {path}: not a readable TensorFlow checkpoint ({str(error).splitlines()[0]})"
            ) from None
        check_shapes(self._reader.get_variable_to_shape_map(), path)

    def __getitem__(self, name: str) -> np.ndarray:
        return self._reader.get_tensor(name).astype(np.float32, copy=False)

    def __iter__(self) -> Iterator[str]:
        return iter(expected_shapes())

    def __len__(self) -> int:
        return len(expected_shapes())


def build_network(weights: Mapping[str, np.ndarray], *, jit_compile: bool = False):
    """A tf.Module whose call maps [N, 96, 64] float32 log-mel examples to [N, 128] raw embeddings.

    Weights are variables (not graph constants) so a SavedModel stores them compactly.
    """
    import tensorflow as tf

    check_shapes({name: np.shape(weights[name]) for name in weights} if isinstance(weights, dict)
                 else expected_shapes(), "weights")

    class VGGishNetwork(tf.Module):
        def __init__(self, weights: Mapping[str, np.ndarray]):
            super().__init__(name="vggish")
            self.weights = {name: tf.Variable(np.asarray(weights[name], np.float32), trainable=False,
                                              name=name.replace("/", "_")) for name in expected_shapes()}

        @tf.function(
            input_signature=[tf.TensorSpec([None, VGGISH.example_frames, VGGISH.mel_bands], tf.float32)],
            jit_compile=jit_compile,
        )
        def __call__(self, examples):
            net = tf.expand_dims(examples, -1)
            for scope, _, _, pool in CONV_LAYERS:
                net = tf.nn.conv2d(net, self.weights[f"{scope}/weights"], strides=1, padding="SAME")
                net = tf.nn.relu(tf.nn.bias_add(net, self.weights[f"{scope}/biases"]))
                if pool:
                    net = tf.nn.max_pool2d(net, ksize=2, strides=2, padding="SAME")
            net = tf.reshape(net, [-1, FLATTENED])
            for scope, _, _, relu in DENSE_LAYERS:
                net = tf.matmul(net, self.weights[f"{scope}/weights"]) + self.weights[f"{scope}/biases"]
                if relu:
                    net = tf.nn.relu(net)
            return net

    return VGGishNetwork(weights)
