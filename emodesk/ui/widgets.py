"""The main window's building blocks: video view, probability panels, transcript.

Each widget is fed plain data by the window's timer and repaints only when
that data changed; none of them touches a worker or a model.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QLabel,
    QProgressBar,
    QSizePolicy,
    QStackedWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from emodesk.labels import LABELS, N_LABELS
from emodesk.types import Frame, Transcript

LABEL_COLORS: dict[str, str] = {
    "angry": "#d64541",
    "disgust": "#7a9a01",
    "fear": "#8e44ad",
    "happy": "#f1c40f",
    "neutral": "#95a5a6",
    "sad": "#3477db",
    "surprise": "#e67e22",
}

Box = tuple[float, float, float, float]


def bgr_to_qimage(image: np.ndarray) -> QImage:
    """Wrap a BGR uint8 ``(H, W, 3)`` array as a QImage without a per-pixel loop.

    The QImage borrows the array's memory: keep the array alive while the
    image is used (``VideoView`` holds both).
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a BGR uint8 (H, W, 3) frame, got shape {image.shape} dtype {image.dtype}")
    a = np.ascontiguousarray(image)
    h, w = a.shape[:2]
    return QImage(a.data, w, h, int(a.strides[0]), QImage.Format.Format_BGR888)


class VideoView(QWidget):
    """The newest frame, scaled to fit with its aspect kept, with a box and label per tracked face."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(320, 240)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._array: np.ndarray | None = None
        self._image: QImage | None = None
        self._frame_index = -1
        self._faces: list[tuple[int | None, Box, str, float]] = []
        self._placeholder = "starting…"
        self.frames_shown = 0

    @property
    def frame_index(self) -> int:
        return self._frame_index

    @property
    def faces(self) -> list[tuple[int | None, Box, str, float]]:
        """What is drawn: (track id, box in source pixels, top label, its probability)."""
        return list(self._faces)

    def set_placeholder(self, text: str) -> None:
        if text != self._placeholder:
            self._placeholder = text
            self.update()

    def set_frame(self, frame: Frame | None, faces: Sequence[tuple[int | None, Box, np.ndarray]]) -> None:
        changed = False
        if frame is not None and frame.index != self._frame_index:
            self._array = np.ascontiguousarray(frame.image)
            self._image = bgr_to_qimage(self._array)
            self._frame_index = frame.index
            self.frames_shown += 1
            changed = True
        drawn = [(tid, box, LABELS[int(np.argmax(p))], float(np.max(p))) for tid, box, p in faces]
        if drawn != self._faces:
            self._faces = drawn
            changed = True
        if changed:
            self.update()

    def _target(self) -> QRectF:
        assert self._image is not None
        iw, ih = self._image.width(), self._image.height()
        scale = min(self.width() / iw, self.height() / ih)
        w, h = iw * scale, ih * scale
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#111"))
        if self._image is None:
            p.setPen(QColor("#bbb"))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self._placeholder)
            p.end()
            return
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        target = self._target()
        p.drawImage(target, self._image)
        s = target.width() / self._image.width()
        font = QFont(self.font())
        font.setPointSizeF(max(9.0, 11.0 * min(1.5, s)))
        font.setBold(True)
        p.setFont(font)
        fm = p.fontMetrics()
        for tid, (x, y, w, h), label, prob in self._faces:
            color = QColor(LABEL_COLORS.get(label, "#2ecc71"))
            r = QRectF(target.x() + x * s, target.y() + y * s, w * s, h * s)
            p.setPen(QPen(color, 3))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRect(r)
            text = f"#{tid if tid is not None else '?'} {label} {prob:.0%}"
            tw, th = fm.horizontalAdvance(text) + 8, fm.height() + 4
            ty = r.y() - th if r.y() - th >= target.y() else r.y()
            bg = QRectF(r.x(), ty, tw, th)
            p.fillRect(bg, color)
            p.setPen(QColor("#000" if label in ("happy", "neutral", "surprise") else "#fff"))
            p.drawText(bg, Qt.AlignmentFlag.AlignCenter, text)
        p.end()


class ProbabilityPanel(QFrame):
    """One modality's bars over the seven labels, or a message instead of bars.

    A slot without a model shows its message ("no model installed") and no
    bars at all: an empty or made-up bar would read as a real score.
    """

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setObjectName(f"panel-{title.lower()}")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.setSpacing(3)
        self.title = QLabel(f"<b>{html.escape(title)}</b>")
        self.caption = QLabel("")
        self.caption.setStyleSheet("color: #777; font-size: 10px;")
        self.caption.setWordWrap(True)
        lay.addWidget(self.title)
        lay.addWidget(self.caption)
        self.stack = QStackedWidget()
        bars_page = QWidget()
        grid = QGridLayout(bars_page)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setVerticalSpacing(2)
        self.bars: list[QProgressBar] = []
        self.percents: list[QLabel] = []
        for i, lab in enumerate(LABELS):
            name = QLabel(lab)
            name.setMinimumWidth(56)
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setTextVisible(False)
            bar.setFixedHeight(12)
            bar.setStyleSheet(
                "QProgressBar { border: 1px solid #ccc; border-radius: 2px; background: #f4f4f4; }"
                f"QProgressBar::chunk {{ background: {LABEL_COLORS[lab]}; }}"
            )
            pct = QLabel("")
            pct.setMinimumWidth(34)
            pct.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            grid.addWidget(name, i, 0)
            grid.addWidget(bar, i, 1)
            grid.addWidget(pct, i, 2)
            self.bars.append(bar)
            self.percents.append(pct)
        self.message = QLabel("loading…")
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #888; font-style: italic;")
        self.stack.addWidget(bars_page)
        self.stack.addWidget(self.message)
        self.stack.setCurrentIndex(1)
        lay.addWidget(self.stack, 1)
        self._probs: np.ndarray | None = None

    @property
    def showing_bars(self) -> bool:
        return self.stack.currentIndex() == 0

    def values(self) -> np.ndarray | None:
        """The probabilities on show, or None while a message is shown instead."""
        return None if self._probs is None else self._probs.copy()

    def message_text(self) -> str | None:
        return None if self.showing_bars else self.message.text()

    def set_probs(self, probs: np.ndarray, caption: str = "") -> None:
        p = np.asarray(probs, dtype=np.float64)
        if p.shape != (N_LABELS,):
            raise ValueError(f"probabilities must have shape ({N_LABELS},), got {p.shape}")
        if self._probs is None or not np.array_equal(p, self._probs):
            self._probs = p.copy()
            for bar, pct, v in zip(self.bars, self.percents, p, strict=True):
                bar.setValue(round(float(v) * 1000))
                pct.setText(f"{v:.0%}")
        if self.stack.currentIndex() != 0:
            self.stack.setCurrentIndex(0)
        self._set_caption(caption)

    def set_message(self, text: str, caption: str = "") -> None:
        self._probs = None
        if self.message.text() != text:
            self.message.setText(text)
        if self.stack.currentIndex() != 1:
            self.stack.setCurrentIndex(1)
        self._set_caption(caption)

    def _set_caption(self, caption: str) -> None:
        if self.caption.text() != caption:
            self.caption.setText(caption)


class FusedHeadline(QWidget):
    """The fused emotion and its confidence in large type."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 0, 4, 0)
        lay.setSpacing(0)
        self.label = QLabel("—")
        font = QFont(self.font())
        font.setPointSize(30)
        font.setBold(True)
        self.label.setFont(font)
        self.detail = QLabel("waiting for scores…")
        self.detail.setStyleSheet("color: #666;")
        lay.addWidget(self.label)
        lay.addWidget(self.detail)

    def set_fused(self, probs: np.ndarray | None, members: Sequence[str] = ()) -> None:
        if probs is None:
            text, color, detail = "—", "#999", "no fresh scores"
        else:
            i = int(np.argmax(probs))
            text = f"{LABELS[i].upper()}  {float(probs[i]):.0%}"
            color = LABEL_COLORS[LABELS[i]]
            detail = "fused from " + (", ".join(members) if members else "—")
        if self.label.text() != text:
            self.label.setText(text)
            self.label.setStyleSheet(f"color: {color};")
        if self.detail.text() != detail:
            self.detail.setText(detail)


