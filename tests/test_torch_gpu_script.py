"""benchmarks/embed_gpu.py runs on the CPU (`--device cpu`: the same code the GPU runs) and finds its output equal."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_script_runs_on_the_cpu_without_tensorflow_resampy_or_soundfile(tmp_path):
    """As on the GPU machine: none of the three is installed there (stubs that refuse to import stand in)."""
    from embed.resample import load_filter_table

    blocked = tmp_path / "blocked"
    blocked.mkdir()
    for name in ("tensorflow", "resampy", "soundfile"):
        (blocked / f"{name}.py").write_text(f"raise ImportError('{name} is not on the GPU machine')\n")
    data = tmp_path / "data"  # what --prepare writes, less the real clips: resampy's table
    data.mkdir()
    half_window, precision = load_filter_table("kaiser_best")
    np.savez(data / "kaiser_best.npz", half_window=half_window, precision=precision)
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "embed_gpu.py"), "--device", "cpu", "--hours", "0.01",
         "--data", str(data), "--workers", "1", "--reference-minutes", "1", "--batch-size", "8", "--precisions", ""],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": f"{blocked}{os.pathsep}{REPO}"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "end to end: 0.01 h" in result.stdout and "x real time" in result.stdout
    assert "-> EQUAL" in result.stdout and "synthetic" in result.stdout
