"""Refuse the one PySide6 release that crashes emodesk, with a message instead of a core dump.

PySide6/shiboken6 6.12.0 on CPython < 3.12 returns ``None`` from every void Qt
call without taking a reference (``Signal.emit`` does the same with
``True``/``False``). CPython 3.12+ made these singletons immortal; on 3.11 a
window repainting at 30 Hz drives ``None``'s count to zero within seconds:
``Fatal Python error: none_dealloc``. Measured here: 1,000
``QObject.setObjectName`` calls lower ``sys.getrefcount(None)`` by exactly
1,000 on 6.12.0 and by 0 on 6.11.3. ``pyproject.toml`` pins ``<6.12``; this
check catches environments that bypassed the pin.
"""

from __future__ import annotations

import sys

from emodesk.errors import EmodeskError


def pyside_version() -> tuple[int, ...]:
    import PySide6

    return tuple(getattr(PySide6, "__version_info__", (0, 0, 0))[:3])


def refcount_bug_present() -> bool:
    """True for the PySide6 release whose void calls steal references, on a Python that minds."""
    return sys.version_info < (3, 12) and pyside_version() == (6, 12, 0)


def check_qt() -> None:
    """Raise EmodeskError naming the fix when this Qt would crash the app."""
    if refcount_bug_present():
        raise EmodeskError(
            "PySide6 6.12.0 crashes on Python 3.11 (it leaks references to None); "
            "install 'PySide6-Essentials<6.12' or use Python 3.12+"
        )
