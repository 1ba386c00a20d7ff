"""Saving each live event as a clip (with some seconds before it) into the workspace.

The last seconds of 16 kHz audio and their hop embeddings stay in a small ring; an event's
start opens a clip from `pre_roll` seconds before it, which then grows with the audio (at
most `max_clip` seconds) until the event ends. Clips start on a hop boundary and keep the
240 samples the last example reads past its hop, so embedding the clip file again gives the
very hops the listener computed: they are stored with it, ready for active learning. Writing
happens in a background thread from a bounded queue.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import queue
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embed.streaming import EmbeddedHop
from homesound.frames import SAMPLE_RATE as RATE
from homesound.frames import FrameSpec
from homesound.hashing import file_sha256
from homesound.output_files import atomic_output
from homesound_hub.listen import EventReport, Sink, iso_time

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipSettings:
    workspace: str
    directory: str
    pre_roll_seconds: float = 5.0
    max_clip_seconds: float = 60.0
    store_embeddings: bool = True  # False when the embedder only approximates the one it names
    queue_clips: int = 8


@dataclass
class _OpenClip:
    report: EventReport  # the 'start' update
    first_hop: int  # segment hop index the clip starts at
    audio: list[np.ndarray] = field(default_factory=list)  # from first_hop's first sample on
    samples: int = 0
    hops: list[EmbeddedHop] = field(default_factory=list)


@dataclass(frozen=True)
class FinishedClip:
    samples: np.ndarray  # float32 16 kHz mono
    hops: list[EmbeddedHop]
    report: EventReport  # the 'end' update
    event_start_in_clip: float
    event_end_in_clip: float


class ClipRecorder(Sink):
    def __init__(self, settings: ClipSettings, *, detector: str, embedder_id: str, embedder_provenance: dict,
                 frames: FrameSpec, class_names: tuple[str, ...] | None = None, run_id: int | None = None,
                 model_id: int | None = None):
        self.settings = settings
        self.detector = detector
        self.model_id = model_id
        self.embedder_id = embedder_id
        self.embedder_provenance = embedder_provenance
        self.frames = frames
        self.class_names = class_names
        self.run_id = run_id
        self._hop_samples = frames.hop_samples
        self._overlap_samples = frames.window_samples - frames.hop_samples
        self.saved = 0
        self.dropped = 0
        Path(settings.directory).mkdir(parents=True, exist_ok=True)
        self._pre_roll_hops = math.ceil(settings.pre_roll_seconds / self.frames.hop_seconds)
        self._max_hops = max(1, math.floor(settings.max_clip_seconds / self.frames.hop_seconds))
        # Enough history to reach pre_roll before an onset that is confirmed a few hops late.
        self._ring_samples = (self._pre_roll_hops + 16) * self._hop_samples + self._overlap_samples
        self._segment_start = 0.0
        self._audio: deque[np.ndarray] = deque()
        self._audio_start = 0  # segment sample index of the ring's first sample
        self._audio_samples = 0
        self._hops: deque[EmbeddedHop] = deque(maxlen=self._pre_roll_hops + 16)
        self._open: dict[str, _OpenClip] = {}
        self._writes: queue.Queue = queue.Queue(maxsize=settings.queue_clips)
        self._writer = threading.Thread(target=self._write_loop, name="homesound-clips", daemon=True)
        self._writer.start()

    def segment(self, start_seconds: float) -> None:
        self._segment_start = start_seconds
        self._audio.clear()
        self._audio_start = self._audio_samples = 0
        self._hops.clear()
        self._open.clear()  # their events were closed before the break

    def audio(self, samples_16k: np.ndarray) -> None:
        block = samples_16k.astype(np.float32)
        self._audio.append(block)
        self._audio_samples += len(block)
        for clip in self._open.values():
            if clip.samples < self._max_hops * self._hop_samples + self._overlap_samples:
                clip.audio.append(block)
                clip.samples += len(block)
        while self._audio and self._audio_samples - len(self._audio[0]) >= self._ring_samples:
            dropped = self._audio.popleft()
            self._audio_samples -= len(dropped)
            self._audio_start += len(dropped)

    def hop(self, hop: EmbeddedHop, result, wall: float, latency: float) -> None:
        self._hops.append(hop)
        for clip in self._open.values():
            if len(clip.hops) < self._max_hops and hop.index >= clip.first_hop:
                clip.hops.append(hop)

    def event(self, report: EventReport) -> None:
        label = report.update.event.label
        if report.update.kind == "start":
            self._open[label] = self._open_clip(report)
        elif label in self._open:
            self._finish(self._open.pop(label), report)

    def close(self) -> None:
        self._writes.put(None)
        self._writer.join(timeout=30.0)

    def _hop_of(self, stream_seconds: float) -> int:
        return int(round((stream_seconds - self._segment_start) / self.frames.hop_seconds))

    def _open_clip(self, report: EventReport) -> _OpenClip:
        earliest = -(-self._audio_start // self._hop_samples)  # first whole hop still in the ring
        first_hop = max(0, earliest, self._hop_of(report.update.event.start) - self._pre_roll_hops)
        clip = _OpenClip(report, first_hop)
        ring = np.concatenate(self._audio) if self._audio else np.zeros(0, np.float32)
        clip.audio.append(ring[first_hop * self._hop_samples - self._audio_start:])
        clip.samples = len(clip.audio[0])
        clip.hops = [hop for hop in self._hops if hop.index >= first_hop][: self._max_hops]
        return clip

    def _finish(self, clip: _OpenClip, report: EventReport) -> None:
        event = report.update.event
        hops = [hop for hop in clip.hops if hop.index < self._hop_of(event.end)]
        if not hops:
            return
        audio = np.concatenate(clip.audio)[: len(hops) * self._hop_samples + self._overlap_samples]
        clip_start = self._segment_start + clip.first_hop * self.frames.hop_seconds
        finished = FinishedClip(audio, hops, report, event.start - clip_start,
                                min(event.end, self._segment_start + (hops[-1].index + 1) * self.frames.hop_seconds)
                                - clip_start)
        try:
            self._writes.put_nowait(finished)
        except queue.Full:
            self.dropped += 1
            log.warning("clip writer is behind: %s clip dropped (%d so far)", event.label, self.dropped)

    def _write_loop(self) -> None:
        while (clip := self._writes.get()) is not None:
            try:
                self._write(clip)
                self.saved += 1
            except Exception as error:  # a full disk or busy workspace must not end the listening
                self.dropped += 1
                log.warning("could not save the %s clip: %s", clip.report.update.event.label, error)

    def _write(self, clip: FinishedClip) -> None:
        import soundfile

        from homesound.workspace import Workspace
        from homesound.workspace.listen import LiveEvent, save_live_event
        from homesound.workspace.recordings import StoredEmbedding, register_embedder, save_recording

        event = clip.report.update.event
        stamp = _dt.datetime.fromtimestamp(clip.report.start_wall, _dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%f")
        path = Path(self.settings.directory).resolve() / f"{stamp[:-3]}Z_{event.label}.wav"
        with atomic_output(path, what="clip") as partial:
            soundfile.write(str(partial), clip.samples, RATE, subtype="FLOAT", format="WAV")
        digest = file_sha256(path)
        stat = path.stat()
        with Workspace(self.settings.workspace) as workspace:
            if self.settings.store_embeddings:
                register_embedder(workspace, self.embedder_id, self.embedder_provenance, frames=self.frames,
                                  class_names=self.class_names)
                scores = (np.stack([h.class_scores for h in clip.hops]) if self.frames.class_count else None)
                embedding = StoredEmbedding(digest, self.embedder_id, np.stack([h.embedding for h in clip.hops]),
                                            np.stack([h.raw_embedding for h in clip.hops]), self.frames.hop_seconds,
                                            scores)
                save_recording(workspace, path=str(path), size=stat.st_size, mtime_ns=stat.st_mtime_ns,
                               content_sha256=digest, status="embedded", duration_seconds=len(clip.samples) / RATE,
                               sample_rate=RATE, channels=1, audio_format="WAV/FLOAT", run_id=self.run_id,
                               embedding=embedding)
            save_live_event(workspace, LiveEvent(
                content_sha256=digest, clip_path=str(path), label=event.label,
                started_at=iso_time(clip.report.start_wall), ended_at=iso_time(clip.report.end_wall),
                event_start_in_clip=round(clip.event_start_in_clip, 3),
                event_end_in_clip=round(clip.event_end_in_clip, 3),
                peak_probability=event.peak_probability, mean_probability=event.mean_probability,
                source=clip.report.source, detector=self.detector, embedder_id=self.embedder_id,
                model_id=self.model_id,
            ), self.run_id)
