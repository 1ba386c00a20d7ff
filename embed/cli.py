"""`homesound embed` (files -> .npz, or an archive -> workspace) and `homesound vggish` tools."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from embed.discover import DEFAULT_EXTENSIONS
from embed.options import add_embedder_options, embedder_config_from_args, positive_int
from homesound.errors import AudioDecodeError, HomesoundError

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
    archive.add_argument("--ray-actors-per-node", type=positive_int, default=1, metavar="N",
                         help="with --ray: network actors per node without GPUs, sharing its cores (default 1; "
                              "a node with GPUs gets one per GPU)")
    embed.set_defaults(handler=run_embed)

    vggish = subcommands.add_parser("vggish", help="VGGish model files: convert, or make random test weights")
    tools = vggish.add_subparsers(dest="vggish_command", metavar="TOOL", required=True)
    random = tools.add_parser(
        "random-weights", help="write deterministic RANDOM weights in all three formats (offline tests, demos)")
    random.add_argument("--out", required=True, metavar="DIR")
    random.add_argument("--seed", type=int, default=0)
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
    from embed.archive import ArchiveJobConfig, default_workers, run_archive_job
    from embed.discover import parse_extensions

    missing = [name for name in args.inputs if not os.path.lexists(name)]
    if missing:
        raise HomesoundError(f"no such file or folder: {', '.join(missing)}")
    cluster = _cluster_config(args)
    config = ArchiveJobConfig(
        inputs=tuple(os.path.abspath(name) for name in args.inputs),
        extensions=parse_extensions(args.extensions),
        embedder=embedder_config_from_args(args),
        workers=args.workers or default_workers(),
        keep_raw=args.keep_raw,
        retry_failed=args.retry_failed,
        cluster=cluster,
    )
    summary = run_archive_job(args.workspace, config, progress=False if args.no_progress else None)
    print(summary.report())
    return summary.exit_status


def _cluster_config(args: argparse.Namespace):
    """The Ray options as a ClusterConfig, or None without --ray (Ray is then never imported)."""
    if args.ray is None:
        return None
    from embed.ray_cluster import ClusterConfig

    if os.sep in args.ray and os.path.exists(args.ray):
        raise HomesoundError(f"--ray took {args.ray} as the cluster's address; put --ray after the paths, "
                             "or write --ray auto")
    if args.workers is not None:
        raise HomesoundError("--workers sets decoding processes on this machine; with --ray the cluster decodes "
                             "(one task per CPU that `ray start --num-cpus` gives each node)")
    return ClusterConfig(address=args.ray, actors_per_node=args.ray_actors_per_node)


def run_embed_files(args: argparse.Namespace) -> int:
    import numpy as np

    from embed.embedder import load_embedder
    from embed.pipeline import embed_file

    from homesound.output_files import atomic_output, check_output_file, prepare_folder

    inputs = [Path(name) for name in args.inputs]
    if args.out and len(inputs) > 1:
        raise HomesoundError(f"{len(inputs)} input files but one --out file; use --out-dir DIR")
    if args.out_dir:
        prepare_folder(args.out_dir, "--out-dir")
    targets = [check_output_file(args.out, "--out")] if args.out else _output_names(inputs, Path(args.out_dir))
    embedder = load_embedder(config=embedder_config_from_args(args))
    shortest = embedder.frames.window_seconds
    failures = 0
    for source, target in zip(inputs, targets):
        try:
            result = embed_file(source, embedder)
        except AudioDecodeError as error:
            failures += 1
            print(f"homesound embed: skipped {error}", file=sys.stderr)
            continue
        scores = {} if result.class_scores is None else {
            "class_scores": result.class_scores, "class_names": np.array(result.class_names)}
        with atomic_output(target, suffix=".part.npz", what="embeddings") as partial:
            np.savez(partial, embedding=result.embedding, raw_embedding=result.raw_embedding,
                     start_seconds=result.start_seconds, embedder_id=np.array(result.embedder_id),
                     provenance=np.array(json.dumps(result.provenance, sort_keys=True)),
                     frames=np.array(json.dumps(embedder.frames.to_dict(), sort_keys=True)),
                     audio=np.array(json.dumps(result.audio, sort_keys=True)), **scores)
        note = "" if len(result) else f" (one embedding needs at least {shortest:.3f} s of audio: none)"
        print(f"{source}: {len(result)} embeddings, {result.audio['seconds']:.2f} s -> {target}{note}")
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

    from embed.random_weights import existing_random_vggish

    files = None if args.force else existing_random_vggish(args.out, seed=args.seed)
    if files is not None:
        print(f"RANDOM VGGish weights (seed {args.seed}) are already in {args.out}: kept (--force writes them again)")
        return 0
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
