"""A guard against a reference-counting bug of PySide6 6.12.0 on Python 3.11.

Why: with PySide6/shiboken6 6.12.0 on CPython < 3.12, every call of a Qt
method that returns ``void`` hands back ``None`` without taking a reference
(and ``Signal.emit`` does the same with ``True``/``False``). CPython 3.12+
made these singletons immortal, so there the bug is harmless; on 3.11 each
call steals one reference, and a window repainting at 30 Hz (thousands of
such calls a second) drives ``None``'s count to zero within a minute:
``Fatal Python error: none_dealloc: deallocating None``, mid-run or at exit.
Measured here: 1,000 ``QObject.setObjectName`` calls lower
``sys.getrefcount(None)`` by exactly 1,000 on 6.12.0 and by 0 on 6.11.3.

The guard gives the stolen references back: it remembers each singleton's
count when installed and, whenever ``top_up()`` runs (the window's timer
calls it), increments any count that fell below that mark. Over-counting a
singleton is harmless (they are never freed); under-counting kills the
process. Pinning ``PySide6-Essentials<6.12`` (or running Python 3.12+) makes
the guard a no-op.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

_SINGLETONS: tuple[object, ...] = (None, True, False)
_MARGIN = 1000


def _pyside_version() -> tuple[int, ...]:
    import PySide6

    return tuple(getattr(PySide6, "__version_info__", (0, 0, 0))[:3])


def refcount_bug_present() -> bool:
    """True for the PySide6 release whose void calls steal references, on a Python that minds."""
    return sys.version_info < (3, 12) and _pyside_version() == (6, 12, 0)


class RefcountGuard:
    """Keeps ``None``/``True``/``False`` counted above where they started (see module doc)."""

    def __init__(self) -> None:
        self.active = refcount_bug_present()
        self.floor = {id(o): sys.getrefcount(o) + _MARGIN for o in _SINGLETONS}
        self.restored = 0
        if self.active:
            self.top_up()
            log.warning(
                "PySide6 %s on Python %d.%d leaks references to None; working around it "
                "(install PySide6-Essentials<6.12 or use Python 3.12+ to avoid this)",
                ".".join(map(str, _pyside_version())), *sys.version_info[:2],
            )

    def top_up(self) -> int:
        """Give back what Qt calls took since the last call; returns how many references."""
        if not self.active:
            return 0
        incref = ctypes.pythonapi.Py_IncRef
        incref.argtypes = [ctypes.py_object]
        incref.restype = None
        n = 0
        for o in _SINGLETONS:
            deficit = self.floor[id(o)] - sys.getrefcount(o)
            for _ in range(max(0, deficit)):
                incref(o)  # each call is atomic under the GIL, unlike a raw write
            n += max(0, deficit)
        self.restored += n
        return n


_guard: RefcountGuard | None = None


def refcount_guard() -> RefcountGuard:
    """The process-wide guard (created on first use)."""
    global _guard
    if _guard is None:
        _guard = RefcountGuard()
    return _guard
