"""Live audio for `homesound listen`: microphone, audio file, raw PCM on stdin, network streams via ffmpeg.

Every source gives float64 mono blocks at its own sample rate, like AudioReader does for files.
`SourceReader` reads a source in a background thread into a bounded queue, so a slow consumer
never makes memory grow: a live source (microphone, network stream) drops audio and says so, a
file or pipe simply waits. Live sources that end, fail or stall are opened again with
exponential backoff; every break in the audio starts a new *segment*, because the samples
before and after it are not contiguous.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import numpy as np

from embed.audio_io import FFMPEG_HINT, AudioReader, check_audio_format, finite_mono
from embed.pipeline import put_until_stopped
from homesound.backoff import Backoff
from homesound.errors import AudioDecodeError, HomesoundError
from homesound.redact import redact_text, redact_url, url_secrets

log = logging.getLogger(__name__)

LIVE_BLOCK_SECONDS = 0.1  # small blocks: a hop's last sample reaches the detector within ~0.1 s
LIVE_WAIT_SECONDS = 1.0  # a full queue of live audio waits this long for the listener before dropping
NON_LIVE_QUEUE_BLOCKS = 8  # files and pipes are read just ahead of the listener, so arrival ~ processing time
NONFINITE_WARNING_SECONDS = 60.0  # corrupt float input is reported at most this often (with a running count)
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
MICROPHONE_PREFIX = "mic"
PORTAUDIO_HINT = ("install PortAudio (Debian/Ubuntu: apt-get install libportaudio2; macOS: brew install portaudio) "
                  "and sounddevice (pip install sounddevice), or listen to a file, stdin (-) or a network stream")
# Container magic numbers: a file piped where raw PCM was promised would otherwise be heard as noise.
CONTAINER_MAGIC = {b"RIFF": "WAV", b"fLaC": "FLAC", b"OggS": "Ogg", b"ID3": "MP3", b"FORM": "AIFF"}


class SourceError(HomesoundError):
    """An audio source cannot be opened or read; the message says which and what to do."""


class SourceSetupError(SourceError):
    """Something this machine lacks (ffmpeg, PortAudio): retrying cannot help."""


@dataclass(frozen=True)
class PcmFormat:
    name: str
    dtype: str  # numpy dtype of one sample (s24le: three bytes, handled apart)
    bytes_per_sample: int
    scale: float  # full scale -> 1.0
    offset: float = 0.0  # unsigned formats are centred on this value


PCM_FORMATS = {
    fmt.name: fmt for fmt in (
        PcmFormat("u8", "u1", 1, 128.0, 128.0),
        PcmFormat("s16le", "<i2", 2, 32768.0),
        PcmFormat("s24le", "<i4", 3, 8388608.0),
        PcmFormat("s32le", "<i4", 4, 2147483648.0),
        PcmFormat("f32le", "<f4", 4, 1.0),
        PcmFormat("f64le", "<f8", 8, 1.0),
    )
}


class PcmDecoder:
    """Raw interleaved PCM bytes, arriving in arbitrary pieces -> float64 mono blocks.

    Bytes that do not yet make a whole frame wait for the next piece; NaN/inf samples of float
    formats become silence (counted), so one corrupt value cannot poison the detector's state.
    """

    def __init__(self, pcm_format: str, channels: int):
        if pcm_format not in PCM_FORMATS:
            raise SourceError(f"unknown PCM format {pcm_format!r}; use one of {', '.join(PCM_FORMATS)}")
        if channels < 1:
            raise SourceError(f"--channels must be at least 1, got {channels}")
        self.format = PCM_FORMATS[pcm_format]
        self.channels = channels
        self.frame_bytes = self.format.bytes_per_sample * channels
        self.nonfinite_samples = 0
        self._pending = b""

    def decode(self, data: bytes) -> np.ndarray:
        data = self._pending + data
        usable = len(data) - len(data) % self.frame_bytes
        self._pending = data[usable:]
        if not usable:
            return np.zeros(0)
        mono, zeroed = finite_mono(self._samples(data[:usable]).reshape(-1, self.channels))
        self.nonfinite_samples += zeroed
        return mono

    def leftover_bytes(self) -> int:
        """Bytes of an incomplete last frame (a stream cut mid-frame, or the wrong --format/--channels)."""
        return len(self._pending)

    def _samples(self, data: bytes) -> np.ndarray:
        fmt = self.format
        if fmt.name == "s24le":
            triples = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
            values = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
            values = np.where(values >= 1 << 23, values - (1 << 24), values)
            return values.astype(np.float64) / fmt.scale
        raw = np.frombuffer(data, dtype=fmt.dtype).astype(np.float64)
        return (raw - fmt.offset) / fmt.scale


class SourceStream(ABC):
    """One opened connection to a source."""

    sample_rate: int

    @abstractmethod
    def read(self) -> np.ndarray | None:
        """The next mono block (maybe empty); None when the stream has ended."""

    @abstractmethod
    def close(self) -> None:
        """Release it; safe to call from another thread to interrupt a blocked read where possible."""


class AudioSource(ABC):
    description: str
    live = False  # produces audio in real time: if the listener falls behind, audio is dropped, not queued
    restartable = False  # after it ends, fails or stalls, open it again (with backoff)

    @abstractmethod
    def open(self) -> SourceStream:
        """Raises SourceError when it cannot be opened (now)."""


# --- files ---------------------------------------------------------------------------------------------


class FileSource(AudioSource):
    """An audio file, at real time (a stand-in for a microphone) or as fast as it decodes."""

    def __init__(self, path: str, realtime: bool):
        self.path = path
        self.realtime = realtime
        self.description = f"file {path}" + (" (real time)" if realtime else "")

    def open(self) -> SourceStream:
        try:
            reader = AudioReader(self.path, block_seconds=LIVE_BLOCK_SECONDS)
        except AudioDecodeError as error:
            raise SourceError(str(error)) from None
        return _FileStream(reader, self.realtime)


class _FileStream(SourceStream):
    def __init__(self, reader: AudioReader, realtime: bool):
        self.reader = reader
        self.sample_rate = reader.info.sample_rate
        self.realtime = realtime
        self._blocks = reader.blocks()
        self._started = time.monotonic()
        self._samples = 0
        self._closed = threading.Event()

    def read(self) -> np.ndarray | None:
        if self._closed.is_set():
            return None
        try:
            block = next(self._blocks)
        except StopIteration:
            return None
        except AudioDecodeError as error:
            raise SourceError(str(error)) from None
        if self.realtime:
            # Released when the audio "has happened": its last sample's time from the start.
            self._closed.wait(max(0.0, self._started + (self._samples + len(block)) / self.sample_rate
                                  - time.monotonic()))
        self._samples += len(block)
        return block

    def close(self) -> None:
        self._closed.set()
        self.reader.close()


# --- raw PCM (stdin) -------------------------------------------------------------------------------------


class PcmSource(AudioSource):
    """Raw interleaved PCM from a pipe, e.g. `arecord -f S16_LE -r 16000 | homesound listen --source -`."""

    def __init__(self, stream: BinaryIO, sample_rate: int, channels: int, pcm_format: str, name: str = "stdin"):
        problem = check_audio_format(sample_rate, channels)
        if problem:
            raise SourceError(f"raw PCM on {name}: --rate {sample_rate} --channels {channels}: {problem}")
        PcmDecoder(pcm_format, channels)  # validates the format before anything starts
        self.stream = stream
        self.sample_rate = sample_rate
        self.channels = channels
        self.pcm_format = pcm_format
        self.description = f"raw {pcm_format} PCM on {name} ({sample_rate} Hz, {channels} ch)"
        self._opened = False

    def open(self) -> SourceStream:
        if self._opened:
            raise SourceError(f"{self.description} cannot be reopened")
        self._opened = True
        return _PcmStream(self)


class _PcmStream(SourceStream):
    READ_BYTES = 1 << 16

    def __init__(self, source: PcmSource):
        self.source = source
        self.sample_rate = source.sample_rate
        self.decoder = PcmDecoder(source.pcm_format, source.channels)
        self._fd = source.stream.fileno()
        self._first = True
        self._reported_nonfinite = 0
        self._reported_at = float("-inf")

    def read(self) -> np.ndarray | None:
        data = os.read(self._fd, self.READ_BYTES)  # returns what has arrived: never waits for a full buffer
        if not data:
            if self.decoder.leftover_bytes():
                log.warning("%s ended inside a frame: %d trailing bytes ignored (check --format and --channels)",
                            self.source.description, self.decoder.leftover_bytes())
            return None
        if self._first:
            self._first = False
            self._refuse_containers(data)
        block = self.decoder.decode(data)
        now = time.monotonic()
        if (self.decoder.nonfinite_samples > self._reported_nonfinite
                and now - self._reported_at >= NONFINITE_WARNING_SECONDS):
            log.warning("%s: %d NaN/inf samples so far were replaced by silence (reported at most once a minute)",
                        self.source.description, self.decoder.nonfinite_samples)
            self._reported_nonfinite = self.decoder.nonfinite_samples
            self._reported_at = now
        return block

    def _refuse_containers(self, data: bytes) -> None:
        for magic, kind in CONTAINER_MAGIC.items():
            if data.startswith(magic):
                raise SourceError(
                    f"{self.source.description}: the data starts like a {kind} file, not raw PCM; pass the file "
                    "itself with --source FILE, or send raw samples (e.g. ffmpeg -i IN -f s16le -ac 1 -ar 16000 -)"
                )

    def close(self) -> None:
        pass  # stdin belongs to the process; a blocked read ends with the process


# --- network streams (ffmpeg) ----------------------------------------------------------------------------


class NetworkSource(AudioSource):
    """rtsp/http/... streams decoded by an ffmpeg subprocess to float32 mono.

    ffmpeg keeps the stream's own sample rate (read from the output stream it announces), so the
    exact resampler does the rest and a stream gives the embeddings its file would; `sample_rate`
    asks ffmpeg to resample instead.
    """

    live = True
    restartable = True
    ANNOUNCE_TIMEOUT_SECONDS = 20.0  # connecting to a camera and reading its stream header

    def __init__(self, url: str, sample_rate: int | None = None, ffmpeg: str = "ffmpeg"):
        if sample_rate is not None and check_audio_format(sample_rate, 1):
            raise SourceError(f"--rate {sample_rate}: {check_audio_format(sample_rate, 1)}")
        self.url = url
        self.sample_rate = sample_rate
        self.ffmpeg = ffmpeg
        self.description = f"network stream {redact_url(url)}"
        self.secrets = url_secrets(url)  # to find them in ffmpeg's own words too

    def open(self) -> SourceStream:
        executable = shutil.which(self.ffmpeg)
        if executable is None:
            raise SourceSetupError(f"cannot play {self.description}: ffmpeg not found; {FFMPEG_HINT}")
        command = [executable, "-nostdin", "-hide_banner", "-nostats", "-v", "info"]
        if self.url.startswith(("rtsp://", "rtsps://")):
            command += ["-rtsp_transport", "tcp"]
        command += ["-i", self.url, "-vn", "-map", "0:a:0", "-f", "f32le", "-acodec", "pcm_f32le", "-ac", "1"]
        command += ["-ar", str(self.sample_rate)] if self.sample_rate else []
        try:
            process = subprocess.Popen(command + ["-"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE)
        except OSError as error:
            raise SourceError(f"cannot start ffmpeg for {self.description}: {error}") from None
        return _FfmpegStream(process, self.description, self.ANNOUNCE_TIMEOUT_SECONDS, self.secrets)


class _FfmpegStream(SourceStream):
    READ_BYTES = 1 << 15
    OUTPUT_RATE = re.compile(r"Audio: pcm_f32le\b.*?(\d+) Hz")

    def __init__(self, process: subprocess.Popen, description: str, announce_timeout: float,
                 secrets: set[str] = frozenset()):
        self.process = process
        self.description = description
        self.secrets = secrets
        self.decoder = PcmDecoder("f32le", 1)
        self._stderr: list[str] = []
        self._rate: int | None = None
        self._announced = threading.Event()
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()
        if not self._announced.wait(announce_timeout) or self._rate is None:
            self.close()
            raise SourceError(f"{self.description}: no audio from ffmpeg ({self._last_words()})")
        self.sample_rate = self._rate

    def _drain_stderr(self) -> None:
        in_output = False
        for raw in self.process.stderr:  # keep only the last lines: ffmpeg may complain for days
            line = redact_text(raw.decode(errors="replace").rstrip(), self.secrets)  # ffmpeg quotes the URL
            self._stderr = (self._stderr + [line])[-5:]
            in_output = in_output or line.startswith("Output #0")
            match = self.OUTPUT_RATE.search(line) if in_output and self._rate is None else None
            if match:
                self._rate = int(match.group(1))
                self._announced.set()
        self._announced.set()  # ffmpeg ended: whoever waits learns it now

    def _last_words(self) -> str:
        self.process.poll()
        lines = [line.strip() for line in self._stderr if line.strip()]
        return lines[-1] if lines else f"ffmpeg exit {self.process.returncode}"

    def read(self) -> np.ndarray | None:
        data = os.read(self.process.stdout.fileno(), self.READ_BYTES)
        if data:
            return self.decoder.decode(data)
        code = self.process.wait()
        self._stderr_thread.join(timeout=1.0)
        if code not in (0, -9, -15):
            raise SourceError(f"{self.description}: ffmpeg stopped ({self._last_words()})")
        return None

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdout, self.process.stderr):
            pipe.close()


# --- microphones (PortAudio) -----------------------------------------------------------------------------


class MicrophoneSource(AudioSource):
    """The default input device, or one named (a substring of its name, or its index)."""

    live = True
    restartable = True

    def __init__(self, device: str | None, sample_rate: int | None, channels: int):
        problem = check_audio_format(sample_rate or 16000, channels)
        if problem:
            raise SourceError(f"microphone: --rate {sample_rate} --channels {channels}: {problem}")
        self.device = int(device) if device is not None and device.isdigit() else device
        self.sample_rate = sample_rate
        self.channels = channels
        self.description = f"microphone {device or '(default input)'}"

    def open(self) -> SourceStream:
        sounddevice = _import_sounddevice()
        try:
            rate = self.sample_rate or self._native_16k(sounddevice) or int(
                sounddevice.query_devices(self.device, "input")["default_samplerate"])
            return _MicrophoneStream(sounddevice, self.device, rate, self.channels)
        except (ValueError, sounddevice.PortAudioError) as error:
            raise SourceError(f"cannot open {self.description}: {error}; input devices: "
                              f"{input_device_names(sounddevice) or 'none found'}") from None

    def _native_16k(self, sounddevice) -> int | None:
        """16 kHz straight from the device when it can: no resampling work on a small hub."""
        try:
            sounddevice.check_input_settings(self.device, channels=self.channels, samplerate=16000)
            return 16000
        except (ValueError, sounddevice.PortAudioError):
            return None


def _import_sounddevice():
    try:
        import sounddevice
    except (ImportError, OSError) as error:  # sounddevice raises OSError when libportaudio is missing
        raise SourceSetupError(f"no microphone support ({error}); {PORTAUDIO_HINT}") from None
    return sounddevice


def input_device_names(sounddevice) -> str:
    return "; ".join(f"{index}: {device['name']}" for index, device in enumerate(sounddevice.query_devices())
                     if device["max_input_channels"] > 0)


class _MicrophoneStream(SourceStream):
    QUEUE_BLOCKS = 100  # 10 s at 0.1 s blocks: beyond that the consumer is hopelessly behind

    def __init__(self, sounddevice, device, sample_rate: int, channels: int):
        self.sample_rate = sample_rate
        self._blocks: queue.Queue = queue.Queue(maxsize=self.QUEUE_BLOCKS)
        self._closed = threading.Event()
        self.overflows = 0
        self._stream = sounddevice.InputStream(
            device=device, channels=channels, samplerate=sample_rate, dtype="float32",
            blocksize=int(sample_rate * LIVE_BLOCK_SECONDS), callback=self._callback,
            finished_callback=self._closed.set,
        )
        self._stream.start()

    def _callback(self, indata, frames, time_info, status) -> None:  # PortAudio's thread: never block here
        if status.input_overflow:
            self.overflows += 1
        try:
            self._blocks.put_nowait(indata.mean(axis=1).astype(np.float64))
        except queue.Full:
            self.overflows += 1

    def read(self) -> np.ndarray | None:
        while not self._closed.is_set():
            try:
                return self._blocks.get(timeout=0.2)
            except queue.Empty:
                continue
        return None

    def close(self) -> None:
        self._closed.set()
        self._stream.close()


# --- choosing a source -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceOptions:
    """What the command line says about the audio besides its location."""

    sample_rate: int | None = None  # raw PCM: required; microphone and network: their own unless given
    channels: int = 1
    pcm_format: str = "s16le"
    realtime: bool = False  # files only: play at real time instead of as fast as possible


def open_source(text: str, options: SourceOptions, stdin: BinaryIO | None = None) -> AudioSource:
    """`mic`, `mic:NAME` (or index), `-` (raw PCM on stdin), a URL, or an audio file path."""
    if text == "-":
        if options.sample_rate is None:
            raise SourceError("raw PCM on stdin needs --rate (and --channels, --format unless mono s16le)")
        import sys

        return PcmSource(stdin or sys.stdin.buffer, options.sample_rate, options.channels, options.pcm_format)
    if text == MICROPHONE_PREFIX or text.startswith(MICROPHONE_PREFIX + ":"):
        device = text.partition(":")[2] or None
        return MicrophoneSource(device, options.sample_rate, options.channels)
    if text.lower().startswith(NETWORK_SCHEMES):
        return NetworkSource(text, options.sample_rate)
    if not os.path.exists(text):
        raise SourceError(f"audio source {text!r} not found: give an audio file, '-' for raw PCM on stdin, "
                          "'mic' or 'mic:NAME' for an input device, or an rtsp/http URL")
    return FileSource(text, options.realtime)


# --- reading in the background ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    samples: np.ndarray  # float64 mono
    sample_rate: int
    segment: int  # a new number after every break in the audio
    received: float  # time.monotonic() when it arrived


@dataclass(frozen=True)
class SourceStatus:
    """'connected'; 'failed' (will reconnect); 'stalled' (no audio for a while); 'ended' (no more audio,
    ever); 'error' (it cannot be read: the message says why)."""

    status: str
    message: str
    segment: int


class SourceReader:
    """Reads one source in a background thread; `next()` hands out blocks and status changes in order."""

    def __init__(self, source: AudioSource, *, stall_seconds: float = 10.0, queue_seconds: float = 10.0,
                 backoff: Backoff | None = None, stable_seconds: float = 10.0):
        self.source = source
        self.stall_seconds = stall_seconds
        self.backoff = backoff or Backoff()
        self.stable_seconds = stable_seconds  # a connection that lasted this long resets the backoff
        self.segment = 0
        self.dropped_seconds = 0.0
        # Live audio may queue a few seconds while the listener catches up; a file or pipe just waits.
        blocks = int(queue_seconds / LIVE_BLOCK_SECONDS) if source.live else NON_LIVE_QUEUE_BLOCKS
        self._items: queue.Queue = queue.Queue(maxsize=blocks)
        self._stop = threading.Event()
        self._stream: SourceStream | None = None
        self._stream_lock = threading.Lock()
        self._last_audio = time.monotonic()
        self._stalled = False
        self._thread = threading.Thread(target=self._run, name="homesound-source", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._close_stream()
        if self._thread.ident is not None:
            self._thread.join(timeout=2.0)  # a read blocked on a pipe cannot be interrupted: daemon thread

    def next(self, timeout: float) -> Block | SourceStatus | None:
        """The next item, or a 'stalled' status once no audio came for stall_seconds, or None."""
        try:
            item = self._items.get(timeout=timeout)
        except queue.Empty:
            return self._stall_check()
        if isinstance(item, Block):
            self._last_audio = time.monotonic()
            if self._stalled:
                self._stalled = False
        return item

    def _stall_check(self) -> SourceStatus | None:
        silent = time.monotonic() - self._last_audio
        if self._stalled or silent < self.stall_seconds or not self._thread.is_alive():
            return None
        self._stalled = True
        segment = self.segment
        if self.source.restartable:
            self._close_stream()  # unblocks the reader, which opens the source again
        return SourceStatus("stalled", f"{self.source.description}: no audio for {silent:.0f} s", segment)

    def _run(self) -> None:
        while not self._stop.is_set():
            opened_at = time.monotonic()
            try:
                self._read_one_connection()
                if not self.source.restartable:
                    self._put(SourceStatus("ended", f"{self.source.description} ended", self.segment))
                    return
                message = f"{self.source.description} ended"
            except SourceError as error:
                if isinstance(error, SourceSetupError) or not self.source.restartable:
                    self._put(SourceStatus("error", redact_text(str(error), getattr(self.source, "secrets", frozenset())),
                                           self.segment))
                    return
                message = str(error)
            except Exception as error:  # an unexpected failure of a live source must not end days of listening
                if not self.source.restartable:
                    self._put(SourceStatus("error", f"{self.source.description}: {error}", self.segment))
                    return
                message = f"{self.source.description}: {type(error).__name__}: {error}"
            finally:
                self._close_stream()
            if self._stop.is_set():
                return
            if time.monotonic() - opened_at >= self.stable_seconds:
                self.backoff.reset()
            delay = self.backoff.next_delay()
            message = redact_text(message, getattr(self.source, "secrets", frozenset()))
            self._put(SourceStatus("failed", f"{message}; reconnecting in {delay:.1f} s", self.segment))
            self._stop.wait(delay)

    def _read_one_connection(self) -> None:
        stream = self.source.open()
        with self._stream_lock:
            self._stream = stream
        if self._stop.is_set():
            return
        self.segment += 1
        self._last_audio = time.monotonic()
        self._put(SourceStatus("connected", f"{self.source.description}: {stream.sample_rate} Hz", self.segment))
        broken = False
        while not self._stop.is_set():
            block = stream.read()
            if block is None:
                return
            if not len(block):
                continue
            if broken:  # audio was dropped: what follows is not contiguous with what came before
                self.segment += 1
                broken = False
            item = Block(block, stream.sample_rate, self.segment, time.monotonic())
            if self.source.live:
                broken = not self._offer(item)
            else:
                self._put(item)

    def _offer(self, item: Block) -> bool:
        """Queue a live block; drop it only when the listener has not taken anything for a while.

        A short wait absorbs bursts (a stream that delivers faster than real time, e.g. a file over
        http, is simply played as fast as the listener goes); a listener that stays behind real
        time loses audio instead of falling ever further behind.
        """
        try:
            self._items.put(item, timeout=LIVE_WAIT_SECONDS)
            return True
        except queue.Full:
            self.dropped_seconds += len(item.samples) / item.sample_rate
            log.warning("listener too slow: dropped %.1f s of audio from %s", self.dropped_seconds,
                        self.source.description)
            return False

    def _put(self, item) -> None:
        put_until_stopped(self._items, item, self._stop)

    def _close_stream(self) -> None:
        with self._stream_lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception as error:  # closing is best effort; the next connection starts clean
                log.debug("closing %s: %s", self.source.description, error)


def iterate_blocks(source: AudioSource) -> Iterator[np.ndarray]:
    """Every block of a non-live source in this thread (tests, benchmarks)."""
    stream = source.open()
    try:
        while (block := stream.read()) is not None:
            if len(block):
                yield block
    finally:
        stream.close()
