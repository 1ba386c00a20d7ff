"""`homesound embed` (files -> .npz, or an archive -> workspace) and `homesound vggish` tools."""

from __future__ import annotations

import argparse
import os
import sys

from embed.discover import DEFAULT_EXTENSIONS
from embed.jobs import RandomWeightsConfig
from embed.options import add_embedder_options, embedder_config_from_args, positive_int
from embed.ray_cluster import ClusterConfig  # its module imports Ray only when a job runs on a cluster
from homesound.config_defaults import default_of
from homesound.errors import HomesoundError


def register(subcommands: argparse._SubParsersAction) -> None:
    embed = subcommands.add_parser(
        "embed", help="audio files -> VGGish or YAMNet embeddings (.npz files, or a whole archive into a workspace)",
        description="Embed audio with VGGish exactly as Google computes it, post-processed like AudioSet "
                    "(default), or with YAMNet (--embedder yamnet: 1024-d embeddings and 521 class scores, "
                    "one frame per 0.96 s on the same grid). "
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
    archive.add_argument("--workers", type=positive_int, metavar="N",
                         help="decoding processes (default: half the cores, at least 1, at most 4)")
    archive.add_argument("--keep-raw", action="store_true",
                         help="also store the float32 embeddings before PCA and quantization (VGGish: 4x the space)")
    archive.add_argument("--retry-failed", action="store_true",
                         help="read again files that failed before even if they did not change")
    archive.add_argument("--no-progress", action="store_true", help="no progress bar")
    archive.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                         help="decode and run the network on a Ray cluster: the head node's HOST:PORT, or 'auto' "
                              "(the default: $RAY_ADDRESS or the cluster this machine is in); every node must see "
                              "the paths and the model files at the same place (pip install 'homesound[ray]')")
    archive.add_argument("--ray-actors-per-node", type=positive_int, default=default_of(ClusterConfig, "actors_per_node"),
                         metavar="N",
                         help="with --ray: network actors per node without GPUs, sharing its cores (default 1; "
                              "a node with GPUs gets one per GPU)")
    embed.set_defaults(handler=run_embed)

    vggish = subcommands.add_parser("vggish", help="VGGish model files: convert, or make random test weights")
    tools = vggish.add_subparsers(dest="vggish_command", metavar="TOOL", required=True)
    random = tools.add_parser(
        "random-weights", help="write deterministic RANDOM weights in all three formats (offline tests, demos)")
    random.add_argument("--out", required=True, metavar="DIR")
    random.add_argument("--seed", type=int, default=default_of(RandomWeightsConfig, "seed"))
    random.add_argument("--force", action="store_true", help="write them again even if DIR already holds them")
    random.set_defaults(handler=run_random_weights)
    export = tools.add_parser("export-savedmodel", help="Google's checkpoint -> SavedModel with the TF Hub signature")
    export.add_argument("--checkpoint", required=True, metavar="vggish_model.ckpt")
    export.add_argument("--out", required=True, metavar="DIR")
    export.set_defaults(handler=run_export_savedmodel)


def run_embed(args: argparse.Namespace) -> int:
    if args.ray is not None and not args.workspace:
        raise HomesoundError("--ray embeds an archive into a workspace: add --workspace home.db")
    return run_embed_archive(args) if args.workspace else run_embed_files(args)


def run_embed_archive(args: argparse.Namespace) -> int:
    from embed.archive import ArchiveJobConfig
    from embed.discover import parse_extensions
    from embed.jobs import embed_archive

    config = ArchiveJobConfig(
        inputs=tuple(args.inputs),
        extensions=parse_extensions(args.extensions),
        embedder=embedder_config_from_args(args),
        workers=args.workers,
        keep_raw=args.keep_raw,
        retry_failed=args.retry_failed,
        cluster=_cluster_config(args),
    )
    summary = embed_archive(args.workspace, config, progress=False if args.no_progress else None)
    print(summary.report())
    return summary.exit_status


def _cluster_config(args: argparse.Namespace):
    """The Ray options as a ClusterConfig, or None without --ray (Ray is then never imported)."""
    if args.ray is None:
        return None
    from embed.ray_cluster import ClusterConfig

    if os.sep in args.ray and os.path.exists(args.ray):  # `--ray PATH...`: the optional value took a path
        raise HomesoundError(f"--ray took {args.ray} as the cluster's address; put --ray after the paths, "
                             "or write --ray auto")
    return ClusterConfig(address=args.ray, actors_per_node=args.ray_actors_per_node)


def run_embed_files(args: argparse.Namespace) -> int:
    from embed.jobs import EmbedFilesConfig, EmbeddedFile, FileFailure, embed_files

    config = EmbedFilesConfig(inputs=tuple(args.inputs), embedder=embedder_config_from_args(args),
                              out=args.out, out_dir=args.out_dir)

    def report(done: EmbeddedFile | FileFailure) -> None:
        if not isinstance(done, EmbeddedFile):
            print(f"homesound embed: skipped {done.reason}", file=sys.stderr)
            return
        note = "" if done.embeddings else f" (one embedding needs at least {done.window_seconds:.3f} s of audio: none)"
        print(f"{done.source}: {done.embeddings} embeddings, {done.seconds:.2f} s -> {done.target}{note}")

    return embed_files(config, on_file=report).exit_status


def run_random_weights(args: argparse.Namespace) -> int:
    from embed.jobs import RandomWeightsConfig, random_vggish_weights

    result = random_vggish_weights(RandomWeightsConfig(out=args.out, seed=args.seed, force=args.force))
    if not result.written:
        print(f"RANDOM VGGish weights (seed {args.seed}) are already in {args.out}: kept (--force writes them again)")
        return 0
    files = result.files
    print("RANDOM VGGish weights (for offline tests and demos; the embeddings mean nothing):")
    print(f"  checkpoint  {files.checkpoint}\n  pca         {files.pca}\n  savedmodel  {files.savedmodel}")
    return 0


def run_export_savedmodel(args: argparse.Namespace) -> int:
    from embed.jobs import ExportSavedModelConfig, export_savedmodel

    export_savedmodel(ExportSavedModelConfig(checkpoint=args.checkpoint, out=args.out))
    print(f"SavedModel with the TF Hub signature (16 kHz waveform -> [N, 128]) written to {args.out}")
    return 0
