"""Writing VGGish as a SavedModel with the TF Hub module's signature.

Hub's google/vggish/1 takes a 1-D float32 16 kHz waveform in [-1, 1] and returns [N, 128] raw
embeddings. Converting Google's checkpoint into that form lets the same weights be served
like the Hub model (and later be converted to TFLite for small hubs).
"""

from __future__ import annotations

import os

import numpy as np

from embed.frontend import mel_matrix
from embed.network import build_network
from embed.params import VGGISH


def waveform_to_examples_tf(waveform):
    """The VGGish log-mel front end in TensorFlow ops (float32), for the SavedModel graph."""
    import tensorflow as tf

    frames = tf.signal.frame(waveform, VGGISH.window_samples, VGGISH.hop_samples, pad_end=False)
    window = tf.signal.hann_window(VGGISH.window_samples, periodic=True, dtype=tf.float32)
    magnitude = tf.abs(tf.signal.rfft(frames * window, [VGGISH.fft_length]))
    mel = tf.matmul(magnitude, tf.constant(mel_matrix(), dtype=tf.float32))
    log_mel = tf.math.log(mel + VGGISH.log_offset)
    return tf.signal.frame(log_mel, VGGISH.example_frames, VGGISH.example_frames, axis=0, pad_end=False)


def export_hub_savedmodel(weights: dict[str, np.ndarray], directory: str | os.PathLike) -> None:
    import tensorflow as tf

    class HubVGGish(tf.Module):
        def __init__(self):
            super().__init__()
            self.network = build_network(weights)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, waveform):
            return self.network(waveform_to_examples_tf(waveform))

    module = HubVGGish()
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.__call__})
