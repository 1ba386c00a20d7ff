"""`homesound listen` (live detection) and `homesound export --hub` (the light runtime for a hub)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from homesound.errors import HomesoundError

PCM_FORMAT_NAMES = ("u8", "s16le", "s24le", "s32le", "f32le", "f64le")
VARIANTS = ("float32", "float16", "dynamic", "int8")


def register(subcommands: argparse._SubParsersAction) -> None:
    _register_listen(subcommands)
    _register_export(subcommands)


def _add_embedder_options(parser, with_embedder: bool = True) -> None:
    from embed.options import add_model_options

    add_model_options(parser, "; default here: what the detector was trained with (its model, and its source "
                              "if still present)", with_embedder)


def _register_listen(subcommands: argparse._SubParsersAction) -> None:
    from classify.options import add_event_options

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
    listen.add_argument("--variant", choices=VARIANTS,
                        help="VGGish variant of --hub DIR (default float32; a YAMNet hub has its one .tflite)")
    listen.add_argument("--threads", type=int, default=2, help="TFLite threads with --hub (default 2)")
    _add_embedder_options(listen)
    listen.add_argument("--no-xla", action="store_true", help="do not compile the network with XLA (--backend tf)")
    from embed.options import add_backend_options

    add_backend_options(listen, with_device=False)

    audio = listen.add_argument_group("audio source")
    audio.add_argument("--source", default="mic", metavar="SOURCE",
                       help="'mic' (default input), 'mic:NAME' or 'mic:INDEX', '-' (raw PCM on stdin), "
                            "an rtsp/http/... URL (via ffmpeg), or an audio file")
    audio.add_argument("--rate", type=int, help="sample rate: required for stdin; microphone default: 16000 if the "
                                                "device takes it, else its own; network streams: their own")
    audio.add_argument("--channels", type=int, default=1, help="channels of raw PCM or the microphone (default 1)")
    audio.add_argument("--format", dest="pcm_format", choices=PCM_FORMAT_NAMES, default="s16le",
                       help="raw PCM sample format on stdin (default s16le)")
    pace = audio.add_mutually_exclusive_group()
    pace.add_argument("--realtime", action="store_true", help="play a file at real time (a stand-in microphone)")
    pace.add_argument("--fast", dest="realtime", action="store_false", help="read a file as fast as possible (default)")
    audio.add_argument("--stall-timeout", type=float, default=10.0, metavar="SECONDS",
                       help="no audio for this long: close open events, mark sensors unavailable, reconnect "
                            "network/microphone sources (default 10)")

    add_event_options(listen)
    listen.add_argument(
        "--hold", type=float, dest="merge_gap_seconds", default=argparse.SUPPRESS, metavar="SECONDS",
        help="hold time: an event ends only after this long without a new onset (same as --merge-gap)")
    listen.add_argument("--probabilities", action="store_true", help="also print each hop's probabilities")

    outputs = listen.add_argument_group("outputs")
    outputs.add_argument("--mqtt", metavar="URL", help="mqtt://[user[:password]@]host[:port] (mqtts:// for TLS); "
                                                       "password also from $HOMESOUND_MQTT_PASSWORD")
    outputs.add_argument("--mqtt-node", default="homesound", help="node id: one Home Assistant device per node")
    outputs.add_argument("--mqtt-discovery-prefix", default="homeassistant")
    outputs.add_argument("--mqtt-base-topic", default="homesound")
    outputs.add_argument("--webhook", metavar="URL", help="POST every event start and end as JSON to this URL")
    outputs.add_argument("--workspace", metavar="home.db", help="save each event as a clip into this workspace")
    outputs.add_argument("--clips", metavar="DIR", help="where clips go (default: live_clips beside the workspace)")
    outputs.add_argument("--pre-roll", type=float, default=5.0, metavar="SECONDS",
                         help="audio kept before each event's start (default 5)")
    outputs.add_argument("--max-clip", type=float, default=60.0, metavar="SECONDS", help="longest clip (default 60)")
    listen.set_defaults(handler=run_listen)


def _register_export(subcommands: argparse._SubParsersAction) -> None:
    """`homesound export` belongs to the workspace (--out); the hub runtime is one more kind of export."""
    export = subcommands.choices["export"]
    export.description += (" --hub DIR: the embedder as TFLite (VGGish converted, or YAMNet's .tflite) and the "
                           "detector for numpy, for homesound listen --hub DIR on a box without TensorFlow or torch.")
    export.modes.add_argument("--hub", metavar="DIR", help="the light runtime for a smart-home hub: VGGish as "
                              "TFLite (+ --quantize variants, their embedding error measured) or the YAMNet .tflite, "
                              "and the detector for numpy, so homesound listen --hub DIR needs neither TensorFlow "
                              "nor torch")
    hub = export.add_argument_group("--hub DIR")
    hub.add_argument("--model", metavar="MODEL.pt", help="the causal detector to run on the hub")
    hub.add_argument("--quantize", default="", metavar="VARIANTS",
                     help="comma-separated extra VGGish variants: float16, dynamic (int8 weights), "
                          "int8 (int8 weights and activations, calibrated); not for YAMNet")
    hub.add_argument("--calibration-audio", nargs="+", default=[], metavar="FILE",
                     help="home audio to calibrate int8 and to measure the errors on (default: synthetic)")
    _add_embedder_options(hub, with_embedder=False)  # export's own --embedder also takes vggish or yamnet
    workspace_export = export.get_default("handler")
    export.set_defaults(handler=lambda args: run_export_hub(args) if args.hub else workspace_export(args))


# --- listen -----------------------------------------------------------------------------------------------


def run_listen(args: argparse.Namespace) -> int:
    import os

    # numpy's BLAS threads would fight VGGish for the cores over matrices too small to gain from them
    # (3-4x slower on two busy cores); set before numpy is first imported, a user's own setting wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import signal
    import threading

    from classify.options import event_settings
    from classify.stream import LiveDetector
    from embed.sources import SourceOptions, SourceReader, open_source
    from homesound_hub.listen import JsonLinesSink, Listener, stderr_summary

    settings = event_settings(args)
    source = open_source(args.source, SourceOptions(args.rate, args.channels, args.pcm_format, args.realtime))
    runtime = _load_hub_runtime(args) if args.hub else _load_full_runtime(args)
    rules = settings.rules(runtime.detector.thresholds)
    live = LiveDetector(runtime.detector.stream(), runtime.detector.classes, rules, runtime.embedder.embedder_id,
                        runtime.detector.input_encoding, runtime.detector.frames.hop_seconds)
    sinks = [JsonLinesSink(sys.stdout, args.probabilities)]
    if args.mqtt:
        from homesound_hub.notify import HomeAssistantMqtt, MqttSettings

        sinks.append(HomeAssistantMqtt(MqttSettings.from_url(
            args.mqtt, node_id=args.mqtt_node, discovery_prefix=args.mqtt_discovery_prefix,
            base_topic=args.mqtt_base_topic), source.description))
    if args.webhook:
        from homesound_hub.notify import Webhook

        sinks.append(Webhook(args.webhook))
    run = _start_workspace_run(args, runtime, source.description, settings)
    if run is not None:
        sinks.append(run.recorder)

    stop = threading.Event()
    previous = {number: signal.signal(number, lambda *_: stop.set()) for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        reader = SourceReader(source, stall_seconds=args.stall_timeout)
        summary = Listener(reader, runtime.embedder_factory, live, sinks).run(stop)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if run is not None:
        run.finish(summary)
    stderr_summary(summary)
    if summary.exit_status == "error":
        raise HomesoundError(summary.error)
    return 1 if any(getattr(sink, "undelivered", False) for sink in sinks) else 0  # e.g. the broker never reached


class _Runtime:
    """What listen runs: an embedder for hops, the detector (torch or numpy), and how to name them."""

    def __init__(self, embedder, detector, name: str, filter_table=None, exact_embeddings: bool = True):
        self.embedder = embedder
        self.detector = detector
        self.name = name
        self.filter_table = filter_table
        self.exact_embeddings = exact_embeddings  # the embeddings are those of the embedder id they carry

    def embedder_factory(self, sample_rate: int, on_audio):
        from embed.streaming import StreamingEmbedder

        return StreamingEmbedder(self.embedder, sample_rate, on_audio, self.filter_table)


def _load_hub_runtime(args: argparse.Namespace) -> _Runtime:
    from homesound_hub.bundle import load_hub

    hub = load_hub(args.hub, args.variant, threads=args.threads)
    print(f"listening with {hub.description}", file=sys.stderr)
    name = f"hub:{Path(args.hub).resolve()} (detector sha256 {hub.manifest['detector']['sha256'][:12]})"
    return _Runtime(hub.embedder, hub.detector, name, hub.filter_table, exact_embeddings=hub.exact)


def _load_full_runtime(args: argparse.Namespace) -> _Runtime:
    import numpy as np
    import torch

    from classify.detector import load_detector, model_sha256

    torch.set_num_threads(1)  # one small GRU step per second; the cores are for the embedder
    detector = load_detector(args.model)  # trained, or zero-shot (YAMNet's class scores)
    if not detector.streamable:
        raise HomesoundError(f"{args.model} is bidirectional (offline only); train a causal detector to listen")
    embedder = _detector_embedder(args, detector, batch_size=1, jit_compile=not args.no_xla)
    embedder.raw_embeddings([np.zeros(embedder.frames.window_samples)])  # compile now
    where = args.model if not Path(args.model).exists() else Path(args.model).resolve()
    return _Runtime(embedder, detector, f"model:{where} (sha256 {model_sha256(args.model, detector)[:12]})")


def _detector_embedder(args: argparse.Namespace, detector, **settings):
    """The embedder the options name, by default the model (and source, if still there) the detector was trained on."""
    from classify.frame_inputs import check_source
    from embed.options import chosen_model, embedder_config_from_args
    from embed.embedder import load_embedder

    model = chosen_model(args, default=detector.frames.model)
    given = args.yamnet if model == "yamnet" else args.vggish
    source = given or (_trained_source(detector) if model == detector.frames.model else None)
    embedder = load_embedder(config=embedder_config_from_args(args, model, source=source, **settings))
    check_source(detector, embedder.embedder_id, embedder.class_names)
    return embedder


def _trained_source(detector) -> str | None:
    """The embedder source recorded with the detector's training embeddings, when it is still there."""
    for provenance in getattr(detector, "embedder_provenance", {}).values():  # a zero-shot detector has none
        source = (provenance or {}).get("source")
        if source and ("://" in source or any(Path(source).parent.glob(Path(source).name + "*"))):
            return source  # a Hub handle, a SavedModel directory, or a checkpoint prefix with its files
    return None


