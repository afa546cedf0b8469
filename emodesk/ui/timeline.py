"""Adding and correcting a recorded session's labels on a timeline.

:class:`LabelTimeline` draws the labels over media time and, beneath them, what
the app read then (the argmax of each fused score record), so a user corrects
labels against what the models saw. It only *asks* for a change
(``relabel_requested``); :class:`LabelTimelineDialog` applies it through
:func:`emodesk.recording.session.relabel`, the same atomic rewrite as
``emodesk sessions label``, and keeps the bytes it replaced so Undo restores
``labels.jsonl`` exactly (relabelling the span back would not: it cannot bring
back changes inside the span or their ``source``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QHelpEvent, QKeyEvent, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from emodesk.errors import EmodeskError, InputError
from emodesk.labels import LABELS
from emodesk.recording import files
from emodesk.recording.format import LABELS_FILE, read_session_json, write_session_json
from emodesk.recording.session import inspect, read_jsonl, read_records, relabel
from emodesk.recording.writer import labels_at
from emodesk.results.tables import label_spans
from emodesk.ui.render.strips import LABEL_COLORS, NO_LABEL_COLOR, TimeMap, paint_axis, paint_span

FUSED_HOLD_S = 1.0  # fused rows come at least once per media second while a member is fresh
DRAG_MIN_PX = 4  # a press and release closer than this is a click: it selects nothing
GUTTER_PX, MARGIN_PX = 64, 24
LABEL_Y, LABEL_H, FUSED_Y, FUSED_H, AXIS_Y = 6, 44, 56, 14, 76
ERRORS = (EmodeskError, OSError, ValueError, KeyError, TypeError)  # what reading a bad session raises

Span = tuple[float, float]


def fused_points(records: Sequence[Mapping[str, Any]]) -> list[tuple[float, str]]:
    """(t, argmax label) of every fused record, in file order (ties go to the earlier label)."""
    out = []
    for r in records:
        probs = r.get("probs")
        if r.get("kind") != "fused" or not isinstance(r.get("t"), (int, float)) or not probs:
            continue
        out.append((float(r["t"]), max(LABELS, key=lambda lab: float(probs.get(lab, 0.0)))))
    return out


class LabelTimeline(QWidget):
    """Label spans over media time, the fused read-out beneath, and a span the user selects."""

    relabel_requested = Signal(float, float, object)  # t0, t1, label (None: no label)
    selection_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(320, AXIS_Y + 24)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("")  # tooltips are built per position in event()
        self._start, self._duration = 0.0, 1.0
        self._changes: list[dict[str, Any]] = []
        self._points: list[tuple[float, str]] = []
        self._spans: list[tuple[float, float, str | None]] = [(0.0, 1.0, None)]
        self._sel: Span | None = None
        self._press_x: float | None = None
        self._drag: Span | None = None

    def sizeHint(self) -> QSize:
        return QSize(800, AXIS_Y + 24)

    # ------------------------------------------------------------ data

    def set_data(
        self,
        duration_s: float,
        label_changes: Sequence[Mapping[str, Any]],
        fused_points: Sequence[tuple[float, str]],
        start_s: float = 0.0,
    ) -> None:
        """Show [start_s, start_s + duration_s] of media time; a selection inside it is kept."""
        self._start, self._duration = float(start_s), max(float(duration_s), 1e-3)
        self._changes = sorted(
            (dict(c) for c in label_changes if isinstance(c.get("t"), (int, float))), key=lambda c: c["t"]
        )
        self._points = sorted(fused_points)
        self._spans = label_spans(self._changes, self._start, self.end)
        if self._sel is not None:
            a, b = max(self._sel[0], self._start), min(self._sel[1], self.end)
            self._set_selection((a, b) if b > a else None)
        self.update()

    @property
    def start(self) -> float:
        return self._start

    @property
    def end(self) -> float:
        return self._start + self._duration

    def fused_points(self) -> list[tuple[float, str]]:
        return list(self._points)

    def spans(self) -> list[tuple[float, float, str | None]]:
        return list(self._spans)

    def selection(self) -> Span | None:
        return self._sel

    def select(self, t0: float, t1: float) -> None:
        """Select media time [t0, t1) (clamped to the session); an empty span clears the selection."""
        a, b = sorted((float(t0), float(t1)))
        a, b = round(max(a, self._start), 3), round(min(b, self.end), 3)
        self._set_selection((a, b) if b > a else None)

    def clear_selection(self) -> None:
        self._set_selection(None)

    def _set_selection(self, sel: Span | None) -> None:
        if sel != self._sel:
            self._sel = sel
            self.selection_changed.emit()
        self.update()

    # ------------------------------------------------------------ mapping

    def _strip(self) -> tuple[float, float]:
        left = float(GUTTER_PX)
        return left, max(float(self.width() - MARGIN_PX) - left, 1.0)

    def t_to_x(self, t: float) -> float:
        left, width = self._strip()
        return left + (t - self._start) / self._duration * width

    def x_to_t(self, x: float) -> float:
        """Media seconds at widget x, clamped to the session."""
        left, width = self._strip()
        t = self._start + (x - left) / width * self._duration
        return min(max(t, self._start), self.end)

    def describe(self, t: float) -> str:
        """What a tooltip says about media time ``t``: its label and the read-out then."""
        read = [lab for pt, lab in self._points if pt <= t < pt + FUSED_HOLD_S]
        label = labels_at(self._changes, t)
        return f"{t:.2f} s · label: {label or 'none'} · read-out: {read[-1] if read else '—'}"

    # ------------------------------------------------------------ input

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return super().mousePressEvent(event)
        self._press_x = event.position().x()
        self._drag = None
        self.setFocus(Qt.FocusReason.MouseFocusReason)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._press_x is None:
            return super().mouseMoveEvent(event)
        x = event.position().x()
        if abs(x - self._press_x) >= DRAG_MIN_PX:
            a, b = sorted((self.x_to_t(self._press_x), self.x_to_t(x)))
            self._drag = (a, b)
            self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._press_x is None or event.button() != Qt.MouseButton.LeftButton:
            return super().mouseReleaseEvent(event)
        x0, x1 = self._press_x, event.position().x()
        self._press_x, self._drag = None, None
        if abs(x1 - x0) < DRAG_MIN_PX:
            self.clear_selection()
        else:
            self.select(self.x_to_t(x0), self.x_to_t(x1))

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        plain = not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        if self._sel is not None and plain and key == Qt.Key.Key_Escape:
            self.clear_selection()
        elif self._sel is not None and plain and Qt.Key.Key_0 <= key <= Qt.Key.Key_0 + len(LABELS):
            k = key - Qt.Key.Key_0
            self.relabel_requested.emit(self._sel[0], self._sel[1], LABELS[k - 1] if k else None)
        else:
            super().keyPressEvent(event)  # unused keys go on to the dialog (Esc closes it)

    def event(self, e: QEvent) -> bool:
        if e.type() == QEvent.Type.ToolTip and isinstance(e, QHelpEvent):
            QToolTip.showText(e.globalPos(), self.describe(self.x_to_t(e.pos().x())), self)
            return True
        return super().event(e)

    # ------------------------------------------------------------ painting

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        left, width = self._strip()
        p.fillRect(self.rect(), self.palette().window())
        p.setPen(self.palette().windowText().color())
        align = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        p.drawText(QRectF(0, LABEL_Y, left - 6, LABEL_H), align, "labels")
        p.drawText(QRectF(0, FUSED_Y - 2, left - 6, FUSED_H + 4), align, "read-out")
        for a, b, label in self._spans:
            self._paint_span(p, a, b, LABEL_Y, LABEL_H, label)
        p.fillRect(QRectF(left, FUSED_Y, width, FUSED_H), QColor("#f2f2f2"))
        for i, (t, label) in enumerate(self._points):
            nxt = self._points[i + 1][0] if i + 1 < len(self._points) else self.end
            self._paint_span(p, t, min(nxt, t + FUSED_HOLD_S, self.end), FUSED_Y, FUSED_H, label)
        p.setPen(QPen(QColor("#555"), 1))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRect(QRectF(left, LABEL_Y, width, LABEL_H))
        p.drawRect(QRectF(left, FUSED_Y, width, FUSED_H))
        self._paint_axis(p, left, width)
        sel = self._drag or self._sel
        if sel is not None:
            x0, x1 = self.t_to_x(sel[0]), self.t_to_x(sel[1])
            box = QRectF(x0, LABEL_Y - 3, max(x1 - x0, 1.0), FUSED_Y + FUSED_H - LABEL_Y + 6)
            p.fillRect(box, QColor(30, 110, 230, 70))
            p.setPen(QPen(QColor("#1e6ee6"), 2))
            p.drawRect(box)
        p.end()

    def _time_map(self) -> TimeMap:
        left, width = self._strip()
        return TimeMap(self._start, self.end, left, width)

    def _paint_span(self, p: QPainter, a: float, b: float, y: float, h: float, label: str | None) -> None:
        paint_span(p, self._time_map(), a, b, y, h, label)

    def _paint_axis(self, p: QPainter, left: float, width: float) -> None:
        paint_axis(
            p, self._time_map(), AXIS_Y, text=lambda t, step: f"{t:g} s" if step >= 1 else f"{t:.1f} s"
        )


_ABSENT = object()  # session.json had no "labels" entry


@dataclass
class _Edit:
    """One applied change: the bytes it replaced and wrote, and session.json's labels entry before it."""

    before: bytes | None  # None: labels.jsonl did not exist
    after: bytes | None
    labels_doc: Any  # restored as it was (``_ABSENT``: removed)
    what: str


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _span_text(t0: float, t1: float) -> str:
    return f"{t0:.2f}–{t1:.2f} s"


