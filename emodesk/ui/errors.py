"""Showing problems to the user without flooding them, and keeping a log file.

Friture's ``exceptionhandler.py`` rule: "we do not want to flood the user
with message boxes". One dialog at a time; the same message is shown again
only after ``throttle_s``; everything, shown or not, goes to a rotating log
file in the user data dir so a bug report can include it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from logging.handlers import RotatingFileHandler
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from emodesk import private
from emodesk.resources import user_data_dir

log = logging.getLogger(__name__)

_LOG_FORMAT = "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"


class _PrivateRotatingFileHandler(RotatingFileHandler):
    """Each log file 0600, the first and every one after a rotation: the log names files and
    models, and an error may quote a transcript."""

    def _open(self):  # type: ignore[no-untyped-def]
        stream = super()._open()
        private.restrict(self.baseFilename)
        return stream


def log_file_path() -> Path:
    return user_data_dir() / "logs" / "emodesk.log"


def setup_logging(level: int = logging.INFO, *, max_bytes: int = 1_000_000, backups: int = 3) -> Path:
    """Attach one rotating file handler (``<user data>/logs/emodesk.log``) to the root logger.

    Calling it again with another ``EMODESK_HOME`` moves the handler there.
    """
    path = log_file_path()
    private.make_dirs(path.parent)
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_emodesk", False):
            if Path(getattr(h, "baseFilename", "")) == path.resolve():
                return path
            root.removeHandler(h)
            h.close()
    handler = _PrivateRotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    handler._emodesk = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)
    return path


def remove_logging() -> None:
    """Detach and close the handler ``setup_logging`` added (tests, embedding)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_emodesk", False):
            root.removeHandler(h)
            h.close()


class ErrorReporter(QObject):
    """Logs every problem; shows at most one non-blocking QMessageBox at a time, throttled."""

    shown = Signal(str)
    """Emitted with the text of each dialog actually shown (tests, status bar)."""

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        throttle_s: float = 30.0,
        dialogs: bool = True,
        log_path: Path | None = None,
    ) -> None:
        super().__init__(parent)
        self._parent = parent
        self.throttle_s = throttle_s
        self.dialogs = dialogs
        self.log_path = log_path
        self._last_shown: dict[str, float] = {}
        self._pending: deque[str] = deque(maxlen=20)
        self._box: QMessageBox | None = None
        self.suppressed = 0
        self.last_message: str | None = None

    @property
    def dialog_open(self) -> bool:
        return self._box is not None

    @property
    def dialog(self) -> QMessageBox | None:
        """The message box on show, if any."""
        return self._box

    def report(self, message: str, *, level: int = logging.ERROR, title: str = "emodesk") -> None:
        """Log ``message``; show it unless the same text was shown within ``throttle_s``."""
        log.log(level, "%s", message)
        self.last_message = message
        now = time.monotonic()
        last = self._last_shown.get(message)
        if last is not None and now - last < self.throttle_s:
            self.suppressed += 1
            return
        if self._box is not None:
            if message not in self._pending:
                self._pending.append(message)
            return
        self._show(message, title, level)

    def _show(self, message: str, title: str, level: int) -> None:
        self._last_shown[message] = time.monotonic()
        if not self.dialogs:
            self.shown.emit(message)
            return
        icon = QMessageBox.Icon.Warning if level < logging.ERROR else QMessageBox.Icon.Critical
        box = QMessageBox(icon, title, message, QMessageBox.StandardButton.Ok, self._parent)
        if self.log_path is not None:
            box.setInformativeText(f"Details are in the log: {self.log_path}")
        box.setModal(False)
        box.finished.connect(self._on_closed)
        self._box = box
        box.show()  # non-blocking: the live view keeps running behind it
        self.shown.emit(message)

    def _on_closed(self, _result: int = 0) -> None:
        box, self._box = self._box, None
        if box is not None:
            box.deleteLater()
        if self._pending:
            nxt = self._pending.pop()
            more = len(self._pending)
            self._pending.clear()
            text = nxt if more == 0 else f"{nxt}\n\n({more} more problem(s) in the log)"
            self._show(text, "emodesk", logging.ERROR)

    def close_dialog(self) -> None:
        """Close the open dialog, if any (window shutdown)."""
        if self._box is not None:
            self._pending.clear()
            self._box.close()
