#!/usr/bin/env python
"""Build ``assets/font_atlas.png`` and ``assets/font_atlas.json``, the text of the confusion picture.

Why: the app no longer ships OpenCV, but its confusion-matrix PNG should keep
the look ``cv2.putText`` gave it. From OpenCV 5 on, ``putText`` with
``FONT_HERSHEY_SIMPLEX`` draws no Hershey strokes: it draws OpenCV's embedded
"sans" face, "Rubik for OpenCV" (SIL Open Font License 1.1), at the pixel size
``round(100 * scale / 3.7)`` in weight 400 (thickness 1) or 600 (thickness 2),
each glyph a coverage bitmap put down at a whole-pixel pen position (no
kerning). So one bitmap per character, size and weight, taken from
``cv2.putText`` itself, lets :mod:`emodesk.evaluation.confusion_png` redraw
that text with NumPy, to within a grey level.

Usage::

    python scripts/make_font_atlas.py [--out-dir assets]

Needs OpenCV 5 (a development dependency, never a run-time one).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
FIRST, LAST = 32, 126  # printable ASCII
# the sizes (px) confusion_png draws in; it resamples others (text shrunk to fit) from these
SIZES = {"regular": (11, 12, 14, 15, 16), "bold": (16, 19)}
THICKNESS = {"regular": 1, "bold": 2}  # the cv2 thickness that selects each weight
PX_PER_SCALE = 100 / 3.7  # OpenCV's hersheyToTruetype() for FONT_HERSHEY_SIMPLEX


def render_glyph(ch: str, size: int, thickness: int) -> tuple[int, int, int, np.ndarray]:
    """``(advance, dx, dy, coverage)``: the pen step and the bitmap's offset from the pen on the baseline."""
    scale = size / PX_PER_SCALE
    canvas = np.zeros((4 * size, 4 * size), np.uint8)
    ox, oy = size, 3 * size
    # drawn in 255 on 0, a pixel holds the coverage itself: (0 * (255 - a) + 255 * a + 127) // 255 = a
    cv2.putText(canvas, ch, (ox, oy), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thickness, cv2.LINE_AA)
    advance = cv2.getTextSize(ch, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0] - 1
    ys, xs = np.nonzero(canvas)
    if len(xs) == 0:
        return advance, 0, 0, np.zeros((0, 0), np.uint8)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    if x0 == 0 or y0 == 0 or x1 == canvas.shape[1] or y1 == canvas.shape[0]:
        raise SystemExit(f"glyph {ch!r} at {size} px runs off its {canvas.shape} canvas")
    return advance, int(x0 - ox), int(y0 - oy), canvas[y0:y1, x0:x1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", type=Path, default=REPO_ROOT / "assets")
    args = ap.parse_args()
    if int(cv2.__version__.split(".")[0]) < 5:
        raise SystemExit(f"OpenCV {cv2.__version__} draws Hershey strokes; the atlas is OpenCV 5's text")

    strips = []
    rows: list[np.ndarray] = []
    y = 0
    for weight, sizes in SIZES.items():
        thickness = THICKNESS[weight]
        for size in sizes:
            glyphs = [render_glyph(chr(c), size, thickness) for c in range(FIRST, LAST + 1)]
            height = max(g[3].shape[0] for g in glyphs)
            row = np.zeros((height, sum(g[3].shape[1] for g in glyphs)), np.uint8)
            x = 0
            for _, _, _, tile in glyphs:
                row[: tile.shape[0], x : x + tile.shape[1]] = tile
                x += tile.shape[1]
            rows.append(row)
            ascent = cv2.getTextSize("H", cv2.FONT_HERSHEY_SIMPLEX, size / PX_PER_SCALE, thickness)[0][1]
            strips.append(
                {
                    "weight": weight,
                    "size": size,
                    "y": y,
                    "ascent": ascent,
                    "glyphs": [[adv, dx, dy, t.shape[1], t.shape[0]] for adv, dx, dy, t in glyphs],
                }
            )
            y += height
    atlas = np.zeros((y, max(r.shape[1] for r in rows)), np.uint8)
    for strip, row in zip(strips, rows, strict=True):
        atlas[strip["y"] : strip["y"] + row.shape[0], : row.shape[1]] = row

    args.out_dir.mkdir(parents=True, exist_ok=True)
    png = args.out_dir / "font_atlas.png"
    if not cv2.imwrite(str(png), atlas, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise SystemExit(f"cannot write {png}")
    meta = {
        "what": "glyph coverage (0-255) of printable ASCII as cv2.putText draws FONT_HERSHEY_SIMPLEX",
        "font": 'Rubik for OpenCV 2.300: OpenCV\'s embedded "sans" face, which putText uses for the '
        "Hershey font names from OpenCV 5 on",
        "copyright": "Copyright 2015 The Rubik Project Authors (https://github.com/googlefonts/rubik)",
        "license": "SIL Open Font License 1.1 (https://openfontlicense.org); OpenCV itself is Apache-2.0",
        "rendered_with": f"OpenCV {cv2.__version__}: cv2.putText(img, ch, org, cv2.FONT_HERSHEY_SIMPLEX, "
        "size * 3.7 / 100, 255, thickness, cv2.LINE_AA); thickness 1 = regular, 2 = bold",
        "regenerate": "python scripts/make_font_atlas.py",
        "first_char": FIRST,
        "glyph_fields": ["advance", "dx", "dy", "width", "height"],
        "layout": "one strip per weight and size at rows y...; its glyphs left to right in character "
        "order, each starting where the previous one's width ends; (dx, dy) is the tile's top-left "
        "from the pen on the baseline; ascent is the text height cv2.getTextSize reports",
    }
    lines = [json.dumps(s, separators=(",", ":")) for s in strips]
    body = json.dumps(meta, indent=2)[:-2] + ',\n  "strips": [\n    ' + ",\n    ".join(lines) + "\n  ]\n}\n"
    (args.out_dir / "font_atlas.json").write_text(body, encoding="utf-8")
    print(f"{png}: {atlas.shape[1]}x{atlas.shape[0]}, {png.stat().st_size} bytes; {len(strips)} strips")


if __name__ == "__main__":
    main()
