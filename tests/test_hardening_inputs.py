"""Issue 11: one clear line, never a traceback, and the job goes on - for each reproduction of the audit."""

from __future__ import annotations

import json
import logging
import os
import struct
import subprocess
import sys
import threading

import numpy as np
import pytest
import soundfile

from embed.audio_io import AudioReader, read_mono
from homesound_hub.sources import PcmSource, SourceError, SourceOptions, iterate_blocks, open_source
from homesound.cli import main
from homesound.errors import AudioDecodeError, HomesoundError
from homesound_testkit.hardening import REPO, assert_one_clear_error, fill_disk, mounted, run_cli

RATE = 44100


def noise(seconds: float, rate: int = RATE, channels: int = 2) -> np.ndarray:
    return np.random.default_rng(0).uniform(-0.3, 0.3, (int(seconds * rate), channels))


def wav_claiming_rate(path, rate: int) -> None:
    samples = (noise(3.0, channels=1) * 32767).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    body = b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(samples)) + samples
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


@pytest.fixture
def files_args(vggish_files):
    return lambda *names: ["embed", *map(str, names), "--vggish", str(vggish_files.checkpoint), "--no-xla"]


def test_a_header_claiming_a_billion_hertz_is_refused_and_the_next_file_is_embedded(tmp_path, files_args, capsys):
    bad, good = tmp_path / "bad.wav", tmp_path / "good.wav"
    wav_claiming_rate(bad, 1_000_000_000)
    soundfile.write(good, noise(3.0), RATE)
    assert main([*files_args(bad, good), "--out-dir", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert "bad.wav: broken header: sample rate 1e+09 Hz is not a real audio rate" in captured.err
    assert "good.wav: 3 embeddings" in captured.out and (tmp_path / "out" / "good.npz").is_file()


def test_rates_and_channels_are_checked_where_live_audio_enters():
    for rate, channels, words in ((1_000_000_000, 1, "sample rate"), (0, 1, "sample rate"), (16000, 0, "channels")):
        with pytest.raises(SourceError, match=words):
            open_source("-", SourceOptions(sample_rate=rate, channels=channels))


@pytest.mark.parametrize("subtype, container, extension", [
    ("PCM_16", "WAV", "wav"), ("FLOAT", "WAV", "wav"), ("PCM_16", "FLAC", "flac"), ("VORBIS", "OGG", "ogg"),
    ("MPEG_LAYER_III", "MP3", "mp3")])
def test_a_truncated_file_of_any_format_gives_what_decodes_with_one_warning(tmp_path, caplog, subtype, container,
                                                                             extension):
    whole = tmp_path / f"whole.{extension}"
    soundfile.write(whole, noise(5.0), RATE, format=container, subtype=subtype)
    cut = tmp_path / f"cut.{extension}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="embed.audio_io"):
        samples, rate = read_mono(cut)
    assert 1.5 < len(samples) / rate < 3.5
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and "cut." in warnings[0] and "truncated" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="embed.audio_io"):
        read_mono(whole)
    assert not caplog.records  # a whole file says nothing


def test_a_truncated_flac_is_embedded_not_dropped(tmp_path, files_args, capsys):
    whole = tmp_path / "whole.flac"
    soundfile.write(whole, noise(6.0), RATE, format="FLAC")
    cut = tmp_path / "cut.flac"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert main([*files_args(cut), "--out", str(tmp_path / "cut.npz")]) == 0
    count = int(capsys.readouterr().out.split(": ")[1].split()[0])
    assert 1 <= count < 6


def test_the_short_file_note_says_what_one_embedding_needs(tmp_path, files_args, capsys):
    short = tmp_path / "short.wav"
    soundfile.write(short, noise(0.96, rate=16000, channels=1), 16000)
    assert main([*files_args(short), "--out", str(tmp_path / "short.npz")]) == 0
    out = capsys.readouterr().out
    assert "0 embeddings, 0.96 s" in out and "one embedding needs at least 0.975 s" in out
    assert "shorter than 0.96" not in out


def test_fifos_and_link_loops_are_named_for_what_they_are(tmp_path):
    os.mkfifo(tmp_path / "pipe.wav")
    (tmp_path / "loop.wav").symlink_to(tmp_path / "loop.wav")
    (tmp_path / "dangling.wav").symlink_to(tmp_path / "gone.wav")
    for name, words in (("pipe.wav", "named pipe"), ("loop.wav", "symbolic link loop"),
                        ("dangling.wav", "broken symbolic link")):
        with pytest.raises(AudioDecodeError, match=words):  # at once: a FIFO is never opened
            AudioReader(tmp_path / name)


def test_nan_warnings_of_live_float_input_are_rate_limited(caplog):
    read_end, write_end = os.pipe()
    data = np.full(16000 * 20, np.nan, dtype="<f4").tobytes()  # 20 s of NaN: 20 reads of 64 KB

    def writer():
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(data)

    threading.Thread(target=writer, daemon=True).start()
    with os.fdopen(read_end, "rb") as stream, caplog.at_level(logging.WARNING, logger="homesound_hub.sources"):
        samples = sum(len(block) for block in iterate_blocks(PcmSource(stream, 16000, 1, "f32le")))
    assert samples == 16000 * 20
    assert len([r for r in caplog.records if "NaN" in r.getMessage()]) == 1


def test_extensions_that_name_nothing_are_a_user_error(tmp_path, vggish_files, capsys):
    for option in (",", "+", " , "):
        assert main(["embed", str(tmp_path), "--workspace", str(tmp_path / "w.db"), "--extensions", option,
                     "--vggish", str(vggish_files.checkpoint)]) == 2
        assert "names no extension" in capsys.readouterr().err
    assert not (tmp_path / "w.db").exists()


def test_bad_counts_and_unwritable_outputs_are_one_line_without_tracebacks(tmp_path):
    good = tmp_path / "good.wav"
    soundfile.write(good, noise(1.0), RATE)
    for value in ("0", "-3"):
        result = run_cli("embed", good, "--out", tmp_path / "x.npz", "--batch-size", value)
        assert_one_clear_error(result, "--batch-size", "must be at least 1")
    assert_one_clear_error(run_cli("vggish", "random-weights", "--out", "/proc/nope"), "/proc/nope")
    assert_one_clear_error(run_cli("embed", good, "--out", tmp_path), "is a directory")
    assert_one_clear_error(run_cli("embed", good, "--out-dir", good), "is a file, not a folder")
    readonly = tmp_path / "readonly"
    readonly.mkdir(mode=0o555)
    for command in (["embed", good, "--out", readonly / "x.npz"], ["embed", good, "--out-dir", readonly / "sub"]):
        assert_one_clear_error(run_cli(*command, ordinary_user=True), str(readonly), "permission denied")
    assert not list(tmp_path.rglob("*.part*"))


def test_a_full_disk_while_writing_outputs_leaves_no_part_file(tmp_path, files_args, capsys):
    good = tmp_path / "good.wav"
    soundfile.write(good, noise(30.0), RATE)
    with mounted(tmp_path / "disk", size_kb=256) as disk:
        fill_disk(disk, leave_bytes=4096)
        assert main([*files_args(good), "--out", str(disk / "x.npz")]) == 2
        error = capsys.readouterr().err
        assert f"cannot write embeddings {disk / 'x.npz'}: the disk is full" in error
        assert sorted(os.listdir(disk)) == ["filler"]


def test_random_weights_are_kept_when_present_without_importing_tensorflow(tmp_path):
    from embed.random_weights import MANIFEST, _manifest

    target = tmp_path / "vggish"
    target.mkdir()
    (target / "vggish_model.ckpt.index").write_bytes(b"x")
    (target / "vggish_pca_params.npz").write_bytes(b"x")
    (target / "vggish_savedmodel").mkdir()
    (target / "vggish_savedmodel" / "saved_model.pb").write_bytes(b"x")
    (target / MANIFEST).write_text(json.dumps(_manifest(0, False)))
    probe = ("import sys; from homesound.cli import main; code = main(sys.argv[1:]); "
             "assert 'tensorflow' not in sys.modules, 'TensorFlow imported'; sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", probe, "vggish", "random-weights", "--out", str(target)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "already in" in result.stdout and (target / "vggish_model.ckpt.index").read_bytes() == b"x"


def test_tensorflow_start_up_chatter_is_silent_unless_verbose(tmp_path, vggish_files):
    good = tmp_path / "good.wav"
    soundfile.write(good, noise(2.0), RATE)
    fresh_shell = {"TF_CPP_MIN_LOG_LEVEL": None}  # the test session sets it; a user's shell does not
    # --backend tf: TensorFlow must start here (the torch backend needs none once the weights are converted).
    quiet = run_cli("embed", good, "--out", tmp_path / "q.npz", "--vggish", vggish_files.checkpoint, "--no-xla",
                    "--backend", "tf", env=fresh_shell)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr  # no cuInit, no absl, nothing
    verbose = run_cli("embed", good, "--out", tmp_path / "v.npz", "--vggish", vggish_files.checkpoint, "--no-xla",
                      "--backend", "tf", verbose=True, env=fresh_shell)
    assert verbose.returncode == 0 and verbose.stderr.strip()  # -v shows TensorFlow's own lines again


def test_a_file_that_is_not_a_model_says_so_in_one_line(tmp_path):
    import torch

    from classify.detector import Detector

    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    (tmp_path / "garbage.pt").write_bytes(b"\x80\x02 not a pickle")
    for name in ("other.pt", "garbage.pt"):
        with pytest.raises(HomesoundError) as error:
            Detector.load(tmp_path / name)
        message = str(error.value)
        assert "not a homesound model file" in message and "weights_only" not in message and "\n" not in message


def test_status_into_a_closed_pipe_is_not_a_traceback(tmp_path):
    from homesound.workspace import Workspace

    Workspace(tmp_path / "home.db").close()
    command = [sys.executable, "-m", "homesound.cli", "status", "--workspace", str(tmp_path / "home.db")]
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        process.stdout.close()  # the reader went away, like `| head -0`
        stderr = process.stderr.read().decode()
    assert "Traceback" not in stderr and process.returncode == 0
