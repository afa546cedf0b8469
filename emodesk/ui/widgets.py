"""The main window's building blocks: video view, probability panels, transcript.

Each widget is fed plain data by the window's timer and repaints only when
that data changed; none of them touches a worker or a model.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QStackedWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from emodesk.labels import LABELS, N_LABELS
from emodesk.types import Frame, ModalityScores, Transcript
from emodesk.ui.render.strips import LABEL_COLORS

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
    def aspect(self) -> float | None:
        """Width / height of the picture on show (None before the first frame)."""
        if self._image is None or self._image.height() == 0:
            return None
        return self._image.width() / self._image.height()

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
        p.fillRect(self.rect(), QColor("#2b2b2b"))
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


class ElidedLabel(QLabel):
    """One line that never widens its layout: cut with "…" when narrow, the whole text in its tooltip."""

    def __init__(self, text: str = "", parent: QWidget | None = None, *, tooltip: str | None = None) -> None:
        super().__init__(text, parent)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self._tooltip = tooltip
        self.setWordWrap(False)
        self._sync_tooltip()

    def set_tooltip(self, tooltip: str | None) -> None:
        """What the tooltip says (default: the whole text); the text itself is shown as far as it fits."""
        self._tooltip = tooltip
        self._sync_tooltip()

    def setText(self, text: str) -> None:
        if text != self.text():
            super().setText(text)
            self._sync_tooltip()

    def _sync_tooltip(self) -> None:
        tip = self._tooltip if self._tooltip is not None else self.text()
        if tip != self.toolTip():
            self.setToolTip(tip)

    def minimumSizeHint(self) -> QSize:
        return QSize(20, self.fontMetrics().height() + 2)

    def sizeHint(self) -> QSize:
        return QSize(self.fontMetrics().horizontalAdvance(self.text()) + 6, self.fontMetrics().height() + 2)

    def elided(self) -> bool:
        return self.fontMetrics().horizontalAdvance(self.text()) > self.contentsRect().width()

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        r = self.contentsRect()
        text = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight, r.width())
        p.setPen(self.palette().windowText().color())
        p.drawText(r, int(self.alignment() | Qt.AlignmentFlag.AlignVCenter), text)
        p.end()


BAR_ROW_MIN_PX = 12  # below this a panel draws one stacked bar instead of seven rows


class BarsView(QWidget):
    """Seven labelled bars, or one stacked bar when the panel is too short for seven rows.

    Greyed (``stale``) bars keep their values visible but say they are old:
    the fusion no longer uses them.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(18)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
        self.probs: np.ndarray | None = None
        self.stale = False

    @property
    def compact(self) -> bool:
        return self.height() < N_LABELS * BAR_ROW_MIN_PX

    def set_values(self, probs: np.ndarray | None, stale: bool = False) -> None:
        same = (probs is None and self.probs is None) or (
            probs is not None and self.probs is not None and np.array_equal(probs, self.probs)
        )
        if not same or stale != self.stale:
            self.probs = None if probs is None else np.array(probs, dtype=np.float64)
            self.stale = stale
            self.update()

    def _color(self, label: str) -> QColor:
        c = QColor(LABEL_COLORS[label])
        return QColor("#b8b8b8") if self.stale else c

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        if self.probs is None:
            p.end()
            return
        w, h = float(self.width()), float(self.height())
        fm = p.fontMetrics()
        text_color = QColor("#999") if self.stale else self.palette().windowText().color()
        if self.compact:
            # one bar split into the seven labels; the top label and its share written after it
            top = int(np.argmax(self.probs))
            note = f"{LABELS[top]} {self.probs[top]:.0%}"
            tw = fm.horizontalAdvance("surprise 100%") + 8
            bar = QRectF(0, max(0.0, (h - 14) / 2), max(w - tw, 20.0), min(14.0, h))
            x = bar.left()
            for lab, v in zip(LABELS, self.probs, strict=True):
                seg = bar.width() * float(v)
                p.fillRect(QRectF(x, bar.top(), seg, bar.height()), self._color(lab))
                x += seg
            p.setPen(QPen(QColor("#bbb"), 1))
            p.drawRect(bar)
            p.setPen(text_color)
            p.drawText(QRectF(bar.right() + 6, 0, tw, h), int(Qt.AlignmentFlag.AlignVCenter), note)
            p.end()
            return
        row = h / N_LABELS
        name_w = fm.horizontalAdvance("surprise") + 8
        pct_w = fm.horizontalAdvance("100%") + 6
        bar_h = max(6.0, min(14.0, row - 4))
        for i, (lab, v) in enumerate(zip(LABELS, self.probs, strict=True)):
            y = i * row
            p.setPen(text_color)
            p.drawText(QRectF(0, y, name_w, row), int(Qt.AlignmentFlag.AlignVCenter), lab)
            track = QRectF(name_w, y + (row - bar_h) / 2, max(w - name_w - pct_w, 10.0), bar_h)
            p.fillRect(track, QColor("#f1f1f1"))
            p.fillRect(QRectF(track.left(), track.top(), track.width() * float(v), bar_h), self._color(lab))
            p.setPen(QPen(QColor("#cfcfcf"), 1))
            p.drawRect(track)
            p.setPen(text_color)
            right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
            p.drawText(QRectF(w - pct_w, y, pct_w, row), int(right), f"{v:.0%}")
        p.end()