class TranscriptView(QTextBrowser):
    """Final lines in black, the partial line being spoken in grey italics."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setOpenLinks(False)
        self.setPlaceholderText("The transcript appears here when someone speaks.")
        self._key: tuple[int, int] | None = None
        self.lines: list[str] = []
        self.partial_text: str | None = None

    def set_transcripts(
        self, finals: Sequence[Transcript], partial: Transcript | None, version: int, max_lines: int = 50
    ) -> None:
        key = (version, len(finals))
        if key == self._key:
            return
        self._key = key
        shown = list(finals)[-max_lines:]
        self.lines = [t.text for t in shown]
        self.partial_text = partial.text if partial is not None and partial.text.strip() else None
        rows = [
            f'<p style="margin:2px 0"><span style="color:#888">{t.t0:6.1f} s</span>&nbsp; '
            + (
                f"{html.escape(t.text)}</p>"
                if t.trusted
                else f'<span style="color:#999">{html.escape(t.text)}</span> '
                f'<span style="color:#b36b00">[not read for emotion: {html.escape(t.reason)}]</span></p>'
            )
            for t in shown
        ]
        if self.partial_text is not None:
            assert partial is not None
            more = "" if self.partial_text.endswith(("...", "…")) else "…"  # still being spoken
            rows.append(
                f'<p style="margin:2px 0"><span style="color:#aaa">{partial.t0:6.1f} s</span>&nbsp; '
                f'<i style="color:#999">{html.escape(self.partial_text)}{more}</i></p>'
            )
        self.setHtml("".join(rows))
        sb = self.verticalScrollBar()
        sb.setValue(sb.maximum())
