"""Reading audio files block by block as float64 mono, whatever their format, rate and channels.

soundfile (libsndfile) reads WAV, FLAC, Ogg and MP3, always as float, so 32-bit float WAVs keep
their values (reading them as int16, as Google's wavfile_to_examples does, turns them into
near-silence). Anything else (m4a/AAC, 3gp, caf, ...) goes through an ffmpeg subprocess.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile

from homesound.errors import AudioDecodeError

log = logging.getLogger(__name__)

BLOCK_SECONDS = 10.0
FFMPEG_HINT = "install ffmpeg (Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg) to read it"


@dataclass(frozen=True)
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    frames: int | None  # None when the decoder cannot tell before reading (ffmpeg streams)
    format: str
    decoder: str  # "soundfile" or "ffmpeg"

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
        _check_readable(self.path)
        try:
            self._sound = soundfile.SoundFile(str(self.path))
        except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
            self._sound = None
            self.info = _probe_with_ffmpeg(self.path, soundfile_reason=str(error))
        else:
            if self._sound.samplerate <= 0 or self._sound.channels <= 0:
                raise AudioDecodeError(str(self.path), "the header declares no sample rate or no channels")
            self.info = AudioInfo(
                path=str(self.path), sample_rate=int(self._sound.samplerate), channels=int(self._sound.channels),
                frames=int(self._sound.frames), format=f"{self._sound.format}/{self._sound.subtype}",
                decoder="soundfile",
            )

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
            mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
            finite = np.isfinite(mono)
            if not finite.all():
                # A corrupt float file: zero the bad samples rather than lose the recording.
                self.nonfinite_samples += int((~finite).sum())
                mono = np.where(finite, mono, 0.0)
            self.frames_read += len(mono)
            yield mono
        if self.nonfinite_samples:
            log.warning("%s: %d NaN/inf samples were replaced by silence", self.path, self.nonfinite_samples)

    def _soundfile_blocks(self) -> Iterator[np.ndarray]:
        block_frames = max(1, int(self.info.sample_rate * self.block_seconds))
        while True:
            try:
                block = self._sound.read(block_frames, dtype="float64", always_2d=True)
            except (soundfile.LibsndfileError, RuntimeError) as error:
                raise AudioDecodeError(
                    str(self.path), f"corrupt audio after {self.frames_read / self.info.sample_rate:.1f} s ({error})"
                ) from error
            if len(block) == 0:
                return
            yield block

    def _ffmpeg_blocks(self) -> Iterator[np.ndarray]:
        channels = self.info.channels
        command = [
            _ffmpeg("ffmpeg"), "-nostdin", "-v", "error", "-i", str(self.path), "-map", "0:a:0",
            "-f", "f32le", "-acodec", "pcm_f32le", "-ac", str(channels), "-ar", str(self.info.sample_rate), "-",
        ]
        block_bytes = int(self.info.sample_rate * self.block_seconds) * channels * 4
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
            if process.wait() != 0:
                raise AudioDecodeError(str(self.path), f"ffmpeg could not decode it: {stderr.splitlines()[-1:] or '?'}")


def read_info(path: str | os.PathLike) -> AudioInfo:
    with AudioReader(path) as reader:
        return reader.info


def read_mono(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """The whole file as float64 mono (for short clips and tests; long files use AudioReader)."""
    with AudioReader(path) as reader:
        blocks = list(reader.blocks())
        rate = reader.info.sample_rate
    return (np.concatenate(blocks) if blocks else np.zeros(0)), rate


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise AudioDecodeError(str(path), "no such file")
    if path.is_dir():
        raise AudioDecodeError(str(path), "is a directory, not an audio file")
    if not os.access(path, os.R_OK):
        raise AudioDecodeError(str(path), "permission denied; make the file readable (chmod +r)")
    if path.stat().st_size == 0:
        raise AudioDecodeError(str(path), "empty file (0 bytes)")


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
    if rate <= 0 or channels <= 0:
        raise AudioDecodeError(str(path), "ffmpeg found an audio stream with no sample rate or channels")
    return AudioInfo(
        path=str(path), sample_rate=rate, channels=channels, frames=None,
        format=f"{fmt.get('format_name', '?')}/{stream.get('codec_name', '?')}", decoder="ffmpeg",
    )
