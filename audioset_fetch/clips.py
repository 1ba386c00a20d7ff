"""Audio of chosen AudioSet segments, to listen to them (e.g. in Label Studio).

The release holds embeddings only; the audio lives on YouTube. `yt-dlp` finds the audio stream and
`ffmpeg` cuts the 10-second segment to a 16 kHz mono WAV. Both are optional: a missing tool or an
unavailable video is reported for that segment and the others go on.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from tqdm import tqdm

from audioset_fetch.segments import SelectedSegment
from homesound.output_files import atomic_output

STATUS_SAVED = "saved"
STATUS_EXISTS = "exists"
STATUS_MISSING_TOOL = "missing_tool"
STATUS_UNAVAILABLE = "unavailable"
STATUS_FAILED = "failed"
TOOL_HINTS = {
    "yt-dlp": "install it with `pip install yt-dlp`",
    "ffmpeg": "install it with your package manager, e.g. `apt-get install ffmpeg`",
}


@dataclass(frozen=True)
class ClipResult:
    ytid: str
    start_seconds: float
    status: str
    message: str
    path: str


def clip_name(segment: SelectedSegment) -> str:
    return f"{segment.ytid}_{segment.start_seconds:.3f}.wav"


def fetch_clips(
    segments: Iterable[SelectedSegment],
    dest: str | os.PathLike,
    *,
    sample_rate: int = 16000,
    timeout_seconds: float = 300.0,
    progress: bool = True,
) -> list[ClipResult]:
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tools = {name: shutil.which(name) for name in TOOL_HINTS}
    missing = [f"{name} not found on PATH ({TOOL_HINTS[name]})" for name, path in tools.items() if path is None]
    results = []
    for segment in tqdm(list(segments), desc="audioset clips", unit="clip", disable=not progress):
        path = dest / clip_name(segment)
        if path.exists():
            results.append(ClipResult(segment.ytid, segment.start_seconds, STATUS_EXISTS, "", str(path)))
        elif missing:
            results.append(ClipResult(segment.ytid, segment.start_seconds, STATUS_MISSING_TOOL, "; ".join(missing), ""))
        else:
            status, message = _fetch_one(segment, path, tools["yt-dlp"], tools["ffmpeg"], sample_rate, timeout_seconds)
            results.append(ClipResult(segment.ytid, segment.start_seconds, status, message,
                                      str(path) if status == STATUS_SAVED else ""))
    return results


def write_report(results: list[ClipResult], path: str | os.PathLike) -> None:
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(ClipResult.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(result) for result in results)


def _fetch_one(
    segment: SelectedSegment, path: Path, yt_dlp: str, ffmpeg: str, sample_rate: int, timeout_seconds: float
) -> tuple[str, str]:
    video_url = f"https://www.youtube.com/watch?v={segment.ytid}"
    found = _run([yt_dlp, "--quiet", "--no-warnings", "--no-playlist", "-f", "bestaudio/best", "--get-url",
                  video_url], timeout_seconds)
    if isinstance(found, str):
        return STATUS_UNAVAILABLE, f"yt-dlp: {found}"
    stream_urls = found.stdout.split()
    if not stream_urls:
        return STATUS_UNAVAILABLE, "yt-dlp found no audio stream"
    duration = max(segment.end_seconds - segment.start_seconds, 0.0)
    try:
        with atomic_output(path, what="clip") as part:
            cut = _run([ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-ss", f"{segment.start_seconds:.3f}",
                        "-t", f"{duration:.3f}", "-i", stream_urls[0], "-vn", "-ac", "1", "-ar", str(sample_rate),
                        "-f", "wav", str(part)], timeout_seconds)
            if isinstance(cut, str):
                raise _CutFailed(cut)
    except _CutFailed as failure:
        return STATUS_FAILED, f"ffmpeg: {failure}"
    return STATUS_SAVED, ""


class _CutFailed(Exception):
    """ffmpeg could not cut the clip (its last error line): the partial file is dropped, the job goes on."""


def _run(command: list[str], timeout_seconds: float) -> subprocess.CompletedProcess | str:
    """The finished process, or why it failed (last line of its error output)."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        return f"gave up after {timeout_seconds:.0f} s"
    except OSError as error:
        return str(error)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return lines[-1].strip() if lines else f"exit status {done.returncode}"
    return done
