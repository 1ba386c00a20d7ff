"""The options every command that embeds audio shares (embed, detect, listen, export --hub), with
defaults from embed.embedder.EmbedderConfig."""

from __future__ import annotations

import argparse

from embed.embedder import EMBEDDER_MODELS, VGGISH_BACKENDS, VGGISH_PRECISIONS, EmbedderConfig
from homesound.config_defaults import default_of
from homesound.errors import HomesoundError

EMBEDDER_HELP = ("which network embeds the audio: vggish (default; 128-d, AudioSet's features) or yamnet (1024-d, "
                 "plus its 521 AudioSet class scores per frame); default: yamnet if --yamnet is given")
VGGISH_HELP = ("VGGish source: TF Hub handle (default https://tfhub.dev/google/vggish/1), SavedModel directory, "
               "or Google's vggish_model.ckpt; default from $HOMESOUND_VGGISH")
YAMNET_HELP = ("YAMNet source: TF Hub handle (default https://tfhub.dev/google/yamnet/1), SavedModel directory, or a "
               "yamnet .tflite file with yamnet_class_map.csv beside it; default from $HOMESOUND_YAMNET")
PCA_HELP = "vggish_pca_params.npz (default: $HOMESOUND_VGGISH_PCA, beside the checkpoint, or downloaded once)"


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (a batch or a worker count of 0 cannot work)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_model_options(parser, default_note: str = "", with_embedder: bool = True) -> None:
    """--embedder, --vggish, --yamnet, --pca: which network and where its files are.

    `default_note` tells where the defaults come from when not the usual (e.g. a detector's training data);
    `with_embedder=False` where the command already has an --embedder option (export: an id or a model).
    """
    if with_embedder:
        parser.add_argument("--embedder", choices=EMBEDDER_MODELS, help=EMBEDDER_HELP + default_note)
    parser.add_argument("--vggish", metavar="SOURCE", help=VGGISH_HELP + default_note)
    parser.add_argument("--yamnet", metavar="SOURCE", help=YAMNET_HELP + default_note)
    parser.add_argument("--pca", metavar="PCA.npz", help=PCA_HELP)


def add_embedder_options(parser: argparse.ArgumentParser, default_note: str = "") -> None:
    """The options that choose the embedder; shared by every command that embeds audio."""
    add_model_options(parser, default_note)
    batch_size = default_of(EmbedderConfig, "batch_size")
    parser.add_argument("--batch-size", type=positive_int, default=batch_size,
                        help=f"frames per network call (default {batch_size})")
    parser.add_argument("--no-xla", action="store_true", help="do not compile the VGGish network with XLA (--backend tf)")
    add_backend_options(parser)


def add_backend_options(parser: argparse.ArgumentParser, with_device: bool = True) -> None:
    """How VGGish's network runs: the same embeddings (and embedder id) with either backend."""
    parser.add_argument("--backend", choices=VGGISH_BACKENDS,
                        help="VGGish with PyTorch (the default: Google's weights are converted once into a file beside "
                             "them, then no TensorFlow is loaded) or TensorFlow; the same embeddings and embedder id "
                             "(default: $HOMESOUND_VGGISH_BACKEND or torch)")
    if with_device:
        parser.add_argument("--device", default=default_of(EmbedderConfig, "device"),
                            help="VGGish torch backend: cpu (default), cuda or cuda:N")
        parser.add_argument("--precision", choices=VGGISH_PRECISIONS, default=default_of(EmbedderConfig, "precision"),
                            help="VGGish torch backend: float32 (default; AudioSet-compatible); tf32 (CUDA) and bf16 "
                                 "are faster, print how far they are from float32, and get their own embedder id")


def chosen_model(args, default: str = "vggish") -> str:
    """--embedder, or yamnet when only --yamnet is given; a source option for the other model is a mistake.
    `args`: the parsed options, or any object with their names (e.g. homesound_hub.jobs.DetectorEmbedder)."""
    model = args.embedder or ("yamnet" if args.yamnet else "vggish" if args.vggish else default)
    if model not in EMBEDDER_MODELS:
        raise HomesoundError(f"--embedder {model}: choose {' or '.join(EMBEDDER_MODELS)}")
    if model == "yamnet" and (args.vggish or args.pca):
        raise HomesoundError("--vggish and --pca choose VGGish's files; with --embedder yamnet use --yamnet SOURCE")
    if model == "vggish" and args.yamnet:
        raise HomesoundError("--yamnet chooses YAMNet's files; add --embedder yamnet (or drop --yamnet)")
    return model


def embedder_config_from_args(args, default_model: str = "vggish", **settings) -> EmbedderConfig:
    """One EmbedderConfig from the embedder options, as chosen_model reads them (`settings` override the rest,
    e.g. batch_size=1); an option the object lacks takes EmbedderConfig's default."""
    model = chosen_model(args, default_model)
    defaults = {name: default_of(EmbedderConfig, name) for name in ("backend", "device", "precision")}
    runtime = {name: getattr(args, name, default) for name, default in defaults.items()}
    if model == "yamnet" and runtime != defaults:
        raise HomesoundError("--backend, --device and --precision choose how VGGish runs; YAMNet runs as it is")
    values = {"batch_size": getattr(args, "batch_size", default_of(EmbedderConfig, "batch_size")),
              "jit_compile": not getattr(args, "no_xla", False),
              "source": args.yamnet if model == "yamnet" else args.vggish, **runtime, **settings}
    return EmbedderConfig(model=model, pca=args.pca, **values)
