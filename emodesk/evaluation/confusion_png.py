"""A confusion-matrix picture drawn with OpenCV (matplotlib is not a dependency of the app).

Cells are coloured by the share of their *true* row (so a rare class reads as
clearly as a common one) and carry the raw count, with the row share beneath;
rows of labels absent from the data are greyed out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from emodesk.errors import InputError
from emodesk.labels import LABELS, N_LABELS

CELL = 84
FONT = cv2.FONT_HERSHEY_SIMPLEX
_WHITE = np.array([255.0, 255.0, 255.0])
_DARK_BLUE = np.array([107.0, 48.0, 8.0])  # BGR of RGB (8, 48, 107), the dark end of "Blues"
_INK = (40, 40, 40)
_ABSENT = (225, 225, 225)


def _text(
    img: np.ndarray,
    s: str,
    center: tuple[int, int],
    scale: float,
    color: tuple[int, int, int],
    thickness: int = 1,
) -> None:
    """Write ``s`` centred on ``center``."""
    (w, h), _ = cv2.getTextSize(s, FONT, scale, thickness)
    org = (round(center[0] - w / 2), round(center[1] + h / 2))
    cv2.putText(img, s, org, FONT, scale, color, thickness, cv2.LINE_AA)


def _fit_scale(s: str, width: int, scale: float, thickness: int = 1) -> float:
    """The largest scale ≤ ``scale`` at which ``s`` fits in ``width`` pixels."""
    w = cv2.getTextSize(s, FONT, scale, thickness)[0][0]
    return scale if w <= width else scale * width / w


def draw_confusion(
    confusion: Sequence[Sequence[int]] | np.ndarray,
    *,
    title: str,
    subtitle: str = "",
    labels: Sequence[str] = LABELS,
) -> np.ndarray:
    """The picture as a BGR uint8 array: rows true, columns predicted, in ``labels`` order."""
    conf = np.asarray(confusion, dtype=np.int64)
    k = len(labels)
    if conf.shape != (k, k):
        raise ValueError(f"confusion must be {k}×{k} (rows true, columns predicted), got {conf.shape}")
    left, top, right, bottom = 150, 150, 24, 56
    width, height = left + k * CELL + right, top + k * CELL + bottom
    img = np.full((height, width, 3), 255, np.uint8)

    _text(img, title, (width // 2, 26), _fit_scale(title, width - 20, 0.7, 2), _INK, 2)
    if subtitle:
        _text(img, subtitle, (width // 2, 58), _fit_scale(subtitle, width - 20, 0.55), _INK)
    _text(img, "predicted", (left + k * CELL // 2, 96), 0.6, _INK)
    for j, lab in enumerate(labels):
        _text(img, lab, (left + j * CELL + CELL // 2, 130), _fit_scale(lab, CELL - 6, 0.5), _INK)

    # "true", written vertically along the row labels
    (tw, th), _ = cv2.getTextSize("true", FONT, 0.6, 1)
    strip = np.full((th + 10, tw + 10, 3), 255, np.uint8)
    cv2.putText(strip, "true", (5, th + 4), FONT, 0.6, _INK, 1, cv2.LINE_AA)
    upright = cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)
    y0 = top + k * CELL // 2 - upright.shape[0] // 2
    img[y0 : y0 + upright.shape[0], 8 : 8 + upright.shape[1]] = upright

    support = conf.sum(axis=1)
    for i, lab in enumerate(labels):
        cy = top + i * CELL + CELL // 2
        _text(img, lab, (44 + (left - 44) // 2, cy), _fit_scale(lab, left - 52, 0.5), _INK)
        for j in range(k):
            x0, y0 = left + j * CELL, top + i * CELL
            centre = (x0 + CELL // 2, y0 + CELL // 2)
            if support[i] == 0:
                cv2.rectangle(img, (x0, y0), (x0 + CELL, y0 + CELL), _ABSENT, -1)
                if j == 0:
                    _text(img, "no rows", (x0 + CELL // 2, y0 + CELL // 2), 0.4, (130, 130, 130))
                continue
            share = conf[i, j] / support[i]
            color = (_WHITE + (_DARK_BLUE - _WHITE) * share).round().astype(int)
            cv2.rectangle(img, (x0, y0), (x0 + CELL, y0 + CELL), tuple(int(c) for c in color), -1)
            ink = (255, 255, 255) if share > 0.5 else _INK
            _text(img, str(int(conf[i, j])), (centre[0], centre[1] - 10), 0.6, ink, 2 if i == j else 1)
            _text(img, f"{share:.0%}", (centre[0], centre[1] + 16), 0.42, ink)
    for t in range(k + 1):  # grid
        cv2.line(img, (left, top + t * CELL), (left + k * CELL, top + t * CELL), (190, 190, 190), 1)
        cv2.line(img, (left + t * CELL, top), (left + t * CELL, top + k * CELL), (190, 190, 190), 1)
    note = "colour and % : share of the true row; number: rows"
    _text(img, note, (left + k * CELL // 2, top + k * CELL + 30), 0.45, (110, 110, 110))
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
    img = draw_confusion(confusion, title=title, subtitle=subtitle)
    try:
        ok = cv2.imwrite(str(p), img)
    except cv2.error as e:
        raise InputError(f"cannot write {p}: {e}") from None
    if not ok:
        raise InputError(f"cannot write {p} (is the folder there, and does the name end in .png?)")
    return p
