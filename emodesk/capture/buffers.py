"""The two hand-over structures between threads.

Live video is *latest-wins*: :class:`LatestSlot` keeps one item, overwrites
it, and counts what it dropped, so a slow consumer never builds a backlog.
Audio must not be dropped silently: :class:`AudioRing` is a bounded ring of
samples that counts overflowed samples (Friture's ``ringbuffer.py``).
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """A one-item buffer: ``put`` overwrites, ``take`` waits for a new item."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._fresh = False
        self._closed = False
        self.puts = 0
        self.dropped = 0

    def put(self, item: T) -> None:
        with self._cond:
            if self._fresh:
                self.dropped += 1
            self._item = item
            self._fresh = True
            self.puts += 1
            self._cond.notify_all()

    def take(self, timeout: float | None = None) -> T | None:
        """The newest item not taken yet; None on timeout or once closed and empty."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._fresh or self._closed, timeout):
                return None
            if not self._fresh:
                return None
            self._fresh = False
            return self._item

    def peek(self) -> T | None:
        """The newest item, taken or not (for the GUI timer)."""
        with self._cond:
            return self._item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


class AudioRing:
    """A bounded single-producer ring of float32 samples.

    ``write`` is cheap enough for a PortAudio callback (one copy, no
    allocation). When the reader falls behind, the oldest samples are
    overwritten and counted in ``overflowed``.
    """

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self._buf = np.zeros(capacity, dtype=np.float32)
        self._cap = capacity
        self._write_pos = 0  # total samples ever written
        self._read_pos = 0  # total samples ever read or skipped
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.overflowed = 0  # samples lost
        self.overflow_events = 0  # writes that lost samples

    def write(self, samples: np.ndarray) -> None:
        n = len(samples)
        if n == 0:
            return
        with self._lock:
            if n >= self._cap:
                samples = samples[-self._cap :]
                self.overflowed += n - self._cap
                self.overflow_events += int(n > self._cap)
                self._write_pos += n - self._cap
                n = self._cap
            start = self._write_pos % self._cap
            first = min(n, self._cap - start)
            self._buf[start : start + first] = samples[:first]
            if first < n:
                self._buf[: n - first] = samples[first:]
            self._write_pos += n
            lost = self._write_pos - self._read_pos - self._cap
            if lost > 0:
                self.overflowed += lost
                self.overflow_events += 1
                self._read_pos += lost
            self._cond.notify_all()

    def read(self, max_samples: int | None = None, timeout: float | None = None) -> np.ndarray:
        """Up to ``max_samples`` oldest unread samples; waits up to ``timeout`` for any."""
        with self._cond:
            self._cond.wait_for(lambda: self._write_pos > self._read_pos, timeout)
            avail = self._write_pos - self._read_pos
            n = avail if max_samples is None else min(avail, max_samples)
            start = self._read_pos % self._cap
            first = min(n, self._cap - start)
            out = np.empty(n, dtype=np.float32)
            out[:first] = self._buf[start : start + first]
            if first < n:
                out[first:] = self._buf[: n - first]
            self._read_pos += n
            return out

    @property
    def available(self) -> int:
        with self._lock:
            return self._write_pos - self._read_pos

    @property
    def total_read(self) -> int:
        """Samples consumed or skipped so far: the media position of the next read."""
        with self._lock:
            return self._read_pos
