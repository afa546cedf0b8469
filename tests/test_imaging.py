"""emodesk.imaging against OpenCV (a development dependency) and on its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emodesk import imaging
from emodesk.errors import InputError

ROOT = Path(__file__).resolve().parent.parent


def _smooth(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A natural-ish image: noise blurred by box averaging (no OpenCV needed)."""
    img = rng.integers(0, 256, (h + 4, w + 4, 3)).astype(np.float32)
    for axis in (0, 1):
        img = sum(np.roll(img, k, axis=axis) for k in range(5)) / 5.0
    return np.clip(img[2 : h + 2, 2 : w + 2], 0, 255).astype(np.uint8)


# (source h, w) → (target h, w): the detector's letterbox, face crops of every size, odd ratios
SIZES = [
    ((480, 640), (96, 128)),
    ((720, 1280), (72, 128)),
    ((481, 641), (96, 128)),
    ((137, 151), (48, 48)),
    ((200, 200), (48, 48)),
    ((49, 48), (48, 48)),
    ((480, 640), (240, 320)),
    ((96, 96), (48, 48)),
    ((1080, 1920), (72, 128)),
    ((30, 25), (48, 48)),
    ((48, 48), (64, 64)),
    ((300, 300), (224, 224)),
]


@pytest.mark.parametrize(("src", "dst"), SIZES)
def test_resize_matches_opencv(src: tuple[int, int], dst: tuple[int, int]) -> None:
    cv2 = pytest.importorskip("cv2")
    img = _smooth(np.random.default_rng(sum(src)), *src)
    shrink = dst[0] < src[0] or dst[1] < src[1]
    ref = cv2.resize(img, (dst[1], dst[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    out = imaging.resize(img, (dst[1], dst[0]))
    assert out.shape == ref.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(int) - ref)
    # Area averaging agrees but for ties (OpenCV rounds a box mean of exactly k + 0.5
    # up for 2×2 boxes, to even for others); its linear path rounds its weights to
    # 11 bits, which moves some pixels by one grey level.
    assert diff.max() <= 1
    assert (diff > 0).mean() < (0.01 if shrink else 0.2)


def test_resize_gray_float_and_identity() -> None:
    rng = np.random.default_rng(0)
    gray = _smooth(rng, 96, 80)[:, :, 0]
    small = imaging.resize(gray, (40, 48))
    assert small.shape == (48, 40) and small.dtype == np.uint8
    assert abs(float(small.mean()) - float(gray.mean())) < 1.0  # area averaging keeps the mean
    f = imaging.resize(gray.astype(np.float32), (40, 48))
    assert f.dtype == np.float32 and np.abs(f - small).max() <= 0.5 + 1e-4
    assert imaging.resize(gray, (80, 96)) is gray
    with pytest.raises(ValueError):
        imaging.resize(gray, (0, 10))


def test_gray_is_bit_exact_with_opencv() -> None:
    cv2 = pytest.importorskip("cv2")
    img = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    assert np.array_equal(imaging.to_gray(img), cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    gray = imaging.to_gray(img)
    assert np.array_equal(imaging.to_gray(imaging.gray_to_bgr(gray)), gray)  # gray → BGR → gray is lossless


def test_crop_square_replicates_the_border() -> None:
    img = np.arange(100, dtype=np.uint8).reshape(10, 10)
    inside = imaging.crop_square(img, 5, 5, 4)
    assert np.array_equal(inside, img[3:7, 3:7])
    corner = imaging.crop_square(img, 0, 0, 4)  # rows and columns -2..1, clipped to 0,0,0,1
    edge = [0, 0, 0, 1]
    assert np.array_equal(corner, img[np.ix_(edge, edge)])


def test_png_round_trip_and_other_readers(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    bgr = rng.integers(0, 256, (33, 47, 3), dtype=np.uint8)
    gray = bgr[:, :, 1].copy()
    imaging.write_png(tmp_path / "c.png", bgr)
    imaging.write_png(tmp_path / "g.png", gray)
    assert np.array_equal(imaging.read_image(tmp_path / "c.png"), bgr)
    assert np.array_equal(imaging.read_image(tmp_path / "g.png"), gray)  # gray stays gray
    assert imaging.read_image(tmp_path / "g.png", gray=False).shape == (33, 47, 3)
    assert np.array_equal(imaging.read_image(tmp_path / "c.png", gray=True), imaging.to_gray(bgr))
    cv2 = pytest.importorskip("cv2")
    assert np.array_equal(cv2.imread(str(tmp_path / "c.png")), bgr)  # another decoder agrees
    face = cv2.imread(str(ROOT / "assets" / "face_astronaut.png"))
    cv2.imwrite(str(tmp_path / "f.jpg"), face, [cv2.IMWRITE_JPEG_QUALITY, 90])
    diff = np.abs(imaging.read_image(tmp_path / "f.jpg").astype(int) - cv2.imread(str(tmp_path / "f.jpg")))
    assert diff.mean() < 1.5  # FFmpeg and libjpeg upsample chroma differently, by a grey level or so


def test_bad_images_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        imaging.read_image(tmp_path / "missing.png")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG not really")
    with pytest.raises(InputError, match=r"junk\.png"):
        imaging.read_image(junk)
    with pytest.raises(InputError, match="cannot write"):
        imaging.write_png(tmp_path / "no" / "such" / "x.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError):
        imaging.encode_png(np.zeros((4, 4), np.float32))
