"""A confusion-matrix picture drawn with NumPy (neither matplotlib nor OpenCV is a dependency of the app).

Cells are coloured by the share of their *true* row (so a rare class reads as
clearly as a common one) and carry the raw count, with the row share beneath;
rows of labels absent from the data are greyed out.

The text is the text ``cv2.putText`` drew here while the app shipped OpenCV
(OpenCV 5's Rubik "sans" face), redrawn from a glyph atlas that
a since-retired builder (``git show 4d68358:scripts/make_font_atlas.py``) cut out of it
(``assets/font_atlas.*``): at the
sizes the atlas holds it matches OpenCV to within one grey level; other sizes
(text shrunk to fit) are resampled from the next larger one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from emodesk.errors import EmodeskError, InputError
from emodesk.imaging import read_image, resize, write_png
from emodesk.labels import LABELS, N_LABELS
from emodesk.resources import assets_dir

CELL = 84
_ATLAS = "font_atlas"
_WHITE = np.array([255.0, 255.0, 255.0])
_DARK_BLUE = np.array([107.0, 48.0, 8.0])  # BGR of RGB (8, 48, 107), the dark end of "Blues"
_INK = (40, 40, 40)
_ABSENT = (225, 225, 225)
_GRID = (190, 190, 190)


@dataclass(frozen=True)
class _Face:
    """One weight at one pixel size: per character code, the pen step and the coverage tile."""

    size: int
    ascent: int
    first: int
    advance: np.ndarray
    dx: np.ndarray  # tile's left from the pen
    dy: np.ndarray  # tile's top from the baseline
    tiles: tuple[np.ndarray, ...]

    def codes(self, s: str) -> np.ndarray:
        """Indices of ``s``'s characters; a "?" for any beyond printable ASCII (OpenCV had more fonts)."""
        idx = np.array([ord(c) - self.first for c in s], np.int64)
        return np.where((idx >= 0) & (idx < len(self.tiles)), idx, ord("?") - self.first)


@lru_cache(maxsize=1)
def _faces() -> dict[tuple[bool, int], _Face]:
    """The atlas by (bold, size); loaded once, a missing one is a broken install."""
    folder = assets_dir()
    try:
        meta = json.loads((folder / f"{_ATLAS}.json").read_text(encoding="utf-8"))
        atlas = read_image(folder / f"{_ATLAS}.png", gray=True)
    except (OSError, ValueError, InputError) as e:
        raise EmodeskError(f"font atlas {folder / _ATLAS}.png/.json is missing or unreadable: {e}") from None
    faces = {}
    for strip in meta["strips"]:
        glyphs = np.array(strip["glyphs"], np.int64).reshape(-1, 5)  # advance, dx, dy, width, height
        xs = np.concatenate([[0], np.cumsum(glyphs[:-1, 3])])
        y = strip["y"]
        tiles = tuple(atlas[y : y + h, x : x + w] for x, (_, _, _, w, h) in zip(xs, glyphs, strict=True))
        advance, dx, dy = glyphs[:, 0], glyphs[:, 1], glyphs[:, 2]
        face = _Face(strip["size"], strip["ascent"], meta["first_char"], advance, dx, dy, tiles)
        faces[(strip["weight"] == "bold", face.size)] = face
    return faces


def _face(size: float, bold: bool) -> _Face:
    """The face to draw ``size`` px from: the smallest at least that large, else the largest."""
    sizes = sorted(s for b, s in _faces() if b == bold)
    return _faces()[(bold, next((s for s in sizes if s >= size), sizes[-1]))]


def _text_size(s: str, size: float, bold: bool) -> tuple[float, float]:
    """(width, height) as ``cv2.getTextSize`` gave them: the pen steps plus one, and the ascent."""
    face = _face(size, bold)
    f = size / face.size
    return float(face.advance[face.codes(s)].sum()) * f + 1, face.ascent * f


def _coverage(s: str, size: float, bold: bool) -> tuple[np.ndarray, int, int]:
    """Coverage (0–1) of ``s`` and the offset of its top-left from the pen start on the baseline."""
    face = _face(size, bold)
    codes = face.codes(s)
    pens = np.concatenate([[0], np.cumsum(face.advance[codes])[:-1]])
    inked = [(int(p + face.dx[c]), int(face.dy[c]), face.tiles[c]) for p, c in zip(pens, codes, strict=True)]
    inked = [g for g in inked if g[2].size]
    if not inked:
        return np.zeros((0, 0), np.float32), 0, 0
    left, top = min(x for x, _, _ in inked), min(y for _, y, _ in inked)
    right = max(x + t.shape[1] for x, _, t in inked)
    bottom = max(y + t.shape[0] for _, y, t in inked)
    cov = np.zeros((bottom - top, right - left), np.float32)
    for x, y, tile in inked:
        region = cov[y - top : y - top + tile.shape[0], x - left : x - left + tile.shape[1]]
        region += (1 - region) * (tile / np.float32(255))  # "over", where neighbours touch
    if size == face.size:
        return cov, left, top
    f = size / face.size
    h, w = cov.shape
    return resize(cov, (max(1, round(w * f)), max(1, round(h * f)))), round(left * f), round(top * f)


