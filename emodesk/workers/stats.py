"""Thread-safe rate and latency meters for the status bar.

Each meter is written by one worker thread and read by the GUI timer, so a
lock guards the window; the window is bounded so a long session costs no
memory.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np


class RateMeter:
    """Events per second over the last ``window_s`` seconds of wall time."""

    def __init__(self, window_s: float = 2.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()
        self.count = 0

    def tick(self, now: float | None = None) -> None:
        t = self._clock() if now is None else now
        with self._lock:
            self._stamps.append(t)
            self.count += 1
            self._trim(t)

    def _trim(self, now: float) -> None:
        while self._stamps and now - self._stamps[0] > self.window_s:
            self._stamps.popleft()

    def rate(self, now: float | None = None) -> float:
        """Events per second; 0 before two events fall in the window."""
        t = self._clock() if now is None else now
        with self._lock:
            self._trim(t)
            if len(self._stamps) < 2:
                return 0.0
            span = self._stamps[-1] - self._stamps[0]
            # n events span n-1 intervals; an idle tail since the last event lowers the rate.
            span = max(span, t - self._stamps[0] - (span / (len(self._stamps) - 1)))
            return (len(self._stamps) - 1) / span if span > 0 else 0.0


class LatencyWindow:
    """p50/p95 of the last ``size`` latency samples (seconds in, milliseconds out)."""

    def __init__(self, size: int = 200) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()
        self.count = 0

    def add(self, seconds: float) -> None:
        with self._lock:
            self._values.append(float(seconds))
            self.count += 1

    def percentiles_ms(self) -> tuple[float, float] | None:
        """(p50, p95) in milliseconds, or None before the first sample."""
        with self._lock:
            if not self._values:
                return None
            a = np.fromiter(self._values, dtype=np.float64)
        p50, p95 = np.percentile(a, [50, 95])
        return float(p50) * 1000.0, float(p95) * 1000.0