class ProbabilityPanel(QFrame):
    """One modality's bars over the seven labels, or a message instead of bars.

    A slot without a model shows its message ("no model installed") and no
    bars at all: an empty or made-up bar would read as a real score. Scores
    past the fusion's freshness cut-off stay visible but grey, and the
    caption says why.
    """

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setObjectName(f"panel-{title.lower()}")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 3, 6, 3)
        lay.setSpacing(1)
        top = QHBoxLayout()
        top.setSpacing(6)
        self.title = QLabel(f"<b>{html.escape(title)}</b>")
        self.title.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.caption = ElidedLabel("")
        self.caption.setStyleSheet("color: #777;")
        top.addWidget(self.title)
        top.addWidget(self.caption, 1)
        lay.addLayout(top)
        self.stack = QStackedWidget()
        self.stack.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
        self.bars_view = BarsView()
        self.message = QLabel("loading…")
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        self.message.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.message.setStyleSheet("color: #888; font-style: italic;")
        self.stack.addWidget(self.bars_view)
        self.stack.addWidget(self.message)
        self.stack.setCurrentIndex(1)
        lay.addWidget(self.stack, 1)
        self._probs: np.ndarray | None = None
        self.stale_reason: str | None = None

    def minimumSizeHint(self) -> QSize:
        return QSize(150, 44)

    @property
    def showing_bars(self) -> bool:
        return self.stack.currentIndex() == 0

    def values(self) -> np.ndarray | None:
        """The probabilities on show, or None while a message is shown instead."""
        return None if self._probs is None else self._probs.copy()

    def message_text(self) -> str | None:
        return None if self.showing_bars else self.message.text()

    def set_probs(self, probs: np.ndarray, caption: str = "", *, stale: str | None = None) -> None:
        """Show bars; ``stale`` (why they are old) greys them and leads the caption."""
        p = np.asarray(probs, dtype=np.float64)
        if p.shape != (N_LABELS,):
            raise ValueError(f"probabilities must have shape ({N_LABELS},), got {p.shape}")
        self._probs = p.copy()
        self.stale_reason = stale
        self.bars_view.set_values(p, stale=stale is not None)
        if self.stack.currentIndex() != 0:
            self.stack.setCurrentIndex(0)
        self._set_caption(f"{stale} · {caption}" if stale and caption else (stale or caption))
        self.caption.setStyleSheet("color: #b36b00;" if stale else "color: #777;")

    def set_message(self, text: str, caption: str = "") -> None:
        self._probs = None
        self.stale_reason = None
        self.bars_view.set_values(None)
        if self.message.text() != text:
            self.message.setText(text)
            self.message.setToolTip(text)
        if self.stack.currentIndex() != 1:
            self.stack.setCurrentIndex(1)
        self._set_caption(caption)
        self.caption.setStyleSheet("color: #777;")

    def _set_caption(self, caption: str) -> None:
        self.caption.setText(caption)


