"""Run the live face detector over the study's frame sets and keep every raw detection.

Each frame is searched the way ``FaceDetector.detect(zoom=True)`` searches it —
the whole frame, then, when that finds nothing, the four corner tiles — but
both are always run and kept (with ``trust=None``), so any trust rule can be
replayed on them afterwards exactly as the detector would apply it
(:func:`replay`; ``measure`` checks the replay against the real ``detect``).
Raw detections go to ``build/detector-trust/<set>.pkl``.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from emodesk.evaluation.datasets import load_split
from emodesk.inference.face_detector import ZOOM_TILE, FaceDetector
from emodesk.inference.face_trust import FaceTrust
from emodesk.inference.registry import find_model
from emodesk.inference.runtime import OnnxModel
from emodesk.lab.paths import REPO
from emodesk.lab.studies.detector_trust import scenes
from emodesk.types import FaceBox, iou

CACHE = REPO / "build" / "detector-trust"
FER = REPO.parent / "shared" / "datasets" / "faces" / "fer2013"

Box4 = tuple[int, int, int, int]


@dataclass(frozen=True)
class FrameSet:
    """A named, seeded set of frames: negatives of one kind, or FER faces in webcam frames."""

    name: str
    kind: str  # a negative kind of :mod:`scenes`, or "face"
    n: int
    seed0: int
    split: str = ""  # FER-2013 split of the faces ("face" sets)
    sizes: tuple[int, int] | None = None  # face sizes in px (None: webcam_fer's 90–220)


def _sets() -> list[FrameSet]:
    out: list[FrameSet] = []
    for k, kind in enumerate(scenes.NEGATIVE_KINDS):
        out.append(FrameSet(f"val-{kind}", kind, 600, 50_000_000 + 1_000_000 * k))
        out.append(FrameSet(f"test-{kind}", kind, 3000, 10_000_000 + 1_000_000 * k))
    out.append(FrameSet("val-photo", "photo", 600, 55_000_000))  # the verifier's validation only
    out.append(FrameSet("test-photo-held-out", "photo-held-out", 3000, 20_000_000))  # other photographs
    out += [
        FrameSet("val-faces", "face", 1000, 80_000_000, "val"),
        FrameSet("val-small-faces", "face", 1000, 90_000_000, "val", scenes.SMALL_FACES),
        # seed0 = 0 and every test face: exactly build/fer-webcam/test.csv's frames
        FrameSet("test-faces", "face", 10**9, 0, "test"),
        FrameSet("test-small-faces", "face", 1500, 70_000_000, "test", scenes.SMALL_FACES),
    ]
    return out


SETS = {s.name: s for s in _sets()}


def frames(fs: FrameSet) -> Iterator[tuple[np.ndarray, Box4 | None]]:
    """The frames of ``fs`` and, for face sets, the face's square."""
    if fs.kind != "face":
        for i in range(fs.n):
            yield scenes.negative(fs.kind, fs.seed0 + i), None
        return
    rows = load_split(FER, fs.split)  # type: ignore[arg-type]
    if fs.split == "val":  # the faces nearest the end are least like the first sets' (an even spread)
        rows = rows[:: max(1, len(rows) // fs.n)]
    for i, row in enumerate(rows[: fs.n]):
        face = cv2.imread(str(row.x), cv2.IMREAD_GRAYSCALE)
        if face is None:
            raise FileNotFoundError(row.x)
        yield scenes.positive(face, fs.seed0 + i, fs.sizes)


Det = tuple[float, tuple[float, float, float, float], np.ndarray]  # score, box, keypoints (6, 2)


def _pack(faces: list[FaceBox]) -> list[Det]:
    return [(f.score, f.box, np.asarray(f.keypoints, np.float32)) for f in faces]


def tiles(image: np.ndarray) -> list[tuple[int, int, int, int]]:
    """The four corner tiles ``(x0, y0, w, h)`` of ``FaceDetector.detect``'s zoomed look."""
    ih, iw = image.shape[:2]
    th, tw = max(1, round(ih * ZOOM_TILE)), max(1, round(iw * ZOOM_TILE))
    return [(x0, y0, tw, th) for y0 in dict.fromkeys((0, ih - th)) for x0 in dict.fromkeys((0, iw - tw))]


def raw(detector: FaceDetector, image: np.ndarray) -> dict[str, list[Det]]:
    """Whole-frame and tile detections of a detector built with ``trust=None``."""
    assert detector.trust is None
    found: list[FaceBox] = []
    for x0, y0, w, h in tiles(image):
        found += detector._detect_in(image, x0, y0, w, h)
    return {"full": _pack(detector._detect(image)), "tiles": _pack(found)}


def replay(
    record: dict[str, list[Det]], accept: Callable[[FaceBox], bool], iou_threshold: float = 0.3
) -> list[FaceBox]:
    """What ``FaceDetector.detect(zoom=True)`` returns with a trust rule ``accept``, from raw detections."""
    full = [FaceBox(b, s, k) for s, b, k in record["full"]]
    kept = [f for f in full if accept(f)]
    if kept:
        return sorted(kept, key=lambda f: f.area, reverse=True)
    found = [f for f in (FaceBox(b, s, k) for s, b, k in record["tiles"]) if accept(f)]
    out: list[FaceBox] = []
    for f in sorted(found, key=lambda f: f.score, reverse=True):
        if all(iou(f.box, k.box) <= iou_threshold for k in out):
            out.append(f)
    return sorted(out, key=lambda f: f.area, reverse=True)


def trust_rule(trust: FaceTrust | None) -> Callable[[FaceBox], bool]:
    return (lambda f: True) if trust is None else trust.accepts


def collect(fs: FrameSet, detector: FaceDetector, *, log: Callable[[str], None] = print) -> Path:
    """Detect on every frame of ``fs`` and pickle ``[{"full", "tiles", "face"}]`` in :data:`CACHE`."""
    CACHE.mkdir(parents=True, exist_ok=True)
    out = CACHE / f"{fs.name}.pkl"
    records: list[dict[str, object]] = []
    t0 = time.perf_counter()
    for i, (image, face) in enumerate(frames(fs)):
        rec: dict[str, object] = dict(raw(detector, image))
        rec["face"] = face
        records.append(rec)
        if (i + 1) % 1000 == 0:
            log(f"  {fs.name}: {i + 1} frames, {time.perf_counter() - t0:.0f} s")
    with open(out, "wb") as fh:
        pickle.dump({"set": fs.__dict__, "records": records}, fh)
    log(f"{fs.name}: {len(records)} frames in {time.perf_counter() - t0:.0f} s → {out}")
    return out


def study_detector() -> FaceDetector:
    """The app's detector (``pipeline/models.py``: defaults, CPU, one thread) with the trust rule off."""
    return FaceDetector(OnnxModel(find_model("face-detector-blazeface-short"), device="cpu"), trust=None)


def main() -> int:
    import sys

    names = sys.argv[1:] or list(SETS)
    det = study_detector()
    for name in names:
        if (CACHE / f"{name}.pkl").is_file():
            print(f"{name}: cached")
            continue
        collect(SETS[name], det)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
