"""Media clocks. Every timestamp in the pipeline is media seconds on one clock.

A live session uses :class:`MonotonicClock` shared by camera and microphone so
audio and video agree; tests use :class:`ManualClock` to run an hour in a second.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Media seconds since the clock started."""

    def sleep_until(self, t: float, stop: threading.Event | None = None) -> bool:
        """Wait until media time ``t``; False if ``stop`` was set first."""


class MonotonicClock:
    """Media time = ``time.monotonic()`` minus the start; started on first use."""

    def __init__(self) -> None:
        self._start: float | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._start is None:
                self._start = time.monotonic()

    def now(self) -> float:
        self.start()
        assert self._start is not None
        return time.monotonic() - self._start

    def to_wall(self, t: float) -> float:
        """The ``time.monotonic()`` value at media time ``t``."""
        self.start()
        assert self._start is not None
        return self._start + t

    def sleep_until(self, t: float, stop: threading.Event | None = None) -> bool:
        while True:
            remaining = t - self.now()
            if remaining <= 0:
                return not (stop is not None and stop.is_set())
            if stop is not None:
                if stop.wait(min(remaining, 0.05)):
                    return False
            else:
                time.sleep(min(remaining, 0.05))


class ManualClock:
    """A clock that moves only when told (tests) or instantly when slept on."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def sleep_until(self, t: float, stop: threading.Event | None = None) -> bool:
        if stop is not None and stop.is_set():
            return False
        self.t = max(self.t, t)
        return True
