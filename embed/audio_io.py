"""Reading audio files block by block as float64 mono, whatever their format, rate and channels.

soundfile (libsndfile) reads WAV, FLAC, Ogg and MP3, always as float, so 32-bit float WAVs keep
their values (reading them as int16, as Google's wavfile_to_examples does, turns them into
near-silence). Anything else (m4a/AAC, 3gp, caf, ...) goes through an ffmpeg subprocess.

Bad files are handled at this edge, so the stages after it only see sane audio: a header's sample
rate and channel count are checked before anything is read (a header claiming 1,000,000,000 Hz is
a broken file, not a job for the resampler); a truncated or damaged file of any format gives what
decodes, with one warning; what is not a regular file (a FIFO would block forever) is refused.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile

from embed.discover import file_kind, stat_failure
from homesound.errors import AudioDecodeError

log = logging.getLogger(__name__)

BLOCK_SECONDS = 10.0
# Rates audio is actually recorded at: telephone 8 kHz down to old 1 kHz loggers, studio up to 768 kHz.
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 768_000
MAX_CHANNELS = 1024  # WAV allows 65535; beyond a few hundred a header is broken, not a microphone array
MAX_BLOCK_VALUES = 1 << 22  # samples x channels per read (32 MB of float64), whatever the header says
SALVAGE_FRAMES = 1024  # after a decoding error, read again in pieces this small to keep what decodes
TRUNCATION_TOLERANCE_SECONDS = 0.05


def check_audio_format(sample_rate: float, channels: int) -> str | None:
    """Why a stream's declared format cannot be real audio, or None. Used wherever audio enters."""
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE or sample_rate != int(sample_rate):
        return (f"sample rate {sample_rate:g} Hz is not a real audio rate (homesound reads "
                f"{MIN_SAMPLE_RATE:,} to {MAX_SAMPLE_RATE:,} Hz)")
    if not 1 <= channels <= MAX_CHANNELS:
        return f"{channels} channels is not a real channel count (1 to {MAX_CHANNELS})"
    return None


def finite_mono(samples: np.ndarray) -> tuple[np.ndarray, int]:
    """Samples [n] or [n, channels] -> (mono [n]: the channels' mean, NaN/inf zeroed; how many were zeroed).

    A corrupt float file or stream is heard as silence where it is broken rather than lost whole;
    every place audio enters (files, live streams, arrays) reads it this way.
    """
    samples = np.asarray(samples)
    with np.errstate(invalid="ignore"):  # inf and -inf in one frame average to NaN: zeroed below like any other
        mono = (samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]) if samples.ndim == 2 else samples
    finite = np.isfinite(mono)
    if finite.all():
        return mono, 0
    return np.where(finite, mono, 0.0), int((~finite).sum())


FFMPEG_HINT = "install ffmpeg (Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg) to read it"


@dataclass(frozen=True)
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    frames: int | None  # None when the decoder cannot tell before reading (ffmpeg streams)
    format: str
    decoder: str  # "soundfile" or "ffmpeg"
    declared_seconds: float | None = None  # the container's own duration, when ffprobe knows it

    @property
    def duration_seconds(self) -> float | None:
        return None if self.frames is None else self.frames / self.sample_rate


