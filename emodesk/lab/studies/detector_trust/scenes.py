"""Frames with no face in them, and frames with one known face, all generated and seeded.

Nothing is downloaded: every negative is drawn here, so it can be shared and
rebuilt. Five kinds of negatives, 640×480 BGR, each through the same camera
(uneven light, defocus, sensor noise, MJPEG compression):

- ``room``: an office or room as smooth colour shading with shelves, a door,
  a monitor, a lamp (the colour cousin of ``webcam_fer.background``);
- ``skin``: skin-coloured textures (shading, pores, blotches, creases), whole
  frame or a large patch;
- ``cloth``: fabric folds and wrinkles in skin and red tones (the reported
  red jacket), as a garment over a room or filling the frame;
- ``cartoon``: *drawn* cartoon faces — smileys and bare "two dark dots over a
  line" blobs on skin-coloured ovals, 30–260 px — which a detector of real
  faces should not report as a person;
- ``wood``: wood grain with knots (desks, doors, shelves).

Positives reuse ``webcam_fer``'s frame builder (same background, placement and
camera), with its default 90–220 px faces or small 60–150 px ones.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from emodesk.lab.assets.webcam_fer import make_frame_with_box

W, H = 640, 480
NEGATIVE_KINDS = ("room", "skin", "cloth", "cartoon", "wood")
SMALL_FACES = (60, 150)  # px in a 640×480 frame: 1–2.5 m from a laptop camera


def _smooth(
    rng: np.random.Generator, cells: tuple[int, int], lo: float, hi: float, ch: int = 1
) -> np.ndarray:
    """A smooth random field ``(H, W, ch)`` from a coarse grid of ``cells`` (rows, cols)."""
    coarse = rng.uniform(lo, hi, size=(*cells, ch)).astype(np.float32)
    out = cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC)
    return out.reshape(H, W, ch)


def _soft(mask: np.ndarray, sigma: float) -> tuple[np.ndarray, tuple[slice, slice]]:
    """A uint8 shape ``mask`` (255 inside) blurred by ``sigma``: ``(alpha (h, w, 1), roi)``.

    Only the shape's neighbourhood is blurred and returned, which keeps a frame of
    many shapes cheap (a full-frame blur per shape costs more than the detector).
    """
    x, y, w, h = cv2.boundingRect(mask)
    m = int(3 * sigma) + 2
    x0, y0, x1, y1 = max(0, x - m), max(0, y - m), min(W, x + w + m), min(H, y + h + m)
    roi = (slice(y0, y1), slice(x0, x1))
    alpha: np.ndarray = mask[roi].astype(np.float32) / 255.0
    if alpha.size:
        alpha = np.asarray(cv2.GaussianBlur(alpha, (0, 0), sigma))
    return alpha.reshape(*alpha.shape[:2], 1), roi


def _blank() -> np.ndarray:
    return np.zeros((H, W), np.uint8)


def _paint(img: np.ndarray, mask: np.ndarray, sigma: float, colour: np.ndarray) -> None:
    """Blend ``colour`` into ``img`` (float32, in place) through the soft shape ``mask``."""
    a, roi = _soft(mask, sigma)
    img[roi] = img[roi] * (1 - a) + colour * a


def _noise(shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian noise from OpenCV's generator (seeded by :func:`negative`; numpy's is 4× slower)."""
    out = np.empty(shape, np.float32)
    cv2.randn(out, 0.0, sigma)  # type: ignore[call-overload]
    return out