class _WorkspaceRun:
    def __init__(self, workspace: str, run_id: int, recorder):
        self.workspace = workspace
        self.run_id = run_id
        self.recorder = recorder

    def finish(self, summary) -> None:
        from homesound.workspace import Workspace
        from homesound.workspace.runs import RunStatus, finish_run

        with Workspace(self.workspace) as workspace:
            finish_run(workspace, self.run_id, RunStatus.FAILED if summary.exit_status == "error" else RunStatus.COMPLETED, {
                "seconds": summary.seconds, "events": summary.events, "clips_saved": self.recorder.saved,
                "clips_dropped": self.recorder.dropped, "ended": summary.exit_status, "error": summary.error})


def _start_workspace_run(args, runtime: _Runtime, source: str, settings) -> _WorkspaceRun | None:
    if not args.workspace:
        return None
    from homesound.workspace import Workspace
    from homesound.workspace.runs import start_run
    from homesound_hub.clips import ClipRecorder, ClipSettings

    clip_dir = args.clips or str(Path(args.workspace).resolve().parent / "live_clips")
    clip_settings = ClipSettings(args.workspace, clip_dir, args.pre_roll, args.max_clip,
                                 store_embeddings=runtime.exact_embeddings)
    with Workspace(args.workspace) as workspace:
        run_id = start_run(workspace, "listen", {"source": source, "detector": runtime.name, "events": settings,
                                                  "clips": clip_settings})
    recorder = ClipRecorder(clip_settings, detector=runtime.name, embedder_id=runtime.embedder.embedder_id,
                            embedder_provenance=runtime.embedder.provenance, frames=runtime.embedder.frames,
                            class_names=runtime.embedder.class_names, run_id=run_id)
    return _WorkspaceRun(args.workspace, run_id, recorder)


