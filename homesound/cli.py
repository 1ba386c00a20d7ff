"""The `homesound` console command; each stage package contributes its own subcommands."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Sequence

from homesound import __version__
from homesound.errors import HomesoundError
from homesound.redact import RedactingFilter, redact_text

EXIT_USER_ERROR = 2
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # like Ctrl-C: the job stops cleanly and says so


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP: raised where the program is, so every job ends the way Ctrl-C ends it."""

    def __init__(self, signal_number: int):
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="homesound",
        description="Hear crying and laughter in home audio (VGGish embeddings + a small detector).",
    )
    parser.add_argument("--version", action="version", version=f"homesound {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in stage_commands():
        register(subcommands)
    return parser


def stage_commands() -> tuple:
    """Each stage's `register(subcommands)`, in the order `homesound --help` lists them. The command-line
    modules only parse (their jobs are imported when a command runs), so importing them all is cheap."""
    from active_learning import cli as active_learning_commands
    from audioset_fetch import cli as audioset_commands
    from classify import cli as classify_commands
    from classify import labels_cli as labels_commands
    from embed import cli as embed_commands
    from homesound import workspace_cli as workspace_commands
    from homesound_hub import cli as hub_commands

    return (workspace_commands.register, embed_commands.register, audioset_commands.register,
            classify_commands.register, labels_commands.register, active_learning_commands.register,
            hub_commands.register)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    verbose = bool({"-v", "--verbose"} & set(arguments[:_first_positional(arguments)]))
    if not verbose:
        from homesound.quiet_tensorflow import silence_tensorflow

        silence_tensorflow()  # before anything imports TensorFlow
    parser = build_parser()
    args = parser.parse_args(arguments)
    setup_logging(args.verbose)
    # Python lets only the main thread set handlers; main() called from another thread (an embedding
    # application, a test) keeps that application's own signal handling.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {number: signal.signal(number, _stop) for number in STOP_SIGNALS} if in_main_thread else {}
    try:
        return int(args.handler(args) or 0)
    except HomesoundError as error:
        _say(f"homesound {args.command}: error: {redact_text(str(error))}")
        return EXIT_USER_ERROR
    except Stopped as stop:
        _say(f"homesound {args.command}: stopped by {stop}")
        return 128 + stop.signal_number
    except KeyboardInterrupt:
        _say(f"homesound {args.command}: interrupted")
        return 130
    except BrokenPipeError:  # `homesound status | head`: the reader has what it wanted
        sys.stdout = None  # no flush at exit into the closed pipe
        return 0
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def setup_logging(verbose: bool) -> None:
    """INFO with -v, else warnings, on stderr unless the host program logs elsewhere already; every handler's
    lines go through the URL redaction (libraries log URLs too)."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(existing, RedactingFilter) for existing in handler.filters):
            handler.addFilter(RedactingFilter())


def _stop(signal_number: int, frame) -> None:
    raise Stopped(signal_number)


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr)
    except OSError:  # the terminal is gone (SIGHUP)
        pass


def _first_positional(arguments: list[str]) -> int:
    """Index of the subcommand: -v counts only before it (a subcommand may have its own -v one day)."""
    for index, argument in enumerate(arguments):
        if not argument.startswith("-"):
            return index
    return len(arguments)


if __name__ == "__main__":
    sys.exit(main())
