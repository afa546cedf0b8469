"""Pictures without a window: a Qt GUI application on the ``offscreen`` platform when none runs,
the fonts the project ships (DejaVu Sans, ``assets/fonts``) so a picture looks the same on every
machine, and ``QImage`` → PNG written privately.

Qt draws text only inside a ``QGuiApplication``: the window's own when it runs (the sessions
browser's report), otherwise one made here on the offscreen platform, which needs no display (a
``QApplication``, so that widgets made later in the same process still work).
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice
from PySide6.QtGui import QColor, QFont, QFontDatabase, QGuiApplication, QImage, QPainter

from emodesk import private
from emodesk.errors import EmodeskError, InputError
from emodesk.resources import assets_dir

FAMILY_FALLBACK = "DejaVu Sans"
FONT_FILES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf")
_app: QGuiApplication | None = None  # the one made here (kept, or Qt deletes it)


def ensure_gui() -> None:
    """A ``QGuiApplication`` to draw with: the running one, or a new one on the offscreen platform."""
    global _app
    if QGuiApplication.instance() is not None:
        return
    from emodesk.ui.qt_compat import check_qt

    check_qt()  # a Qt known to crash this Python is a message, not a crash
    from PySide6.QtWidgets import QApplication

    _app = QApplication([sys.argv[0] if sys.argv else "emodesk", "-platform", "offscreen"])


@lru_cache(maxsize=1)
def family() -> str:
    """The family of the shipped fonts, registered once; a missing file is a broken install."""
    ensure_gui()
    names: list[str] = []
    for name in FONT_FILES:
        path = assets_dir() / "fonts" / name
        fid = QFontDatabase.addApplicationFont(str(path))
        if fid < 0:
            raise EmodeskError(f"the report font {path} is missing or unreadable: reinstall emodesk")
        names.extend(QFontDatabase.applicationFontFamilies(fid))
    return names[0] if names else FAMILY_FALLBACK


def font(px: float, *, bold: bool = False) -> QFont:
    f = QFont(family())
    f.setPixelSize(max(1, round(px)))
    f.setBold(bold)
    f.setHintingPreference(QFont.HintingPreference.PreferNoHinting)  # the same glyphs everywhere
    return f


def new_image(width: int, height: int, background: str = "#ffffff") -> QImage:
    ensure_gui()
    img = QImage(max(1, width), max(1, height), QImage.Format.Format_RGB32)
    img.fill(QColor(background))
    return img


def painter(img: QImage) -> QPainter:
    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setRenderHint(QPainter.RenderHint.TextAntialiasing)
    return p


def png_bytes(img: QImage) -> bytes:
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    if not img.save(buf, "PNG"):  # type: ignore[call-overload]  # the stubs say bytes; PySide6 takes str
        raise EmodeskError("Qt could not encode a PNG")
    buf.close()
    return bytes(data.data())


def write_png(path: Path | str, img: QImage) -> Path:
    """``img`` as a PNG at ``path`` (0600); :class:`InputError` naming the file when it cannot be."""
    p = Path(path)
    data = png_bytes(img)
    try:
        with private.open_private(p, "wb") as f:
            f.write(data)
    except OSError as e:
        raise InputError(f"cannot write {p}: {e.strerror or e}") from None
    return p
