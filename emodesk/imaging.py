"""The image operations the app needs, in NumPy, with PyAV for image files.

Why not OpenCV: the app used a dozen of its functions (resize, gray, one
warp, imread/imwrite), and OpenCV is 157 MB of the 450 MB bundle budget (its
own FFmpeg, OpenBLAS, libaom — the app already carries FFmpeg through PyAV).
Each function here reproduces the OpenCV behaviour the models were trained
with; ``tests/test_imaging.py`` compares them with OpenCV where it is
installed (a development dependency, never a run-time one).
"""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from emodesk.errors import InputError

__all__ = [
    "crop_square",
    "gray_to_bgr",
    "read_image",
    "resize",
    "to_gray",
    "write_png",
]

# ITU-R BT.601 luma in the 15-bit fixed point OpenCV's cv2.COLOR_BGR2GRAY uses (B, G, R).
_GRAY_B, _GRAY_G, _GRAY_R = 3735, 19235, 9798
_GRAY_SHIFT = 15


def to_gray(bgr: np.ndarray) -> np.ndarray:
    """BGR uint8 ``(H, W, 3)`` → gray uint8 ``(H, W)``, bit-exact with ``cv2.COLOR_BGR2GRAY``."""
    if bgr.ndim == 2:
        return bgr
    if bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError(f"expected a BGR image (H, W, 3), got {bgr.shape}")
    b = bgr[:, :, 0].astype(np.uint32)
    y = b * _GRAY_B
    y += bgr[:, :, 1].astype(np.uint32) * _GRAY_G
    y += bgr[:, :, 2].astype(np.uint32) * _GRAY_R
    y += 1 << (_GRAY_SHIFT - 1)
    y >>= _GRAY_SHIFT
    return y.astype(np.uint8)


def gray_to_bgr(gray: np.ndarray) -> np.ndarray:
    """Gray ``(H, W)`` → BGR ``(H, W, 3)`` by copying the channel (``cv2.COLOR_GRAY2BGR``)."""
    if gray.ndim == 3:
        return gray
    return np.repeat(gray[:, :, None], 3, axis=2)


# ------------------------------------------------------------------ resizing


