"""The label timeline: select a span with the mouse, label it with 1–7 / 0, undo, open it from the browser.

Every edit is checked in the session's files (``labels.jsonl``, ``session.json``),
which is what export and retraining read.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from emodesk.errors import InputError
from emodesk.labels import LABELS
from emodesk.recording.format import LABELS_FILE, read_session_json
from emodesk.recording.session import read_labels, read_records, relabel
from emodesk.recording.writer import SessionMeta, SessionWriter, labels_at
from emodesk.ui import sessions_dialog as sd
from emodesk.ui import timeline as tl
from emodesk.ui.widgets import LABEL_COLORS

FUSED = ["angry", "angry", "sad", "sad", "sad", "happy", "surprise", "surprise", "fear", "neutral"]


def _start_session(parent: Path, notes: str = "") -> tuple[SessionWriter, Path]:
    """A 10 s session, still open: happy from 0 s, sad from 6 s, one fused row per second."""
    w = SessionWriter(parent, SessionMeta(source="test", notes=notes))
    path = w.start(0.0)
    w.add_audio(np.zeros(16000 * 10, np.float32), 0.0)
    w.set_label("happy", 0.0)
    w.set_label("sad", 6.0)
    for k, lab in enumerate(FUSED):
        probs = {x: (0.64 if x == lab else 0.06) for x in LABELS}
        w.add_record({"t": k + 0.5, "kind": "fused", "probs": probs})
        w.add_record({"t": k + 0.5, "kind": "face", "model": "m", "probs": probs, "track": 1})
    return w, path


def _session(parent: Path, notes: str = "") -> Path:
    w, path = _start_session(parent, notes)
    w.stop(10.0)
    return path


@pytest.fixture
def warnings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Message boxes the editor and the browser show (they would block a test)."""
    shown: list[str] = []
    for mod in (tl, sd):
        monkeypatch.setattr(mod.QMessageBox, "warning", lambda _parent, _title, text: shown.append(text))
    return shown


def _dialog(qtbot: Any, path: Path) -> tl.LabelTimelineDialog:
    dlg = tl.LabelTimelineDialog(path)
    qtbot.addWidget(dlg)
    dlg.show()
    qtbot.waitExposed(dlg)
    return dlg


