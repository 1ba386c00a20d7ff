"""The ranking and push options `homesound rank`, `push` and `round` share, with their defaults and choices
taken from active_learning.config."""

from __future__ import annotations

import argparse
from pathlib import Path

from active_learning.config import AGGREGATES, STRATEGIES, PushConfig, RankConfig, RankRequest
from homesound.config_defaults import default_of
from homesound.errors import HomesoundError

LABEL_STUDIO_CONFIG_HELP = (
    "TOML file with url, api_key and local_files_document_root (default: $HOMESOUND_LABEL_STUDIO_CONFIG "
    "or ~/.config/homesound/label-studio.toml); LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY win over it"
)


def add_rank_options(parser: argparse.ArgumentParser) -> None:
    """How windows are scored and picked (rank, and round's ranking step)."""
    top = default_of(RankConfig, "top")
    parser.add_argument("--top", type=int, default=top, help=f"windows to pick (default {top})")
    parser.add_argument("--strategy", choices=STRATEGIES, default=default_of(RankConfig, "strategy"),
                        help="informativeness: least-confidence, margin, entropy (default), bald (MC dropout), "
                             "or random (the baseline)")
    window = default_of(RankConfig, "window_seconds")
    parser.add_argument("--window-seconds", type=float, default=window, help=f"window length (default {window:g})")
    parser.add_argument("--aggregate", choices=AGGREGATES, default=default_of(RankConfig, "aggregate"),
                        help="a window's score from its seconds: the most uncertain one (max) or the mean")
    parser.add_argument("--no-diversity", action="store_true",
                        help="plain top scores, without k-center spreading over the embeddings")
    pool = default_of(RankConfig, "diversity_pool")
    parser.add_argument("--diversity-pool", type=float, default=pool,
                        help=f"k-center chooses among this many times --top of the best-scored windows "
                             f"(default {pool:g})")
    parser.add_argument("--confident-share", type=float, default=default_of(RankConfig, "confident_share"),
                        help="share of picks for the most confident detections, to catch confident mistakes")
    confident = default_of(RankConfig, "confident_threshold")
    parser.add_argument("--confident-threshold", type=float, default=confident,
                        help=f"a window counts as a confident detection of a class from this probability "
                             f"(default {confident:g})")
    parser.add_argument("--per-class", action=argparse.BooleanOptionalAction, default=default_of(RankConfig, "per_class"),
                        help="share the picks equally between the classes, each ranked by its own uncertainty, so a "
                             "rare class is not drowned by a common one (default; --no-per-class: one score for all)")
    parser.add_argument("--prefilter-share", type=float, default=default_of(RankConfig, "prefilter_share"),
                        help="rank only this share of the windows per class, the likeliest under the zero-shot "
                             "detector (YAMNet embeddings; else the model itself); default 1 = all windows")
    samples = default_of(RankRequest, "mc_samples")
    parser.add_argument("--mc-samples", type=int, default=samples, help=f"dropout masks for bald (default {samples})")
    parser.add_argument("--seed", type=int, default=default_of(RankConfig, "seed"))


def rank_request_from_args(args: argparse.Namespace) -> RankRequest:
    try:
        config = RankConfig(
            strategy=args.strategy, top=args.top, window_seconds=args.window_seconds, aggregate=args.aggregate,
            diversity=not args.no_diversity, diversity_pool=args.diversity_pool,
            confident_share=args.confident_share, confident_threshold=args.confident_threshold, seed=args.seed,
            per_class=args.per_class, prefilter_share=args.prefilter_share,
        )
    except ValueError as error:
        raise HomesoundError(str(error)) from error
    return RankRequest(rank=config, mc_samples=args.mc_samples)


def add_push_options(parser: argparse.ArgumentParser) -> None:
    """Where clips go and how tasks are made (push, and round's push step)."""
    parser.add_argument(
        "--clip-dir", metavar="DIR",
        help="where clips are written; must lie under Label Studio's LOCAL_FILES_DOCUMENT_ROOT "
             "(default: <workspace>-clips next to the workspace)",
    )
    context = default_of(PushConfig, "context_seconds")
    parser.add_argument("--context-seconds", type=float, default=context,
                        help=f"audio kept before and after each window (default {context})")
    parser.add_argument("--project-title", default=None, help="Label Studio project to create or reuse")
    batch = default_of(PushConfig, "batch_size")
    parser.add_argument("--push-batch-size", type=int, default=batch, help=f"tasks per import request (default {batch})")


def push_config_from_args(args: argparse.Namespace) -> PushConfig:
    clip_dir = args.clip_dir or str(beside_workspace(args.workspace, "clips"))
    return PushConfig(
        clip_dir=str(Path(clip_dir).resolve()),
        project_title=args.project_title or default_of(PushConfig, "project_title"),
        context_seconds=args.context_seconds,
        batch_size=args.push_batch_size,
    )


def beside_workspace(workspace: str, what: str) -> Path:
    """The default folder for a workspace's clips or models: <workspace stem>-<what> next to it."""
    return Path(workspace).resolve().with_name(f"{Path(workspace).stem}-{what}")


def add_label_studio_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label-studio-config", metavar="FILE", help=LABEL_STUDIO_CONFIG_HELP)
