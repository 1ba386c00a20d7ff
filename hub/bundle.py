"""The hub directory: everything `homesound listen --hub DIR` needs, without TensorFlow or torch.

    manifest.json            what is here, where it came from, and the measured embedding errors
    vggish_<variant>.tflite  the VGGish network (float32 always; float16, dynamic, int8 if asked)
    vggish_pca_params.npz    AudioSet post-processing
    detector.npz             the causal detector for numpy (classify.portable)
    resample_kaiser_best.npz resampy's filter table, so resampling needs numpy only

Exporting needs the full install (it loads VGGish in TensorFlow and the detector in torch);
loading needs numpy and a TFLite runtime. The manifest is written last: a directory without
one is an interrupted export.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from embed.params import VGGISH
from embed.postprocess import PCA_EIGEN_VECTORS, PCA_MEANS, PCAParams
from homesound import __version__
from homesound.errors import HomesoundError

HUB_FORMAT = "homesound-hub"
HUB_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PCA_FILE = "vggish_pca_params.npz"
DETECTOR_FILE = "detector.npz"
FILTER_FILE = f"resample_{VGGISH.resample_filter}.npz"
CALIBRATION_EXAMPLES = 200  # int8 calibration and error measurement: ~3 minutes of audio
FLOAT32_TOLERANCE = 1e-3  # relative raw error beyond which the conversion is not "the same network"


def model_file(variant: str) -> str:
    return f"vggish_{variant}.tflite"


@dataclass(frozen=True)
class Hub:
    directory: Path
    manifest: dict
    variant: str
    embedder: object  # embed.tflite.TFLiteEmbedder
    detector: object  # classify.portable.PortableDetector
    filter_table: tuple[np.ndarray, int]

    @property
    def description(self) -> str:
        return f"hub {self.directory} ({self.variant}, {self.embedder.network.runtime})"


def load_hub(directory: str | os.PathLike, variant: str = "float32", threads: int | None = None) -> Hub:
    from classify.portable import PortableDetector
    from embed.tflite import TFLiteEmbedder, TFLiteNetwork

    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise HomesoundError(f"{directory} is not a hub directory (no {MANIFEST}); "
                             "write one with homesound export --model MODEL.pt --hub DIR")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != HUB_FORMAT or manifest.get("format_version", 0) > HUB_FORMAT_VERSION:
        raise HomesoundError(f"{manifest_path}: not a hub manifest this homesound ({__version__}) reads")
    if variant not in manifest["variants"]:
        raise HomesoundError(f"{directory} has no {variant} VGGish (it has {', '.join(manifest['variants'])}); "
                             f"export again with --quantize {variant}")
    with np.load(directory / FILTER_FILE) as stored:
        filter_table = (stored["half_window"], int(stored["precision"]))
    network = TFLiteNetwork(directory / model_file(variant), threads)
    provenance = {**manifest["embedder_provenance"], "runtime": f"tflite-{variant}",
                  "measured_error": manifest["variants"][variant]}
    embedder = TFLiteEmbedder(network, PCAParams.load(str(directory / PCA_FILE)), manifest["embedder_id"],
                              provenance)
    detector = PortableDetector.load(directory / DETECTOR_FILE)
    detector.check_embedder(embedder.embedder_id)
    return Hub(directory, manifest, variant, embedder, detector, filter_table)


# --- export (full install) --------------------------------------------------------------------------------


def calibration_chunks(audio_files: Sequence[str], examples: int = CALIBRATION_EXAMPLES) -> list[np.ndarray]:
    """16 kHz chunks of one example each, from real audio (the exact front end's input)."""
    from embed.audio_io import AudioReader
    from embed.pipeline import waveform_chunks

    chunks: list[np.ndarray] = []
    for path in audio_files:
        with AudioReader(path) as reader:
            for chunk in waveform_chunks(reader.blocks(), reader.info.sample_rate, 1):
                chunks.append(chunk)
                if len(chunks) >= examples:
                    return chunks
    return chunks


def synthetic_calibration_chunks(examples: int = CALIBRATION_EXAMPLES, seed: int = 0) -> list[np.ndarray]:
    """Noise, tones and sweeps at many levels: a stand-in when no audio is given (real audio is better)."""
    rng = np.random.default_rng(seed)
    size = VGGISH.example_samples + VGGISH.example_overlap_samples
    t = np.arange(size) / VGGISH.sample_rate
    chunks = []
    for index in range(examples):
        level = 10 ** rng.uniform(-3.5, -0.3)
        kind = index % 4
        if kind == 0:
            signal = rng.standard_normal(size)
        elif kind == 1:
            signal = np.sin(2 * np.pi * rng.uniform(100, 4000) * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
        elif kind == 2:
            f0, f1 = rng.uniform(200, 800), rng.uniform(800, 6000)
            signal = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * t[-1])))
        else:
            signal = np.cumsum(rng.standard_normal(size)) / 50  # brown noise
        chunks.append(np.clip(level * signal / max(1e-9, np.abs(signal).max()), -1, 1))
    return chunks


