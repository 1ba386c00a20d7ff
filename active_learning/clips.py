"""Cut a window, with a little context, out of the original recording into a clip a browser can play."""

from __future__ import annotations

import os
from pathlib import Path

import soundfile as sf

from homesound.errors import AudioDecodeError


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

    Written to a temporary name and renamed, so a crash never leaves a half clip under the real name.
    """
    try:
        info = sf.info(str(recording_path))
        duration = info.frames / info.samplerate
        clip_start = max(0.0, start_seconds - context_seconds)
        clip_end = min(duration, end_seconds + context_seconds)
        if clip_end <= clip_start:
            raise AudioDecodeError(
                str(recording_path),
                f"the window {start_seconds:.2f}-{end_seconds:.2f} s lies beyond the recording's end "
                f"({duration:.2f} s); the file changed since it was embedded: embed it again",
            )
        samples, sample_rate = sf.read(
            str(recording_path),
            start=int(round(clip_start * info.samplerate)),
            stop=int(round(clip_end * info.samplerate)),
            dtype="float32",
            always_2d=True,
        )
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioDecodeError(
            str(recording_path), f"cannot read the recording to cut a clip ({error}); is it still there?"
        ) from error
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    sf.write(str(partial), samples, sample_rate, subtype="PCM_16", format="WAV")
    os.replace(partial, out_path)
    return round(clip_start, 3), round(clip_end, 3)
