"""What every emodesk worker thread shares: a stop event, an error signal, a guarded run().

Why a guard: an exception escaping ``QThread.run`` only prints a traceback
on stderr and the thread dies unseen. Every worker instead turns an
``EmodeskError`` into a one-line message on ``error`` (the UI shows it) and
logs anything else with its traceback before reporting it the same way, so
one failing device or model never takes the rest of the app down.
"""

from __future__ import annotations

import logging
import threading
import weakref

from PySide6.QtCore import QObject, QThread, Signal

from emodesk.errors import EmodeskError
from emodesk.types import SlotStatus

log = logging.getLogger(__name__)

LOADING = "loading…"

_started: weakref.WeakSet[QThread] = weakref.WeakSet()


def running_workers() -> list[QThread]:
    """Workers started and not yet finished (for shutdown checks and tests)."""
    return [w for w in list(_started) if w.isRunning()]


class Worker(QThread):
    """A QThread whose ``work()`` runs once, guarded; subclasses implement ``work``."""

    error = Signal(str)
    """A one-line message for the user; emitted at most once per failure."""
    statuses_changed = Signal()
    """Model or device status changed (the pipeline re-reads it, no payload)."""

    role = "worker"

    def __init__(self, stop: threading.Event, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.stop_event = stop
        self.failed: str | None = None
        self.statuses: list[SlotStatus] = []  # the model slots this worker provides
        self.setObjectName(f"emodesk-{self.role}")

    def start(self, priority: QThread.Priority = QThread.Priority.InheritPriority) -> None:
        _started.add(self)
        super().start(priority)

    def run(self) -> None:
        try:
            self.work()
        except EmodeskError as e:
            self._fail(str(e))
        except Exception as e:
            log.exception("%s crashed", self.role)
            self._fail(f"internal error in the {self.role} thread: {type(e).__name__}: {e} (see the log)")
        finally:
            self.cleanup()

    def _fail(self, message: str) -> None:
        self.failed = message
        log.error("%s: %s", self.role, message)
        self.on_failed(message)
        self.error.emit(message)
        self.statuses_changed.emit()

    def on_failed(self, message: str) -> None:
        """Mark the slots that were loading or running as failed ("no model installed" stays)."""
        self.statuses = [
            SlotStatus(s.slot, "error", message, s.models, s.provider) if s.ok or s.message == LOADING else s
            for s in self.statuses
        ]

    def work(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def cleanup(self) -> None:
        """Runs in the worker thread after ``work`` (success or failure): close what it owns."""

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()
