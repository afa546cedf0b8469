"""A candidate third check, measured here and not shipped: does the face survive a second look?

The detector is run again on a square crop twice the box's size centred on the
box; a detection is kept when that pass finds a box near the crop's centre
(score ≥ the detector's ``min_score``). A real face seen 2–4× larger keeps firing;
most boxes on cloth, skin and wood do not. One more detector pass (~1.4 ms on
one core) per box found. The crops are rebuilt from the seeded frames, only for
frames where the untrusted detector found anything.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np

from emodesk.inference.face_detector import FaceDetector
from emodesk.lab.studies.detector_trust import collect as col
from emodesk.lab.studies.detector_trust import scenes
from emodesk.types import FaceBox

CROP = 2.0  # the crop's side over the box's longer side


def second_look(det: FaceDetector, image: np.ndarray, face: FaceBox) -> float:
    """The best score the detector gives near the centre of a :data:`CROP`× crop around ``face``."""
    x, y, w, h = face.box
    s = max(2, round(CROP * max(w, h)))
    x0, y0 = round(x + w / 2 - s / 2), round(y + h / 2 - s / 2)
    pad = cv2.copyMakeBorder(image, s, s, s, s, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    crop = np.ascontiguousarray(pad[y0 + s : y0 + 2 * s, x0 + s : x0 + 2 * s])
    best = 0.0
    for g in det._detect(crop):
        gx, gy = g.box[0] + g.box[2] / 2, g.box[1] + g.box[3] / 2
        if abs(gx - s / 2) < s / 4 and abs(gy - s / 2) < s / 4:
            best = max(best, g.score)
    return best


def key(f: FaceBox) -> tuple[float, ...]:
    return tuple(round(float(v), 3) for v in f.box)


def scores(name: str, records: list[dict[str, Any]], det: FaceDetector) -> dict[tuple[float, ...], float]:
    """Second-look scores of every raw box of set ``name``, keyed by frame index and box (cached)."""
    path = col.CACHE / f"{name}.second.pkl"
    if path.is_file():
        with open(path, "rb") as fh:
            return pickle.load(fh)  # type: ignore[no-any-return]
    out: dict[tuple[float, ...], float] = {}
    fs = col.SETS[name]
    images: Iterator[np.ndarray | None]
    if fs.kind == "face":
        images = (im for im, _ in col.frames(fs))
    else:  # rebuild only the frames with a box (a few percent of most negative sets)
        images = (
            scenes.negative(fs.kind, fs.seed0 + i) if r["full"] or r["tiles"] else None
            for i, r in enumerate(records)
        )
    for i, (image, rec) in enumerate(zip(images, records, strict=False)):
        boxes = [FaceBox(b, s, k) for part in ("full", "tiles") for s, b, k in rec[part]]
        for f in boxes:
            assert image is not None
            out[(i, *key(f))] = second_look(det, image, f)
    with open(path, "wb") as fh:
        pickle.dump(out, fh)
    return out
