"""The sessions browser: list recorded sessions, replay, repair, edit labels on a timeline, export, delete."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

from PySide6.QtCore import QSettings, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from emodesk.errors import EmodeskError
from emodesk.recording.session import SessionReport, list_sessions, repair_session
from emodesk.ui.timeline import ERRORS, LabelTimelineDialog

COLUMNS = ("session", "state", "duration", "frames", "audio", "label changes", "notes", "problems")
RECENT_KEY = "sessions/folders"
MAX_RECENT = 8


def recent_folders(settings: QSettings | None) -> list[Path]:
    """Session folders opened before, most recent first (those still there)."""
    if settings is None:
        return []
    raw = settings.value(RECENT_KEY, [])
    items = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, (list, tuple)) else []
    return [Path(str(x)) for x in items if str(x) and Path(str(x)).is_dir()][:MAX_RECENT]


class SessionsDialog(QDialog):
    """Sessions of one folder (the default one, any folder opened here, or one recorded with --out);
    the folders opened are remembered in ``settings``."""

    _report_finished = Signal(object, object)  # (index page or None, error or None)

    def __init__(
        self, parent_dir: Path, parent: QWidget | None = None, *, settings: QSettings | None = None
    ) -> None:
        super().__init__(parent)
        self.parent_dir = parent_dir
        self.settings = settings
        self.resize(900, 360)
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        top.addWidget(QLabel("Folder:"))
        self.folders = QComboBox()
        self.folders.setObjectName("sessions-folders")
        self.folders.setMinimumContentsLength(40)
        for f in dict.fromkeys([parent_dir, *recent_folders(settings)]):
            self.folders.addItem(str(f), str(f))
        self.folders.currentIndexChanged.connect(
            lambda _i: self.open_folder(Path(self.folders.currentData()))
        )
        top.addWidget(self.folders, 1)
        browse = QPushButton("Open folder…")
        browse.setToolTip("List the sessions of another folder (e.g. one recorded with emodesk record --out)")
        browse.clicked.connect(self._choose_folder)
        top.addWidget(browse)
        lay.addLayout(top)
        self.info = QLabel("")
        lay.addWidget(self.info)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        lay.addWidget(self.table, 1)
        row = QHBoxLayout()
        self.buttons: dict[str, QPushButton] = {}
        for name, slot in (
            ("Replay", self.replay),
            ("Repair", self.repair),
            ("Labels…", self.edit_labels),
            ("Export…", self.export),
            ("Report", self.report),
            ("Delete", self.delete),
            ("Refresh", self.refresh),
        ):
            b = QPushButton(name)
            b.clicked.connect(slot)
            row.addWidget(b)
            self.buttons[name] = b
        lay.addLayout(row)
        self.reports: list[SessionReport] = []
        self.last_report: Path | None = None
        self._report_thread: threading.Thread | None = None
        self._report_finished.connect(self._report_done)  # queued: from the report thread
        self.labels_dialog: LabelTimelineDialog | None = None
        self.open_folder(parent_dir)

    def open_folder(self, folder: Path) -> None:
        """List ``folder``'s sessions and remember it (first in the list)."""
        self.parent_dir = folder
        self.setWindowTitle(f"Sessions — {folder}")
        self.folders.blockSignals(True)  # inserting moves the current index: no re-entry
        try:
            i = self.folders.findData(str(folder))
            if i < 0:
                self.folders.insertItem(0, str(folder), str(folder))
                i = 0
            self.folders.setCurrentIndex(i)
        finally:
            self.folders.blockSignals(False)
        if self.settings is not None and folder.is_dir():
            keep = [str(folder), *(str(f) for f in recent_folders(self.settings) if f != folder)]
            self.settings.setValue(RECENT_KEY, keep[:MAX_RECENT])
            self.settings.sync()
        self.refresh()

    def _choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Sessions folder", str(self.parent_dir))
        if path:
            self.open_folder(Path(path))

    def refresh(self) -> None:
        self.reports = list_sessions(self.parent_dir) if self.parent_dir.is_dir() else []
        self.table.setRowCount(len(self.reports))
        for r, rep in enumerate(self.reports):
            i = rep.info
            dur = f"{i['duration_s']:.1f} s" if i.get("duration_s") is not None else "?"
            cells = (
                str(i.get("id", rep.path.name)),
                str(i.get("state")),
                dur,
                str(i.get("frames", 0)),
                f"{i.get('audio_s', 0):.1f} s",
                str(i.get("labels", 0)),
                str(i.get("notes", ""))[:60],
                "; ".join(rep.problems)[:120],
            )
            for c, text in enumerate(cells):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self.info.setText(
            f"{len(self.reports)} session(s) in {self.parent_dir}. Labels… adds or corrects labels on a "
            "timeline (or: emodesk sessions label PATH LABEL --from S --to S)"
        )

    def selected(self) -> SessionReport | None:
        rows = self.table.selectionModel().selectedRows()
        return self.reports[rows[0].row()] if rows else None

    def replay(self) -> None:
        rep = self.selected()
        if rep is None:
            return
        cmd = [sys.executable] if getattr(sys, "frozen", False) else [sys.executable, "-m", "emodesk"]
        subprocess.Popen([*cmd, str(rep.path)])  # a second window replays it through the pipeline

    def repair(self) -> None:
        rep = self.selected()
        if rep is None:
            return
        try:
            done = repair_session(rep.path)
        except EmodeskError as e:
            QMessageBox.warning(self, "Repair", str(e))
            return
        QMessageBox.information(self, "Repair", "\n".join(done.repairs) or "nothing to repair")
        self.refresh()

    def edit_labels(self) -> None:
        """Open the label timeline for the selected session; the table refreshes when it closes."""
        rep = self.selected()
        if rep is None:
            return
        try:
            dlg = LabelTimelineDialog(rep.path, self)
        except ERRORS as e:  # being recorded, or session.json unreadable
            QMessageBox.warning(self, "Labels", str(e))
            return
        self.labels_dialog = dlg
        dlg.finished.connect(lambda _result: self._labels_closed(dlg))
        dlg.open()

    def _labels_closed(self, dlg: LabelTimelineDialog) -> None:
        if self.labels_dialog is dlg:
            self.labels_dialog = None
        dlg.deleteLater()
        self.refresh()  # label-change counts (and problems) may have changed
        for r, rep in enumerate(self.reports):
            if rep.path == dlg.folder:
                self.table.selectRow(r)

    def export(self) -> None:
        rep = self.selected()
        if rep is None:
            return
        out = QFileDialog.getExistingDirectory(self, "Export the labeled parts to…")
        if not out:
            return
        from emodesk.recording.export import export_session

        try:
            s = export_session(rep.path, Path(out) / rep.path.name)
        except (EmodeskError, OSError) as e:
            QMessageBox.warning(self, "Export", str(e))
            return
        QMessageBox.information(
            self,
            "Export",
            f"{s.faces} face crops, {s.utterances} utterances, {s.paired} paired rows in {s.out}",
        )

    def report(self) -> None:
        """Write the selected session's report (``emodesk report``) into the app's data folder on a
        thread (the live video never waits for it), then open it in the browser
        (:meth:`_report_done`; ``last_report`` is its index page)."""
        rep = self.selected()
        if rep is None or self._report_thread is not None:
            return
        from emodesk.resources import user_data_dir
        from emodesk.ui.render.canvas import family

        family()  # fonts are registered on the GUI thread, before any drawing elsewhere
        out = user_data_dir() / "reports" / rep.path.name
        self.buttons["Report"].setEnabled(False)
        self.info.setText(f"Writing the report of {rep.path.name}…")

        def work() -> None:
            from emodesk.results.inputs import find_results
            from emodesk.ui.render.report import write_report

            try:
                index = write_report(find_results([rep.path]), out)
            except (EmodeskError, OSError, ValueError) as e:
                self._report_finished.emit(None, str(e))
            except Exception as e:  # noqa: BLE001 - shown, never a dead thread the user waits on
                self._report_finished.emit(None, f"the report failed: {type(e).__name__}: {e}")
            else:
                self._report_finished.emit(index, None)

        self._report_thread = threading.Thread(target=work, name="emodesk-report", daemon=True)
        self._report_thread.start()

    def _report_done(self, index: Path | None, error: str | None) -> None:
        if self._report_thread is not None:
            self._report_thread.join()
            self._report_thread = None
        self.buttons["Report"].setEnabled(True)
        self.refresh()
        if index is None:
            QMessageBox.warning(self, "Report", error or "the report failed")
            return
        from PySide6.QtCore import QUrl
        from PySide6.QtGui import QDesktopServices

        self.last_report = index
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(index))):
            QMessageBox.information(self, "Report", f"The report is in {index} (no browser opened it).")

    def delete(self) -> None:
        rep = self.selected()
        if rep is None:
            return
        if rep.info.get("live"):
            QMessageBox.warning(self, "Delete", "this session is being recorded; stop the recording first")
            return
        answer = QMessageBox.question(
            self, "Delete", f"Delete {rep.path.name} and everything recorded in it? This cannot be undone."
        )
        if answer == QMessageBox.StandardButton.Yes:
            shutil.rmtree(rep.path)
            self.refresh()
