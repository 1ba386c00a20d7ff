"""`homesound listen`: parse the options, build one ListenConfig, call homesound_hub.jobs.listen, print.
(`homesound export --hub` belongs to `homesound export`: homesound.workspace_cli, with homesound_hub.options.)"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from classify.options import add_event_options, event_settings
from embed.options import add_backend_options
from embed.tflite import QUANTIZATIONS
from homesound.config_defaults import default_of
from homesound_hub.clips import ClipSettings
from homesound_hub.jobs import ListenConfig, ListenError, listen
from homesound_hub.listen import stderr_summary
from homesound_hub.notify import MqttSettings
from homesound_hub.options import add_detector_embedder_options, detector_embedder
from homesound_hub.sources import PCM_FORMATS, SourceOptions


def register(subcommands: argparse._SubParsersAction) -> None:
    _register_listen(subcommands)


def _register_listen(subcommands: argparse._SubParsersAction) -> None:
    listen = subcommands.add_parser(
        "listen", help="detect crying and laughter live (microphone, file, stdin, rtsp/http) -> JSON lines, MQTT",
        description="Listen continuously: one embedding (VGGish or YAMNet, as the detector was trained) per 0.96 s, "
                    "the causal detector stepped with its "
                    "state carried (the same probabilities as homesound detect), events with hysteresis and a "
                    "hold time as JSON lines on stdout; optionally Home Assistant over MQTT, a webhook, and "
                    "event clips saved into a workspace. SIGTERM, SIGINT and SIGHUP stop it cleanly.",
    )
    model = listen.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", metavar="MODEL.pt", help="a causal detector (full install: TensorFlow + torch)")
    model.add_argument("--hub", metavar="DIR", help="a hub directory from homesound export --hub (no TF, no torch)")
    listen.add_argument("--variant", choices=QUANTIZATIONS,
                        help="VGGish variant of --hub DIR (default float32; a YAMNet hub has its one .tflite)")
    threads = default_of(ListenConfig, "threads")
    listen.add_argument("--threads", type=int, default=threads, help=f"TFLite threads with --hub (default {threads})")
    add_detector_embedder_options(listen)
    listen.add_argument("--no-xla", action="store_true", help="do not compile the network with XLA (--backend tf)")
    add_backend_options(listen, with_device=False)

    audio = listen.add_argument_group("audio source")
    audio.add_argument("--source", default=default_of(ListenConfig, "source"), metavar="SOURCE",
                       help="'mic' (default input), 'mic:NAME' or 'mic:INDEX', '-' (raw PCM on stdin), "
                            "an rtsp/http/... URL (via ffmpeg), or an audio file")
    audio.add_argument("--rate", type=int, help="sample rate: required for stdin; microphone default: 16000 if the "
                                                "device takes it, else its own; network streams: their own")
    channels, pcm_format = default_of(SourceOptions, "channels"), default_of(SourceOptions, "pcm_format")
    audio.add_argument("--channels", type=int, default=channels,
                       help=f"channels of raw PCM or the microphone (default {channels})")
    audio.add_argument("--format", dest="pcm_format", choices=tuple(PCM_FORMATS), default=pcm_format,
                       help=f"raw PCM sample format on stdin (default {pcm_format})")
    pace = audio.add_mutually_exclusive_group()
    pace.add_argument("--realtime", action="store_true", help="play a file at real time (a stand-in microphone)")
    pace.add_argument("--fast", dest="realtime", action="store_false", help="read a file as fast as possible (default)")
    stall = default_of(ListenConfig, "stall_seconds")
    audio.add_argument("--stall-timeout", type=float, default=stall, metavar="SECONDS",
                       help="no audio for this long: close open events, mark sensors unavailable, reconnect "
                            f"network/microphone sources (default {stall:g})")

    add_event_options(listen)
    listen.add_argument(
        "--hold", type=float, dest="merge_gap_seconds", default=argparse.SUPPRESS, metavar="SECONDS",
        help="hold time: an event ends only after this long without a new onset (same as --merge-gap)")
    listen.add_argument("--probabilities", action="store_true", help="also print each hop's probabilities")

    outputs = listen.add_argument_group("outputs")
    outputs.add_argument("--mqtt", metavar="URL", help="mqtt://[user[:password]@]host[:port] (mqtts:// for TLS); "
                                                       "password also from $HOMESOUND_MQTT_PASSWORD")
    outputs.add_argument("--mqtt-node", default=default_of(MqttSettings, "node_id"),
                         help="node id: one Home Assistant device per node")
    outputs.add_argument("--mqtt-discovery-prefix", default=default_of(MqttSettings, "discovery_prefix"))
    outputs.add_argument("--mqtt-base-topic", default=default_of(MqttSettings, "base_topic"))
    outputs.add_argument("--webhook", metavar="URL", help="POST every event start and end as JSON to this URL")
    outputs.add_argument("--workspace", metavar="home.db", help="save each event as a clip into this workspace")
    outputs.add_argument("--clips", metavar="DIR", help="where clips go (default: live_clips beside the workspace)")
    pre_roll, max_clip = default_of(ClipSettings, "pre_roll_seconds"), default_of(ClipSettings, "max_clip_seconds")
    outputs.add_argument("--pre-roll", type=float, default=pre_roll, metavar="SECONDS",
                         help=f"audio kept before each event's start (default {pre_roll:g})")
    outputs.add_argument("--max-clip", type=float, default=max_clip, metavar="SECONDS",
                         help=f"longest clip (default {max_clip:g})")
    listen.set_defaults(handler=run_listen)


def run_listen(args: argparse.Namespace) -> int:
    try:
        result = listen(_listen_config(args), progress=lambda text: print(text, file=sys.stderr))
    except ListenError as error:  # the source failed for good: what was heard, then why it ended
        stderr_summary(error.summary)
        raise
    stderr_summary(result.summary)
    return 1 if result.undelivered else 0  # e.g. the broker was never reached


def _listen_config(args: argparse.Namespace) -> ListenConfig:
    mqtt = (MqttSettings.from_url(args.mqtt, node_id=args.mqtt_node, discovery_prefix=args.mqtt_discovery_prefix,
                                  base_topic=args.mqtt_base_topic) if args.mqtt else None)
    clips = None
    if args.workspace:
        clips = ClipSettings(args.workspace, args.clips or str(Path(args.workspace).resolve().parent / "live_clips"),
                             args.pre_roll, args.max_clip)
    return ListenConfig(
        model=args.model, hub=args.hub, variant=args.variant, threads=args.threads, embedder=detector_embedder(args),
        source=args.source, audio=SourceOptions(args.rate, args.channels, args.pcm_format, args.realtime),
        stall_seconds=args.stall_timeout, events=event_settings(args), probabilities=args.probabilities,
        mqtt=mqtt, webhook=args.webhook, clips=clips)