def test_a_drag_selects_the_span_under_the_mouse_and_a_click_selects_nothing(qtbot: Any) -> None:
    w = tl.LabelTimeline()
    qtbot.addWidget(w)
    w.set_data(10.0, [{"t": 0.0, "label": "happy"}], [(0.5, "sad")])
    w.resize(600, w.sizeHint().height())
    w.show()
    qtbot.waitExposed(w)
    y = tl.LABEL_Y + tl.LABEL_H // 2
    x0, x1 = round(w.t_to_x(2.0)), round(w.t_to_x(5.0))
    qtbot.mousePress(w, Qt.MouseButton.LeftButton, pos=QPoint(x0, y))
    qtbot.mouseMove(w, QPoint((x0 + x1) // 2, y))
    qtbot.mouseMove(w, QPoint(x1, y))
    qtbot.mouseRelease(w, Qt.MouseButton.LeftButton, pos=QPoint(x1, y))
    sel = w.selection()
    assert sel is not None
    assert sel == pytest.approx((w.x_to_t(x0), w.x_to_t(x1)), abs=1e-3)
    assert sel == pytest.approx((2.0, 5.0), abs=10.0 / 500)  # within a pixel of the times aimed at
    # dragging right to left selects the same span
    qtbot.mousePress(w, Qt.MouseButton.LeftButton, pos=QPoint(x1, y))
    qtbot.mouseRelease(w, Qt.MouseButton.LeftButton, pos=QPoint(x0, y))
    assert w.selection() == sel
    qtbot.mouseClick(w, Qt.MouseButton.LeftButton, pos=QPoint(x0 + 40, y))
    assert w.selection() is None
    qtbot.mousePress(w, Qt.MouseButton.LeftButton, pos=QPoint(x0, y))  # a click with a hand's jitter
    qtbot.mouseRelease(w, Qt.MouseButton.LeftButton, pos=QPoint(x0 + 2, y))
    assert w.selection() is None
    w.select(1.0, 3.0)
    qtbot.keyClick(w, Qt.Key.Key_Escape)
    assert w.selection() is None


def test_key_3_labels_the_span_fear_and_0_clears_a_span(qtbot: Any, tmp_path: Path) -> None:
    path = _session(tmp_path)
    dlg = _dialog(qtbot, path)
    dlg.timeline.select(2.0, 4.0)
    qtbot.keyClick(dlg.timeline, Qt.Key.Key_3)
    changes = read_labels(path)
    assert labels_at(changes, 1.99) == "happy"
    assert labels_at(changes, 2.0) == labels_at(changes, 3.0) == labels_at(changes, 3.999) == "fear"
    assert labels_at(changes, 4.0) == "happy"  # the label that was in force resumes at the span's end
    assert labels_at(changes, 6.5) == "sad"
    assert read_session_json(path)["labels"]["changes"] == len(changes) == 4
    assert "fear on 2.00–4.00 s" in dlg.status.text() and "4 label change(s)" in dlg.status.text()
    assert dlg.timeline.spans()[1] == (2.0, 4.0, "fear")

    dlg.timeline.select(5.0, 7.0)
    qtbot.keyClick(dlg.timeline, Qt.Key.Key_0)
    changes = read_labels(path)
    assert labels_at(changes, 4.5) == "happy"
    assert labels_at(changes, 5.0) is None and labels_at(changes, 6.5) is None
    assert labels_at(changes, 7.0) == "sad"
    assert "no label on 5.00–7.00 s" in dlg.status.text()

    dlg.timeline.select(8.0, 9.0)  # the buttons do what the keys do
    dlg.label_buttons["surprise"].click()
    assert labels_at(read_labels(path), 8.5) == "surprise"


def test_undo_restores_labels_and_session_json_byte_for_byte(qtbot: Any, tmp_path: Path) -> None:
    path = _session(tmp_path)
    labels_file = path / LABELS_FILE
    original, original_doc = labels_file.read_bytes(), read_session_json(path)
    dlg = _dialog(qtbot, path)
    assert not dlg.undo_button.isEnabled()
    dlg.timeline.select(2.0, 4.0)
    qtbot.keyClick(dlg.timeline, Qt.Key.Key_3)
    after_first = labels_file.read_bytes()
    dlg.timeline.select(1.0, 8.0)  # swallows the span just set and the change to sad at 6 s
    qtbot.keyClick(dlg.timeline, Qt.Key.Key_0)
    assert labels_file.read_bytes() not in (original, after_first)
    qtbot.mouseClick(dlg.undo_button, Qt.MouseButton.LeftButton)
    assert labels_file.read_bytes() == after_first
    assert "undid no label on 1.00–8.00 s" in dlg.status.text()
    qtbot.mouseClick(dlg.undo_button, Qt.MouseButton.LeftButton)
    assert labels_file.read_bytes() == original
    assert read_session_json(path) == original_doc
    assert not dlg.undo_button.isEnabled() and [s[2] for s in dlg.timeline.spans()] == ["happy", "sad"]
    assert not list(path.glob(".*.tmp"))


def test_undo_refuses_when_something_else_changed_the_labels(
    qtbot: Any, tmp_path: Path, warnings: list[str]
) -> None:
    path = _session(tmp_path)
    dlg = _dialog(qtbot, path)
    dlg.timeline.select(2.0, 4.0)
    qtbot.keyClick(dlg.timeline, Qt.Key.Key_3)
    relabel(path, 8.0, 9.0, "angry")  # e.g. `emodesk sessions label` meanwhile
    theirs = (path / LABELS_FILE).read_bytes()
    dlg.undo()
    assert (path / LABELS_FILE).read_bytes() == theirs
    assert warnings and "changed by something else" in warnings[0]


def test_a_change_cut_short_by_a_full_disk_is_reported_and_can_be_undone(
    qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warnings: list[str]
) -> None:
    from emodesk.recording import files

    path = _session(tmp_path)
    original, original_doc = (path / LABELS_FILE).read_bytes(), read_session_json(path)
    dlg = _dialog(qtbot, path)
    real_open = files.opener

    def full_disk_for_session_json(p: Path, mode: str) -> Any:
        if p.name.startswith(".session.json"):
            raise OSError(errno.ENOSPC, "No space left on device", str(p))
        return real_open(p, mode)

    monkeypatch.setattr(files, "opener", full_disk_for_session_json)
    dlg.timeline.select(2.0, 4.0)
    qtbot.keyClick(dlg.timeline, Qt.Key.Key_3)
    assert len(warnings) == 1 and "No space left" in warnings[0]
    assert labels_at(read_labels(path), 3.0) == "fear"  # labels.jsonl was written before session.json failed
    assert dlg.undo_button.isEnabled()
    monkeypatch.setattr(files, "opener", real_open)
    dlg.undo()
    assert (path / LABELS_FILE).read_bytes() == original and read_session_json(path) == original_doc


def test_the_read_out_strip_shows_each_fused_record_in_its_label_colour(qtbot: Any, tmp_path: Path) -> None:
    path = _session(tmp_path)
    dlg = _dialog(qtbot, path)
    fused = [r for r in read_records(path) if r["kind"] == "fused"]
    points = dlg.timeline.fused_points()
    assert len(points) == len(fused) == len(FUSED)  # the face rows are not drawn
    assert [lab for _, lab in points] == FUSED
    assert [t for t, _ in points] == [r["t"] for r in fused]
    image = dlg.timeline.grab().toImage()
    w = dlg.timeline
    for t, lab in points:
        x = round(w.t_to_x(t + 0.25))
        assert image.pixelColor(x, tl.FUSED_Y + tl.FUSED_H // 2).name() == LABEL_COLORS[lab], (t, lab)
    y = tl.LABEL_Y + tl.LABEL_H // 2
    assert image.pixelColor(round(w.t_to_x(3.0)), y).name() == LABEL_COLORS["happy"]
    assert image.pixelColor(round(w.t_to_x(8.0)), y).name() == LABEL_COLORS["sad"]


def test_a_torn_labels_file_is_reported_and_left_as_it_is(
    qtbot: Any, tmp_path: Path, warnings: list[str]
) -> None:
    path = _session(tmp_path)
    with open(path / LABELS_FILE, "ab") as fh:
        fh.write(b'{"t": 7.5, "label": "ang')  # what a kill mid-write leaves
    torn = (path / LABELS_FILE).read_bytes()
    dlg = _dialog(qtbot, path)
    assert "torn" in dlg.status.text() and "Repair" in dlg.status.text()
    dlg.timeline.select(2.0, 4.0)
    qtbot.keyClick(dlg.timeline, Qt.Key.Key_3)
    assert (path / LABELS_FILE).read_bytes() == torn
    assert len(warnings) == 1 and "torn" in warnings[0]
    assert "failed" in dlg.status.text() and not dlg.undo_button.isEnabled()


def test_a_session_being_recorded_is_refused_with_the_reason(
    qtbot: Any, tmp_path: Path, warnings: list[str]
) -> None:
    writer, path = _start_session(tmp_path)
    try:
        with pytest.raises(InputError, match="being recorded"):
            tl.LabelTimelineDialog(path)
        browser = sd.SessionsDialog(tmp_path)
        qtbot.addWidget(browser)
        browser.table.selectRow(0)
        browser.buttons["Labels…"].click()
        assert browser.labels_dialog is None
        assert len(warnings) == 1 and "being recorded" in warnings[0]
    finally:
        writer.stop(10.0)


def _cell(browser: sd.SessionsDialog, path: Path, column: int) -> str:
    row = [r.path for r in browser.reports].index(path)  # rows are sorted by folder name
    item = browser.table.item(row, column)
    assert item is not None
    return item.text()


def test_the_labels_button_opens_the_editor_for_the_selected_session(qtbot: Any, tmp_path: Path) -> None:
    paths = [_session(tmp_path, notes=f"note {k}") for k in range(2)]
    browser = sd.SessionsDialog(tmp_path)
    qtbot.addWidget(browser)
    browser.show()
    browser.table.selectRow([r.path for r in browser.reports].index(paths[1]))
    assert _cell(browser, paths[1], 5) == "2"  # label changes
    qtbot.mouseClick(browser.buttons["Labels…"], Qt.MouseButton.LeftButton)
    editor = browser.labels_dialog
    assert editor is not None and editor.isVisible() and editor.folder == paths[1]
    editor.timeline.select(1.0, 2.0)
    qtbot.keyClick(editor.timeline, Qt.Key.Key_1)
    assert labels_at(read_labels(paths[1]), 1.5) == "angry"
    assert labels_at(read_labels(paths[0]), 1.5) == "happy"
    editor.accept()
    qtbot.waitUntil(lambda: browser.labels_dialog is None, timeout=2000)
    assert _cell(browser, paths[1], 5) == "4"  # the table was refreshed
    selected = browser.selected()
    assert selected is not None and selected.path == paths[1]
