"""A bounded, closable hand-over queue for items that must not vanish silently.

Audio chunks go from the capture thread to the speech thread through this
queue. Unlike a latest-wins slot every chunk matters (the VAD needs a
continuous stream), but an unbounded ``queue.Queue`` would let a stalled
speech thread eat memory for ever; so the queue is bounded, drops the
*oldest* item when full (the speech path sees a gap and restarts its
segmenter) and counts every drop for the status bar.

A live speech path also bounds it in *seconds* (:meth:`BoundedChunkQueue.limit`,
load shedding, ``emodesk.pipeline.shedding``): past the limit the oldest audio
is dropped on arrival, so the backlog never exceeds it; those drops are counted
apart (``shed``), they are the path keeping up, not a fault.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class BoundedChunkQueue(Generic[T]):
    """Thread-safe FIFO of at most ``maxlen`` items; overflow drops the oldest and counts it."""

    def __init__(self, maxlen: int, weight: Callable[[T], float] | None = None) -> None:
        if maxlen <= 0:
            raise ValueError(f"maxlen must be positive, got {maxlen}")
        self.maxlen = maxlen
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.puts = 0
        self.dropped = 0
        self._weigh = weight
        self._weight = 0.0
        self._limit: float | None = None
        self.shed = 0  # items dropped by the weight limit
        self.shed_weight = 0.0

    def limit(self, max_weight: float | None) -> None:
        """Keep at most ``max_weight`` (seconds of audio) queued from now on, dropping the oldest
        (counted in ``shed``); None lifts the limit. Needs the ``weight`` function."""
        if max_weight is not None and self._weigh is None:
            raise ValueError("a weight limit needs the queue's weight function")
        with self._cond:
            self._limit = max_weight
            self._enforce()

    @property
    def weight(self) -> float:
        """The total weight queued (seconds of audio); 0 without a weight function."""
        with self._cond:
            return self._weight

    def _enforce(self) -> None:
        while self._limit is not None and self._weight > self._limit + 1e-9 and len(self._items) > 1:
            _, w = self._pop()
            self.shed += 1
            self.shed_weight += w

    def _pop(self) -> tuple[T, float]:
        """The oldest item and its weight, taken off the queue (caller holds the lock)."""
        item = self._items.popleft()
        if self._weigh is None:
            return item, 0.0
        w = self._weigh(item)
        self._weight = max(0.0, self._weight - w) if self._items else 0.0
        return item, w

    def put(self, item: T) -> bool:
        """Append ``item``; False (item discarded, not counted) once the queue is closed."""
        with self._cond:
            if self._closed:
                return False
            if len(self._items) >= self.maxlen:
                self._pop()
                self.dropped += 1
            self._items.append(item)
            if self._weigh is not None:
                self._weight += self._weigh(item)
                self._enforce()
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
            return self._pop()[0]

    def drain(self, max_items: int) -> list[T]:
        """Up to ``max_items`` oldest items without waiting (a consumer catching up)."""
        with self._cond:
            n = min(max_items, len(self._items))
            return [self._pop()[0] for _ in range(n)]

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
            self._weight = 0.0
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
