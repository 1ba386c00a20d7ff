"""The single homes of helpers several stages use: file hashing, atomic output, runs of a mask,
dequantisation, a producer's put on a bounded queue, audio to finite mono."""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from classify.model import AUDIOSET_UINT8, dequantize
from embed.audio_io import finite_mono
from embed.pipeline import STOP_POLL_SECONDS, put_until_stopped
from homesound.errors import HomesoundError
from homesound.frames import VGGISH_FRAMES, audioset_uint8_to_float
from homesound.hashing import file_sha256
from homesound.output_files import atomic_output, partial_path
from homesound.sequences import mask_runs


def test_file_sha256_is_the_digest_of_the_whole_file_even_past_one_read_block(tmp_path):
    content = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)  # several blocks and a ragged tail
    path = tmp_path / "recording.wav"
    path.write_bytes(content)
    assert file_sha256(path) == hashlib.sha256(content).hexdigest()
    assert file_sha256(str(path)) == file_sha256(path)


def test_file_sha256_of_a_missing_file_raises_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        file_sha256(tmp_path / "gone.wav")


def _runs_by_walking(mask: list[bool], join_gap: int) -> list[tuple[int, int]]:
    """The obvious frame-by-frame reference: open a run at a True, close it at the next False."""
    runs: list[list[int]] = []
    for index, value in enumerate(mask):
        if not value:
            continue
        if runs and index - runs[-1][1] <= join_gap:
            runs[-1][1] = index + 1
        else:
            runs.append([index, index + 1])
    return [(begin, end) for begin, end in runs]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.booleans(), max_size=60), st.integers(min_value=0, max_value=5))
def test_mask_runs_match_a_frame_by_frame_walk(mask, join_gap):
    assert mask_runs(np.array(mask, dtype=bool), join_gap=join_gap) == _runs_by_walking(mask, join_gap)


def test_mask_runs_cover_exactly_the_true_entries_and_edges():
    mask = np.array([True, True, False, False, True, False, True])
    assert mask_runs(mask) == [(0, 2), (4, 5), (6, 7)]
    assert mask_runs(mask, join_gap=1) == [(0, 2), (4, 7)]
    assert mask_runs(mask, join_gap=2) == [(0, 7)]
    assert mask_runs(np.zeros(0, bool)) == [] and mask_runs(np.zeros(4, bool)) == []
    assert all(isinstance(value, int) for run in mask_runs(mask) for value in run)


def test_one_dequantisation_for_stored_frames_and_detector_input():
    every_value = np.arange(256, dtype=np.uint8).reshape(2, 128)
    expected = (every_value.astype(np.float64) / 255 * 4 - 2).astype(np.float32)
    np.testing.assert_array_equal(audioset_uint8_to_float(every_value), expected)
    np.testing.assert_array_equal(VGGISH_FRAMES.dequantize(every_value), expected)
    np.testing.assert_array_equal(dequantize(every_value, AUDIOSET_UINT8), expected)
    assert audioset_uint8_to_float(every_value).dtype == np.float32


def test_atomic_output_appears_whole_and_leaves_no_partial_file(tmp_path):
    target = tmp_path / "new" / "model.pt"
    with atomic_output(target) as partial:
        assert partial == partial_path(target) and partial.parent == target.parent
        assert partial.name == f"model.pt.part-{os.getpid()}.pt"  # the extension last: writers that sniff it
        partial.write_bytes(b"complete")
        assert not target.exists()  # nothing under the real name until it is whole
    assert target.read_bytes() == b"complete" and sorted(target.parent.iterdir()) == [target]


def test_atomic_output_failing_midway_keeps_the_old_file_and_removes_the_partial(tmp_path):
    target = tmp_path / "events.csv"
    target.write_text("the previous run's events\n")
    with pytest.raises(ValueError, match="writer broke"):
        with atomic_output(target) as partial:
            partial.write_text("half of the new")
            raise ValueError("writer broke")
    assert target.read_text() == "the previous run's events\n" and sorted(tmp_path.iterdir()) == [target]


def test_atomic_output_names_the_file_and_the_fix_when_the_write_fails(tmp_path):
    target = tmp_path / "clips" / "clip.wav"
    with pytest.raises(HomesoundError, match=r"cannot write clip .*clip\.wav: the disk is full"):
        with atomic_output(target, what="clip") as partial:
            partial.write_bytes(b"RIFF")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert list(target.parent.iterdir()) == []



def test_put_until_stopped_waits_for_room_and_gives_up_once_stopped():
    items: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    assert put_until_stopped(items, "first", stop)
    threading.Timer(0.3, items.get).start()  # a slow consumer makes room
    started = time.monotonic()
    assert put_until_stopped(items, "second", stop) and time.monotonic() - started >= 0.25
    assert items.queue[0] == "second"
    threading.Timer(0.3, stop.set).start()  # the consumer quit: the producer must not hang
    started = time.monotonic()
    assert not put_until_stopped(items, "third", stop)
    assert time.monotonic() - started < 0.3 + 2 * STOP_POLL_SECONDS + 0.5 and list(items.queue) == ["second"]


def test_finite_mono_averages_channels_and_zeroes_what_is_not_a_number():
    stereo = np.array([[0.5, 0.25], [np.nan, 0.5], [np.inf, -np.inf], [-1.0, 1.0]], dtype=np.float32)
    mono, zeroed = finite_mono(stereo)
    assert mono.tolist() == [0.375, 0.0, 0.0, 0.0] and zeroed == 2 and mono.dtype == np.float32
    single = np.array([[0.1], [np.nan]])
    assert finite_mono(single)[0].tolist() == [0.1, 0.0] and finite_mono(single)[1] == 1
    flat = np.array([0.2, -0.2])
    mono, zeroed = finite_mono(flat)
    assert mono.tolist() == [0.2, -0.2] and zeroed == 0
