"""Streaming polyphase resampling to 16 kHz, numpy only.

Many microphones refuse to open at 16 kHz, so we open them at their native
rate and convert here. The filter state carries across chunks, so the output
of chunked input equals the output of the whole signal.
"""

from __future__ import annotations

from math import gcd

import numpy as np


def _design(up: int, down: int, taps_per_phase: int) -> np.ndarray:
    """Kaiser-windowed sinc low-pass at the lower Nyquist, as a polyphase bank (up, K)."""
    n = taps_per_phase * up
    cutoff = 0.5 / max(up, down)  # cycles per sample at the up-sampled rate
    # An odd-length filter (plus one zero tap) has a whole-sample group delay.
    m = np.arange(n - 1) - (n - 2) / 2
    h = 2 * cutoff * np.sinc(2 * cutoff * m) * np.kaiser(n - 1, 8.6)
    h = np.append(h * up / h.sum(), 0.0)
    # bank[p, k] = h[p + k*up]: phase p of the up-sampled signal uses every up-th tap
    return h.reshape(taps_per_phase, up).T.astype(np.float64).copy()


class StreamingResampler:
    """Resample a mono stream from ``in_rate`` to ``out_rate`` chunk by chunk."""

    def __init__(self, in_rate: int, out_rate: int = 16000, taps_per_phase: int | None = None) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} → {out_rate}")
        g = gcd(int(in_rate), int(out_rate))
        self.up = int(out_rate) // g
        self.down = int(in_rate) // g
        self.in_rate, self.out_rate = int(in_rate), int(out_rate)
        if taps_per_phase is None:  # the filter must span more inputs when decimating harder
            taps_per_phase = 16 * max(1, -(-self.down // self.up))
        self._k = taps_per_phase
        self._bank = _design(self.up, self.down, taps_per_phase) if self.up * self.down > 1 else None
        self._hist = np.zeros(taps_per_phase - 1, dtype=np.float64)  # last K-1 inputs
        self._consumed = 0  # input samples seen
        self._produced = 0  # output samples emitted
        # Group delay of the filter in output samples; we compensate so that output
        # sample m corresponds to input time m / out_rate.
        self._delay_up = (taps_per_phase * self.up - 2) // 2  # in up-sampled samples

    def process(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if self._bank is None:
            return x.astype(np.float32)
        buf = np.concatenate([self._hist, x])
        base = self._consumed - len(self._hist)  # global input index of buf[0]
        self._consumed += len(x)
        # Output m sits at up-sampled position m*down + delay; it needs inputs up to
        # floor((m*down + shift)/up) which must already be here.
        shift = self._delay_up
        last_m = (self._consumed * self.up - 1 - shift) // self.down
        ms = np.arange(self._produced, last_m + 1, dtype=np.int64)
        if len(ms) == 0:
            self._hist = buf[-(self._k - 1) :] if self._k > 1 else buf[:0]
            return np.zeros(0, dtype=np.float32)
        pos = ms * self.down + shift
        idx = pos // self.up  # newest input index used
        phase = pos % self.up
        rel = idx - base
        window = rel[:, None] - np.arange(self._k)[None, :]
        vals = np.where(window >= 0, buf[np.clip(window, 0, len(buf) - 1)], 0.0)
        out = np.einsum("nk,nk->n", vals, self._bank[phase])
        self._produced = int(ms[-1]) + 1
        self._hist = buf[-(self._k - 1) :]
        return out.astype(np.float32)


def resample(x: np.ndarray, in_rate: int, out_rate: int = 16000) -> np.ndarray:
    """Resample a whole signal (tail flushed with zeros so no samples are lost)."""
    r = StreamingResampler(in_rate, out_rate)
    n_out = round(len(x) * out_rate / in_rate)
    y = r.process(x)
    pad = np.zeros(r._k * 2 + r.down, dtype=np.float32)
    y = np.concatenate([y, r.process(pad)])
    return y[:n_out]
