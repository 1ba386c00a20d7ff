"""Decoding: every format, width, rate and channel count; bad files give one clear error."""

import subprocess

import numpy as np
import pytest
import soundfile

from embed.audio_io import AudioReader, read_mono
from homesound.errors import AudioDecodeError


def tone(rate, seconds=1.0, channels=1, amplitude=0.5):
    t = np.arange(int(rate * seconds)) / rate
    mono = amplitude * np.sin(2 * np.pi * 440 * t)
    return np.stack([mono * (c + 1) / channels for c in range(channels)], axis=1)


@pytest.mark.parametrize(
    "fmt, subtype, tolerance",
    [("WAV", "PCM_U8", 1e-2), ("WAV", "PCM_16", 1e-4), ("WAV", "PCM_24", 1e-6), ("WAV", "PCM_32", 1e-8),
     ("WAV", "FLOAT", 1e-7), ("WAV", "DOUBLE", 1e-12), ("FLAC", "PCM_16", 1e-4), ("FLAC", "PCM_24", 1e-6)],
)
def test_lossless_widths_read_as_float(tmp_path, fmt, subtype, tolerance):
    data = tone(22050)
    path = tmp_path / f"x.{fmt.lower()}"
    soundfile.write(path, data, 22050, format=fmt, subtype=subtype)
    mono, rate = read_mono(path)
    assert rate == 22050
    np.testing.assert_allclose(mono, data[:, 0], atol=tolerance)


def test_float_wav_is_not_near_silence(tmp_path):
    # Reading 32-bit float WAVs as int16 (Google's wavfile_to_examples) gives ~1e-5 amplitudes.
    path = tmp_path / "float.wav"
    soundfile.write(path, tone(44100), 44100, subtype="FLOAT")
    mono, _ = read_mono(path)
    assert np.max(np.abs(mono)) == pytest.approx(0.5, rel=1e-3)


@pytest.mark.parametrize("fmt, extension", [("OGG", "ogg"), ("MP3", "mp3")])
def test_lossy_formats(tmp_path, fmt, extension):
    path = tmp_path / f"x.{extension}"
    soundfile.write(path, tone(44100, seconds=2.0), 44100, format=fmt)
    mono, rate = read_mono(path)
    assert rate == 44100
    assert abs(len(mono) - 88200) < 4000  # encoder padding
    assert np.sqrt(np.mean(mono[10000:-10000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


@pytest.mark.parametrize("channels", [1, 2, 8])
def test_channels_are_averaged(tmp_path, channels):
    data = tone(16000, channels=channels)
    path = tmp_path / "multi.wav"
    soundfile.write(path, data, 16000, subtype="FLOAT")
    with AudioReader(path) as reader:
        assert reader.info.channels == channels
        mono = np.concatenate(list(reader.blocks()))
    np.testing.assert_allclose(mono, data.mean(axis=1), atol=1e-7)


def test_blocks_cover_the_file_exactly(tmp_path):
    path = tmp_path / "long.flac"
    data = np.random.default_rng(0).uniform(-0.5, 0.5, 8000 * 25)
    soundfile.write(path, data, 8000, subtype="PCM_24")
    with AudioReader(path, block_seconds=3.0) as reader:
        blocks = list(reader.blocks())
    assert max(len(b) for b in blocks) == 24000
    np.testing.assert_allclose(np.concatenate(blocks), data, atol=1e-6)


def test_nonfinite_samples_become_silence(tmp_path):
    data = tone(16000)[:, 0].astype(np.float32)
    data[100], data[200], data[300] = np.nan, np.inf, -np.inf
    path = tmp_path / "nan.wav"
    soundfile.write(path, data, 16000, subtype="FLOAT")
    with AudioReader(path) as reader:
        mono = np.concatenate(list(reader.blocks()))
        assert reader.nonfinite_samples == 3
    assert np.all(np.isfinite(mono)) and mono[100] == 0.0


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty file"), (b"this is not audio at all" * 40, "not"), (b"RIFF\x24\x00\x00\x00WAVEfmt ", "")],
)
def test_bad_files_raise_one_clear_error(tmp_path, content, message, monkeypatch):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioDecodeError) as caught:
        with AudioReader(path) as reader:
            list(reader.blocks())
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_truncated_file_gives_what_is_there(tmp_path):
    path = tmp_path / "cut.wav"
    soundfile.write(path, tone(16000, seconds=3.0), 16000, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[: 44 + 2 * 16000])  # header says 3 s, one second remains
    mono, _ = read_mono(path)
    assert len(mono) == 16000


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(AudioDecodeError, match="directory"):
        AudioReader(tmp_path)
    with pytest.raises(AudioDecodeError, match="no such file"):
        AudioReader(tmp_path / "missing.wav")


def test_unknown_format_without_ffmpeg_names_the_fix(tmp_path, monkeypatch):
    path = tmp_path / "phone.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg on this PATH
    with pytest.raises(AudioDecodeError, match="install ffmpeg"):
        AudioReader(path)


def test_m4a_through_ffmpeg(tmp_path, ffmpeg):
    source = tmp_path / "source.wav"
    soundfile.write(source, tone(48000, seconds=3.0, channels=2), 48000, subtype="PCM_16")
    target = tmp_path / "phone.m4a"
    subprocess.run([ffmpeg, "-v", "error", "-i", str(source), "-c:a", "aac", "-b:a", "128k", str(target)], check=True)
    with AudioReader(target) as reader:
        assert reader.info.decoder == "ffmpeg" and reader.info.channels == 2 and reader.info.sample_rate == 48000
        mono = np.concatenate(list(reader.blocks()))
    assert abs(len(mono) - 3 * 48000) < 4096
    expected = tone(48000, seconds=3.0, channels=2).mean(axis=1)
    assert np.sqrt(np.mean(mono[5000:-5000] ** 2)) == pytest.approx(np.sqrt(np.mean(expected ** 2)), rel=0.05)
