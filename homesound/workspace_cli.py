"""Commands on the workspace as a whole: `homesound status` and `homesound export`.

`export` has two kinds: --out (the workspace's embeddings as Parquet: homesound.workspace.export) and
--hub (the light runtime for a hub: its options and job come from homesound_hub.options and .jobs)."""

from __future__ import annotations

import argparse
import json
import sys

from homesound.errors import HomesoundError
from homesound_hub.options import HUB_EXPORT_DESCRIPTION, add_hub_export_options, export_hub_config

SHOWN_LIST_ITEMS = 20


def register(subcommands: argparse._SubParsersAction) -> None:
    status = subcommands.add_parser(
        "status", help="what a workspace holds: recordings, hours, failures, embedders, runs, ...",
        description="One section per workspace component (recordings, runs, and what later stages add).")
    status.add_argument("--workspace", required=True, metavar="home.db")
    status.add_argument("--json", action="store_true", help="machine-readable, complete (no list is shortened)")
    status.set_defaults(handler=run_status)

    export = subcommands.add_parser(
        "export", help="workspace contents -> files for use elsewhere (embeddings as Parquet)",
        description="--out X.parquet: one row per 0.96 s frame with path, content_sha256, embedder_id, "
                    "start_seconds, embedding (VGGish: 128 uint8, AudioSet's quantization: float = uint8/255*4-2; "
                    "YAMNet: 1024 float16, and class_scores: 521 float16) and the recording's duration, sample "
                    "rate, channels and format; one embedding model per file. " + HUB_EXPORT_DESCRIPTION)
    export.add_argument("--workspace", metavar="home.db", help="the workspace to export from (with --out)")
    kinds = export.add_mutually_exclusive_group(required=True)  # what to export: one option per kind
    kinds.add_argument("--out", metavar="embeddings.parquet", help="per-second embeddings of all recordings")
    export.add_argument("--embedder", metavar="ID", help="only this embedder's embeddings: an embedder id, or "
                        "vggish / yamnet for every embedder of that model (default: all, if of one model); "
                        "with --hub: the model the hub runs")
    export.add_argument("--raw", action="store_true",
                        help="add raw_embedding (float32; needs recordings embedded with --keep-raw)")
    add_hub_export_options(export, kinds)
    export.set_defaults(handler=run_export)


def open_existing(path: str):
    """A workspace that must exist already, opened read-only: reading commands never create, convert or
    change a file (a typo, another program's database, a workspace on a read-only disk)."""
    from homesound.workspace import Workspace

    return Workspace(path, readonly=True)


def run_status(args: argparse.Namespace) -> int:
    from homesound.workspace.status import workspace_status

    with open_existing(args.workspace) as workspace:
        sections = workspace_status(workspace)
    if args.json:
        print(json.dumps(sections, indent=2, sort_keys=True, default=str))
    else:
        print("\n".join(render_status(sections)))
    return 0


def render_status(sections: dict) -> list[str]:
    """Readable text for any JSON-ready sections: nested keys indent, long lists are shortened."""
    lines: list[str] = []
    for name, section in sections.items():
        lines.append(f"[{name}]")
        lines.extend(_render(section, "  "))
    return lines


def _render(value, indent: str) -> list[str]:
    lines = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{indent}{key}:")
                lines.extend(_render(item, indent + "  "))
            else:
                lines.append(f"{indent}{key}: {_scalar(item)}")
    elif isinstance(value, list):
        for item in value[:SHOWN_LIST_ITEMS]:
            if isinstance(item, dict):
                lines.append(f"{indent}- " + ", ".join(f"{key}={text}" for key, text in _flat(item)))
            else:
                lines.append(f"{indent}- {_scalar(item)}")
        if len(value) > SHOWN_LIST_ITEMS:
            lines.append(f"{indent}... and {len(value) - SHOWN_LIST_ITEMS} more (--json lists all)")
    return lines


def _flat(item: dict, prefix: str = "") -> list[tuple[str, str]]:
    """One line for a list entry: nested dicts one level deep, lists by their length."""
    pairs = []
    for key, value in item.items():
        if isinstance(value, dict) and not prefix:
            pairs.extend(_flat(value, f"{key}."))
        elif isinstance(value, (list, dict)):
            pairs.append((prefix + key, str(len(value))))
        else:
            pairs.append((prefix + key, _scalar(value)))
    return pairs


def _scalar(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if value in ({}, []):
        return "none"
    return str(value)


def run_export(args: argparse.Namespace) -> int:
    return _export_hub(args) if args.hub else _export_embeddings(args)


def _export_embeddings(args: argparse.Namespace) -> int:
    from homesound.workspace.export import EmbeddingsExport, export_embeddings

    if not args.workspace:
        raise HomesoundError("--out needs --workspace home.db (the workspace whose embeddings to export)")
    summary = export_embeddings(EmbeddingsExport(args.workspace, args.out, embedder=args.embedder, with_raw=args.raw))
    if not summary.rows and args.embedder:
        print(f"note: no embeddings by {args.embedder} in {args.workspace}")
    print(f"{summary.rows} rows from {summary.recordings} recordings "
          f"({', '.join(summary.embedders) or 'no embedder'}) -> {args.out}")
    return 0


def _export_hub(args: argparse.Namespace) -> int:
    from homesound_hub.bundle import describe_export
    from homesound_hub.jobs import export_hub

    manifest = export_hub(export_hub_config(args), progress=lambda text: print(text, file=sys.stderr))
    print("\n".join(describe_export(manifest, args.hub)))
    return 0