class AudioReader:
    """An open audio file; iterate `blocks()` for float64 mono blocks at the file's own rate."""

    def __init__(self, path: str | os.PathLike, block_seconds: float = BLOCK_SECONDS):
        self.path = Path(path)
        self.block_seconds = block_seconds
        self.nonfinite_samples = 0
        self.frames_read = 0
        self.truncated: str | None = None  # why fewer frames came than the file promised (warned once)
        self._expected_seconds: float | None = None
        _check_readable(self.path)
        try:
            self._sound = soundfile.SoundFile(str(self.path))
        except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
            self._sound = None
            self.info = _probe_with_ffmpeg(self.path, soundfile_reason=str(error))
            self._expected_seconds = self.info.declared_seconds
        else:
            problem = check_audio_format(self._sound.samplerate, self._sound.channels)
            if problem:
                self._sound.close()
                raise AudioDecodeError(str(self.path), f"broken header: {problem}")
            self.info = AudioInfo(
                path=str(self.path), sample_rate=int(self._sound.samplerate), channels=int(self._sound.channels),
                frames=int(self._sound.frames), format=f"{self._sound.format}/{self._sound.subtype}",
                decoder="soundfile",
            )
            self._expected_seconds = _declared_seconds(self.path, self._sound, self.info)
            if self._sound.format == "OGG" and not _ogg_ends_properly(self.path):
                self.truncated = "the Ogg stream stops without its end-of-stream page"

    def __enter__(self) -> "AudioReader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sound is not None:
            self._sound.close()

    def blocks(self) -> Iterator[np.ndarray]:
        source = self._soundfile_blocks() if self._sound is not None else self._ffmpeg_blocks()
        for block in source:
            mono, nonfinite = finite_mono(block)
            self.nonfinite_samples += nonfinite
            self.frames_read += len(mono)
            yield mono
        if self.nonfinite_samples:
            log.warning("%s: %d NaN/inf samples were replaced by silence", self.path, self.nonfinite_samples)
        self._check_complete()

    def _check_complete(self) -> None:
        decoded = self.frames_read / self.info.sample_rate
        if self.truncated and "decoding failed" in self.truncated:
            self.truncated = f"decoding failed after {decoded:.2f} s: {self.truncated.partition(': ')[2]}"
        if self.truncated is None and self._expected_seconds is not None and (
                decoded < self._expected_seconds - TRUNCATION_TOLERANCE_SECONDS):
            self.truncated = f"the file promises {self._expected_seconds:.2f} s"
        if self.truncated is not None:
            log.warning("%s: truncated or damaged (%s): the %.2f s that decode were used", self.path,
                        self.truncated, decoded)

    def _soundfile_blocks(self) -> Iterator[np.ndarray]:
        block_frames = max(1, min(int(self.info.sample_rate * self.block_seconds),
                                  MAX_BLOCK_VALUES // self.info.channels))
        position = 0
        while True:
            try:
                block = self._sound.read(block_frames, dtype="float64", always_2d=True)
            except (soundfile.LibsndfileError, RuntimeError) as error:
                yield from self._salvage(position, block_frames, error)
                return
            if len(block) == 0:
                return
            position += len(block)
            yield block

    def _salvage(self, position: int, block_frames: int, error: Exception) -> Iterator[np.ndarray]:
        """After a decoding error, the block that failed again in small pieces, up to the damage
        (from a fresh handle: the decoder that failed may have lost its place)."""
        self.truncated = f"decoding failed after {position / self.info.sample_rate:.2f} s: {error}"
        try:
            self._sound.close()
            self._sound = soundfile.SoundFile(str(self.path))
            self._sound.seek(position)
        except (soundfile.LibsndfileError, RuntimeError, ValueError):
            if position == 0:
                raise AudioDecodeError(str(self.path), f"corrupt audio: nothing decodes ({error})") from None
            return
        for _ in range(0, block_frames, SALVAGE_FRAMES):
            try:
                piece = self._sound.read(SALVAGE_FRAMES, dtype="float64", always_2d=True)
            except (soundfile.LibsndfileError, RuntimeError):
                break
            if len(piece) == 0:
                break
            position += len(piece)
            yield piece
        if position == 0:
            raise AudioDecodeError(str(self.path), f"corrupt audio: nothing decodes ({error})")

    def _ffmpeg_blocks(self) -> Iterator[np.ndarray]:
        channels = self.info.channels
        command = [
            _ffmpeg("ffmpeg"), "-nostdin", "-v", "error", "-i", str(self.path), "-map", "0:a:0",
            "-f", "f32le", "-acodec", "pcm_f32le", "-ac", str(channels), "-ar", str(self.info.sample_rate), "-",
        ]
        block_bytes = max(1, min(int(self.info.sample_rate * self.block_seconds),
                                 MAX_BLOCK_VALUES // channels)) * channels * 4
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
            pending = b""
            while True:
                data = process.stdout.read(block_bytes)
                if not data:
                    break
                data = pending + data
                usable = len(data) - len(data) % (channels * 4)
                pending = data[usable:]
                if usable:
                    yield np.frombuffer(data[:usable], dtype="<f4").reshape(-1, channels).astype(np.float64)
            stderr = process.stderr.read().decode(errors="replace").strip()
            last_line = (stderr.splitlines() or ["?"])[-1]
            if process.wait() != 0:
                if not self.frames_read:
                    raise AudioDecodeError(str(self.path), f"ffmpeg could not decode it: {last_line}")
                self.truncated = f"ffmpeg stopped: {last_line}"
            elif stderr:
                self.truncated = f"ffmpeg: {last_line}"


def read_mono(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """The whole file as float64 mono (for short clips and tests; long files use AudioReader)."""
    with AudioReader(path) as reader:
        blocks = list(reader.blocks())
        rate = reader.info.sample_rate
    return (np.concatenate(blocks) if blocks else np.zeros(0)), rate


def _check_readable(path: Path) -> None:
    try:
        info = os.stat(path)
    except OSError as error:  # a symbolic link loop, a broken link and a missing file each say so
        raise AudioDecodeError(str(path), stat_failure(str(path), error)) from None
    if stat.S_ISDIR(info.st_mode):
        raise AudioDecodeError(str(path), "is a directory, not an audio file")
    if not stat.S_ISREG(info.st_mode):  # opening a FIFO would wait forever for a writer
        raise AudioDecodeError(str(path), f"not a regular file ({file_kind(info.st_mode)})")
    if not os.access(path, os.R_OK):
        raise AudioDecodeError(str(path), "permission denied; make the file readable (chmod +r)")
    if info.st_size == 0:
        raise AudioDecodeError(str(path), "empty file (0 bytes)")


def _declared_seconds(path: Path, sound: soundfile.SoundFile, info: AudioInfo) -> float | None:
    """What the container promises, where libsndfile hides a cut: a WAV's data chunk size, an Ogg stream
    without its end-of-stream page; otherwise the frame count libsndfile reports (MP3's Xing header)."""
    frames_seconds = info.frames / info.sample_rate if info.frames else None
    try:
        if sound.format == "WAV":
            data_bytes = _wav_data_bytes(path)
            frame_bytes = (_wav_bits(path) + 7) // 8 * info.channels if data_bytes else 0
            if data_bytes and frame_bytes:
                return data_bytes / frame_bytes / info.sample_rate
        if sound.format == "AIFF":
            frames = _aiff_declared_frames(path)
            if frames:
                return frames / info.sample_rate
    except OSError:
        return frames_seconds
    return frames_seconds


def _wav_chunks(path: Path) -> Iterator[tuple[bytes, int, int]]:
    """(chunk id, declared size, offset of its data) of a RIFF WAVE file, as the header states them."""
    with open(path, "rb") as file:
        head = file.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        offset = 12
        while True:
            file.seek(offset)
            header = file.read(8)
            if len(header) < 8:
                return
            chunk_id, size = header[:4], struct.unpack("<I", header[4:])[0]
            yield chunk_id, size, offset + 8
            offset += 8 + size + (size & 1)


def _wav_data_bytes(path: Path) -> int | None:
    for chunk_id, size, _ in _wav_chunks(path):
        if chunk_id == b"data":
            return size if size != 0xFFFFFFFF else None  # streaming writers leave the size unknown
    return None


def _wav_bits(path: Path) -> int:
    for chunk_id, _, offset in _wav_chunks(path):
        if chunk_id == b"fmt ":
            with open(path, "rb") as file:
                file.seek(offset + 14)
                return struct.unpack("<H", file.read(2))[0]
    return 0


def _aiff_declared_frames(path: Path) -> int | None:
    """numSampleFrames of an AIFF file's COMM chunk (big-endian IFF chunks after 'FORM....AIFF')."""
    with open(path, "rb") as file:
        head = file.read(12)
        if len(head) < 12 or head[:4] != b"FORM" or head[8:12] not in (b"AIFF", b"AIFC"):
            return None
        offset = 12
        while True:
            file.seek(offset)
            header = file.read(8)
            if len(header) < 8:
                return None
            size = struct.unpack(">I", header[4:])[0]
            if header[:4] == b"COMM":
                body = file.read(6)
                return struct.unpack(">I", body[2:6])[0] if len(body) == 6 else None
            offset += 8 + size + (size & 1)


def _ogg_ends_properly(path: Path) -> bool:
    """The last Ogg page carries the end-of-stream flag (a file cut short does not)."""
    with open(path, "rb") as file:
        file.seek(0, os.SEEK_END)
        size = file.tell()
        file.seek(max(0, size - 65536))
        tail = file.read()
    last = tail.rfind(b"OggS")
    return last >= 0 and len(tail) > last + 5 and bool(tail[last + 5] & 0x04)


def _ffmpeg(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise FileNotFoundError(tool)
    return found


def _probe_with_ffmpeg(path: Path, soundfile_reason: str) -> AudioInfo:
    try:
        ffprobe = _ffmpeg("ffprobe")
        _ffmpeg("ffmpeg")
    except FileNotFoundError:
        raise AudioDecodeError(
            str(path), f"not a format soundfile reads ({soundfile_reason.strip()}); {FFMPEG_HINT}"
        ) from None
    command = [
        ffprobe, "-v", "error", "-select_streams", "a:0", "-show_entries",
        "stream=sample_rate,channels,codec_name:format=format_name,duration", "-of", "json", str(path),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    streams = json.loads(result.stdout or "{}").get("streams") if result.returncode == 0 else None
    if not streams:
        reason = (result.stderr.strip().splitlines() or ["no audio stream"])[-1]
        raise AudioDecodeError(str(path), f"not readable as audio by soundfile or ffmpeg ({reason})")
    stream = streams[0]
    fmt = json.loads(result.stdout).get("format", {})
    rate, channels = int(stream.get("sample_rate", 0)), int(stream.get("channels", 0))
    problem = check_audio_format(rate, channels)
    if problem:
        raise AudioDecodeError(str(path), f"broken header: {problem}")
    try:
        declared = float(fmt.get("duration"))
    except (TypeError, ValueError):
        declared = None
    return AudioInfo(
        path=str(path), sample_rate=rate, channels=channels, frames=None,
        format=f"{fmt.get('format_name', '?')}/{stream.get('codec_name', '?')}", decoder="ffmpeg",
        declared_seconds=declared,
    )
