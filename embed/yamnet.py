"""YAMNet: 1024-d embeddings and the 521 AudioSet class scores, on VGGish's 0.96 s frame grid.

Sources (--yamnet SOURCE or $HOMESOUND_YAMNET), with the same rules as VGGish's:
- a TF Hub handle (default https://tfhub.dev/google/yamnet/1, float32), fetched once by
  tensorflow_hub into $TFHUB_CACHE_DIR;
- a SavedModel with that signature: a 1-D float32 16 kHz waveform -> scores [N, 521], embeddings
  [N, 1024], log-mel spectrogram, for N patches of 0.96 s every 0.48 s;
- a .tflite file (one 15600-sample patch -> scores [1, 521]), whose embedding is the internal tensor
  `yamnet_frames/global_average_pooling2d/Mean`: it is made an extra output of the loaded model,
  so no other tensor is kept alive.
The class names come from `yamnet_class_map.csv` beside the .tflite file or in the SavedModel's
assets (as TF Hub ships it).

The grid: YAMNet's native hop is 0.48 s; homesound keeps one frame per 0.96 s, each reading the
0.975 s (15600 samples) that start where VGGish's example starts. Those are exactly YAMNet's
even-numbered patches (patch 2n starts at n x 0.96 s), so the SavedModel path takes every other
patch and the .tflite path computes only those patches: both embedders' frames share one time
grid (frame n = [0.96 n, 0.96 n + 0.975) s), and detectors, labels and events line up.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from embed.embedder import (
    ChunkFrames, Embedder, EmbedderConfig, EmbedderSource, directory_sha256, load_hub_savedmodel,
    resolve_hub_handle,
)
from homesound import __version__
from homesound.errors import ModelSourceError
from homesound.frames import YAMNET_FRAMES
from homesound.hashing import file_sha256

DEFAULT_HUB_HANDLE = "https://tfhub.dev/google/yamnet/1"
SOURCE_ENV = "HOMESOUND_YAMNET"
CLASS_MAP_FILE = "yamnet_class_map.csv"
CLASS_MAP_URL = "https://raw.githubusercontent.com/tensorflow/models/master/research/audioset/yamnet/yamnet_class_map.csv"
EMBEDDING_TENSOR = "yamnet_frames/global_average_pooling2d/Mean"
FRAMES = YAMNET_FRAMES
OVERLAP_SAMPLES = YAMNET_FRAMES.window_samples - YAMNET_FRAMES.hop_samples  # 240
GRID_DESCRIPTION = ("one 0.975 s patch (15600 samples at 16 kHz) every 0.96 s: YAMNet's even-numbered patches "
                    "of its 0.48 s hop, on VGGish's example grid")
POSTPROCESS_DESCRIPTION = "embedding stored as float16; class scores (sigmoid) as float16"


class YamnetEmbedder(Embedder):
    """YAMNet from any source: per frame a 1024-d embedding and 521 class scores."""

    frames = YAMNET_FRAMES

    def __init__(self, source: str, provenance: dict, class_names: list[str], config: EmbedderConfig):
        self.class_names = tuple(class_names)
        super().__init__(source, provenance, config)

    def raw_embeddings(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        return [frames.raw for frames in self.embed_chunks(chunks)]

    def postprocess(self, raw: np.ndarray) -> np.ndarray:
        return self.frames.encode(raw)


class YamnetTFLiteEmbedder(YamnetEmbedder):
    """A YAMNet .tflite (one patch per call); needs a TFLite runtime only, so it also runs on hubs."""

    kind = "tflite"

    def __init__(self, model_path: str, provenance: dict, class_names: list[str], config: EmbedderConfig):
        from embed.tflite import load_interpreter, with_outputs

        self.model_path = str(model_path)
        try:
            content = Path(model_path).read_bytes()
        except OSError as error:
            raise ModelSourceError(f"YAMNet model {model_path}: cannot read ({error.strerror or error})") from None
        content = with_outputs(content, [EMBEDDING_TENSOR], f"YAMNet model {model_path}")
        self.interpreter, self.runtime = load_interpreter(self.model_path, config.threads, model_content=content)
        self.interpreter.allocate_tensors()
        (waveform,) = self.interpreter.get_input_details()
        outputs = {detail["name"]: detail for detail in self.interpreter.get_output_details()}
        scores = [d for d in outputs.values() if tuple(d["shape"])[-1:] == (YAMNET_FRAMES.class_count,)]
        if int(np.prod(waveform["shape"])) != YAMNET_FRAMES.window_samples or len(scores) != 1:
            raise ModelSourceError(
                f"YAMNet model {model_path} takes {list(waveform['shape'])} and gives "
                f"{[list(d['shape']) for d in outputs.values()]}; expected 15600 samples -> [1, 521] scores")
        self._input = waveform["index"]
        self._input_shape = tuple(waveform["shape"])
        self._scores = scores[0]["index"]
        self._embedding = outputs[EMBEDDING_TENSOR]["index"]
        super().__init__(str(model_path), provenance, class_names, config)

    def embed_chunks(self, chunks: list[np.ndarray]) -> list[ChunkFrames]:
        return [self._embed_chunk(chunk) for chunk in chunks]

    def _embed_chunk(self, chunk: np.ndarray) -> ChunkFrames:
        count = frame_count(len(chunk))
        raw = np.empty((count, YAMNET_FRAMES.dimension), np.float32)
        scores = np.empty((count, YAMNET_FRAMES.class_count), np.float32)
        chunk = np.asarray(chunk, dtype=np.float32)
        for frame in range(count):
            start = frame * YAMNET_FRAMES.hop_samples
            patch = chunk[start:start + YAMNET_FRAMES.window_samples].reshape(self._input_shape)
            self.interpreter.set_tensor(self._input, patch)
            self.interpreter.invoke()
            raw[frame] = self.interpreter.get_tensor(self._embedding).reshape(-1)
            scores[frame] = self.interpreter.get_tensor(self._scores).reshape(-1)
        return ChunkFrames(raw, scores)


class YamnetSavedModelEmbedder(YamnetEmbedder):
    """A SavedModel with TF Hub's signature (a local directory, or a Hub handle's cached copy)."""

    def __init__(self, kind: str, source: str, directory: str, provenance: dict, class_names: list[str],
                 config: EmbedderConfig):
        self.kind = kind
        self.model = load_hub_savedmodel(directory, "YAMNet", source)
        super().__init__(source, provenance, class_names, config)

    def embed_chunks(self, chunks: list[np.ndarray]) -> list[ChunkFrames]:
        return [self._embed_chunk(chunk) for chunk in chunks]

    def _embed_chunk(self, chunk: np.ndarray) -> ChunkFrames:
        count = frame_count(len(chunk))
        if count == 0:
            return ChunkFrames(np.zeros((0, YAMNET_FRAMES.dimension), np.float32),
                               np.zeros((0, YAMNET_FRAMES.class_count), np.float32))
        result = self.model(np.asarray(chunk, dtype=np.float32))
        outputs = list(result.values()) if isinstance(result, dict) else list(result)
        arrays = [np.asarray(output, dtype=np.float32) for output in outputs]
        by_width = {array.shape[-1]: array for array in arrays if array.ndim == 2}
        patches = 2 * count - 1  # at the native 0.48 s hop; ours are the even ones
        scores, raw = by_width.get(YAMNET_FRAMES.class_count), by_width.get(YAMNET_FRAMES.dimension)
        if scores is None or raw is None or len(raw) < patches or len(scores) < patches:
            raise ModelSourceError(
                f"YAMNet model {self.source} returned shapes {[a.shape for a in arrays]} for {patches} patches; "
                "expected TF Hub's signature (waveform -> scores [N, 521], embeddings [N, 1024], spectrogram)")
        return ChunkFrames(raw[0:patches:2], scores[0:patches:2])


def frame_count(samples: int) -> int:
    """Whole frames in a chunk of this many 16 kHz samples (each reads 15600, one every 15360)."""
    return max(0, (samples - OVERLAP_SAMPLES) // YAMNET_FRAMES.hop_samples)


def locate(config: EmbedderConfig) -> EmbedderSource:
    """Resolve the --yamnet option without loading the network (a Hub handle is fetched or found in the cache)."""
    source = config.source or os.environ.get(SOURCE_ENV) or DEFAULT_HUB_HANDLE
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "saved_model.pb").exists():
            raise ModelSourceError(f"YAMNet source {source} is a directory without saved_model.pb")
        return EmbedderSource("savedmodel", str(path), str(path), model="yamnet",
                              class_map=_class_map_in(path / "assets", source))
    if path.is_file():
        if path.suffix != ".tflite":
            raise ModelSourceError(f"YAMNet source {source}: give a .tflite file, a SavedModel directory or a "
                                   "TF Hub handle")
        return EmbedderSource("tflite", str(path), str(path), model="yamnet",
                              class_map=_class_map_in(path.parent, source))
    if "://" in source or source.startswith(("tfhub.dev/", "www.kaggle.com/")):
        directory = Path(resolve_hub_handle(source, "YAMNet", "--yamnet"))
        return EmbedderSource("hub", source, str(directory), model="yamnet",
                              class_map=_class_map_in(directory / "assets", source))
    raise ModelSourceError(
        f"YAMNet source {source} not found: give a TF Hub handle ({DEFAULT_HUB_HANDLE}), a SavedModel "
        "directory, or a yamnet .tflite file"
    )


def build(located: EmbedderSource, config: EmbedderConfig) -> YamnetEmbedder:
    provenance, names = provenance_of(located), read_class_names(located.class_map)
    if located.kind == "tflite":
        return YamnetTFLiteEmbedder(located.location, provenance, names, config)
    return YamnetSavedModelEmbedder(located.kind, located.source, located.location, provenance, names, config)


def provenance_of(located: EmbedderSource) -> dict:
    """What build() would give, from file hashes alone."""
    tflite = located.kind == "tflite"
    return {
        "model": "yamnet",
        "source_kind": located.kind,
        "source": located.source,
        "weights_sha256": file_sha256(located.location) if tflite else directory_sha256(located.location),
        "class_map_sha256": file_sha256(located.class_map),
        "embedding": f"tensor {EMBEDDING_TENSOR} (exposed as an output)" if tflite else "the embeddings output",
        "grid": GRID_DESCRIPTION,
        "frontend": f"inside the {located.kind} model",
        "postprocess": POSTPROCESS_DESCRIPTION,
        "hop_seconds": YAMNET_FRAMES.hop_seconds,
        "homesound_version": __version__,
    }


def read_class_names(path: str) -> list[str]:
    """The display names of yamnet_class_map.csv (index, mid, display_name), in score column order."""
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            rows = list(csv.DictReader(stream))
        names = [row["display_name"] for row in sorted(rows, key=lambda row: int(row["index"]))]
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise ModelSourceError(f"YAMNet class map {path}: not readable as index,mid,display_name ({error})") from None
    if len(names) != YAMNET_FRAMES.class_count:
        raise ModelSourceError(f"YAMNet class map {path}: {len(names)} classes, expected {YAMNET_FRAMES.class_count}")
    return names


def _class_map_in(folder: Path, source: str) -> str:
    candidate = folder / CLASS_MAP_FILE
    if not candidate.is_file():
        raise ModelSourceError(f"no {CLASS_MAP_FILE} for YAMNet source {source}: put it in {folder} "
                               f"(download it from {CLASS_MAP_URL})")
    return str(candidate)
