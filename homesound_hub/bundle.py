"""The hub directory: everything `homesound listen --hub DIR` needs, without TensorFlow or torch.

    manifest.json            what is here, where it came from, and the measured embedding errors
    vggish_<variant>.tflite  VGGish: the network (float32 always; float16, dynamic, int8 if asked)
    vggish_pca_params.npz    VGGish: AudioSet post-processing
    yamnet.tflite            YAMNet: the .tflite it was embedded with, its embedding tensor made an output
    yamnet_class_map.csv     YAMNet: the names of its class scores
    detector.npz             the causal detector for numpy (classify.portable)
    resample_kaiser_best.npz resampy's filter table, so resampling needs numpy only

Exporting needs the full install (it loads the embedder in TensorFlow and the detector in torch);
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
from homesound.hashing import file_sha256
from homesound.output_files import atomic_output

HUB_FORMAT = "homesound-hub"
HUB_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PCA_FILE = "vggish_pca_params.npz"
YAMNET_FILE = "yamnet.tflite"
YAMNET_VARIANT = "tflite"  # a YAMNet hub holds the one .tflite its detector's embeddings came from
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
    embedder: object  # embed.tflite.TFLiteEmbedder (VGGish) or embed.yamnet.YamnetTFLiteEmbedder
    detector: object  # classify.portable.PortableDetector
    filter_table: tuple[np.ndarray, int]
    runtime: str  # the TFLite interpreter in use
    exact: bool  # the embeddings are those of the embedder id they carry (not an approximation)

    @property
    def description(self) -> str:
        return f"hub {self.directory} ({self.manifest.get('embedder_model', 'vggish')} {self.variant}, {self.runtime})"


def load_hub(directory: str | os.PathLike, variant: str | None = None, threads: int | None = None) -> Hub:
    """`variant`: the VGGish variant (default float32); a YAMNet hub has its one .tflite."""
    from classify.portable import PortableDetector

    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise HomesoundError(f"{directory} is not a hub directory (no {MANIFEST}); "
                             "write one with homesound export --model MODEL.pt --hub DIR")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != HUB_FORMAT or manifest.get("format_version", 0) > HUB_FORMAT_VERSION:
        raise HomesoundError(f"{manifest_path}: not a hub manifest this homesound ({__version__}) reads")
    with np.load(directory / FILTER_FILE) as stored:
        filter_table = (stored["half_window"], int(stored["precision"]))
    if manifest.get("embedder_model", "vggish") == "yamnet":
        if variant not in (None, YAMNET_VARIANT):
            raise HomesoundError(f"{directory} is a YAMNet hub: it holds one model (the .tflite its detector's "
                                 "embeddings came from); --variant is for VGGish hubs")
        embedder, variant = _load_yamnet(directory, manifest, threads), YAMNET_VARIANT
        runtime, exact = embedder.runtime, True
    else:
        embedder, variant = _load_vggish(directory, manifest, variant or "float32", threads)
        runtime, exact = embedder.network.runtime, variant == "float32"
    detector = PortableDetector.load(directory / DETECTOR_FILE)
    detector.check_embedder(embedder.embedder_id)
    return Hub(directory, manifest, variant, embedder, detector, filter_table, runtime, exact)


def _load_vggish(directory: Path, manifest: dict, variant: str, threads: int | None):
    from embed.tflite import TFLiteEmbedder, TFLiteNetwork

    if variant not in manifest["variants"]:
        raise HomesoundError(f"{directory} has no {variant} VGGish (it has {', '.join(manifest['variants'])}); "
                             f"export again with --quantize {variant}")
    network = TFLiteNetwork(directory / model_file(variant), threads)
    provenance = {**manifest["embedder_provenance"], "runtime": f"tflite-{variant}",
                  "measured_error": manifest["variants"][variant]}
    embedder = TFLiteEmbedder(network, PCAParams.load(str(directory / PCA_FILE)), manifest["embedder_id"],
                              provenance)
    return embedder, variant


def _load_yamnet(directory: Path, manifest: dict, threads: int | None):
    """The packed .tflite with the provenance it was embedded with: the same id, the same numbers."""
    from embed.embedder import EmbedderConfig
    from embed.yamnet import CLASS_MAP_FILE, YamnetTFLiteEmbedder, read_class_names

    embedder = YamnetTFLiteEmbedder(directory / YAMNET_FILE, manifest["embedder_provenance"],
                                    read_class_names(str(directory / CLASS_MAP_FILE)),
                                    EmbedderConfig(model="yamnet", batch_size=1, threads=threads))
    if embedder.embedder_id != manifest["embedder_id"]:
        raise HomesoundError(f"{directory}: the manifest's YAMNet provenance does not give its embedder id; "
                             "export the hub again")
    return embedder


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
    """The embedder (VGGish converted to TFLite, or YAMNet's own .tflite) and the detector at `model_path`
    into a hub directory."""
    from classify.detector import Detector
    from classify.portable import export_portable
    from embed.resample import load_filter_table

    detector = Detector.load(model_path, embedder_id=embedder.embedder_id)
    if not detector.streamable:
        raise HomesoundError(f"{model_path} is bidirectional (offline only); train a causal detector for a hub")
    yamnet = embedder.frames.model == "yamnet"
    if yamnet and (getattr(embedder, "kind", None) != "tflite" or quantizations):
        raise HomesoundError(
            "a YAMNet hub runs YAMNet's .tflite as it is (no --quantize): train the detector on embeddings "
            f"from a yamnet .tflite (homesound embed --embedder yamnet --yamnet yamnet.tflite); {model_path} was "
            f"trained on YAMNet from a {getattr(embedder, 'kind', '?')} source")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MANIFEST).unlink(missing_ok=True)  # incomplete until the new manifest lands

    chunks = calibration_chunks(calibration_audio) if calibration_audio else synthetic_calibration_chunks()
    if not chunks:
        raise HomesoundError("the calibration audio is shorter than one 0.96 s example")
    if yamnet:
        variants = {YAMNET_VARIANT: _pack_yamnet(embedder, chunks, directory, progress)}
    else:
        variants = _convert_vggish(embedder, chunks, directory, quantizations, progress)
    window, precision = load_filter_table(VGGISH.resample_filter)
    np.savez(directory / FILTER_FILE, half_window=window, precision=np.int64(precision))
    model_sha256 = file_sha256(model_path)
    export_portable(detector, directory / DETECTOR_FILE, model_sha256)
    manifest = {
        "format": HUB_FORMAT, "format_version": HUB_FORMAT_VERSION, "homesound_version": __version__,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "embedder_model": embedder.frames.model, "frames": embedder.frames.to_dict(),
        "embedder_id": embedder.embedder_id, "embedder_provenance": embedder.provenance,
        "detector": {"file": DETECTOR_FILE, "source": str(Path(model_path).resolve()), "sha256": model_sha256,
                     "classes": list(detector.classes), "thresholds": detector.thresholds,
                     "input_encoding": detector.input_encoding},
        "calibration": {"examples": len(chunks),
                        "audio": [str(p) for p in calibration_audio] or "synthetic noise, tones and sweeps"},
        "variants": variants,
    }
    with atomic_output(directory / MANIFEST, what="hub manifest") as partial:
        partial.write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


def _pack_yamnet(embedder, chunks: list[np.ndarray], directory: Path, progress: Callable[[str], None]) -> dict:
    """YAMNet's .tflite with its embedding as an output, checked to give what `embedder` gives."""
    import shutil

    from embed.embedder import EmbedderConfig
    from embed.tflite import save_model, with_outputs
    from embed.yamnet import CLASS_MAP_FILE, EMBEDDING_TENSOR, YamnetTFLiteEmbedder

    progress("packing the YAMNet .tflite ...")
    data = with_outputs(Path(embedder.model_path).read_bytes(), [EMBEDDING_TENSOR], embedder.model_path)
    save_model(data, directory / YAMNET_FILE)
    shutil.copyfile(Path(embedder.model_path).with_name(CLASS_MAP_FILE), directory / CLASS_MAP_FILE)
    packed = YamnetTFLiteEmbedder(directory / YAMNET_FILE, embedder.provenance, list(embedder.class_names),
                                  EmbedderConfig(model="yamnet", threads=2))
    reference, frames = embedder.embed_chunks(chunks), packed.embed_chunks(chunks)
    difference = {
        "frames": len(chunks),
        "max_abs_embedding_error": float(max(np.abs(a.raw - b.raw).max() for a, b in zip(reference, frames))),
        "max_abs_score_error": float(max(np.abs(a.class_scores - b.class_scores).max()
                                         for a, b in zip(reference, frames))),
    }
    started = time.perf_counter()
    packed.embed_chunks(chunks[:20])
    return {"file": YAMNET_FILE, "bytes": len(data), "error_vs_source": difference,
            "ms_per_example_2_threads": round((time.perf_counter() - started) / min(20, len(chunks)) * 1000, 1)}


def _convert_vggish(embedder, chunks: list[np.ndarray], directory: Path, quantizations: Sequence[str],
                    progress: Callable[[str], None]) -> dict:
    """VGGish's network as TFLite variants, each with its embedding error measured, and the PCA file."""
    from embed.frontend import waveform_to_examples
    from embed.tflite import (
        TFLiteNetwork, convert_network, embedding_error, network_weights, run_in_batches, save_model,
    )

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
    return variants


def _time_per_example(network, example: np.ndarray, repeats: int = 5) -> float:
    network(example)
    started = time.perf_counter()
    for _ in range(repeats):
        network(example)
    return (time.perf_counter() - started) / repeats