def export_hub(model_path: str, embedder, directory: str | os.PathLike, *, quantizations: Sequence[str] = (),
               calibration_audio: Sequence[str] = (), progress: Callable[[str], None] = print) -> dict:
    """Convert VGGish (as `embedder` computes it) and the detector at `model_path` into a hub directory."""
    from classify.detector import Detector, file_sha256
    from classify.portable import export_portable
    from embed.resample import load_filter_table
    from embed.tflite import (
        TFLiteNetwork, convert_network, embedding_error, network_weights, run_in_batches, save_model,
    )
    from embed.frontend import waveform_to_examples

    detector = Detector.load(model_path, embedder_id=embedder.embedder_id)
    if not detector.streamable:
        raise HomesoundError(f"{model_path} is bidirectional (offline only); train a causal detector for a hub")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MANIFEST).unlink(missing_ok=True)  # incomplete until the new manifest lands

    chunks = calibration_chunks(calibration_audio) if calibration_audio else synthetic_calibration_chunks()
    if not chunks:
        raise HomesoundError("the calibration audio is shorter than one 0.96 s example")
    examples = np.concatenate([waveform_to_examples(chunk) for chunk in chunks])
    reference = np.concatenate(embedder.raw_embeddings(chunks)).astype(np.float64)
    weights = network_weights(embedder)

    variants: dict[str, dict] = {}
    float32_raw = None
    for variant in ["float32"] + [q for q in dict.fromkeys(quantizations) if q != "float32"]:
        progress(f"converting VGGish to TFLite ({variant}) ...")
        started = time.perf_counter()
        data = convert_network(weights, variant, examples if variant == "int8" else None)
        save_model(data, directory / model_file(variant))
        network = TFLiteNetwork(directory / model_file(variant), threads=2)
        raw = run_in_batches(network, examples)
        seconds_per_example = _time_per_example(network, examples[:1])
        report = {
            "file": model_file(variant), "bytes": len(data), "convert_seconds": round(time.perf_counter() - started, 1),
            "ms_per_example_2_threads": round(seconds_per_example * 1000, 1),
            "error_vs_source": embedding_error(reference, raw, embedder.pca),
        }
        if variant == "float32":
            float32_raw = raw
            if report["error_vs_source"]["max_relative_raw_error"] > FLOAT32_TOLERANCE:
                raise HomesoundError(f"the float32 TFLite VGGish differs from {embedder.source} by "
                                     f"{report['error_vs_source']['max_relative_raw_error']:.2e} (relative); "
                                     "the conversion is broken, not exporting")
        else:
            report["error_vs_float32"] = embedding_error(float32_raw.astype(np.float64), raw, embedder.pca)
        variants[variant] = report
        del data, network

    np.savez(directory / PCA_FILE, **{PCA_EIGEN_VECTORS: embedder.pca.eigen_vectors, PCA_MEANS: embedder.pca.means})
    window, precision = load_filter_table(VGGISH.resample_filter)
    np.savez(directory / FILTER_FILE, half_window=window, precision=np.int64(precision))
    model_sha256 = file_sha256(model_path)
    export_portable(detector, directory / DETECTOR_FILE, model_sha256)
    manifest = {
        "format": HUB_FORMAT, "format_version": HUB_FORMAT_VERSION, "homesound_version": __version__,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "embedder_id": embedder.embedder_id, "embedder_provenance": embedder.provenance,
        "detector": {"file": DETECTOR_FILE, "source": str(Path(model_path).resolve()), "sha256": model_sha256,
                     "classes": list(detector.classes), "thresholds": detector.thresholds,
                     "input_encoding": detector.input_encoding},
        "calibration": {"examples": int(len(examples)),
                        "audio": [str(p) for p in calibration_audio] or "synthetic noise, tones and sweeps"},
        "variants": variants,
    }
    partial = directory / (MANIFEST + ".partial")
    partial.write_text(json.dumps(manifest, indent=2, default=str))
    os.replace(partial, directory / MANIFEST)
    return manifest


def _time_per_example(network, example: np.ndarray, repeats: int = 5) -> float:
    network(example)
    started = time.perf_counter()
    for _ in range(repeats):
        network(example)
    return (time.perf_counter() - started) / repeats
