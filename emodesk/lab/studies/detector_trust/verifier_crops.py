"""The verifier's view of every raw box of a detector_trust frame set, and its scores.

The frames are rebuilt from their seeds (only those with a box, for the
negative sets), and each raw box — whole-frame and zoom-tile detections alike,
in the frame's pixels — is cut the way :func:`emodesk.inference.face_verifier.crop`
cuts it at run time, from the whole frame (``FaceDetector`` verifies tile
boxes on the whole frame too). Crops are cached in
``build/detector-trust/<set>.crops.npz``, keyed like ``second_look``: frame
index and rounded box.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from emodesk.inference.face_verifier import CONTEXT, SIZE, FaceVerifier, crop
from emodesk.lab.studies.detector_trust import collect as col
from emodesk.lab.studies.detector_trust import scenes
from emodesk.lab.studies.detector_trust.second_look import key
from emodesk.types import FaceBox

Key = tuple[float, ...]


def _boxes(rec: dict[str, Any]) -> list[FaceBox]:
    return [FaceBox(b, s, k) for part in ("full", "tiles") for s, b, k in rec[part]]


def crops(
    name: str, records: list[dict[str, Any]], size: int = SIZE, context: float = CONTEXT
) -> tuple[list[Key], np.ndarray]:
    """Keys ``(frame, *box)`` and crops ``(n, size, size)`` of every raw box of set ``name`` (cached,
    with the crop's settings and the number of raw boxes: a cache of other settings is rebuilt)."""
    path = col.CACHE / f"{name}.crops.npz"
    n_boxes = sum(len(r["full"]) + len(r["tiles"]) for r in records)
    if path.is_file():
        with np.load(path) as z:
            if (
                "size" in z
                and int(z["size"]) == size
                and float(z["context"]) == context
                and len(z["keys"]) == n_boxes
            ):
                return [tuple(float(v) for v in k) for k in z["keys"]], z["crops"]
    fs = col.SETS[name]
    images: Iterator[np.ndarray | None]
    if fs.kind == "face":
        images = (im for im, _ in col.frames(fs))
    else:
        images = (
            scenes.negative(fs.kind, fs.seed0 + i) if r["full"] or r["tiles"] else None
            for i, r in enumerate(records)
        )
    keys: list[Key] = []
    out: list[np.ndarray] = []
    for i, (image, rec) in enumerate(zip(images, records, strict=False)):
        for f in _boxes(rec):
            assert image is not None
            keys.append(box_key(i, f))
            out.append(crop(image, f.box, size, context))
    arr = np.stack(out) if out else np.zeros((0, size, size), np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path, keys=np.array(keys, np.float64).reshape(len(keys), 5), crops=arr, size=size, context=context
    )
    return keys, arr


def probabilities(name: str, records: list[dict[str, Any]], verifier: FaceVerifier) -> dict[Key, float]:
    """The verifier's face probability of every raw box of set ``name``, keyed like :func:`crops`."""
    keys, x = crops(name, records, verifier.size, verifier.context)
    return dict(zip(keys, (float(v) for v in verifier.of_crops(x)), strict=True))


def box_key(i: int, f: FaceBox) -> Key:
    return (float(i), *key(f))
