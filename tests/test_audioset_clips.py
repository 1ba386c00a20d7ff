"""Audio clips of selected segments: yt-dlp and ffmpeg are optional, failures are per segment."""

from __future__ import annotations

import csv
import sys

import numpy as np
import pytest
import soundfile

from audioset_fetch.segments import read_selection
from homesound.cli import main

SELECTION = """# homesound-audioset-selection/1
# targets: {"targets":[{"mids":["/m/01j3sz"],"name":"laughter"}]}
# config: {}
ytid,start_seconds,end_seconds,split,source_list,role,hard_group,positive_labels,laughter
-abcdefghij,30.000,40.000,train,balanced_train_segments,positive,,/m/01j3sz,1
klmnopqrstu,1.500,11.500,eval,eval_segments,random_negative,,/m/09x0r,0
vwxyz012345,0.000,10.000,train,balanced_train_segments,hard_negative,Speech,/m/09x0r,0
"""


@pytest.fixture
def selection_path(tmp_path):
    path = tmp_path / "selection.csv"
    path.write_text(SELECTION)
    return path


def script(folder, name, body):
    path = folder / name
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return path


def report_rows(dest):
    with (dest / "clips_report.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_missing_tools_are_reported_per_segment_and_are_not_fatal(selection_path, tmp_path, monkeypatch, capsys):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    dest = tmp_path / "clips"
    assert main(["audioset", "clips", "--selection", str(selection_path), "--dest", str(dest)]) == 0
    printed = capsys.readouterr().out
    rows = report_rows(dest)
    assert [row["status"] for row in rows] == ["missing_tool"] * 3
    assert all("yt-dlp not found" in row["message"] and "ffmpeg not found" in row["message"] for row in rows)
    assert printed.count("missing_tool: yt-dlp not found on PATH (install it with `pip install yt-dlp`)") == 3
    assert "missing_tool 3" in printed


def test_unavailable_videos_are_reported_per_segment(selection_path, tmp_path, monkeypatch, capsys):
    tools = tmp_path / "bin"
    tools.mkdir()
    script(tools, "yt-dlp", "import sys\n"
                            "sys.stderr.write('ERROR: [youtube] ' + sys.argv[-1][-11:] + ': Video unavailable\\n')\n"
                            "sys.exit(1)\n")
    script(tools, "ffmpeg", "raise SystemExit('ffmpeg must not run for an unavailable video')\n")
    monkeypatch.setenv("PATH", str(tools))
    dest = tmp_path / "clips"
    assert main(["audioset", "clips", "--selection", str(selection_path), "--dest", str(dest),
                 "--split", "train"]) == 0
    rows = report_rows(dest)
    assert [(row["ytid"], row["status"]) for row in rows] == [
        ("-abcdefghij", "unavailable"), ("vwxyz012345", "unavailable")]
    assert "ERROR: [youtube] -abcdefghij: Video unavailable" in rows[0]["message"]
    assert "unavailable 2" in capsys.readouterr().out


def test_a_segment_is_cut_by_ffmpeg_from_the_stream_yt_dlp_finds(selection_path, tmp_path, monkeypatch, capsys, ffmpeg):
    """yt-dlp is replaced by a script that 'finds' a local 60-second file; the real ffmpeg cuts it."""
    source = tmp_path / "video_audio.wav"
    rate = 22050
    seconds = np.arange(60 * rate) / rate
    soundfile.write(source, (0.1 * np.floor(seconds)).astype(np.float32) % 1.0, rate)  # level = second number / 10
    tools = tmp_path / "bin"
    tools.mkdir()
    script(tools, "yt-dlp", f"print({str(source)!r})\n")
    (tools / "ffmpeg").symlink_to(ffmpeg)
    monkeypatch.setenv("PATH", str(tools))
    dest = tmp_path / "clips"
    args = ["audioset", "clips", "--selection", str(selection_path), "--dest", str(dest), "--role", "positive"]
    assert main(args) == 0
    clip = dest / "-abcdefghij_30.000.wav"
    audio, clip_rate = soundfile.read(clip)
    assert clip_rate == 16000 and abs(len(audio) - 10 * 16000) <= 160
    assert np.median(audio[:8000]) == pytest.approx(0.0, abs=0.02)  # second 30 -> level 3.0 % 1.0 == 0
    assert np.median(audio[16000 + 4000:16000 + 12000]) == pytest.approx(0.1, abs=0.02)  # second 31
    assert [row["status"] for row in report_rows(dest)] == ["saved"]
    assert main(args) == 0
    assert [row["status"] for row in report_rows(dest)] == ["exists"]


def test_target_filter_uses_the_selection_targets(selection_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    dest = tmp_path / "clips"
    command = ["audioset", "clips", "--selection", str(selection_path), "--dest", str(dest), "--target"]
    assert main(command + ["laughter"]) == 0
    assert [row["ytid"] for row in report_rows(dest)] == ["-abcdefghij"]
    assert main(command + ["crying"]) == 2
    assert "laughter" in capsys.readouterr().err
    assert len(read_selection(selection_path).segments) == 3
