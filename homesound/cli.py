"""The `homesound` console command; each stage package contributes its own subcommands."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

from homesound import __version__
from homesound.errors import HomesoundError

STAGE_CLI_MODULES = (
    "homesound.workspace_cli",
    "embed.cli",
    "audioset_fetch.cli",
    "classify.cli",
    "classify.labels_cli",
    "active_learning.cli",
    "hub.cli",
)

EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="homesound",
        description="Hear crying and laughter in home audio (VGGish embeddings + a small detector).",
    )
    parser.add_argument("--version", action="version", version=f"homesound {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in STAGE_CLI_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:  # a real import problem inside the stage: show it
                raise
            continue  # the stage has no commands yet
        module.register(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter is not for users
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except HomesoundError as error:
        print(f"homesound {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"homesound {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