# --- export -----------------------------------------------------------------------------------------------


def run_export_hub(args: argparse.Namespace) -> int:
    from classify.detector import Detector
    from homesound_hub.bundle import export_hub

    if not args.model:
        raise HomesoundError("--hub needs --model MODEL.pt (the causal detector to run on the hub)")
    variants = tuple(v.strip() for v in args.quantize.split(",") if v.strip())
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise HomesoundError(f"--quantize {','.join(unknown)}: choose from {', '.join(VARIANTS)}")
    detector = Detector.load(args.model)
    embedder = _detector_embedder(args, detector, jit_compile=False)
    manifest = export_hub(args.model, embedder, args.hub, quantizations=variants,
                          calibration_audio=args.calibration_audio,
                          progress=lambda text: print(text, file=sys.stderr))
    print(f"hub runtime written to {args.hub} (embedder {manifest['embedder_id']}, classes "
          f"{', '.join(manifest['detector']['classes'])}); embedding error on {manifest['calibration']['examples']} "
          "examples:")
    for variant, report in manifest["variants"].items():
        source_error = report["error_vs_source"]
        if manifest["embedder_model"] == "yamnet":
            print(f"  {variant:<8} {report['bytes'] / 1e6:6.1f} MB  {report['ms_per_example_2_threads']:6.1f} ms/frame"
                  f"  vs source: max |embedding| err {source_error['max_abs_embedding_error']:.2e}, max |score| err "
                  f"{source_error['max_abs_score_error']:.2e}")
            continue
        line = (f"  {variant:<8} {report['bytes'] / 1e6:6.1f} MB  {report['ms_per_example_2_threads']:6.1f} ms/example"
                f"  vs source: max |raw| err {source_error['max_abs_raw_error']:.2e}, uint8 differing "
                f"{source_error['uint8_values_differing']:.2%}")
        if "error_vs_float32" in report:
            own = report["error_vs_float32"]
            line += (f"; vs float32: max |raw| err {own['max_abs_raw_error']:.2e} "
                     f"(relative {own['max_relative_raw_error']:.2e}), uint8 differing {own['uint8_values_differing']:.2%}")
        print(line)
    print(f"run it with: homesound listen --hub {args.hub} --source mic")
    return 0
