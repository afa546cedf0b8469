"""The face detector's trust rule: real faces pass, boxes whose keypoints no face has do not."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from emodesk.inference.face_detector import FaceDetector
from emodesk.inference.face_trust import DEFAULT_TRUST, FaceTrust, layout
from emodesk.types import FaceBox

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("shipped_models_only")


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    img = cv2.imread(str(ROOT / "assets" / "face_astronaut.png"), cv2.IMREAD_COLOR)
    assert img is not None
    return img


@pytest.fixture(scope="module")
def detector(shipped_models_only: None) -> FaceDetector:
    return FaceDetector.load(device="cpu")


def frame_with(face: np.ndarray, side: int, angle: float = 0.0) -> np.ndarray:
    frame = np.full((480, 640, 3), 110, np.uint8)
    small = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    if angle:
        rot = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
        small = cv2.warpAffine(small, rot, (side, side), borderMode=cv2.BORDER_REPLICATE)
    y0, x0 = (480 - side) // 2, (640 - side) // 2
    frame[y0 : y0 + side, x0 : x0 + side] = small
    return frame


@pytest.mark.parametrize(("side", "angle"), [(256, 0.0), (200, 20.0), (160, -25.0), (120, 0.0)])
def test_the_shipped_rule_keeps_a_real_face(
    detector: FaceDetector, portrait: np.ndarray, side: int, angle: float
) -> None:
    untrusted = FaceDetector(detector.model, trust=None)
    image = frame_with(portrait, side, angle)
    raw = untrusted.detect(image)
    assert len(raw) == 1, "the untrusted detector should find the portrait's face"
    assert DEFAULT_TRUST.rejects(raw[0]) is None
    kept = detector.detect(image)
    assert len(kept) == 1 and np.allclose(kept[0].box, raw[0].box)


def test_layout_of_a_real_face_is_upright_and_ordered(detector: FaceDetector, portrait: np.ndarray) -> None:
    (face,) = detector.detect(frame_with(portrait, 256))
    assert face.keypoints is not None
    m = layout(face.keypoints, face.box[2])
    assert m["mouth_down"] > 0.5  # the mouth is well below the eyes
    assert 0.0 < m["nose_down"] < 1.0  # the nose between the eye line and the mouth
    assert abs(m["roll_deg"]) < 15


def _moved(face: FaceBox, kp: np.ndarray) -> FaceBox:
    return FaceBox(box=face.box, score=face.score, keypoints=kp.astype(np.float32))


def test_implausible_keypoint_layouts_are_rejected(detector: FaceDetector, portrait: np.ndarray) -> None:
    (face,) = detector.detect(frame_with(portrait, 256))
    assert face.keypoints is not None
    kp = face.keypoints.astype(np.float64)
    mid = (kp[0] + kp[1]) / 2
    upside_down = kp.copy()
    upside_down[3] = mid - (kp[3] - mid)  # the mouth above the eyes
    squeezed = kp.copy()
    squeezed[[0, 1]] = mid  # both eyes on one point
    nose_out = kp.copy()
    nose_out[2] = kp[3] + (kp[3] - mid)  # the nose far below the mouth
    spread = kp.copy()
    spread[0], spread[1] = mid - (kp[1] - mid) * 3, mid + (kp[1] - mid) * 3  # eyes wider than the box
    for bad, why in [
        (upside_down, "mouth above the eyes"),
        (squeezed, "no eye distance"),
        (nose_out, "nose below the mouth"),
        (spread, "eyes wider than the box"),
    ]:
        assert DEFAULT_TRUST.rejects(_moved(face, bad)) is not None, why


def test_the_score_floor_is_applied() -> None:
    kp = np.array([[40, 40], [60, 40], [50, 50], [50, 60], [30, 45], [70, 45]], np.float32)
    face = FaceBox(box=(25.0, 25.0, 50.0, 50.0), score=0.99, keypoints=kp)
    rule = FaceTrust(min_score=0.8)
    assert rule.accepts(face)
    assert rule.rejects(FaceBox(face.box, 0.79, kp)) == "score"


def test_a_rejected_whole_frame_box_still_gets_the_zoomed_look(
    detector: FaceDetector, portrait: np.ndarray
) -> None:
    """Trust applies per pass: a small face is still found by the tiles."""
    frame = np.full((480, 640, 3), 110, np.uint8)
    small = cv2.resize(portrait, (130, 130), interpolation=cv2.INTER_AREA)
    frame[20:150, 20:150] = small
    found = detector.detect(frame, zoom=True)
    assert detector.searched_tiles and found and found[0].box[0] < 150 and found[0].box[1] < 150


def test_the_verifier_never_trains_on_the_study_frames() -> None:
    """Held-out photographs are other photographs than the training ones, no harvest part draws a
    held-out kind, and no training seed is a seed of a study frame."""
    pytest.importorskip("skimage")
    from emodesk.lab.studies.detector_trust import collect, scenes
    from emodesk.lab.train.face import verifier

    assert set(scenes.PHOTOS["photo"]).isdisjoint(scenes.PHOTOS["photo-held-out"])
    drawn = {k for kinds in verifier.harvest_kinds().values() for k in kinds}
    assert drawn and drawn.isdisjoint(scenes.HELD_OUT_KINDS)
    a, b = scenes.negative("photo-held-out", 20_000_000), scenes.negative("photo-held-out", 20_000_000)
    assert a.shape == (480, 640, 3) and np.array_equal(a, b)  # seeded
    study = [range(s.seed0, s.seed0 + min(s.n, 10_000)) for s in collect.SETS.values()]
    for part, frames in (("negatives", 4000), ("photos", 4000), ("faces", 6000)):
        seeds = verifier.harvest_seeds(part, frames)
        assert all(seeds.stop <= r.start or r.stop <= seeds.start for r in study), part
    assert not any(s.startswith("test-") or s.endswith("held-out") for s in verifier.VAL_SETS)
