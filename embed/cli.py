"""`homesound embed` (files -> .npz, or an archive -> workspace) and `homesound vggish` tools."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from embed.discover import DEFAULT_EXTENSIONS
from homesound.errors import AudioDecodeError, HomesoundError

VGGISH_HELP = ("VGGish source: TF Hub handle (default https://tfhub.dev/google/vggish/1), SavedModel directory, "
               "or Google's vggish_model.ckpt; default from $HOMESOUND_VGGISH")
PCA_HELP = "vggish_pca_params.npz (default: $HOMESOUND_VGGISH_PCA, beside the checkpoint, or downloaded once)"


def add_embedder_options(parser: argparse.ArgumentParser) -> None:
    """The options that choose VGGish; shared by every command that embeds audio."""
    parser.add_argument("--vggish", metavar="SOURCE", help=VGGISH_HELP)
    parser.add_argument("--pca", metavar="PCA.npz", help=PCA_HELP)
    parser.add_argument("--batch-size", type=int, default=64, help="examples per network call (default 64)")
    parser.add_argument("--no-xla", action="store_true", help="do not compile the network with XLA (--backend tf)")
    parser.add_argument("--backend", choices=("tf", "torch"),
                        help="run VGGish with PyTorch (default; Google's weights are converted once, then no "
                             "TensorFlow is loaded) or TensorFlow; both give the same embeddings and embedder id "
                             "(default: $HOMESOUND_VGGISH_BACKEND or torch)")
    parser.add_argument("--device", default="cpu", help="torch backend: cpu (default), cuda or cuda:N")
    parser.add_argument("--precision", choices=("float32", "tf32", "bf16"), default="float32",
                        help="torch backend: float32 (default; AudioSet-compatible); tf32 (CUDA) and bf16 are faster, "
                             "print how far they are from float32, and get their own embedder id")


def embedder_config_from_args(args: argparse.Namespace):
    from embed.vggish import EmbedderConfig

    return EmbedderConfig(source=args.vggish, pca=args.pca, batch_size=args.batch_size, jit_compile=not args.no_xla,
                          backend=args.backend, device=args.device, precision=args.precision)


def embedder_from_args(args: argparse.Namespace):
    from embed.vggish import load_embedder

    return load_embedder(config=embedder_config_from_args(args))


def register(subcommands: argparse._SubParsersAction) -> None:
    embed = subcommands.add_parser(
        "embed", help="audio files -> VGGish embeddings (.npz files, or a whole archive into a workspace)",
        description="Embed audio with VGGish exactly as Google computes it, post-processed like AudioSet. "
                    "With --workspace, folders are walked recursively and every recording not yet embedded "
                    "(same content, same embedder) is embedded; the job can be killed and rerun at any time.",
        epilog="exit status: 0 all inputs embedded; 1 some file could not be read (the rest are done; with "
               "--workspace, also when a file that failed before is still there unchanged); 2 usage error, "
               "or the workspace is in use by another job",
    )
    embed.add_argument("inputs", nargs="+", metavar="PATH",
                       help="audio files; with --workspace also folders (any format soundfile or ffmpeg reads)")
    outputs = embed.add_mutually_exclusive_group(required=True)
    outputs.add_argument("--out", metavar="OUT.npz", help="output file (one input file)")
    outputs.add_argument("--out-dir", metavar="DIR", help="one <name>.npz per input file")
    outputs.add_argument("--workspace", metavar="home.db", help="embed files and folders into this workspace")
    add_embedder_options(embed)
    archive = embed.add_argument_group("with --workspace")
    archive.add_argument("--extensions", metavar="LIST",
                         help="file extensions to embed when walking folders: 'wav,flac' replaces the default list, "
                              f"'+mp4,mkv' adds to it (default: {','.join(DEFAULT_EXTENSIONS)})")
    archive.add_argument("--workers", type=int, metavar="N",
                         help="decoding processes (default: half the cores, at least 1, at most 4)")
    archive.add_argument("--keep-raw", action="store_true",
                         help="also store the float32 embeddings before PCA and quantization (4x the space)")
    archive.add_argument("--retry-failed", action="store_true",
                         help="read again files that failed before even if they did not change")
    archive.add_argument("--no-progress", action="store_true", help="no progress bar")
    embed.set_defaults(handler=run_embed)

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


def run_embed(args: argparse.Namespace) -> int:
    return run_embed_archive(args) if args.workspace else run_embed_files(args)


def run_embed_archive(args: argparse.Namespace) -> int:
    from embed.archive import ArchiveJobConfig, default_workers, run_archive_job
    from embed.discover import parse_extensions

    missing = [name for name in args.inputs if not os.path.lexists(name)]
    if missing:
        raise HomesoundError(f"no such file or folder: {', '.join(missing)}")
    if args.workers is not None and args.workers < 1:
        raise HomesoundError("--workers must be at least 1")
    config = ArchiveJobConfig(
        inputs=tuple(os.path.abspath(name) for name in args.inputs),
        extensions=parse_extensions(args.extensions),
        embedder=embedder_config_from_args(args),
        workers=args.workers or default_workers(),
        keep_raw=args.keep_raw,
        retry_failed=args.retry_failed,
    )
    summary = run_archive_job(args.workspace, config, progress=False if args.no_progress else None)
    print(summary.report())
    return summary.exit_status


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
