"""`homesound embed` (files -> .npz, or an archive -> workspace) and `homesound vggish` tools."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from homesound.errors import AudioDecodeError, HomesoundError

VGGISH_HELP = ("VGGish source: TF Hub handle (default https://tfhub.dev/google/vggish/1), SavedModel directory, "
               "or Google's vggish_model.ckpt; default from $HOMESOUND_VGGISH")
PCA_HELP = "vggish_pca_params.npz (default: $HOMESOUND_VGGISH_PCA, beside the checkpoint, or downloaded once)"


def add_embedder_options(parser: argparse.ArgumentParser) -> None:
    """The options that choose VGGish; shared by every command that embeds audio."""
    parser.add_argument("--vggish", metavar="SOURCE", help=VGGISH_HELP)
    parser.add_argument("--pca", metavar="PCA.npz", help=PCA_HELP)
    parser.add_argument("--batch-size", type=int, default=64, help="examples per network call (default 64)")
    parser.add_argument("--no-xla", action="store_true", help="do not compile the network with XLA")


def embedder_from_args(args: argparse.Namespace):
    from embed.vggish import EmbedderConfig, load_embedder

    config = EmbedderConfig(source=args.vggish, pca=args.pca, batch_size=args.batch_size,
                            jit_compile=not args.no_xla)
    return load_embedder(config=config)


def register(subcommands: argparse._SubParsersAction) -> None:
    embed = subcommands.add_parser(
        "embed", help="audio files -> VGGish embeddings (.npz files)",
        description="Embed audio files with VGGish exactly as Google computes it, post-processed like AudioSet.",
    )
    embed.add_argument("inputs", nargs="+", metavar="FILE", help="audio files (any format soundfile or ffmpeg reads)")
    outputs = embed.add_mutually_exclusive_group(required=True)
    outputs.add_argument("--out", metavar="OUT.npz", help="output file (one input file)")
    outputs.add_argument("--out-dir", metavar="DIR", help="one <name>.npz per input file")
    add_embedder_options(embed)
    embed.set_defaults(handler=run_embed_files)

    vggish = subcommands.add_parser("vggish", help="VGGish model files: convert, or make random test weights")
    tools = vggish.add_subparsers(dest="vggish_command", metavar="TOOL", required=True)
    random = tools.add_parser(
        "random-weights", help="write deterministic RANDOM weights in all three formats (offline tests, demos)")
    random.add_argument("--out", required=True, metavar="DIR")
    random.add_argument("--seed", type=int, default=0)
    random.set_defaults(handler=run_random_weights)
    export = tools.add_parser("export-savedmodel", help="Google's checkpoint -> SavedModel with the TF Hub signature")
    export.add_argument("--checkpoint", required=True, metavar="vggish_model.ckpt")
    export.add_argument("--out", required=True, metavar="DIR")
    export.set_defaults(handler=run_export_savedmodel)


def run_embed_files(args: argparse.Namespace) -> int:
    import numpy as np

    from embed.pipeline import embed_file

    inputs = [Path(name) for name in args.inputs]
    if args.out and len(inputs) > 1:
        raise HomesoundError(f"{len(inputs)} input files but one --out file; use --out-dir DIR")
    targets = [Path(args.out)] if args.out else _output_names(inputs, Path(args.out_dir))
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
    embedder = embedder_from_args(args)
    failures = 0
    for source, target in zip(inputs, targets):
        try:
            result = embed_file(source, embedder)
        except AudioDecodeError as error:
            failures += 1
            print(f"homesound embed: skipped {error}", file=sys.stderr)
            continue
        partial = target.with_name(target.name + ".part.npz")
        np.savez(partial, embedding=result.embedding, raw_embedding=result.raw_embedding,
                 start_seconds=result.start_seconds, embedder_id=np.array(result.embedder_id),
                 provenance=np.array(json.dumps(result.provenance, sort_keys=True)),
                 audio=np.array(json.dumps(result.audio, sort_keys=True)))
        partial.replace(target)
        note = "" if len(result) else " (shorter than 0.96 s: no embedding)"
        print(f"{source}: {len(result)} embeddings, {result.audio['seconds']:.1f} s -> {target}{note}")
    return 1 if failures else 0


def _output_names(inputs: list[Path], directory: Path) -> list[Path]:
    names: dict[str, int] = {}
    targets = []
    for source in inputs:
        stem = source.stem
        names[stem] = names.get(stem, 0) + 1
        suffix = "" if names[stem] == 1 else f"-{names[stem]}"
        targets.append(directory / f"{stem}{suffix}.npz")
    return targets


def run_random_weights(args: argparse.Namespace) -> int:
    from embed.random_weights import write_random_vggish

    files = write_random_vggish(args.out, seed=args.seed)
    print("RANDOM VGGish weights (for offline tests and demos; the embeddings mean nothing):")
    print(f"  checkpoint  {files.checkpoint}\n  pca         {files.pca}\n  savedmodel  {files.savedmodel}")
    return 0


def run_export_savedmodel(args: argparse.Namespace) -> int:
    from embed.network import CheckpointWeights
    from embed.savedmodel import export_hub_savedmodel

    export_hub_savedmodel(CheckpointWeights(args.checkpoint), args.out)
    print(f"SavedModel with the TF Hub signature (16 kHz waveform -> [N, 128]) written to {args.out}")
    return 0
