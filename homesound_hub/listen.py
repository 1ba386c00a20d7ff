"""The listening loop: source blocks -> hop embeddings -> detector step -> events -> every output.

One thread reads the source (homesound_hub.sources.SourceReader), this loop does the computing, and
each output that talks to the network (MQTT, webhook) or the disk (clips) works from its own
bounded queue, so a slow broker or disk never holds up the audio and memory stays flat. A
break in the audio (reconnect, dropped blocks) closes open events and restarts the stream
state; a stall closes open events and marks the sensors unavailable until audio returns.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, TextIO

import numpy as np

from classify.events import EventUpdate
from classify.stream import HopResult, LiveDetector
from homesound_hub.sources import Block, SourceReader, SourceStatus
from embed.streaming import EmbeddedHop, StreamingEmbedder

log = logging.getLogger(__name__)

# Make a hop embedder for a new segment: (sample rate, audio callback) -> StreamingEmbedder.
EmbedderFactory = Callable[[int, Callable[[np.ndarray], None]], StreamingEmbedder]


def iso_time(wall: float) -> str:
    return _dt.datetime.fromtimestamp(wall, _dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class EventReport:
    """One event update as every output sees it: stream times and wall-clock times."""

    update: EventUpdate
    start_wall: float  # wall clock of the event's start
    end_wall: float  # wall clock of where it has got to ('start') or of its end ('end')
    reported_wall: float
    source: str

    def record(self) -> dict:
        event = self.update.event
        return {
            "type": "event", "state": self.update.kind, "label": event.label,
            "start": round(event.start, 3), "end": round(event.end, 3), "duration": round(event.duration, 3),
            "start_time": iso_time(self.start_wall), "end_time": iso_time(self.end_wall),
            "reported_at": iso_time(self.reported_wall),
            "peak_probability": round(event.peak_probability, 4),
            "mean_probability": round(event.mean_probability, 4), "source": self.source,
        }


class Sink:
    """An output of the listener; every method is called from the listening loop's thread, in order."""

    def open(self, classes: tuple[str, ...]) -> None:
        pass

    def segment(self, start_seconds: float) -> None:
        """Audio starts (again) at this stream time; what came before is not contiguous with it."""

    def audio(self, samples_16k: np.ndarray) -> None:
        pass

    def hop(self, hop: EmbeddedHop, result: HopResult, wall: float, latency: float) -> None:
        pass

    def event(self, report: EventReport) -> None:
        pass

    def status(self, status: str, message: str) -> None:
        pass

    def close(self) -> None:
        pass


class JsonLinesSink(Sink):
    """Events (and statuses, and per-hop probabilities if asked) as JSON lines, flushed one by one."""

    def __init__(self, stream: TextIO, probabilities: bool = False):
        self.stream = stream
        self.probabilities = probabilities
        self.classes: tuple[str, ...] = ()

    def open(self, classes: tuple[str, ...]) -> None:
        self.classes = classes

    def hop(self, hop: EmbeddedHop, result: HopResult, wall: float, latency: float) -> None:
        if self.probabilities:
            self._write({"type": "hop", "index": result.index, "start": round(result.start_seconds, 3),
                         "time": iso_time(wall), "latency_ms": round(latency * 1000, 1),
                         "probabilities": {label: float(p) for label, p in zip(self.classes, result.probabilities)}})

    def event(self, report: EventReport) -> None:
        self._write(report.record())

    def status(self, status: str, message: str) -> None:
        self._write({"type": "status", "status": status, "message": message, "time": iso_time(time.time())})

    def _write(self, record: dict) -> None:
        try:
            self.stream.write(json.dumps(record) + "\n")
            self.stream.flush()
        except BrokenPipeError:  # the reader went away (e.g. `| head`): keep serving the other outputs
            self.stream = open("/dev/null", "w")


@dataclass
class ListenSummary:
    hops: int = 0
    seconds: float = 0.0
    events: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # last hops only (bounded)
    compute_seconds: float = 0.0
    exit_status: str = "stopped"  # 'ended' (source finished), 'stopped' (signal), 'error'
    error: str | None = None

    LATENCY_WINDOW = 3600

    def latency_summary(self) -> dict[str, float]:
        if not self.latencies:
            return {}
        values = np.array(self.latencies) * 1000
        return {"mean_ms": float(values.mean()), "p95_ms": float(np.percentile(values, 95)),
                "max_ms": float(values.max())}


