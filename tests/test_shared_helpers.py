"""The single homes of helpers every stage uses: file hashing, runs of a mask, dequantisation."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from classify.model import AUDIOSET_UINT8, dequantize
from homesound.frames import VGGISH_FRAMES, audioset_uint8_to_float
from homesound.hashing import file_sha256
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
