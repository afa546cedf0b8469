"""A fixed-size ring of (media time, probabilities): appends in O(1), never grows.

Qt-free, so the live timeline, a headless report and a test read it the same way.
"""

from __future__ import annotations

import numpy as np

from emodesk.labels import N_LABELS


class ProbabilityTrace:
    """The newest ``capacity`` points of one series; a point of NaNs is a gap (nothing fresh)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 2:
            raise ValueError(f"a trace needs room for at least 2 points, got capacity {capacity}")
        self.capacity = int(capacity)
        self._t = np.full(self.capacity, np.nan)
        self._p = np.full((self.capacity, N_LABELS), np.nan)
        self._next = 0  # where the next point goes
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, t: float, probs: np.ndarray | None) -> None:
        """Add the point at media time ``t`` (None: a gap); times must not go backwards."""
        last = self.last_time()
        if last is not None and t < last:
            raise ValueError(f"trace points must come in time order: {t:.3f} s after {last:.3f} s")
        self._t[self._next] = t
        if probs is None:
            self._p[self._next] = np.nan
        else:
            p = np.asarray(probs, dtype=np.float64)
            if p.shape != (N_LABELS,):
                raise ValueError(f"probabilities must have shape ({N_LABELS},), got {p.shape}")
            self._p[self._next] = p
        self._next = (self._next + 1) % self.capacity
        self._count = min(self._count + 1, self.capacity)

    def last_time(self) -> float | None:
        if not self._count:
            return None
        return float(self._t[(self._next - 1) % self.capacity])

    def since(self, t0: float) -> tuple[np.ndarray, np.ndarray]:
        """Times ``(n,)`` and probabilities ``(n, 7)`` of the points at or after ``t0``, oldest first,
        plus the one point just before ``t0`` so a line enters the window from its left edge."""
        order = (np.arange(self._count) + self._next - self._count) % self.capacity
        t, p = self._t[order], self._p[order]
        first = int(np.searchsorted(t, t0, side="left"))
        first = max(0, first - 1)
        return t[first:].copy(), p[first:].copy()

    def clear(self) -> None:
        self._t[:] = np.nan
        self._p[:] = np.nan
        self._next = self._count = 0
