"""A SavedModel with TF Hub's google/yamnet/1 signature and RANDOM weights, for the Hub-path tests.

Like Hub's model it takes a 1-D float32 16 kHz waveform, pads it the way YAMNet does (at least one
0.975 s patch, then whole 0.48 s hops), computes YAMNet's log-mel front end (25 ms windows, 10 ms
hop, 512-point FFT, 64 mel bands 125-7500 Hz, log(mel + 0.001)), frames it into 96 x 64 patches
every 48 frames, and returns (scores [N, 521], embeddings [N, 1024], log_mel_spectrogram [F, 64]).
The network behind the patches is a small random one (pooled log-mel -> ReLU 1024 -> sigmoid 521):
the tests check framing and plumbing, not what YAMNet hears. Its class map is an asset, and
`class_map_path()` returns it, as on TF Hub.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from embed.yamnet import CLASS_MAP_FILE

RATE = 16000
PATCH_SAMPLES = 15600  # 0.96 s of frames + the last window's extra 15 ms
HOP_SAMPLES = 7680  # YAMNet's native 0.48 s patch hop


def write_class_map(path: Path, names: list[str]) -> Path:
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["index", "mid", "display_name"])
        writer.writerows([index, f"/m/test{index}", name] for index, name in enumerate(names))
    return path


def write_random_yamnet_savedmodel(directory: Path, class_names: list[str], seed: int = 0) -> Path:
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    staging = Path(f"{directory}.staging")
    staging.mkdir(parents=True, exist_ok=True)
    class_map = write_class_map(staging / CLASS_MAP_FILE, class_names)

    class RandomYamnet(tf.Module):
        def __init__(self):
            super().__init__()
            self.hidden = tf.Variable(rng.normal(0, 0.1, (128, 1024)).astype(np.float32))
            self.hidden_bias = tf.Variable(rng.normal(0, 0.5, 1024).astype(np.float32))
            self.scores = tf.Variable(rng.normal(0, 0.05, (1024, len(class_names))).astype(np.float32))
            self.mel = tf.constant(tf.signal.linear_to_mel_weight_matrix(64, 257, RATE, 125.0, 7500.0))
            self.class_map = tf.saved_model.Asset(str(class_map))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, waveform):
            samples = tf.maximum(tf.shape(waveform)[0], PATCH_SAMPLES)
            hops = (samples - PATCH_SAMPLES + HOP_SAMPLES - 1) // HOP_SAMPLES
            padded = tf.pad(waveform, [[0, PATCH_SAMPLES + hops * HOP_SAMPLES - tf.shape(waveform)[0]]])
            magnitude = tf.abs(tf.signal.stft(padded, frame_length=400, frame_step=160, fft_length=512))
            log_mel = tf.math.log(tf.matmul(magnitude, self.mel) + 0.001)
            patches = tf.signal.frame(log_mel, 96, 48, axis=0)
            pooled = tf.concat([tf.reduce_mean(patches, axis=1), tf.reduce_max(patches, axis=1)], axis=1)
            embeddings = tf.nn.relu(tf.matmul(pooled, self.hidden) + self.hidden_bias)
            scores = tf.sigmoid(tf.matmul(embeddings, self.scores))
            return scores, embeddings, log_mel

        @tf.function(input_signature=[])
        def class_map_path(self):
            return self.class_map.asset_path

    tf.saved_model.save(RandomYamnet(), str(directory))
    return directory