def _skin_colour(rng: np.random.Generator) -> np.ndarray:
    """A BGR skin tone, from pale to dark (hue 5–25°, saturation 0.2–0.6)."""
    hsv = np.array([[[rng.uniform(3, 13), rng.uniform(50, 155), rng.uniform(70, 245)]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _red_colour(rng: np.random.Generator) -> np.ndarray:
    """A BGR red to orange-red or wine (a jacket, a sweater)."""
    h = rng.uniform(0, 8) if rng.random() < 0.6 else rng.uniform(170, 180)
    hsv = np.array([[[h, rng.uniform(120, 255), rng.uniform(80, 240)]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def room(rng: np.random.Generator) -> np.ndarray:
    """Smooth colour shading with soft-edged rectangles, ellipses and lines."""
    tint = rng.uniform(0.75, 1.25, size=3).astype(np.float32)
    bg = _smooth(rng, (4, 5), 40, 210, 1) * tint + _smooth(rng, (3, 3), -20, 20, 3)
    bg = np.ascontiguousarray(bg, np.float32)
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = int(rng.integers(0, W - 30)), int(rng.integers(0, H - 30))
        x1, y1 = x0 + int(rng.integers(30, 300)), y0 + int(rng.integers(20, 300))
        pick = rng.random()
        axes = (int(rng.integers(10, 120)), int(rng.integers(10, 120)))
        angle = float(rng.uniform(0, 180))
        y2, t = y0 + int(rng.integers(-20, 21)), int(rng.integers(2, 12))

        m = _blank()
        if pick < 0.5:
            cv2.rectangle(m, (x0, y0), (x1, y1), 255, thickness=-1)
        elif pick < 0.75:
            cv2.ellipse(m, (x0, y0), axes, angle, 0, 360, 255, thickness=-1)
        else:
            cv2.line(m, (x0, y0), (x1, y2), 255, t)
        _paint(bg, m, float(rng.uniform(0.8, 6.0)), rng.uniform(15, 240, size=3).astype(np.float32))
    return bg


def skin(rng: np.random.Generator) -> np.ndarray:
    """Skin: a tone under soft shading, pores, blotches and a few creases."""
    base = _skin_colour(rng)
    shade = _smooth(rng, (3, 4), 0.6, 1.25)
    fine = cv2.GaussianBlur(_noise((H, W), 1.0), (0, 0), float(rng.uniform(0.7, 2.5)))
    x = base * shade * (1 + float(rng.uniform(0.02, 0.1)) * fine[..., None])
    x = np.ascontiguousarray(x, np.float32)
    for _ in range(int(rng.integers(0, 12))):  # blotches, freckles, shadows
        c = (int(rng.integers(0, W)), int(rng.integers(0, H)))
        r = int(rng.integers(3, 60))
        a, roi = _soft(cv2.circle(_blank(), c, r, 255, -1), r * 0.5 + 1)
        x[roi] *= 1 - float(rng.uniform(0.1, 0.4)) * a
    for _ in range(int(rng.integers(0, 6))):  # creases
        p0 = (int(rng.integers(0, W)), int(rng.integers(0, H)))
        p1 = (p0[0] + int(rng.integers(-250, 250)), p0[1] + int(rng.integers(-80, 80)))
        t = int(rng.integers(1, 5))
        a, roi = _soft(cv2.line(_blank(), p0, p1, 255, t), float(rng.uniform(1, 4)))
        x[roi] *= 1 - 0.35 * a
    if rng.random() < 0.4:  # a patch of skin (an arm, a hand) in a room
        bg = room(rng)
        mask = np.zeros((H, W), np.float32)
        axes = (int(rng.integers(80, 300)), int(rng.integers(60, 220)))
        cv2.ellipse(
            mask,
            (int(rng.integers(0, W)), int(rng.integers(0, H))),
            axes,
            float(rng.uniform(0, 180)),
            0,
            360,
            1.0,
            -1,
        )
        soft = np.asarray(cv2.GaussianBlur(mask, (0, 0), 4.0))[..., None]
        x = bg * (1 - soft) + x * soft
    return x


def cloth(rng: np.random.Generator) -> np.ndarray:
    """Fabric: a skin or red tone shaded by folds (warped sinusoids) and fine weave."""
    colour = _red_colour(rng) if rng.random() < 0.6 else _skin_colour(rng)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    folds = np.zeros((H, W), np.float32)
    for _ in range(int(rng.integers(2, 6))):
        th = float(rng.uniform(0, np.pi))
        freq = float(rng.uniform(0.01, 0.06))
        warp = _smooth(rng, (3, 4), -25, 25)[..., 0]
        folds += float(rng.uniform(0.3, 1.0)) * np.sin(freq * (xx * np.cos(th) + yy * np.sin(th) + warp))
    folds = folds / max(1e-6, float(np.abs(folds).max()))
    shade = 1 + float(rng.uniform(0.15, 0.45)) * folds
    shade *= _smooth(rng, (3, 3), 0.7, 1.2)[..., 0]
    weave = 1 + 0.05 * np.sin(xx * float(rng.uniform(0.8, 2.0))) * np.sin(yy * float(rng.uniform(0.8, 2.0)))
    x = colour * (shade * weave)[..., None]
    if rng.random() < 0.6:  # a garment (a jacket's torso and collar) over a room
        bg = room(rng)
        mask = np.zeros((H, W), np.float32)
        cx = int(rng.integers(100, W - 100))
        top = int(rng.integers(120, 360))
        half = int(rng.integers(120, 300))
        pts = np.array(
            [
                [cx - half, H],
                [cx - half // 2, top],
                [cx - 30, top - 20],
                [cx + 30, top - 20],
                [cx + half // 2, top],
                [cx + half, H],
            ],
            np.int32,
        )
        cv2.fillPoly(mask, [pts], 1.0)
        soft = np.asarray(cv2.GaussianBlur(mask, (0, 0), 2.0))[..., None]
        x = bg * (1 - soft) + x * soft
    return x


def _cartoon_face(img: np.ndarray, rng: np.random.Generator) -> None:
    """Draw one cartoon face (a smiley, or bare dots over a line on an oval) into ``img``."""
    r = int(rng.integers(15, 131))
    cx, cy = int(rng.integers(r, W - r)), int(rng.integers(r, H - r))
    smiley = rng.random() < 0.5
    fill = (
        np.array([40, 210, 250], np.float32) * rng.uniform(0.7, 1.1)
        if smiley and rng.random() < 0.6
        else _skin_colour(rng)
    )
    ax = (r, int(r * rng.uniform(1.0, 1.3)))
    cv2.ellipse(img, (cx, cy), ax, 0, 0, 360, fill.tolist(), -1, cv2.LINE_AA)
    if smiley:
        cv2.ellipse(img, (cx, cy), ax, 0, 0, 360, (20, 20, 20), max(1, r // 15), cv2.LINE_AA)
    dark = float(rng.uniform(0, 70))
    ink = (dark, dark, dark)
    ex, ey = int(r * rng.uniform(0.25, 0.45)), int(r * rng.uniform(0.15, 0.4))
    er = max(1, int(r * rng.uniform(0.07, 0.18)))
    cv2.circle(img, (cx - ex, cy - ey), er, ink, -1, cv2.LINE_AA)
    cv2.circle(img, (cx + ex, cy - ey), er, ink, -1, cv2.LINE_AA)
    my, mw = int(r * rng.uniform(0.3, 0.55)), int(r * rng.uniform(0.25, 0.55))
    t = max(1, r // 12)
    if rng.random() < 0.5:
        cv2.line(img, (cx - mw, cy + my), (cx + mw, cy + my), ink, t, cv2.LINE_AA)
    else:
        cv2.ellipse(img, (cx, cy + my // 2), (mw, max(1, my // 2)), 0, 20, 160, ink, t, cv2.LINE_AA)
    if rng.random() < 0.4:  # a nose
        cv2.circle(img, (cx, cy + my // 4), max(1, er // 2), ink, -1, cv2.LINE_AA)


def cartoon(rng: np.random.Generator) -> np.ndarray:
    """One to four drawn cartoon faces on a room or a skin texture."""
    img = np.ascontiguousarray((room(rng) if rng.random() < 0.7 else skin(rng)).clip(0, 255))
    for _ in range(int(rng.integers(1, 5))):
        _cartoon_face(img, rng)
    return img


def wood(rng: np.random.Generator) -> np.ndarray:
    """Wood grain: rings around a far-away centre, bent by noise, with dark knots."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    cx, cy = float(rng.uniform(-2000, 2600)), float(rng.uniform(-3000, -600))
    warp = _smooth(rng, (4, 6), -12, 12)[..., 0]
    d = np.hypot(xx - cx, (yy - cy) * float(rng.uniform(0.05, 0.3))) + warp
    for _ in range(int(rng.integers(0, 4))):  # knots bend the rings around them
        kx, ky = float(rng.uniform(0, W)), float(rng.uniform(0, H))
        kr = float(rng.uniform(8, 40))
        d += 30 * np.exp(-((xx - kx) ** 2 + (yy - ky) ** 2) / (2 * (2.5 * kr) ** 2))
    rings = 0.5 + 0.5 * np.sin(d * float(rng.uniform(0.15, 0.6)))
    rings = rings ** float(rng.uniform(1.0, 4.0))
    hsv = np.array([[[rng.uniform(8, 22), rng.uniform(90, 200), rng.uniform(90, 220)]]], np.uint8)
    base = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)
    x = base * (1 - float(rng.uniform(0.2, 0.5)) * rings)[..., None]
    return x * _smooth(rng, (2, 3), 0.8, 1.15)


#: real photographs without a person's face, bundled with scikit-image (the ``assets`` extra), in two
#: disjoint sets: ``photo`` frames (for training and validation) and ``photo-held-out`` frames (test only)
PHOTOS = {
    "photo": (
        "brick.png",
        "cell.png",
        "chelsea.png",
        "clock_motion.png",
        "coins.png",
        "color.png",
        "gravel.png",
        "hubble_deep_field.jpg",
        "logo.png",
        "microaneurysms.png",
        "page.png",
    ),
    "photo-held-out": (
        "coffee.png",
        "grass.png",
        "horse.png",
        "ihc.png",
        "moon.png",
        "motorcycle_left.png",
        "phantom.png",
        "retina.jpg",
        "rocket.jpg",
        "text.png",
    ),
}
_photos: dict[str, np.ndarray] = {}


def photo(rng: np.random.Generator, names: tuple[str, ...]) -> np.ndarray:
    """A scaled, cropped, maybe mirrored real photograph with no face in it (one of ``names``).

    Not drawn by this module: the held-out set checks what was trained on the generated kinds
    and on the other photographs.
    """
    from pathlib import Path

    import skimage.data

    name = names[int(rng.integers(len(names)))]
    if name not in _photos:
        path = Path(skimage.data.__file__).parent / name
        im = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if im is None:
            raise FileNotFoundError(path)
        _photos[name] = im
    im = _photos[name]
    ih, iw = im.shape[:2]
    k = max(W / iw, H / ih) * float(rng.uniform(1.0, 2.5))
    big = cv2.resize(im, (max(W, round(iw * k)), max(H, round(ih * k))), interpolation=cv2.INTER_LINEAR)
    y0, x0 = int(rng.integers(big.shape[0] - H + 1)), int(rng.integers(big.shape[1] - W + 1))
    out = big[y0 : y0 + H, x0 : x0 + W].astype(np.float32)
    return out[:, ::-1] if rng.random() < 0.5 else out


MAKERS: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "room": room,
    "skin": skin,
    "cloth": cloth,
    "cartoon": cartoon,
    "wood": wood,
    "photo": lambda rng: photo(rng, PHOTOS["photo"]),
    "photo-held-out": lambda rng: photo(rng, PHOTOS["photo-held-out"]),
}
HELD_OUT_KINDS = ("photo-held-out",)  # never used to train or tune anything


def camera(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour webcam: gain, gamma, a side light, defocus, noise, then MJPEG; BGR uint8 out."""
    gamma, gain = float(rng.uniform(0.7, 1.4)), float(rng.uniform(0.6, 1.3))
    lut = ((np.arange(256) / 255.0) ** gamma * gain * 255.0).astype(np.float32)  # a LUT: 5× faster than **
    x = lut[np.clip(np.rint(x), 0, 255).astype(np.uint8)]
    side = float(rng.uniform(-0.35, 0.35))
    x = x * (1 + side * np.linspace(-1, 1, W, dtype=np.float32))[None, :, None]
    sigma = float(rng.uniform(0.0, 1.5))
    if sigma > 0.2:
        x = cv2.GaussianBlur(x.astype(np.float32), (0, 0), sigma)
    x = x + _noise(x.shape, float(rng.uniform(2, 8)))
    img = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return jpeg(img, int(rng.integers(40, 91)))


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """``img`` through JPEG at ``quality``, decoded again as BGR (a grey frame comes back BGR)."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("cv2.imencode failed")
    out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if out is None:
        raise RuntimeError("cv2.imdecode failed")
    return np.asarray(out)


def negative(kind: str, seed: int) -> np.ndarray:
    """One face-free frame of ``kind``; the same seed gives the same frame."""
    rng = np.random.default_rng(seed)
    cv2.setRNGSeed(seed)
    return camera(MAKERS[kind](rng), rng)


def positive(
    face48: np.ndarray, seed: int, sizes: tuple[int, int] | None = None
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A webcam frame with ``face48`` in it, as ``webcam_fer`` builds it, and the face's square.

    With the default sizes and ``seed = i`` this is frame ``i`` of
    ``build/fer-webcam`` (same pixels: the JPEG step is the same encoder).
    """
    frame, quality, box = make_frame_with_box(face48, seed, *(() if sizes is None else (sizes,)))
    return jpeg(frame, quality), box
