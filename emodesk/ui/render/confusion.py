"""The confusion-matrix picture (``emodesk eval --png``, a labelled session's report), drawn with
``QPainter`` in the shipped DejaVu Sans.

Rows are the true labels, columns the predicted ones. A cell is coloured by its share of the
*true* row (white to dark blue, so a rare class reads as clearly as a common one) and carries the
count, with the row share beneath; the rows of labels absent from the data are grey.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFontMetricsF, QImage, QPainter, QPen

from emodesk.errors import InputError
from emodesk.labels import LABELS, N_LABELS
from emodesk.ui.render.canvas import font, new_image, painter, write_png

CELL = 84
LEFT, TOP, RIGHT, BOTTOM = 150, 150, 24, 56
WHITE, DARK_BLUE = np.array([255.0, 255.0, 255.0]), np.array([8.0, 48.0, 107.0])  # "Blues", RGB
INK, ABSENT, GRID, NOTE = (
    QColor(40, 40, 40),
    QColor(225, 225, 225),
    QColor(190, 190, 190),
    QColor(110, 110, 110),
)


def cell_color(share: float) -> QColor:
    """The colour of a cell holding ``share`` of its true row."""
    r, g, b = (WHITE + (DARK_BLUE - WHITE) * float(share)).round().astype(int)
    return QColor(int(r), int(g), int(b))


def _text(p: QPainter, s: str, rect: QRectF, px: float, *, bold: bool = False, color: QColor = INK) -> None:
    """``s`` centred in ``rect``, shrunk until it fits its width."""
    f = font(px, bold=bold)
    width = QFontMetricsF(f).horizontalAdvance(s)
    if width > rect.width() and width > 0:
        f = font(max(6.0, px * rect.width() / width), bold=bold)
    p.setFont(f)
    p.setPen(color)
    p.drawText(rect, Qt.AlignmentFlag.AlignCenter, s)


def draw_confusion(
    confusion: Sequence[Sequence[int]] | np.ndarray,
    *,
    title: str,
    subtitle: str = "",
    labels: Sequence[str] = LABELS,
    note: str = "colour and %: share of the true row; number: rows",
) -> QImage:
    """The picture: rows true, columns predicted, in ``labels`` order."""
    conf = np.asarray(confusion, dtype=np.int64)
    k = len(labels)
    if conf.shape != (k, k):
        raise ValueError(f"confusion must be {k}×{k} (rows true, columns predicted), got {conf.shape}")
    width, height = LEFT + k * CELL + RIGHT, TOP + k * CELL + BOTTOM
    img = new_image(width, height)
    p = painter(img)
    _text(p, title, QRectF(10, 8, width - 20, 36), 19, bold=True)
    if subtitle:
        _text(p, subtitle, QRectF(10, 46, width - 20, 24), 15)
    _text(p, "predicted", QRectF(LEFT, 84, k * CELL, 24), 16)
    for j, lab in enumerate(labels):
        _text(p, lab, QRectF(LEFT + j * CELL + 3, 118, CELL - 6, 24), 14)
    p.save()  # "true", written upwards along the row labels
    p.translate(QPointF(20, TOP + k * CELL / 2))
    p.rotate(-90)
    _text(p, "true", QRectF(-60, -12, 120, 24), 16)
    p.restore()
    support = conf.sum(axis=1)
    for i, lab in enumerate(labels):
        y0 = TOP + i * CELL
        _text(p, lab, QRectF(44, y0, LEFT - 52, CELL), 14)
        for j in range(k):
            cell = QRectF(LEFT + j * CELL, y0, CELL, CELL)
            if support[i] == 0:
                p.fillRect(cell, ABSENT)
                if j == 0:
                    _text(p, "no rows", cell, 11, color=QColor(130, 130, 130))
                continue
            share = conf[i, j] / support[i]
            p.fillRect(cell, cell_color(share))
            ink = QColor(255, 255, 255) if share > 0.5 else INK
            _text(p, str(int(conf[i, j])), cell.adjusted(0, 12, 0, -38), 16, bold=i == j, color=ink)
            _text(p, f"{share:.0%}", cell.adjusted(0, 46, 0, -12), 11, color=ink)
    p.setPen(QPen(GRID, 1))
    for t in range(k + 1):
        p.drawLine(QPointF(LEFT, TOP + t * CELL + 0.5), QPointF(LEFT + k * CELL, TOP + t * CELL + 0.5))
        p.drawLine(QPointF(LEFT + t * CELL + 0.5, TOP), QPointF(LEFT + t * CELL + 0.5, TOP + k * CELL))
    _text(p, note, QRectF(LEFT, TOP + k * CELL + 18, k * CELL, 24), 12, color=NOTE)
    p.end()
    return img


def write_confusion_png(
    path: Path | str,
    confusion: Sequence[Sequence[int]] | np.ndarray,
    *,
    title: str,
    subtitle: str = "",
) -> Path:
    """Draw the canonical-order ``confusion`` and write it as a PNG; :class:`InputError` if that fails."""
    if np.asarray(confusion).shape != (N_LABELS, N_LABELS):
        raise ValueError(f"confusion must be {N_LABELS}×{N_LABELS} in canonical order")
    p = Path(path)
    if p.suffix.lower() != ".png":
        raise InputError(f"cannot write {p}: the confusion picture is a PNG, give a name ending in .png")
    return write_png(p, draw_confusion(confusion, title=title, subtitle=subtitle))
