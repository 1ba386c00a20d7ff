"""The hub's options in a public module: the detector's embedder options (listen, export --hub) and the
--hub kind of `homesound export` (homesound.workspace_cli owns that command and adds this group to it),
each with the function that turns the parsed options into the job's configuration."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from embed.options import add_model_options
from embed.tflite import QUANTIZATIONS
from homesound.errors import HomesoundError

if TYPE_CHECKING:
    from homesound_hub.jobs import DetectorEmbedder, ExportHubConfig

DETECTOR_DEFAULT_NOTE = ("; default here: what the detector was trained with (its model, and its source "
                         "if still present)")
HUB_EXPORT_DESCRIPTION = ("--hub DIR: the embedder as TFLite (VGGish converted, or YAMNet's .tflite) and the "
                          "detector for numpy, for homesound listen --hub DIR on a box without TensorFlow or torch.")


def add_detector_embedder_options(parser, with_embedder: bool = True) -> None:
    """--embedder, --vggish, --yamnet, --pca; by default what the detector was trained with."""
    add_model_options(parser, DETECTOR_DEFAULT_NOTE, with_embedder)


def detector_embedder(args: argparse.Namespace) -> DetectorEmbedder:
    """The DetectorEmbedder of the options add_detector_embedder_options (and --backend,
    --no-xla where the command has them) added."""
    from homesound_hub.jobs import DetectorEmbedder

    return DetectorEmbedder(embedder=args.embedder, vggish=args.vggish, yamnet=args.yamnet, pca=args.pca,
                            backend=getattr(args, "backend", None), jit_compile=not getattr(args, "no_xla", False))


def add_hub_export_options(export: argparse.ArgumentParser, kinds: argparse._MutuallyExclusiveGroup) -> None:
    """--hub DIR as one of `export`'s kinds (`kinds`), and the options only it reads. `export` has its own
    --embedder (an embedder id, or vggish / yamnet), which --hub reads as the model the hub runs."""
    kinds.add_argument("--hub", metavar="DIR", help="the light runtime for a smart-home hub: VGGish as "
                       "TFLite (+ --quantize variants, their embedding error measured) or the YAMNet .tflite, "
                       "and the detector for numpy, so homesound listen --hub DIR needs neither TensorFlow "
                       "nor torch")
    hub = export.add_argument_group("--hub DIR")
    hub.add_argument("--model", metavar="MODEL.pt", help="the causal detector to run on the hub")
    hub.add_argument("--quantize", default="", metavar="VARIANTS",
                     help="comma-separated extra VGGish variants: float16, dynamic (int8 weights), "
                          "int8 (int8 weights and activations, calibrated); not for YAMNet")
    hub.add_argument("--calibration-audio", nargs="+", default=[], metavar="FILE",
                     help="home audio to calibrate int8 and to measure the errors on (default: synthetic)")
    add_detector_embedder_options(hub, with_embedder=False)


def export_hub_config(args: argparse.Namespace) -> ExportHubConfig:
    """The ExportHubConfig of `export --hub DIR` and its options."""
    from homesound_hub.jobs import ExportHubConfig

    if not args.model:
        raise HomesoundError("--hub needs --model MODEL.pt (the causal detector to run on the hub)")
    variants = tuple(v.strip() for v in args.quantize.split(",") if v.strip())
    unknown = [v for v in variants if v not in QUANTIZATIONS]
    if unknown:
        raise HomesoundError(f"--quantize {','.join(unknown)}: choose from {', '.join(QUANTIZATIONS)}")
    return ExportHubConfig(args.model, args.hub, quantizations=variants,
                           calibration_audio=tuple(args.calibration_audio), embedder=detector_embedder(args))