class Listener:
    def __init__(self, reader: SourceReader, make_embedder: EmbedderFactory, detector: LiveDetector,
                 sinks: list[Sink]):
        self.reader = reader
        self.make_embedder = make_embedder
        self.detector = detector
        self.sinks = sinks
        self.summary = ListenSummary(events={label: 0 for label in detector.classes})
        self._embedder: StreamingEmbedder | None = None
        self._segment: int | None = None
        self._segment_start = 0.0  # stream time where the current segment began
        self._stalled = False
        self._clock: tuple[float, float] = (time.time(), 0.0)  # (wall clock, stream time) of the newest audio

    def run(self, stop: threading.Event) -> ListenSummary:
        for sink in self.sinks:
            sink.open(self.detector.classes)
        self.reader.start()
        try:
            while not stop.is_set():
                item = self.reader.next(timeout=0.2)
                if item is None:
                    continue
                if isinstance(item, Block):
                    self._block(item)
                elif self._source_status(item):
                    break
        finally:
            self._report(self.detector.close_events())
            self.reader.stop()
            for sink in self.sinks:
                try:
                    sink.close()
                except Exception as error:  # one broken output must not keep the others from closing
                    log.warning("closing %s: %s", type(sink).__name__, error)
        return self.summary

    def _source_status(self, status: SourceStatus) -> bool:
        """Handle a status; True when listening is over."""
        self._emit_status(status.status, status.message)
        if status.status == "stalled":
            self._stalled = True
            self._report(self.detector.close_events())
        if status.status in ("ended", "error"):
            self._finish_segment()
            self.summary.exit_status = status.status
            self.summary.error = status.message if status.status == "error" else None
            return True
        return False

    def _block(self, block: Block) -> None:
        if block.segment != self._segment:
            self._start_segment(block)
        elif self._stalled:
            self._emit_status("resumed", "audio is flowing again")
        self._stalled = False
        started = time.perf_counter()
        hops = self._embedder.push(block.samples)
        block_end = self._segment_start + self._embedder.seconds_received
        # Wall clock of the block's last sample: it arrived at block.received.
        wall_end = time.time() - (time.monotonic() - block.received)
        self._clock = (wall_end, block_end)
        self._hops(hops, started)

    def _hops(self, hops: list[EmbeddedHop], started: float) -> None:
        for hop in hops:
            result = self.detector.push(hop.embedding, hop.raw_embedding, hop.class_scores)
            now = time.time()
            latency = now - self.wall_of(result.end_seconds)
            self.summary.hops += 1
            self.summary.seconds += hop.hop_seconds
            self.summary.latencies.append(latency)
            if len(self.summary.latencies) > ListenSummary.LATENCY_WINDOW:
                del self.summary.latencies[: len(self.summary.latencies) // 2]
            for sink in self.sinks:
                sink.hop(hop, result, self.wall_of(result.end_seconds), latency)
            self._report(result.updates)
        self.summary.compute_seconds += time.perf_counter() - started

    def wall_of(self, stream_seconds: float) -> float:
        wall, stream = self._clock
        return wall - (stream - stream_seconds)

    def _start_segment(self, block: Block) -> None:
        if self._segment is not None:
            self._finish_segment()
            self._segment_start += self._embedder.seconds_received
            self._report(self.detector.restart(self._segment_start))
        self._segment = block.segment
        self._embedder = self.make_embedder(block.sample_rate, self._audio)
        for sink in self.sinks:
            sink.segment(self._segment_start)

    def _finish_segment(self) -> None:
        """The segment's last samples complete its last hops (as a whole-file pass would)."""
        if self._embedder is not None:
            self._hops(self._embedder.finish(), time.perf_counter())

    def _audio(self, samples_16k: np.ndarray) -> None:
        for sink in self.sinks:
            sink.audio(samples_16k)

    def _report(self, updates: list[EventUpdate]) -> None:
        now = time.time()
        for update in updates:
            if update.kind == "start":
                self.summary.events[update.event.label] += 1
            report = EventReport(update, self.wall_of(update.event.start), self.wall_of(update.event.end), now,
                                 self.reader.source.description)
            for sink in self.sinks:
                sink.event(report)

    def _emit_status(self, status: str, message: str) -> None:
        log.info("%s: %s", status, message)
        for sink in self.sinks:
            sink.status(status, message)


def stderr_summary(summary: ListenSummary, stream: TextIO = sys.stderr) -> None:
    hours = summary.seconds / 3600
    events = ", ".join(f"{label}: {count}" for label, count in summary.events.items())
    factor = summary.compute_seconds / summary.seconds if summary.seconds else float("nan")
    latency = summary.latency_summary()
    latency_text = (f"; hop latency mean {latency['mean_ms']:.0f} ms, p95 {latency['p95_ms']:.0f} ms"
                    if latency else "")
    print(f"listened to {summary.seconds:.1f} s ({hours:.2f} h): {events} events; real-time factor "
          f"{factor:.3f}{latency_text}", file=stream)