@lru_cache(maxsize=256)
def _matrix(src: int, dst: int) -> np.ndarray:
    """One axis's resampling as a dense ``(dst, src)`` matrix of weights.

    Shrinking averages the source pixels each output pixel covers, weighted by
    the covered length (OpenCV's INTER_AREA); enlarging interpolates linearly
    between the two nearest pixel centres with edge clamping (INTER_LINEAR).
    Built with array arithmetic: face crops change size every frame.
    """
    scale = src / dst
    if dst < src:
        lo = np.arange(dst, dtype=np.float64)[:, None] * scale
        j = np.arange(src, dtype=np.float64)[None, :]
        cover = np.minimum(lo + scale, j + 1) - np.maximum(lo, j)
        return (np.clip(cover, 0.0, None) / scale).astype(np.float32)
    x = np.maximum((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5, 0.0)
    x0 = np.minimum(np.floor(x).astype(np.int64), src - 1)
    x1 = np.minimum(x0 + 1, src - 1)
    frac = x - x0
    m = np.zeros((dst, src), np.float64)
    rows = np.arange(dst)
    np.add.at(m, (rows, x0), 1.0 - frac)
    np.add.at(m, (rows, x1), frac)
    return m.astype(np.float32)


@lru_cache(maxsize=256)
def _band(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """The matrix's nonzero band: source indices and weights ``(dst, taps)``."""
    m = _matrix(src, dst)
    first = np.argmax(m > 0, axis=1)
    taps = int(((m > 0).sum(axis=1)).max())
    idx = np.minimum(first[:, None] + np.arange(taps)[None, :], src - 1)
    wts = np.take_along_axis(m, idx, axis=1)
    wts[first[:, None] + np.arange(taps)[None, :] > src - 1] = 0.0
    return idx, wts


def _resample_axis(img: np.ndarray, axis: int, dst: int) -> np.ndarray:
    """Resample one axis as a weighted sum of a few shifted takes.

    Not a matrix product: NumPy's BLAS would start threads that keep spinning
    between frames and double the app's CPU use next to ONNX Runtime's own.
    """
    if img.shape[axis] == dst:
        return img
    idx, wts = _band(img.shape[axis], dst)
    bcast = [1] * img.ndim
    bcast[axis] = dst
    out: np.ndarray | None = None
    for k in range(idx.shape[1]):
        part = np.take(img, idx[:, k], axis=axis).astype(np.float32, copy=False)
        part *= wts[:, k].reshape(bcast)
        out = part if out is None else np.add(out, part, out=out)
    assert out is not None
    return out


def _box_shrink_uint8(img: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """Whole-number shrink of a uint8 image: integer box sums, rounded like OpenCV's fast path."""
    h, w = img.shape[0] // fy, img.shape[1] // fx
    acc_t = np.uint16 if fy * fx * 255 < 1 << 16 else np.uint32
    rows = img.reshape(h, fy, -1)  # sum row groups first: contiguous memory
    acc: Any = rows[:, 0].astype(acc_t)
    for k in range(1, fy):
        acc += rows[:, k]
    cols = acc.reshape(h, w, fx, -1)
    out: Any = cols[:, :, 0].copy()
    for k in range(1, fx):
        out += cols[:, :, k]
    n = fy * fx
    out += n // 2
    out //= n
    return out.astype(np.uint8).reshape((h, w, *img.shape[2:]))


def resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``img`` (gray or colour, uint8 or float) resized to ``size`` = (width, height).

    Area averaging along an axis that shrinks, linear interpolation along one
    that grows — what ``cv2.resize`` gives with INTER_AREA for shrinking and
    INTER_LINEAR for enlarging (the rule the face models were trained with).
    uint8 in, uint8 out (rounded); float in, float32 out.
    """
    w, h = int(size[0]), int(size[1])
    if w < 1 or h < 1:
        raise ValueError(f"target size must be positive, got {size}")
    ih, iw = img.shape[:2]
    if ih == h and iw == w:
        return img
    if img.dtype == np.uint8 and ih % h == 0 and iw % w == 0:  # 640×480 → 128×96 and the like
        return _box_shrink_uint8(img, ih // h, iw // w)
    out = _resample_axis(_resample_axis(img, 0, h), 1, w)
    if img.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return np.asarray(out, dtype=np.float32)


def crop_square(image: np.ndarray, cx: float, cy: float, side: int) -> np.ndarray:
    """The ``side``×``side`` square centred on (cx, cy); pixels beyond the edge repeat the edge."""
    side = max(1, int(side))
    ih, iw = image.shape[:2]
    top, left = round(cy - side / 2), round(cx - side / 2)
    rows = np.clip(np.arange(top, top + side), 0, ih - 1)
    cols = np.clip(np.arange(left, left + side), 0, iw - 1)
    if rows[0] == top and rows[-1] == top + side - 1 and cols[0] == left and cols[-1] == left + side - 1:
        return image[top : top + side, left : left + side]
    return image.take(rows, axis=0).take(cols, axis=1)


# ------------------------------------------------------------------ files


def read_image(path: str | Path, *, gray: bool | None = None) -> np.ndarray:
    """An image file (PNG, JPEG, BMP, ... whatever FFmpeg decodes) as uint8.

    ``gray=None`` keeps what the file holds: gray files come back ``(H, W)``,
    colour ones BGR ``(H, W, 3)`` — so gray data (FER-2013) never takes a lossy
    gray → colour → gray round trip. ``gray=True``/``False`` forces one.
    :class:`InputError` names the file when it is missing or undecodable.
    """
    import av

    p = Path(path)
    if not p.is_file():
        raise InputError(f"image {p} does not exist")
    try:
        with av.open(str(p)) as c:
            if not c.streams.video:
                raise InputError(f"{p} holds no image")
            frame = next(c.decode(video=0), None)
    except (av.error.FFmpegError, OSError) as e:
        raise InputError(f"cannot read {p} as an image: {e}") from None
    if frame is None:
        raise InputError(f"cannot read {p} as an image: no picture decoded")
    fmt = frame.format.name
    is_gray = fmt.startswith("gray") or fmt.startswith("ya") or fmt in ("monob", "monow")
    want_gray = is_gray if gray is None else gray
    if want_gray:
        if is_gray:
            return np.ascontiguousarray(frame.to_ndarray(format="gray"))
        return to_gray(frame.to_ndarray(format="bgr24"))
    return np.ascontiguousarray(frame.to_ndarray(format="bgr24"))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return (
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    )


def encode_png(img: np.ndarray, *, level: int = 6) -> bytes:
    """A gray ``(H, W)`` or BGR ``(H, W, 3)`` uint8 image as PNG bytes (8-bit, no filter)."""
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3)):
        raise ValueError(f"PNG needs uint8 gray (H, W) or BGR (H, W, 3), got {img.shape} {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    h, w = img.shape[:2]
    if img.ndim == 3:
        rows = np.ascontiguousarray(img[:, :, ::-1]).reshape(h, w * 3)  # PNG stores RGB
        color_type = 2
    else:
        rows = np.ascontiguousarray(img)
        color_type = 0
    raw = np.zeros((h, rows.shape[1] + 1), np.uint8)  # filter byte 0 (none) per row
    raw[:, 1:] = rows
    header = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw.tobytes(), level))
        + _png_chunk(b"IEND", b"")
    )


def write_png(path: str | Path, img: np.ndarray) -> Path:
    """Write ``img`` as a PNG at ``path``; :class:`InputError` names the file when that fails."""
    p = Path(path)
    data = encode_png(img)
    try:
        with open(p, "wb") as f:
            f.write(data)
    except OSError as e:
        raise InputError(f"cannot write {p}: {e.strerror or e}") from None
    return p