class LabelTimelineDialog(QDialog):
    """Edit one session's labels: select a span, press 1–7 or 0 (or a button), undo.

    Raises :class:`InputError` before any window exists when the session is
    being recorded or its ``session.json`` cannot be read.
    """

    def __init__(self, folder: Path | str, parent: QWidget | None = None) -> None:
        self.folder = Path(folder)
        report = inspect(self.folder)
        if "state" not in report.info:
            raise InputError(f"{self.folder}: {'; '.join(report.problems)}")
        if report.info.get("live"):
            raise InputError(f"{self.folder.name} is being recorded right now; edit labels after it stops")
        super().__init__(parent)
        self.setWindowTitle(f"Labels — {report.info.get('id', self.folder.name)}")
        self.resize(900, 230)
        self.undo_stack: list[_Edit] = []
        self.last_action = "opened"
        self.problems: list[str] = []
        self.changes: list[dict[str, Any]] = []
        lay = QVBoxLayout(self)
        hint = QLabel(
            "Drag across the strip to select a span; 1–7 or a button sets its label, 0 clears it, "
            "Esc drops the selection. Beneath the labels: what the app read then (fused). "
            "Times are the session's media seconds, as in labels.jsonl."
        )
        hint.setWordWrap(True)
        lay.addWidget(hint)
        self.timeline = LabelTimeline(self)
        lay.addWidget(self.timeline)
        lay.addStretch(1)
        row = QHBoxLayout()
        self.label_buttons: dict[str | None, QPushButton] = {}
        for k, label in [*((k + 1, lab) for k, lab in enumerate(LABELS)), (0, None)]:
            b = QPushButton(f"{k} {label or 'no label'}")
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys keep going to the timeline
            b.setAutoDefault(False)  # Enter must not set a label
            color = LABEL_COLORS.get(label or "", NO_LABEL_COLOR)
            fg = "#000" if label in (None, "happy", "neutral", "surprise") else "#fff"
            b.setStyleSheet(f"QPushButton {{ background: {color}; color: {fg}; padding: 3px 6px; }}")
            b.clicked.connect(lambda _c=False, lab=label: self.apply_to_selection(lab))
            row.addWidget(b)
            self.label_buttons[label] = b
        row.addStretch(1)
        self.undo_button = QPushButton("Undo")
        self.undo_button.setShortcut("Ctrl+Z")
        self.undo_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.undo_button.setAutoDefault(False)
        self.undo_button.clicked.connect(self.undo)
        row.addWidget(self.undo_button)
        close = QPushButton("Close")
        close.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        close.setAutoDefault(False)
        close.clicked.connect(self.accept)
        row.addWidget(close)
        lay.addLayout(row)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.timeline.relabel_requested.connect(self.apply)
        self.timeline.selection_changed.connect(self._update_status)
        end, dur = report.info.get("end_t"), report.info.get("duration_s")
        self._start: float | None = float(end - dur) if end is not None and dur is not None else None
        self._end: float | None = float(end) if end is not None else None
        self._scores_problem = ""
        try:
            self._points = fused_points(read_records(self.folder))
        except ERRORS as e:
            self._points = []
            self._scores_problem = f"scores.jsonl cannot be read ({e})"
        self.reload()
        self.timeline.setFocus()

    # ------------------------------------------------------------ state

    def reload(self) -> None:
        """Read labels.jsonl again and redraw (the video, audio and scores do not change)."""
        self.problems = [self._scores_problem] if self._scores_problem else []
        try:
            objs, bad, torn = read_jsonl(self.folder / LABELS_FILE)
        except OSError as e:
            objs, bad, torn = [], [], False
            self.problems.append(f"{LABELS_FILE} cannot be read ({e})")
        self.changes = [c for c in objs if isinstance(c.get("t"), (int, float))]
        if torn or bad:
            what = "the last line is torn" if torn else f"line(s) {', '.join(map(str, bad[:5]))} unreadable"
            self.problems.append(f"{LABELS_FILE}: {what}; Repair the session in the sessions browser first")
        ts = [float(c["t"]) for c in self.changes] + [t for t, _ in self._points]
        start = self._start if self._start is not None else float(int(min(ts, default=0.0)))
        end = max([self._end if self._end is not None else start, *ts])
        self.timeline.set_data(max(end - start, 1.0), self.changes, self._points, start_s=start)
        self._update_status()

    def _update_status(self) -> None:
        sel = self.timeline.selection()
        for b in self.label_buttons.values():
            b.setEnabled(sel is not None)
        self.undo_button.setEnabled(bool(self.undo_stack))
        parts = [
            f"selected {_span_text(*sel)} ({sel[1] - sel[0]:.2f} s)" if sel else "no span selected",
            f"{len(self.changes)} label change(s)",
            self.last_action,
        ]
        parts += [f"⚠ {p}" for p in self.problems]
        self.status.setText(" · ".join(parts))

    def _fail(self, what: str, e: BaseException) -> None:
        self.last_action = f"{what} failed: {e}"
        self._update_status()
        QMessageBox.warning(self, "Labels", f"{what} failed: {e}")

    # ------------------------------------------------------------ editing

    def apply_to_selection(self, label: str | None) -> None:
        sel = self.timeline.selection()
        if sel is None:
            self.last_action = "select a span first (drag across the strip)"
            self._update_status()
            return
        self.apply(sel[0], sel[1], label)

    def apply(self, t0: float, t1: float, label: str | None) -> None:
        """Set ``label`` on [t0, t1) through relabel; keep what it replaced for Undo."""
        path = self.folder / LABELS_FILE
        what = f"{label or 'no label'} on {_span_text(t0, t1)}"
        before = _read_bytes(path)
        labels_doc: Any = _ABSENT
        try:
            labels_doc = copy.deepcopy(read_session_json(self.folder).get("labels", _ABSENT))
            relabel(self.folder, t0, t1, label)
        except ERRORS as e:
            after = _read_bytes(path)
            if after != before:  # written, then failed (e.g. session.json on a full disk): undoable
                self.undo_stack.append(_Edit(before, after, labels_doc, what))
            self.reload()
            self._fail(f"setting {what}", e)
            return
        self.undo_stack.append(_Edit(before, _read_bytes(path), labels_doc, what))
        self.last_action = f"set {what}"
        self.reload()

    def undo(self) -> None:
        """Put back labels.jsonl as it was before the last change, byte for byte, atomically."""
        if not self.undo_stack:
            return
        edit = self.undo_stack[-1]
        path = self.folder / LABELS_FILE
        try:
            current = _read_bytes(path)
            if current not in (edit.after, edit.before):  # before: an undo that failed at session.json
                raise InputError(f"{LABELS_FILE} was changed by something else since; reopen the editor")
            doc = read_session_json(self.folder)
            if doc.get("state") == "recording" and inspect(self.folder).info.get("live"):
                raise InputError(f"{self.folder.name} is being recorded right now")
            if current == edit.before:
                pass
            elif edit.before is None:
                path.unlink()
            else:
                files.replace_atomic(path, edit.before)
            if edit.labels_doc is _ABSENT:
                doc.pop("labels", None)
            else:
                doc["labels"] = edit.labels_doc
            write_session_json(self.folder, doc)
        except ERRORS as e:
            self._fail("undo", e)
            return
        self.undo_stack.pop()
        self.last_action = f"undid {edit.what}"
        self.reload()
