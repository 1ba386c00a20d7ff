"""An audit of bad input through the real `homesound` command: every kind must give a clear result.

Audio kinds (corrupt, truncated and odd-header files of every format, odd rates and channels, NaN floats,
empty files, FIFOs, link loops, unreadable files, directories, huge headers, ...) are all put on ONE
command line of `homesound embed --out-dir` and in ONE folder for `homesound embed --workspace`: a bad
file must never stop the good ones after it, and each file's outcome (embedded with the right number of
embeddings, or failed with a reason that names the problem) is checked in both modes. Command kinds
(bad flags, outputs nowhere writable, workspaces that are not workspaces, bad live-source formats, model
files that are not models) each run as their own process and must end with one clear line (exit 2) and
change nothing they should not.

A kind is *clean* when no run of it printed a traceback and every result was right. Prints one line
per kind and then: kinds tried / clean / tracebacks / wrong results. Exit status 1 unless all are clean.
Unreadable-file kinds need either a non-root user or util-linux's setpriv (root drops its override).

    python benchmarks/bad_inputs.py [--vggish DIR] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile

REPO = Path(__file__).resolve().parents[1]
RATE = 44100
SECONDS = 5.0  # long enough that half of any format keeps a whole embedding (Ogg pages hold ~1 s)
AS_ORDINARY_USER = (["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
                    if os.geteuid() == 0 and shutil.which("setpriv") else [])


def examples_for(frames: int, rate: int) -> int:
    """VGGish examples from `frames` samples at `rate`: resampled length, 25 ms frames every 10 ms, 96 per example."""
    samples = int(frames * 16000 / rate)
    return 0 if samples < 400 else (1 + (samples - 400) // 160) // 96


FULL = examples_for(int(RATE * SECONDS), RATE)  # 5 s of audio: 5 embeddings


@dataclass
class Expect:
    """embedded: count in [low, high] (and `warning` in the output if given); failed: `reason` words in it."""

    embedded: bool
    low: int = 0
    high: int = 0
    reason: tuple[str, ...] = ()
    warning: str | None = None
    may_fail: bool = False  # embedded with 0 embeddings or failed: both are right (nothing usable in it)


def embedded(low: int, high: int | None = None, warning: str | None = None) -> Expect:
    return Expect(True, low, low if high is None else high, warning=warning)


def failed(*reason: str) -> Expect:
    return Expect(False, reason=reason)


NOTHING_USABLE = Expect(True, 0, 0, may_fail=True)


@dataclass
class AudioKind:
    name: str
    file: str  # name in the audio folder
    make: Callable[[Path], None]
    expect: Expect
    workspace_expect: Expect | None = None  # when a folder walk differs (a directory named x.wav is walked)
    files_mode: bool = True


@dataclass
class CommandKind:
    name: str
    arguments: Callable[["Lab"], list[str]]
    expect_in_stderr: tuple[str, ...]
    status: int = 2
    ordinary_user: bool = False
    check: Callable[["Lab"], str | None] | None = None  # returns what went wrong, or None
    setup: Callable[["Lab"], None] | None = None


@dataclass
class Result:
    kind: str
    traceback: bool = False
    wrong: list[str] = field(default_factory=list)


# --- making audio ------------------------------------------------------------------------------------------


def noise(seconds: float = SECONDS, rate: int = RATE, channels: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.3, 0.3, (int(seconds * rate), channels))


def wav_bytes(samples: np.ndarray | None, rate: int, channels: int, *, bits: int = 16, data_size: int | None = None,
              extra: bytes = b"", fmt_tag: int | None = None, raw_data: bytes | None = None) -> bytes:
    """A RIFF WAVE file written by hand, so any header field can lie."""
    if raw_data is None:
        if bits == 32 and fmt_tag == 3:
            raw_data = samples.astype("<f4").tobytes()
        else:
            raw_data = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    fmt_tag = fmt_tag or 1
    block_align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate & 0xFFFFFFFF, (rate * block_align) & 0xFFFFFFFF,
                      block_align & 0xFFFF, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra
    body += b"data" + struct.pack("<I", len(raw_data) if data_size is None else data_size) + raw_data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_format(path: Path, fmt: str) -> None:
    x = noise()
    if fmt.startswith("m4a"):
        wav = path.with_name(path.stem + "-source.wav")
        soundfile.write(wav, x, RATE)
        index_first = ["-movflags", "+faststart"] if fmt == "m4a-faststart" else []  # the index (moov) first
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-c:a", "aac", *index_first, str(path)],
                       check=True)
        wav.unlink()
        return
    formats = {"wav16": ("WAV", "PCM_16"), "wavf32": ("WAV", "FLOAT"), "wav24": ("WAV", "PCM_24"),
               "wavu8": ("WAV", "PCM_U8"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"),
               "opus": ("OGG", "OPUS"), "mp3": ("MP3", "MPEG_LAYER_III"), "aiff": ("AIFF", "PCM_16")}
    container, subtype = formats[fmt]
    rate = 48000 if fmt == "opus" else RATE
    soundfile.write(path, noise(rate=rate), rate, format=container, subtype=subtype)


EXTENSION = {"wav16": "wav", "wavf32": "wav", "wav24": "wav", "wavu8": "wav", "flac": "flac", "ogg": "ogg",
             "opus": "opus", "mp3": "mp3", "aiff": "aiff", "m4a": "m4a", "m4a-faststart": "m4a"}


def damaged(fmt: str, how: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        whole = path.with_name("whole-" + path.name)
        write_format(whole, fmt)
        data = bytearray(whole.read_bytes())
        whole.unlink()
        if how == "half":
            data = data[: len(data) // 2]
        elif how == "head":
            data = data[:200]
        elif how == "middle":
            rng = np.random.default_rng(1)
            start = len(data) // 2
            data[start:start + 1024] = rng.integers(0, 256, 1024, dtype=np.uint8).tobytes()
        path.write_bytes(bytes(data))
    return make


def writes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def sound(samples: np.ndarray, rate: int, **options) -> Callable[[Path], None]:
    return lambda path: soundfile.write(path, samples, rate, **options)


def fifo(path: Path) -> None:
    os.mkfifo(path)


def unix_socket(path: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))  # left bound until the process ends: only its file matters
    unix_socket.keep = server


def audio_kinds(have_ffmpeg: bool) -> list[AudioKind]:
    kinds = []
    formats = ["wav16", "wavf32", "wav24", "wavu8", "flac", "ogg", "opus", "mp3", "aiff"] + (["m4a", "m4a-faststart"] if have_ffmpeg else [])
    for fmt in formats:
        ext = EXTENSION[fmt]
        # An m4a written index-last loses its index (moov) with its end: nothing of it can be decoded.
        partial = NOTHING_USABLE if fmt == "m4a" else embedded(1, FULL - 1, warning="truncated")
        kinds.append(AudioKind(f"{fmt} truncated at half", f"{fmt}_half.{ext}", damaged(fmt, "half"), partial))
        kinds.append(AudioKind(f"{fmt} cut to 200 bytes", f"{fmt}_head.{ext}", damaged(fmt, "head"), NOTHING_USABLE))
        kinds.append(AudioKind(f"{fmt} 1 KB of garbage in the middle", f"{fmt}_middle.{ext}", damaged(fmt, "middle"),
                               embedded(1, FULL)))
    x = noise(channels=1)
    kinds += [
        AudioKind("WAV header claims 1,000,000,000 Hz", "rate_1e9.wav", writes(wav_bytes(x, 1_000_000_000, 1)),
                  failed("sample rate")),
        AudioKind("WAV header claims 0 Hz", "rate_0.wav", writes(wav_bytes(x, 0, 1)), failed()),
        AudioKind("WAV header claims 1 Hz", "rate_1.wav", writes(wav_bytes(x, 1, 1)), failed("sample rate")),
        AudioKind("WAV header claims 999 Hz", "rate_999.wav", writes(wav_bytes(x, 999, 1)), failed("sample rate")),
        AudioKind("WAV header claims 768,001 Hz", "rate_768001.wav", writes(wav_bytes(x, 768_001, 1)),
                  failed("sample rate")),
        AudioKind("192 kHz WAV (real, high)", "rate_192k.wav", sound(noise(rate=192000, channels=1), 192000),
                  embedded(FULL)),
        AudioKind("11,025 Hz WAV (odd rate)", "rate_11025.wav", sound(noise(rate=11025, channels=1), 11025),
                  embedded(FULL)),
        AudioKind("8 kHz mono phone WAV", "rate_8k.wav", sound(noise(rate=8000, channels=1), 8000), embedded(FULL)),
        AudioKind("WAV header claims 0 channels", "channels_0.wav", writes(wav_bytes(x, RATE, 0)), failed()),
        AudioKind("WAV header claims 2000 channels", "channels_2000.wav",
                  writes(wav_bytes(None, RATE, 2000, raw_data=bytes(4000 * 100))), failed()),
        AudioKind("6-channel 48 kHz WAV", "channels_6.wav", sound(noise(rate=48000, channels=6), 48000),
                  embedded(FULL)),
        AudioKind("WAV data chunk claims 4 GB", "data_4gb.wav", writes(wav_bytes(x, RATE, 1, data_size=0xFFFFFFF0)),
                  embedded(FULL, warning="truncated")),
        AudioKind("WAV with a 5 MB header chunk", "huge_header.wav",
                  writes(wav_bytes(x, RATE, 1, extra=b"LIST" + struct.pack("<I", 5_000_000) + bytes(5_000_000))),
                  embedded(FULL)),
        AudioKind("WAV header chunk claims 2 GB (no data reachable)", "huge_chunk.wav",
                  writes(wav_bytes(x, RATE, 1, extra=b"LIST" + struct.pack("<I", 2_000_000_000))), NOTHING_USABLE),
        AudioKind("WAV header says 0 bits per sample", "bits_0.wav",
                  writes(wav_bytes(None, RATE, 1, bits=0, raw_data=bytes(1000))), failed()),
        AudioKind("WAV of unknown codec 0x1234", "codec.wav", writes(wav_bytes(x, RATE, 1, fmt_tag=0x1234)), failed()),
        AudioKind("RIFF without WAVE", "riff_only.wav", writes(b"RIFF" + struct.pack("<I", 100) + bytes(100)),
                  failed()),
        AudioKind("float WAV with some NaN samples", "some_nan.wav",
                  writes(wav_bytes(np.where(np.arange(len(x))[:, None] % 7 == 0, np.nan, x), RATE, 1, bits=32,
                                   fmt_tag=3)), embedded(FULL, warning="NaN")),
        AudioKind("float WAV all NaN", "all_nan.wav", writes(wav_bytes(np.full_like(x, np.nan), RATE, 1, bits=32,
                                                                        fmt_tag=3)), embedded(FULL, warning="NaN")),
        AudioKind("float WAV with inf samples", "inf.wav",
                  writes(wav_bytes(np.where(np.arange(len(x))[:, None] % 5 == 0, np.inf, x), RATE, 1, bits=32,
                                   fmt_tag=3)), embedded(FULL, warning="NaN")),
        AudioKind("float WAV with values of 1e30", "huge_values.wav",
                  writes(wav_bytes(x * 1e30, RATE, 1, bits=32, fmt_tag=3)), embedded(FULL)),
        AudioKind("digital silence", "silence.wav", sound(np.zeros((int(RATE * SECONDS), 1)), RATE), embedded(FULL)),
        AudioKind("0.5 s file", "short_0.5.wav", sound(noise(0.5), RATE), embedded(0)),
        AudioKind("exactly 0.96 s", "short_0.96.wav", sound(noise(0.96, rate=16000), 16000), embedded(0)),
        AudioKind("exactly 0.975 s (the least for one embedding)", "short_0.975.wav",
                  sound(noise(0.975, rate=16000), 16000), embedded(1)),
        AudioKind("one sample", "one_sample.wav", sound(np.zeros((1, 1)), RATE), embedded(0)),
        AudioKind("header and no samples", "no_samples.wav", writes(wav_bytes(x[:0], RATE, 1)), NOTHING_USABLE),
        AudioKind("empty file", "empty.wav", writes(b""), failed("empty")),
        AudioKind("text named .wav", "text.wav", writes(b"not audio, just words\n" * 50), failed("not readable")),
        AudioKind("random bytes named .flac", "random.flac",
                  writes(np.random.default_rng(2).integers(0, 256, 50_000, dtype=np.uint8).tobytes()), failed()),
        AudioKind("PNG image named .wav", "image.wav", writes(b"\x89PNG\r\n\x1a\n" + bytes(2000)), failed()),
        AudioKind("zip archive named .m4a", "archive.m4a", writes(b"PK\x03\x04" + bytes(2000)), failed()),
        AudioKind("ID3 tag and nothing else", "id3_only.mp3", writes(b"ID3\x04\x00\x00\x00\x00\x00\x10" + bytes(16)),
                  failed()),
        AudioKind("FLAC content named .ogg", "really_flac.ogg", sound(noise(), RATE, format="FLAC"), embedded(FULL)),
        AudioKind("MP3 content named .wav", "really_mp3.wav", sound(noise(), RATE, format="MP3"), embedded(FULL)),
        AudioKind("unicode and spaces in the name", "bébé pleure 😢.wav", sound(noise(), RATE), embedded(FULL)),
        AudioKind("directory named like audio", "folder.wav", lambda path: path.mkdir(), failed("directory"),
                  workspace_expect=Expect(True, 0, 0)),  # walked as a folder: nothing in it, no row
        AudioKind("named pipe (FIFO)", "pipe.wav", fifo, failed("named pipe")),
        AudioKind("unix socket", "socket.wav", unix_socket, failed("socket")),
        AudioKind("link to a character device", "zero.wav", lambda path: path.symlink_to("/dev/zero"),
                  failed("character device")),
        AudioKind("symbolic link loop", "loop.wav", lambda path: path.symlink_to(path), failed("link loop")),
        AudioKind("dangling symbolic link", "dangling.wav", lambda path: path.symlink_to(path.parent / "gone.wav"),
                  failed("broken symbolic link")),
        AudioKind("missing file", "missing.wav", lambda path: None, failed("no such file"), workspace_expect=Expect(
            True, 0, 0)),  # a folder walk cannot meet it
        AudioKind("unreadable file (mode 000)", "unreadable.wav",
                  lambda path: (soundfile.write(path, noise(), RATE), path.chmod(0)), failed("permission denied")),
    ]
    if have_ffmpeg:
        kinds.append(AudioKind("video file with no audio stream", "video_only.m4a", lambda path: subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=1:size=64x64:rate=5", "-f", "mp4",
             str(path)], check=True), failed()))
    return kinds


# --- command kinds -----------------------------------------------------------------------------------------


class Lab:
    """Folders and files the command kinds use."""

    def __init__(self, root: Path, vggish: Path, good_wav: Path):
        self.root = root
        self.vggish = vggish
        self.good_wav = good_wav
        self.readonly = root / "readonly"
        self.foreign = root / "foreign.sqlite"
        self.foreign_bytes = b""

    def embed(self, *extra: str) -> list[str]:
        return ["embed", str(self.good_wav), "--vggish", str(self.vggish / "vggish_model.ckpt"), "--no-xla", *extra]


def unchanged_foreign(lab: Lab) -> str | None:
    if lab.foreign.read_bytes() != lab.foreign_bytes:
        return "another program's database was changed"
    extra = [p.name for p in lab.root.glob("foreign.sqlite-*")]
    return f"files appeared beside it: {extra}" if extra else None


def absent(name: str) -> Callable[[Lab], str | None]:
    return lambda lab: f"{name} was created" if (lab.root / name).exists() else None


def no_part_files(lab: Lab) -> str | None:
    parts = [str(p) for p in lab.root.rglob("*.part*")]
    return f"partial files left behind: {parts}" if parts else None


def command_kinds() -> list[CommandKind]:
    r = lambda lab, name: str(lab.root / name)  # noqa: E731
    return [
        CommandKind("--batch-size 0", lambda lab: lab.embed("--out", r(lab, "a.npz"), "--batch-size", "0"),
                    ("--batch-size", "at least 1")),
        CommandKind("--batch-size -5", lambda lab: lab.embed("--out", r(lab, "a.npz"), "--batch-size", "-5"),
                    ("--batch-size", "at least 1")),
        CommandKind("--batch-size abc", lambda lab: lab.embed("--out", r(lab, "a.npz"), "--batch-size", "abc"),
                    ("--batch-size", "not a whole number")),
        CommandKind("--workers 0", lambda lab: lab.embed("--workspace", r(lab, "w0.db"), "--workers", "0"),
                    ("--workers", "at least 1"), check=absent("w0.db")),
        CommandKind("--extensions ,", lambda lab: lab.embed("--workspace", r(lab, "ext.db"), "--extensions", ","),
                    ("--extensions", "names no extension"), check=absent("ext.db")),
        CommandKind("--extensions +", lambda lab: lab.embed("--workspace", r(lab, "ext.db"), "--extensions", "+"),
                    ("--extensions", "names no extension"), check=absent("ext.db")),
        CommandKind("embed --out is a directory", lambda lab: lab.embed("--out", str(lab.root)),
                    ("is a directory",), check=no_part_files),
        CommandKind("embed --out in /proc", lambda lab: lab.embed("--out", "/proc/nope/x.npz"), ("/proc/nope",)),
        CommandKind("embed --out in a read-only folder", lambda lab: lab.embed("--out", str(lab.readonly / "x.npz")),
                    ("cannot write into", "permission denied"), ordinary_user=True, check=no_part_files),
        CommandKind("embed --out-dir is a file", lambda lab: lab.embed("--out-dir", str(lab.good_wav)),
                    ("is a file, not a folder",)),
        CommandKind("embed --out-dir in a read-only folder",
                    lambda lab: lab.embed("--out-dir", str(lab.readonly / "sub")), ("permission denied",),
                    ordinary_user=True),
        CommandKind("export --out is a directory", lambda lab: ["export", "--workspace", r(lab, "real.db"), "--out",
                                                                 str(lab.root)], ("is a directory",)),
        CommandKind("export --out in /proc", lambda lab: ["export", "--workspace", r(lab, "real.db"), "--out",
                                                           "/proc/nope/x.parquet"], ("/proc/nope",),
                    check=no_part_files),
        CommandKind("export --out in a read-only folder", lambda lab: [
            "export", "--workspace", r(lab, "real.db"), "--out", str(lab.readonly / "x.parquet")],
            ("permission denied",), ordinary_user=True, check=no_part_files),
        CommandKind("random-weights --out /proc/nope", lambda lab: ["vggish", "random-weights", "--out", "/proc/nope"],
                    ("/proc/nope",)),
        CommandKind("random-weights --out is a file", lambda lab: ["vggish", "random-weights", "--out",
                                                                    str(lab.good_wav)], ("is a file",)),
        CommandKind("status of another program's SQLite", lambda lab: ["status", "--workspace", str(lab.foreign)],
                    ("not a homesound workspace", "another program"), check=unchanged_foreign),
        CommandKind("export of another program's SQLite", lambda lab: [
            "export", "--workspace", str(lab.foreign), "--out", r(lab, "f.parquet")],
            ("not a homesound workspace",), check=unchanged_foreign),
        CommandKind("embed into another program's SQLite", lambda lab: lab.embed("--workspace", str(lab.foreign)),
                    ("not a homesound workspace",), check=unchanged_foreign),
        CommandKind("status of a text file", lambda lab: ["status", "--workspace", str(lab.good_wav)],
                    ("not a homesound workspace",)),
        CommandKind("status of a directory", lambda lab: ["status", "--workspace", str(lab.root)],
                    ("is a directory",)),
        CommandKind("status of a missing workspace", lambda lab: ["status", "--workspace", r(lab, "typo.db")],
                    ("no workspace at",), check=absent("typo.db")),
        CommandKind("train on a missing workspace", lambda lab: [
            "train", "--workspace", r(lab, "typo.db"), "--out", r(lab, "m.pt")], ("no workspace at",),
            check=absent("typo.db")),
        CommandKind("status of an empty file", lambda lab: ["status", "--workspace", r(lab, "empty.db")],
                    ("empty",), setup=lambda lab: (lab.root / "empty.db").write_bytes(b"")),
        CommandKind("status of a damaged workspace", lambda lab: ["status", "--workspace", r(lab, "damaged.db")],
                    ("damaged",), setup=lambda lab: (lab.root / "damaged.db").write_bytes(
                        (lab.root / "real.db").read_bytes()[:4096] + bytes(8192))),
        CommandKind("embed into a workspace in a read-only folder", lambda lab: lab.embed(
            "--workspace", str(lab.readonly / "home.db")), ("cannot create", "not writable"), ordinary_user=True),
        CommandKind("embed into a workspace file of mode 444", lambda lab: lab.embed(
            "--workspace", r(lab, "ro.db")), ("read-only (file permissions)",), ordinary_user=True,
            setup=lambda lab: (shutil.copy(lab.root / "real.db", lab.root / "ro.db"),
                               (lab.root / "ro.db").chmod(0o444))),
        CommandKind("detect with a .pt that is not a model", lambda lab: [
            "detect", str(lab.good_wav), "--model", r(lab, "garbage.pt"), "--out", r(lab, "e.csv")],
            ("not a homesound model file",), setup=lambda lab: (lab.root / "garbage.pt").write_bytes(b"\x80\x02junk")),
        CommandKind("detect with a torch file that is not a model", lambda lab: [
            "detect", str(lab.good_wav), "--model", r(lab, "tensor.pt"), "--out", r(lab, "e.csv")],
            ("not a homesound model file",), setup=lambda lab: __import__("torch").save(
                __import__("torch").zeros(3), lab.root / "tensor.pt")),
        CommandKind("listen: raw PCM at 1,000,000,000 Hz", lambda lab: [
            "listen", "--hub", r(lab, "nohub"), "--source", "-", "--rate", "1000000000"], ("sample rate",)),
        CommandKind("listen: raw PCM at 0 Hz", lambda lab: [
            "listen", "--hub", r(lab, "nohub"), "--source", "-", "--rate", "0"], ("sample rate",)),
        CommandKind("listen: raw PCM with 0 channels", lambda lab: [
            "listen", "--hub", r(lab, "nohub"), "--source", "-", "--rate", "16000", "--channels", "0"],
            ("channels",)),
        CommandKind("listen: a missing file", lambda lab: [
            "listen", "--hub", r(lab, "nohub"), "--source", r(lab, "nothing.wav")], ("not found",)),
        CommandKind("embed: a VGGish source that does not exist", lambda lab: [
            "embed", str(lab.good_wav), "--out", r(lab, "v.npz"), "--vggish", r(lab, "no_such_model.ckpt")],
            ("no_such_model",)),
    ]


# --- running -----------------------------------------------------------------------------------------------


def run(arguments: list[str], ordinary_user: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
    prefix = AS_ORDINARY_USER if ordinary_user else []
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run([*prefix, sys.executable, "-m", "homesound.cli", *arguments], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def judge(kind: AudioKind, mode: str, outcome: tuple[str, int | str] | None, log: str) -> list[str]:
    expect = kind.workspace_expect if mode == "workspace" and kind.workspace_expect else kind.expect
    wrong = []
    if outcome is None:
        if not (expect.embedded and expect.high == 0 and kind.workspace_expect is not None):
            wrong.append(f"{mode}: no result at all")
        return wrong
    state, value = outcome
    if state == "embedded":
        if not expect.embedded:
            wrong.append(f"{mode}: embedded ({value} embeddings) but should fail ({', '.join(expect.reason)})")
        elif not expect.low <= value <= expect.high:
            wrong.append(f"{mode}: {value} embeddings, expected {expect.low}..{expect.high}")
        elif expect.warning and not any(expect.warning in line and kind.file in line for line in log.splitlines()):
            wrong.append(f"{mode}: no '{expect.warning}' warning naming the file")
    else:
        if expect.embedded and not expect.may_fail:
            wrong.append(f"{mode}: failed ({value}) but should embed {expect.low}..{expect.high}")
        elif not all(word.lower() in value.lower() for word in expect.reason):
            wrong.append(f"{mode}: reason {value!r} does not say {expect.reason}")
    return wrong


def files_mode(folder: Path, out: Path, kinds: list[AudioKind], vggish: Path) -> tuple[dict, str, bool]:
    names = [str(folder / kind.file) for kind in kinds if kind.files_mode]
    result = run(["embed", *names, "--out-dir", str(out), "--vggish", str(vggish / "vggish_model.ckpt"),
                  "--no-xla"], ordinary_user=True)
    outcomes: dict[str, tuple[str, int | str]] = {}
    for line in result.stdout.splitlines():
        path, _, rest = line.partition(": ")
        if rest.split(" ")[1:2] == ["embeddings,"]:
            outcomes[Path(path).name] = ("embedded", int(rest.split(" ")[0]))
    prefix = "homesound embed: skipped "
    for line in result.stderr.splitlines():
        if line.startswith(prefix):
            path, _, reason = line[len(prefix):].partition(": ")
            outcomes[Path(path).name] = ("failed", reason)
    crashed = "Traceback" in result.stderr or result.returncode not in (0, 1)
    return outcomes, result.stderr, crashed


def workspace_mode(folder: Path, workspace: Path, vggish: Path) -> tuple[dict, str, bool]:
    result = run(["embed", str(folder), "--workspace", str(workspace), "--vggish", str(vggish / "vggish_model.ckpt"),
                  "--no-xla", "--no-progress"], ordinary_user=True)
    outcomes: dict[str, tuple[str, int | str]] = {}
    with sqlite3.connect(f"file:{workspace}?mode=ro", uri=True) as db:
        for path, status, error, frames in db.execute(
                "SELECT r.path, r.status, r.error, e.frames FROM recordings r"
                " LEFT JOIN embeddings e ON e.content_sha256 = r.content_sha256"):
            outcomes[Path(path).name] = ("embedded", frames or 0) if status == "embedded" else ("failed", error or "")
    crashed = "Traceback" in result.stderr or result.returncode not in (0, 1)
    return outcomes, result.stdout + result.stderr, crashed


def prepare_lab(root: Path, vggish: Path) -> Lab:
    root.mkdir()
    good = root / "good.wav"
    soundfile.write(good, noise(), RATE)
    lab = Lab(root, vggish, good)
    lab.readonly.mkdir()
    lab.readonly.chmod(0o555)
    with sqlite3.connect(lab.foreign) as db:
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        db.execute("INSERT INTO invoices(total) VALUES (12.5)")
    lab.foreign_bytes = lab.foreign.read_bytes()
    real = run(["embed", str(good), "--workspace", str(root / "real.db"), "--vggish",
                str(vggish / "vggish_model.ckpt"), "--no-xla", "--no-progress"])
    if real.returncode != 0:
        raise SystemExit(f"could not make a real workspace for the command kinds:\n{real.stderr}")
    return lab


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vggish", type=Path, default=Path(tempfile.gettempdir()) / "homesound-bad-inputs-vggish",
                        help="folder for random VGGish weights (written once, reused)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    started = time.perf_counter()
    weights = run(["vggish", "random-weights", "--out", str(args.vggish)])
    if weights.returncode != 0:
        raise SystemExit(weights.stderr)
    root = Path(tempfile.mkdtemp(prefix="homesound-bad-inputs-")) if args.keep is None else args.keep
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    try:
        return audit(root, args.vggish, started)
    finally:
        if args.keep is None:
            for path in root.rglob("*"):
                if path.is_dir() and not path.is_symlink():
                    path.chmod(0o755)
            shutil.rmtree(root, ignore_errors=True)


def audit(root: Path, vggish: Path, started: float) -> int:
    have_ffmpeg = shutil.which("ffmpeg") is not None
    if os.geteuid() == 0 and not AS_ORDINARY_USER:
        print("note: running as root without setpriv: unreadable-file kinds cannot be unreadable")
    folder = root / "audio"
    folder.mkdir()
    kinds = audio_kinds(have_ffmpeg)
    for kind in kinds:
        kind.make(folder / kind.file)
    results = {kind.name: Result(kind.name) for kind in kinds}

    files, files_log, files_crashed = files_mode(folder, root / "out", kinds, vggish)
    walked, walk_log, walk_crashed = workspace_mode(folder, root / "audit.db", vggish)
    for kind in kinds:
        result = results[kind.name]
        result.traceback = files_crashed or walk_crashed
        result.wrong += judge(kind, "files", files.get(kind.file), files_log)
        result.wrong += judge(kind, "workspace", walked.get(kind.file), walk_log)
    for run_name, log in (("embed --out-dir", files_log), ("embed --workspace", walk_log)):
        if "Traceback" in log:
            print(f"TRACEBACK in {run_name}:\n{log[log.index('Traceback'):][:3000]}")

    lab = prepare_lab(root / "lab", vggish)
    for kind in command_kinds():
        result = results.setdefault(kind.name, Result(kind.name))
        if kind.setup:
            kind.setup(lab)
        done = run(kind.arguments(lab), ordinary_user=kind.ordinary_user)
        result.traceback = "Traceback" in done.stderr
        if result.traceback:
            print(f"TRACEBACK in {kind.name}:\n{done.stderr[-3000:]}")
        if done.returncode != kind.status:
            result.wrong.append(f"exit {done.returncode}, expected {kind.status}: {done.stderr.strip()[-300:]}")
        missing = [text for text in kind.expect_in_stderr if text not in done.stderr]
        if missing:
            result.wrong.append(f"message {done.stderr.strip()[-300:]!r} does not say {missing}")
        if kind.check and (problem := kind.check(lab)):
            result.wrong.append(problem)

    tracebacks = sum(result.traceback for result in results.values())
    wrong = sum(bool(result.wrong) for result in results.values())
    for result in results.values():
        verdict = "traceback" if result.traceback else ("WRONG" if result.wrong else "clean")
        print(f"{verdict:<9} {result.kind}" + "".join(f"\n          - {problem}" for problem in result.wrong))
    clean = sum(not result.traceback and not result.wrong for result in results.values())
    print(f"\nkinds tried: {len(results)}   clean: {clean}   tracebacks: {tracebacks}   wrong results: {wrong}   "
          f"({time.perf_counter() - started:.0f} s)")
    return 0 if clean == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