class FusedHeadline(QWidget):
    """The fused emotion and its confidence in large type; which members and weights in a tooltip."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 0, 4, 0)
        lay.setSpacing(10)
        self.label = QLabel("—")
        font = QFont(self.font())
        font.setPointSize(22)
        font.setBold(True)
        self.label.setFont(font)
        self.label.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.label.setMinimumWidth(QFontMetrics(font).horizontalAdvance("SURPRISE 100%") + 4)
        self.detail = ElidedLabel("waiting for scores…")
        self.detail.setStyleSheet("color: #666;")
        lay.addWidget(self.label)
        lay.addWidget(self.detail, 1)

    def set_fused(
        self,
        probs: np.ndarray | None,
        members: Sequence[str] = (),
        weights: Mapping[str, float] | None = None,
        modalities: Sequence[str] = (),
    ) -> None:
        """The read-out; ``modalities`` (face, voice, text) name what was fused, in that order."""
        if probs is None:
            text, color, detail, tip = "—", "#999", "nothing fresh to fuse", ""
        else:
            i = int(np.argmax(probs))
            text = f"{LABELS[i].upper()} {float(probs[i]):.0%}"
            color = LABEL_COLORS[LABELS[i]]
            kinds = sorted(set(modalities), key=lambda k: MODALITY_ORDER.get(k, 9))
            names = " + ".join(MODALITY_NAMES.get(k, k) for k in kinds)
            detail = f"fused: {names} · {len(members)} member(s)" if names else f"{len(members)} member(s)"
            w = dict(weights or {})
            tip = "\n".join(f"{m}: weight {w[m]:.3f}" if m in w else m for m in members)
        if self.label.text() != text:
            self.label.setText(text)
            self.label.setStyleSheet(f"color: {color};")
        self.detail.setText(detail)
        self.detail.set_tooltip(tip or None)


MODALITY_ORDER = {"face": 0, "voice": 1, "text": 2}
MODALITY_NAMES = {"face": "face", "voice": "voice", "text": "words"}


class TranscriptView(QTextBrowser):
    """One row per utterance: when it was said, the words, its voice and words emotion.

    A line the recogniser doubts is grey and marked (its words are not read for
    emotion); the partial line being spoken is grey italics.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setOpenLinks(False)
        self.setPlaceholderText("The transcript appears here when someone speaks.")
        self._key: tuple[int, int, int] | None = None
        self.lines: list[str] = []
        self.tags: list[str] = []
        self.partial_text: str | None = None

    def set_transcripts(
        self,
        finals: Sequence[Transcript],
        partial: Transcript | None,
        version: int,
        max_lines: int = 50,
        scores: Sequence[ModalityScores] = (),
    ) -> None:
        key = (version, len(finals), len(scores))
        if key == self._key:
            return
        self._key = key
        shown = list(finals)[-max_lines:]
        self.lines = [t.text for t in shown]
        self.tags = [utterance_tags(t, scores) for t in shown]
        self.partial_text = partial.text if partial is not None and partial.text.strip() else None
        rows = []
        for t, tags in zip(shown, self.tags, strict=True):
            said = (
                html.escape(t.text)
                if t.trusted
                else f'<span style="color:#999">{html.escape(t.text)}</span> '
                '<span style="color:#b36b00">[recogniser unsure — not read for emotion: '
                f"{html.escape(t.reason)}]</span>"
            )
            chips = f' <span style="color:#555">{html.escape(tags)}</span>' if tags else ""
            rows.append(
                f'<p style="margin:2px 0"><span style="color:#888">{t.t0:6.1f} s</span>&nbsp; '
                f"{said}{chips}</p>"
            )
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


def utterance_tags(t: Transcript, scores: Sequence[ModalityScores]) -> str:
    """``[voice angry 62%] [words sad 80%]`` for the scores of one utterance (matched by its span)."""
    out = []
    for kind in ("voice", "text"):
        mine = [
            s
            for s in scores
            if s.kind == kind
            and s.t0 is not None
            and abs(s.t0 - t.t0) < 1e-6
            and abs((s.t1 or s.t) - t.t1) < 1e-6
        ]
        if not mine or (kind == "text" and not t.trusted):
            continue
        p = np.mean([s.probs for s in mine], axis=0)
        i = int(np.argmax(p))
        out.append(f"[{MODALITY_NAMES[kind]} {LABELS[i]} {p[i]:.0%}]")
    return " ".join(out)
