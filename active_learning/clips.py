"""Cut a window, with a little context, out of the original recording into a clip a browser can play."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from homesound.errors import AudioDecodeError
from homesound.output_files import atomic_output


def clip_name(content_sha256: str, start_seconds: float, end_seconds: float) -> str:
    return f"{content_sha256[:16]}_{start_seconds:09.2f}-{end_seconds:09.2f}.wav"


def cut_clip(
    recording_path: str | os.PathLike,
    start_seconds: float,
    end_seconds: float,
    context_seconds: float,
    out_path: str | os.PathLike,
) -> tuple[float, float]:
    """Write [start - context, end + context] (within the recording) as 16-bit WAV; return its span.

    Formats soundfile reads are cut by seeking; others (m4a, ...) are decoded through ffmpeg up
    to the clip's end, as `homesound embed` read them. Written to a temporary name and renamed,
    so a crash never leaves a half clip under the real name.
    """
    clip_start = max(0.0, start_seconds - context_seconds)
    samples, sample_rate = _read_span(Path(recording_path), clip_start, end_seconds + context_seconds)
    clip_end = clip_start + len(samples) / sample_rate
    if clip_end <= start_seconds:
        raise AudioDecodeError(
            str(recording_path),
            f"the window {start_seconds:.2f}-{end_seconds:.2f} s lies beyond the recording's end ({clip_end:.2f} s); "
            "the file changed since it was embedded: embed it again",
        )
    with atomic_output(out_path, what="clip") as partial:
        sf.write(str(partial), samples, sample_rate, subtype="PCM_16", format="WAV")
    return round(clip_start, 3), round(clip_end, 3)


def _read_span(path: Path, start_seconds: float, end_seconds: float) -> tuple[np.ndarray, int]:
    if not path.is_file():
        raise AudioDecodeError(str(path), "the recording is gone; was it moved? embed it again at its new place")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError):
        return _decode_span(path, start_seconds, end_seconds)
    try:
        samples, rate = sf.read(
            str(path), start=round(start_seconds * info.samplerate),
            stop=min(info.frames, round(end_seconds * info.samplerate)), dtype="float32", always_2d=True,
        )
    except (sf.LibsndfileError, RuntimeError, ValueError) as error:
        raise AudioDecodeError(str(path), f"cannot read it to cut a clip ({error})") from error
    return samples, rate


def _decode_span(path: Path, start_seconds: float, end_seconds: float) -> tuple[np.ndarray, int]:
    """Mono samples of [start, end) from any format embed reads, decoding only up to the end."""
    from embed.audio_io import AudioReader

    kept = []
    with AudioReader(path) as reader:
        rate = reader.info.sample_rate
        first, last = round(start_seconds * rate), round(end_seconds * rate)
        position = 0
        for block in reader.blocks():
            block_start, position = position, position + len(block)
            if position > first:
                kept.append(block[max(0, first - block_start): max(0, last - block_start)])
            if position >= last:
                break
    samples = np.concatenate(kept) if kept else np.zeros(0)
    return samples.astype(np.float32)[:, None], rate
