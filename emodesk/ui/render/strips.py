"""Time strips: media time mapped onto x, its axis, label spans and probability lines.

Every function paints onto the ``QPainter`` it is given and keeps no state, so the
live timeline (into a scrolling pixmap), the sessions browser's label timeline and a
report written to a PNG draw the same colours, spans and ticks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPainter, QPen, QPolygonF

from emodesk.labels import LABEL_COLORS, LABELS

NO_LABEL_COLOR = "#c8c8c8"
TICK_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)


@dataclass(frozen=True)
class TimeMap:
    """Media time [t0, t1] onto pixels [left, left + width]."""

    t0: float
    t1: float
    left: float
    width: float

    @property
    def seconds(self) -> float:
        return max(self.t1 - self.t0, 1e-9)

    @property
    def px_per_s(self) -> float:
        return self.width / self.seconds

    def x(self, t: float) -> float:
        return self.left + (t - self.t0) * self.px_per_s

    def t(self, x: float) -> float:
        """Media time at pixel ``x``, clamped to [t0, t1]."""
        return min(max(self.t0 + (x - self.left) / self.px_per_s, self.t0), self.t1)


def tick_step(seconds: float, pixels: float, min_px: float = 60.0) -> float:
    """The smallest round step in seconds that puts ticks at least ``min_px`` apart."""
    for step in TICK_STEPS:
        if step * pixels / max(seconds, 1e-9) >= min_px:
            return float(step)
    return float(TICK_STEPS[-1])


def seconds_text(t: float, step: float) -> str:
    """A tick's text: ``12 s`` / ``0.5 s`` under a minute, ``m:ss`` from there on."""
    if t >= 60 and step >= 1:
        m, s = divmod(round(t), 60)
        return f"{m}:{s:02d}"
    return f"{t:g} s" if step >= 1 else f"{t:.1f} s"


def paint_axis(
    p: QPainter,
    tm: TimeMap,
    y: float,
    *,
    color: str = "#555",
    text: Callable[[float, float], str] = seconds_text,
    min_px: float = 60.0,
    earliest: float | None = None,
) -> None:
    """A baseline at ``y`` with ticks and their times underneath (16 px of text); no tick before
    ``earliest`` (media time starts at 0: a rolling view that starts earlier shows no negative times)."""
    p.setPen(QPen(QColor(color), 1))
    p.drawLine(QPointF(tm.left, y), QPointF(tm.left + tm.width, y))
    step = tick_step(tm.seconds, tm.width, min_px)
    first = tm.t0 if earliest is None else max(tm.t0, earliest)
    k = math.ceil(first / step - 1e-9)
    while k * step <= tm.t1 + 1e-9:
        t = k * step
        k += 1
        x = tm.x(t)
        p.drawLine(QPointF(x, y), QPointF(x, y + 4))
        p.drawText(QRectF(x - 40, y + 5, 80, 16), Qt.AlignmentFlag.AlignHCenter, text(t, step))


def paint_span(p: QPainter, tm: TimeMap, a: float, b: float, y: float, h: float, label: str | None) -> None:
    """One label's span in its colour; no label is a light hatch (so "unlabelled" never reads as a label)."""
    x0, x1 = tm.x(max(a, tm.t0)), tm.x(min(b, tm.t1))
    if x1 <= x0:
        return
    r = QRectF(x0, y, max(x1 - x0, 1.0), h)
    if label in LABEL_COLORS:
        p.fillRect(r, QColor(LABEL_COLORS[label]))  # type: ignore[index]
    else:
        p.fillRect(r, QColor("#f4f4f4"))
        p.fillRect(r, QBrush(QColor(NO_LABEL_COLOR), Qt.BrushStyle.BDiagPattern))


def paint_trace(
    p: QPainter,
    tm: TimeMap,
    y: float,
    h: float,
    times: np.ndarray,
    probs: np.ndarray,
    *,
    width: float = 2.0,
    style: Qt.PenStyle = Qt.PenStyle.SolidLine,
    labels: Sequence[int] | None = None,
) -> None:
    """One polyline per label (probability 1 at ``y``, 0 at ``y + h``); a NaN row breaks the lines."""
    if len(times) < 2:
        return
    xs = tm.left + (np.asarray(times, dtype=np.float64) - tm.t0) * tm.px_per_s
    ok = ~np.isnan(probs).any(axis=1)
    # contiguous runs of valid points: a gap (nothing fresh) is drawn as no line at all
    edges = np.flatnonzero(np.diff(np.concatenate(([0], ok.view(np.int8), [0]))))
    runs = [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= 2]
    for i in labels if labels is not None else range(len(LABELS)):
        pen = QPen(QColor(LABEL_COLORS[LABELS[i]]), width, style)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        p.setPen(pen)
        ys = y + (1.0 - np.clip(probs[:, i], 0.0, 1.0)) * h
        for a, b in runs:
            p.drawPolyline(
                QPolygonF([QPointF(float(u), float(v)) for u, v in zip(xs[a:b], ys[a:b], strict=True)])
            )
