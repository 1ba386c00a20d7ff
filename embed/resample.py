"""Block-wise resampling equal to resampy's whole-signal kaiser_best result.

The reference resamples a whole file at once with resampy. Hours-long recordings must not be
held in memory, and resampy's per-sample loop is the slowest step of the pipeline, so this
precomputes resampy's own interpolated filter weights for each output phase (the phases repeat
every rate_in / gcd input samples) and applies them as one matrix product per block. Weights
and signal-edge handling (zeros outside the signal) are resampy's; only the summation order
differs, so results match to ~1e-15. Rates whose phase table would be huge fall back to
resampy's kernel, fed the same absolute output times, which is bit-identical.

resampy (and numba with it) is imported only when needed: a hub that is handed the filter table
(`filter_table`, e.g. from its export directory) resamples common rates with numpy alone.
"""

from __future__ import annotations

import math

import numpy as np

MAX_PHASE_TABLE_ENTRIES = 4_000_000  # 32 MB of float64; odd rates beyond it use resampy's kernel
GROUPS_PER_PRODUCT = 2048


class StreamingResampler:
    def __init__(self, rate_in: int, rate_out: int, filter_name: str = "kaiser_best",
                 filter_table: tuple[np.ndarray, int] | None = None):
        """filter_table: (half window, precision) of `filter_name` as resampy stores it; None: ask resampy."""
        if rate_in <= 0 or rate_out <= 0:
            raise ValueError(f"sample rates must be positive, got {rate_in} -> {rate_out}")
        self.rate_in, self.rate_out = int(rate_in), int(rate_out)
        self.passthrough = self.rate_in == self.rate_out
        self._received = 0
        self._emitted = 0
        if self.passthrough:
            return
        sample_ratio = float(self.rate_out) / self.rate_in
        window, self._precision = filter_table if filter_table is not None else load_filter_table(filter_name)
        if sample_ratio < 1:
            window = sample_ratio * window
        self._window = window
        self._window_delta = np.diff(window, append=window[-1])
        self._scale = min(1.0, sample_ratio)
        self._time_increment = 1.0 / sample_ratio
        self._index_step = int(self._scale * self._precision)
        if self._index_step < 1:  # the filter table cannot go this far down (callers check rates at the edge)
            raise ValueError(f"cannot resample {self.rate_in} Hz to {self.rate_out} Hz: a ratio beyond "
                             f"1:{self._precision} is not a real recording")
        self._taps = len(window) // self._index_step + 1  # one wing's reach in input samples
        divisor = math.gcd(self.rate_in, self.rate_out)
        self._period_in, self._period_out = self.rate_in // divisor, self.rate_out // divisor
        self._lowest = -self._taps  # input offset of a group's first needed sample
        self._width = int(self._period_out * self._time_increment) + 2 * self._taps + 2
        self._phases = None
        if self._period_out * self._width <= MAX_PHASE_TABLE_ENTRIES:
            self._phases = self._phase_table()
        # Input samples kept, with absolute index of the first; zeros stand before the signal.
        self._buffer = np.zeros(self._taps + 2, dtype=np.float64)
        self._buffer_start = -(self._taps + 2)

    @property
    def polyphase(self) -> tuple[np.ndarray, int, int, int] | None:
        """(phase table [period_out, width], period_in, period_out, input offset of a group's first tap)
        for applying the same weights elsewhere (embed/torch_frontend.py); None for passthrough or odd rates."""
        if self.passthrough or self._phases is None:
            return None
        return self._phases, self._period_in, self._period_out, self._lowest

    def push(self, samples: np.ndarray) -> np.ndarray:
        samples = np.asarray(samples, dtype=np.float64)
        self._received += len(samples)
        if self.passthrough:
            self._emitted += len(samples)
            return samples.copy()
        self._buffer = np.concatenate([self._buffer, samples])
        if self._phases is not None:
            ready = (self._received - self._lowest - self._width) // self._period_in + 1
            return self._emit(max(0, ready) * self._period_out)
        ready = int(np.floor((self._received - 1 - self._taps) / self._time_increment))
        return self._emit(ready)

    def finish(self) -> np.ndarray:
        """The rest, up to the length resampy gives the whole signal; beyond its end is zero."""
        if self.passthrough:
            return np.zeros(0, dtype=np.float64)
        total = int(self._received * float(self.rate_out) / float(self.rate_in))
        self._buffer = np.concatenate([self._buffer, np.zeros(self._width + self._period_in + self._taps)])
        if self._phases is None:
            return self._emit(total)
        groups = -(-total // self._period_out)
        before = self._emitted
        return self._emit(groups * self._period_out)[: max(0, total - before)]

    def _emit(self, stop: int) -> np.ndarray:
        start = self._emitted
        if stop <= start:
            return np.zeros(0, dtype=np.float64)
        output = self._by_phases(start, stop) if self._phases is not None else self._by_kernel(start, stop)
        self._emitted = stop
        keep_from = int(stop * self._time_increment) - 2 * self._taps - 4 - self._buffer_start
        if keep_from > 0:
            self._buffer = self._buffer[keep_from:]
            self._buffer_start += keep_from
        return output

    def _by_phases(self, start: int, stop: int) -> np.ndarray:
        first_group, end_group = start // self._period_out, stop // self._period_out
        pieces = []
        for group in range(first_group, end_group, GROUPS_PER_PRODUCT):
            count = min(GROUPS_PER_PRODUCT, end_group - group)
            begin = group * self._period_in + self._lowest - self._buffer_start
            segment = self._buffer[begin : begin + (count - 1) * self._period_in + self._width]
            rows = np.lib.stride_tricks.sliding_window_view(segment, self._width)[:: self._period_in]
            pieces.append((rows @ self._phases.T).reshape(-1))
        return np.concatenate(pieces)

    def _by_kernel(self, start: int, stop: int) -> np.ndarray:
        from resampy.interpn import resample_f_s

        times = np.arange(start, stop) * self._time_increment - self._buffer_start
        output = np.zeros(stop - start, dtype=np.float64)
        resample_f_s(self._buffer, times, self._window, self._window_delta, self._precision, self._scale, output)
        return output

    def _phase_table(self) -> np.ndarray:
        """[period_out, width] weights: row p gives output p of a group from its input window."""
        table = np.zeros((self._period_out, self._width), dtype=np.float64)
        step, nwin, table_size = self._index_step, len(self._window), self._precision
        for phase in range(self._period_out):
            time_register = phase * self._time_increment
            center = int(time_register)
            fraction = self._scale * (time_register - center)
            for wing, sign, first in ((fraction, -1, 0), (self._scale - fraction, 1, 1)):
                index_fraction = wing * table_size
                offset = int(index_fraction)
                eta = index_fraction - offset
                taps = (nwin - offset) // step
                positions = offset + np.arange(taps) * step
                weights = self._window[positions] + eta * self._window_delta[positions]
                columns = center + sign * (np.arange(taps) + first) - self._lowest
                np.add.at(table[phase], columns, weights)
        return table


def load_filter_table(filter_name: str) -> tuple[np.ndarray, int]:
    from resampy.filters import get_filter

    window, precision, _ = get_filter(filter_name)
    return window, precision


def resample_whole(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """The reference: resampy on the whole signal (used by tests and the reference benchmark)."""
    import resampy

    return resampy.resample(np.asarray(samples, dtype=np.float64), rate_in, rate_out)
