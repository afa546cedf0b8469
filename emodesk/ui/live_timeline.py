"""The rolling timeline under the live video: how the emotion moved over the last 30–120 s.

Fused probabilities are one line per label; each modality's lines are added on
demand (dashed: face, dotted: voice, dash-dot: words). Under them, the label in
force while recording and a mark where each utterance was said.

Appending a point never redraws the history: the plot lives in an image whose
pixels are shifted left by the time that passed (a ``numpy`` row move), and only
the new columns are painted. The history is drawn whole only when the view
changes (a resize, another window length, a modality shown or hidden).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QHelpEvent, QImage, QPainter, QPaintEvent, QPen, QResizeEvent
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from emodesk.labels import LABELS
from emodesk.ui.render import ProbabilityTrace, TimeMap, paint_axis, paint_span, paint_trace

WINDOWS_S = (30, 60, 120)
RATE_HZ = 10.0  # points per second kept per series
SERIES = ("fused", "face", "voice", "text")
SERIES_NAMES = {"fused": "fused", "face": "face", "voice": "voice", "text": "words"}
STYLES: dict[str, tuple[float, Qt.PenStyle]] = {
    "fused": (2.2, Qt.PenStyle.SolidLine),
    "face": (1.3, Qt.PenStyle.DashLine),
    "voice": (1.3, Qt.PenStyle.DotLine),
    "text": (1.3, Qt.PenStyle.DashDotLine),
}
GUTTER_PX, MARGIN_PX = 44, 10
STRIP_H, STRIP_GAP, AXIS_H = 8, 3, 18
PLOT_BG, GRID = QColor("#ffffff"), QColor("#e6e6e6")


@dataclass(frozen=True)
class Utterance:
    """Where an utterance was said, and what the transcript says."""

    t0: float
    t1: float
    text: str
    trusted: bool = True


class LiveTimeline(QWidget):
    """A rolling plot of probabilities over media time; fed by :meth:`append`, one point per update."""

    def __init__(self, window_s: int = 60, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(240, 64)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setToolTip("")  # built per position in event()
        capacity = int(max(WINDOWS_S) * RATE_HZ) + 2
        self.traces = {name: ProbabilityTrace(capacity) for name in SERIES}
        self.shown: set[str] = {"fused"}
        self.window_s = float(window_s)
        self._labels: deque[tuple[float, bool, str | None]] = deque(maxlen=2000)  # (t, recording, label)
        self._utterances: deque[Utterance] = deque(maxlen=400)
        self._seen: set[tuple[float, float]] = set()
        self._image: QImage | None = None
        self._right_t: float | None = None  # media time at the image's right edge
        self.full_redraws = 0  # drawings of the whole history (view changes only)
        self.column_draws = 0  # appends that painted only the new columns

    def sizeHint(self) -> QSize:
        return QSize(800, 150)

    # ------------------------------------------------------------ data

    def set_window(self, seconds: float) -> None:
        """Show the last ``seconds`` (30, 60 or 120 are offered); the history is kept."""
        if float(seconds) != self.window_s:
            self.window_s = float(min(max(seconds, 5.0), max(WINDOWS_S)))
            self._image = None
            self.update()

    def set_shown(self, series: str, shown: bool) -> None:
        """Add or remove a modality's lines (``face``, ``voice``, ``text``; fused is always on)."""
        if series not in SERIES or series == "fused":
            raise ValueError(f"series must be one of face, voice, text, got {series!r}")
        if (series in self.shown) != shown:
            (self.shown.add if shown else self.shown.discard)(series)
            self._image = None
            self.update()

    def append(
        self,
        t: float,
        fused: np.ndarray | None,
        face: np.ndarray | None = None,
        voice: np.ndarray | None = None,
        text: np.ndarray | None = None,
        *,
        recording: bool = False,
        label: str | None = None,
    ) -> bool:
        """One point at media time ``t`` (None: nothing fresh, a gap); False when too soon after the last.

        ``recording`` and ``label`` say what was in force at ``t``: drawn as the label strip.
        """
        last = self.traces["fused"].last_time()
        if last is not None and t - last < 1.0 / RATE_HZ - 1e-9:
            return False
        for name, p in zip(SERIES, (fused, face, voice, text), strict=True):
            self.traces[name].append(t, p)
        state = (recording, label if recording else None)
        if not self._labels or self._labels[-1][1:] != state:
            self._labels.append((t, *state))
        self._advance(t)
        return True

    def add_utterances(self, utterances: Iterable[Utterance]) -> int:
        """Mark utterances where they were said (each once); how many were new."""
        new = [u for u in utterances if (u.t0, u.t1) not in self._seen]
        for u in new:
            if len(self._utterances) == self._utterances.maxlen:
                old = self._utterances[0]
                self._seen.discard((old.t0, old.t1))
            self._utterances.append(u)
            self._seen.add((u.t0, u.t1))
        if new and self._image is not None:
            p = self._painter()
            for u in new:
                self._paint_utterance(p, self._image_map(), u)
            p.end()
            self.update()
        return len(new)

    def clear(self) -> None:
        for tr in self.traces.values():
            tr.clear()
        self._labels.clear()
        self._utterances.clear()
        self._seen.clear()
        self._image, self._right_t = None, None
        self.update()

    @property
    def utterances(self) -> list[Utterance]:
        return list(self._utterances)

    def label_spans(self) -> list[tuple[float, float, str | None]]:
        """While recording: (start, end, label) spans, the last one open to the newest point."""
        end = self.traces["fused"].last_time() or 0.0
        items = list(self._labels)
        out = []
        for i, (t, rec, label) in enumerate(items):
            nxt = items[i + 1][0] if i + 1 < len(items) else end
            if rec and nxt > t:
                out.append((t, nxt, label))
        return out

    # ------------------------------------------------------------ geometry

    def _plot_rect(self) -> QRectF:
        """The plot in widget pixels; the label and speech strips sit under it, the axis under those."""
        h = max(float(self.height()) - 2 * (STRIP_H + STRIP_GAP) - AXIS_H - 4, 16.0)
        return QRectF(GUTTER_PX, 4, max(float(self.width()) - GUTTER_PX - MARGIN_PX, 16.0), h)

    def _image_map(self) -> TimeMap:
        """Media time onto the image's own x (its left edge is 0)."""
        r = self._plot_rect()
        right = self._right_t or 0.0
        return TimeMap(right - self.window_s, right, 0.0, r.width())

    def time_map(self) -> TimeMap:
        """Media time onto widget x, as painted now."""
        m = self._image_map()
        return TimeMap(m.t0, m.t1, self._plot_rect().left(), m.width)

    def resizeEvent(self, event: QResizeEvent) -> None:
        self._image = None
        super().resizeEvent(event)

    # ------------------------------------------------------------ drawing into the image

    def _painter(self) -> QPainter:
        assert self._image is not None
        p = QPainter(self._image)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        return p

    def _image_height(self) -> float:
        return self._plot_rect().height() + 2 * (STRIP_H + STRIP_GAP)

    def _advance(self, t: float) -> None:
        if self._image is None or self._right_t is None:
            self._right_t = t
            self._redraw()
            return
        dpr = self._image.devicePixelRatio()
        m = self._image_map()
        shift = int((t - self._right_t) * m.px_per_s * dpr)  # whole device pixels
        if shift <= 0:
            return  # less than a pixel: drawn with the next point
        if shift >= self._image.width():
            self._right_t = t
            self._redraw()
            return
        bits = np.frombuffer(self._image.bits(), dtype=np.uint32)  # type: ignore[call-overload]
        rows = bits.reshape(self._image.height(), self._image.bytesPerLine() // 4)
        rows[:, : -shift or None] = rows[:, shift:].copy()
        self._right_t += shift / (m.px_per_s * dpr)
        m = self._image_map()
        new_x = m.width - shift / dpr
        p = self._painter()
        p.setClipRect(QRectF(new_x - 1, 0, m.width - new_x + 2, self._image_height()))
        self._paint_background(p, m, new_x - 1, m.width)
        t_from = m.t(new_x) - 2.0 / m.px_per_s  # the segment in from the last drawn point
        self._paint_traces(p, m, t_from)
        self._paint_labels(p, m, t_from)
        p.setClipping(False)
        for u in self._utterances:
            if u.t1 >= t_from:
                self._paint_utterance(p, m, u)
        p.end()
        self.column_draws += 1
        self.update()

    def _redraw(self) -> None:
        r = self._plot_rect()
        dpr = self.devicePixelRatioF()
        img = QImage(
            max(1, int(r.width() * dpr)),
            max(1, int(self._image_height() * dpr)),
            QImage.Format.Format_ARGB32_Premultiplied,
        )
        img.setDevicePixelRatio(dpr)
        img.fill(self.palette().window().color())
        self._image = img
        m = self._image_map()
        p = self._painter()
        self._paint_background(p, m, 0.0, m.width)
        self._paint_traces(p, m, m.t0)
        self._paint_labels(p, m, m.t0)
        for u in self._utterances:
            self._paint_utterance(p, m, u)
        p.end()
        self.full_redraws += 1

    def _paint_background(self, p: QPainter, m: TimeMap, x0: float, x1: float) -> None:
        h = self._plot_rect().height()
        strip = self.palette().window().color()
        p.fillRect(QRectF(x0, 0, x1 - x0, self._image_height()), strip)
        p.fillRect(QRectF(x0, 0, x1 - x0, h), PLOT_BG)
        p.setPen(QPen(GRID, 1))
        for frac in (0.25, 0.5, 0.75):
            y = round(h * (1 - frac)) + 0.5
            p.drawLine(QPointF(x0, y), QPointF(x1, y))

    def _paint_traces(self, p: QPainter, m: TimeMap, t_from: float) -> None:
        h = self._plot_rect().height()
        for name in SERIES[::-1]:  # fused last: on top
            if name not in self.shown:
                continue
            times, probs = self.traces[name].since(t_from)
            width, style = STYLES[name]
            paint_trace(p, m, 1.0, h - 2.0, times, probs, width=width, style=style)

    def _paint_labels(self, p: QPainter, m: TimeMap, t_from: float) -> None:
        y = self._plot_rect().height() + STRIP_GAP
        for a, b, label in self.label_spans():
            if b >= t_from:
                paint_span(p, m, max(a, t_from), b, y, STRIP_H, label)

    def _paint_utterance(self, p: QPainter, m: TimeMap, u: Utterance) -> None:
        if u.t1 < m.t0:
            return
        y = self._plot_rect().height() + 2 * STRIP_GAP + STRIP_H
        x0, x1 = m.x(max(u.t0, m.t0)), m.x(min(u.t1, m.t1))
        color = QColor("#4a6fa5" if u.trusted else "#c0a060")
        p.fillRect(QRectF(x0, y, max(x1 - x0, 2.0), STRIP_H), color)

    # ------------------------------------------------------------ widget

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), self.palette().window())
        if self._image is None and self._right_t is not None:
            self._redraw()
        r = self._plot_rect()
        small = p.font()
        small.setPixelSize(STRIP_H + 2)
        p.setFont(small)
        p.setPen(self.palette().windowText().color())
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        for frac, text in ((1.0, "100%"), (0.5, "50%"), (0.0, "0")):
            y = r.top() + (1 - frac) * (r.height() - 2) + 1
            p.drawText(QRectF(0, y - 7, GUTTER_PX - 4, 14), right, text)
        ys = r.bottom() + STRIP_GAP
        p.drawText(QRectF(0, ys - 1, GUTTER_PX - 4, STRIP_H + 2), right, "label")
        p.drawText(QRectF(0, ys + STRIP_H + STRIP_GAP - 1, GUTTER_PX - 4, STRIP_H + 2), right, "speech")
        if self._image is None:
            p.fillRect(r, PLOT_BG)
            p.setPen(QColor("#999"))
            p.drawText(r, Qt.AlignmentFlag.AlignCenter, "the timeline starts with the first scores")
        else:
            p.drawImage(QPointF(r.left(), r.top()), self._image)
        p.setPen(QPen(QColor("#999"), 1))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRect(r)
        if self._right_t is not None:
            y = r.bottom() + 2 * (STRIP_H + STRIP_GAP) + 1
            paint_axis(p, self.time_map(), y, min_px=70.0, earliest=0.0)
        p.end()

    def describe(self, x: float) -> str:
        """What the tooltip says at widget x: the time, the fused read-out then, and the words said."""
        if self._right_t is None:
            return ""
        t = self.time_map().t(x)
        times, probs = self.traces["fused"].since(t - 1.0 / RATE_HZ)
        parts = [f"{t:.1f} s"]
        if len(times) and not np.isnan(probs[0]).any():
            i = int(np.argmax(probs[0]))
            parts.append(f"fused {LABELS[i]} {probs[0][i]:.0%}")
        elif len(times):
            parts.append("nothing fresh to fuse")
        for a, b, label in self.label_spans():
            if a <= t < b:
                parts.append(f"label {label or 'none'}")
        said = [u for u in self._utterances if u.t0 - 0.2 <= t <= u.t1 + 0.2]
        if said:
            mark = "" if said[-1].trusted else " (recogniser unsure)"
            parts.append(f"“{said[-1].text.strip()}”{mark}")
        return " · ".join(parts)

    def event(self, e: QEvent) -> bool:
        if e.type() == QEvent.Type.ToolTip and isinstance(e, QHelpEvent):
            text = self.describe(float(e.pos().x()))
            if text:
                QToolTip.showText(e.globalPos(), text, self)
            else:
                QToolTip.hideText()
            return True
        return super().event(e)
