"""Stable face identities across frames, so scores can be smoothed per person.

Greedy IoU matching (with a centre-distance fallback for fast moves) is enough
for a webcam: few faces, small motion between frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from emodesk.types import Box, iou


@dataclass
class Track:
    id: int
    box: Box
    last_t: float
    hits: int = 1
    smoothed: dict[str, np.ndarray] = field(default_factory=dict)
    smoothed_t: dict[str, float] = field(default_factory=dict)


class FaceTracker:
    """Assigns track ids to boxes; a track dies after ``max_age_s`` of media time unseen."""

    def __init__(
        self, *, iou_threshold: float = 0.3, max_age_s: float = 1.0, smoothing_s: float = 0.5
    ) -> None:
        self.iou_threshold = iou_threshold
        self.max_age_s = max_age_s
        self.smoothing_s = smoothing_s
        self.tracks: dict[int, Track] = {}
        self._next_id = 1

    def update(self, t: float, boxes: Sequence[Box]) -> list[int]:
        """Track ids for ``boxes`` (same order) at media time ``t``."""
        for tid in [k for k, tr in self.tracks.items() if t - tr.last_t > self.max_age_s or t < tr.last_t]:
            del self.tracks[tid]
        pairs: list[tuple[float, int, int]] = []
        live = list(self.tracks.values())
        for i, b in enumerate(boxes):
            for tr in live:
                s = iou(b, tr.box)
                if s < self.iou_threshold:
                    # Centre distance relative to size: catches a fast head turn.
                    cx, cy = b[0] + b[2] / 2, b[1] + b[3] / 2
                    tx, ty = tr.box[0] + tr.box[2] / 2, tr.box[1] + tr.box[3] / 2
                    d = np.hypot(cx - tx, cy - ty) / max(1.0, (tr.box[2] + tr.box[3]) / 2)
                    s = 0.5 * (1 - d) if d < 0.5 else 0.0
                if s > 0:
                    pairs.append((s, i, tr.id))
        ids: list[int | None] = [None] * len(boxes)
        used: set[int] = set()
        for _, i, tid in sorted(pairs, reverse=True):
            if ids[i] is None and tid not in used:
                ids[i] = tid
                used.add(tid)
        out: list[int] = []
        for i, b in enumerate(boxes):
            found = ids[i]
            if found is None:
                tid = self._next_id
                self._next_id += 1
                self.tracks[tid] = Track(tid, tuple(b), t)  # type: ignore[arg-type]
            else:
                tid = found
                tr = self.tracks[tid]
                tr.box, tr.last_t, tr.hits = tuple(b), t, tr.hits + 1  # type: ignore[assignment]
            out.append(tid)
        return out

    def smooth(self, track_id: int, model: str, t: float, probs: np.ndarray) -> np.ndarray:
        """Exponential smoothing per track and model, time constant ``smoothing_s`` of media time."""
        tr = self.tracks.get(track_id)
        if tr is None:
            return probs
        prev = tr.smoothed.get(model)
        if prev is None or self.smoothing_s <= 0:
            tr.smoothed[model] = probs.copy()
        else:
            dt = max(0.0, t - tr.smoothed_t[model])
            a = 1.0 - float(np.exp(-dt / self.smoothing_s))
            tr.smoothed[model] = prev + a * (probs - prev)
        tr.smoothed_t[model] = t
        return tr.smoothed[model]
