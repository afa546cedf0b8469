"""A bounded, closable hand-over queue for items that must not vanish silently.

Audio chunks go from the capture thread to the speech thread through this
queue. Unlike a latest-wins slot every chunk matters (the VAD needs a
continuous stream), but an unbounded ``queue.Queue`` would let a stalled
speech thread eat memory for ever; so the queue is bounded, drops the
*oldest* item when full (the speech path sees a gap and restarts its
segmenter) and counts every drop for the status bar.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class BoundedChunkQueue(Generic[T]):
    """Thread-safe FIFO of at most ``maxlen`` items; overflow drops the oldest and counts it."""

    def __init__(self, maxlen: int) -> None:
        if maxlen <= 0:
            raise ValueError(f"maxlen must be positive, got {maxlen}")
        self.maxlen = maxlen
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.puts = 0
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Append ``item``; False (item discarded, not counted) once the queue is closed."""
        with self._cond:
            if self._closed:
                return False
            if len(self._items) >= self.maxlen:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self.puts += 1
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> T | None:
        """The oldest item; None on timeout, or once closed and empty."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._items) or self._closed, timeout):
                return None
            if not self._items:
                return None
            return self._items.popleft()

    def drain(self, max_items: int) -> list[T]:
        """Up to ``max_items`` oldest items without waiting (a consumer catching up)."""
        with self._cond:
            n = min(max_items, len(self._items))
            return [self._items.popleft() for _ in range(n)]

    def close(self) -> None:
        """No more puts; readers drain what is left, then get None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def clear(self) -> int:
        """Discard everything queued (counted as dropped); returns how many."""
        with self._cond:
            n = len(self._items)
            self._items.clear()
            self.dropped += n
            return n

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def exhausted(self) -> bool:
        """Closed and empty: the reader has everything it will ever get."""
        with self._cond:
            return self._closed and not self._items

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