def _put(
    img: np.ndarray, s: str, org: tuple[int, int], size: float, color: tuple[int, int, int], bold: bool
) -> None:
    """Write ``s`` with its baseline starting at ``org``, blended as OpenCV blends (clipped to ``img``)."""
    cov, left, top = _coverage(s, size, bold)
    x0, y0 = org[0] + left, org[1] + top
    h, w = cov.shape
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x0 + w, img.shape[1]), min(y0 + h, img.shape[0])
    if cx0 >= cx1 or cy0 >= cy1:
        return
    a = np.rint(cov[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0, None] * 255).astype(np.int32)
    region = img[cy0:cy1, cx0:cx1].astype(np.int32)
    img[cy0:cy1, cx0:cx1] = (region * (255 - a) + np.array(color, np.int32) * a + 127) // 255


def _text(
    img: np.ndarray,
    s: str,
    center: tuple[int, int],
    size: float,
    color: tuple[int, int, int],
    bold: bool = False,
) -> None:
    """Write ``s`` centred on ``center``."""
    w, h = _text_size(s, size, bold)
    _put(img, s, (round(center[0] - w / 2), round(center[1] + h / 2)), size, color, bold)


def _fit(s: str, width: int, size: float, bold: bool = False) -> float:
    """The largest size ≤ ``size`` at which ``s`` fits in ``width`` pixels."""
    w = _text_size(s, size, bold)[0]
    while w > width + 1e-6:  # again if the smaller size is drawn from a smaller face
        size *= (width - 1) / (w - 1)
        w = _text_size(s, size, bold)[0]
    return size


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

    _text(img, title, (width // 2, 26), _fit(title, width - 20, 19, bold=True), _INK, bold=True)
    if subtitle:
        _text(img, subtitle, (width // 2, 58), _fit(subtitle, width - 20, 15), _INK)
    _text(img, "predicted", (left + k * CELL // 2, 96), 16, _INK)
    for j, lab in enumerate(labels):
        _text(img, lab, (left + j * CELL + CELL // 2, 130), _fit(lab, CELL - 6, 14), _INK)

    # "true", written upwards along the row labels
    tw, th = (round(v) for v in _text_size("true", 16, False))
    strip = np.full((th + 10, tw + 10, 3), 255, np.uint8)
    _put(strip, "true", (5, th + 4), 16, _INK, False)
    upright = np.rot90(strip)
    y0 = top + k * CELL // 2 - upright.shape[0] // 2
    img[y0 : y0 + upright.shape[0], 8 : 8 + upright.shape[1]] = upright

    support = conf.sum(axis=1)
    for i, lab in enumerate(labels):
        cy = top + i * CELL + CELL // 2
        _text(img, lab, (44 + (left - 44) // 2, cy), _fit(lab, left - 52, 14), _INK)
        for j in range(k):
            x0, y0 = left + j * CELL, top + i * CELL
            centre = (x0 + CELL // 2, y0 + CELL // 2)
            cell = img[y0 : y0 + CELL + 1, x0 : x0 + CELL + 1]
            if support[i] == 0:
                cell[:] = _ABSENT
                if j == 0:
                    _text(img, "no rows", centre, 11, (130, 130, 130))
                continue
            share = conf[i, j] / support[i]
            cell[:] = (_WHITE + (_DARK_BLUE - _WHITE) * share).round()
            ink = (255, 255, 255) if share > 0.5 else _INK
            _text(img, str(int(conf[i, j])), (centre[0], centre[1] - 10), 16, ink, bold=i == j)
            _text(img, f"{share:.0%}", (centre[0], centre[1] + 16), 11, ink)
    for t in range(k + 1):  # grid
        img[top + t * CELL, left : left + k * CELL + 1] = _GRID
        img[top : top + k * CELL + 1, left + t * CELL] = _GRID
    note = "colour and % : share of the true row; number: rows"
    _text(img, note, (left + k * CELL // 2, top + k * CELL + 30), 12, (110, 110, 110))
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
