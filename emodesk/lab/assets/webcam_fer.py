"""Build "FER-2013-webcam": the FER-2013 test faces as a webcam frame would show them.

No second face corpus is available offline, so this builds the nearest honest
stand-in for "a person on a webcam is not a FER-2013 crop": each test face
(never used for training or selection) becomes a 640×480 frame in which the
live path — the face detector, then the aligned crop — has to find it again:

1. the 48×48 face is upscaled to a face size drawn in 90–220 px (a person at
   0.5–1.5 m from a laptop camera) and rolled by an angle drawn in ±15°;
2. it is blended, with feathered edges, into a cluttered background (smooth
   low-frequency shading plus a few blurred shapes) at a random position;
3. the frame gets uneven light (gain 0.6–1.3, gamma 0.7–1.4, a side-light
   gradient of up to ±35 %), defocus blur (σ up to 1.5 px), sensor noise
   (σ 2–8 grey levels) and the JPEG compression of a webcam's MJPEG stream
   (quality 40–90).

Seeded per image: the same command writes the same files. Output: grey JPEG
frames and ``test.csv`` (``path,label,source``: FER-2013's labels and the face's PNG), and where the FER+
votes are found (``--ferplus``), ``test-ferplus.csv``: the same frames under their
FER+ majority labels, frames whose majority is none of our seven left out:

    python -m emodesk.lab.assets.webcam_fer [--data DIR] [--out build/fer-webcam]
    emodesk eval face --detect --manifest build/fer-webcam/test.csv \
        --json docs/results/eval-face-fer2013-webcam.json
    emodesk eval face --detect --manifest build/fer-webcam/test-ferplus.csv \
        --json docs/results/eval-face-ferplus-webcam.json

``--split val`` and ``--split train`` (with another ``--seed``) build the same kind of
frames from the training images: a webcam validation set and the live crops that
``emodesk/lab/train/face/ferplus_head.py --live-frames`` learns from.

Rows where the detector finds no face are reported as misses (``no_face``) and
left out of the metrics, which therefore describe the faces the app would score.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import cv2
import numpy as np

from emodesk.evaluation.datasets import dataset_kind, load_split
from emodesk.lab.paths import REPO
from emodesk.labels import LABELS

W, H = 640, 480


def background(rng: np.random.Generator) -> np.ndarray:
    """Smooth shading of a room plus a few soft-edged shapes (shelves, a door, a lamp)."""
    coarse = rng.uniform(40, 200, size=(4, 5)).astype(np.float32)
    bg = cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(2, 6))):
        x0, y0 = int(rng.integers(0, W - 40)), int(rng.integers(0, H - 40))
        x1, y1 = x0 + int(rng.integers(40, 260)), y0 + int(rng.integers(40, 260))
        shape: np.ndarray = np.zeros((H, W), np.float32)
        cv2.rectangle(shape, (x0, y0), (x1, y1), 1.0, thickness=-1)
        shape = cv2.GaussianBlur(shape, (0, 0), float(rng.uniform(1.0, 6.0)))
        bg = bg * (1 - shape) + float(rng.uniform(20, 235)) * shape
    return bg


FACE_SIZES = (90, 220)  # px, inclusive: a person at 0.5–1.5 m from a laptop camera


def place_face(
    frame: np.ndarray, face: np.ndarray, rng: np.random.Generator, sizes: tuple[int, int] = FACE_SIZES
) -> tuple[int, int, int, int]:
    """Upscale, roll and blend ``face`` (48×48 uint8) into ``frame`` in place.

    Returns the face's square ``(x, y, w, h)`` before the roll, for studies
    that need to know where the face is.
    """
    s = int(rng.integers(sizes[0], sizes[1] + 1))
    big = cv2.resize(face.astype(np.float32), (s, s), interpolation=cv2.INTER_CUBIC)
    mask: np.ndarray = np.zeros((s, s), np.float32)
    m = max(2, s // 14)
    mask[m:-m, m:-m] = 1.0
    mask = cv2.GaussianBlur(mask, (0, 0), s * 0.05)
    pad = s // 2  # room for the rotation
    big = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    mask = cv2.copyMakeBorder(mask, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0.0)
    n = big.shape[0]
    rot = cv2.getRotationMatrix2D((n / 2, n / 2), float(rng.uniform(-15, 15)), 1.0)
    big = cv2.warpAffine(big, rot, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpAffine(mask, rot, (n, n), flags=cv2.INTER_LINEAR, borderValue=0.0)
    cx = int(rng.integers(s // 2 + 10, W - s // 2 - 10))
    cy = int(rng.integers(s // 2 + 10, H - s // 2 - 10))
    x0, y0 = cx - n // 2, cy - n // 2
    fx0, fy0 = max(0, -x0), max(0, -y0)
    x0c, y0c = max(0, x0), max(0, y0)
    x1c, y1c = min(W, x0 + n), min(H, y0 + n)
    a = mask[fy0 : fy0 + y1c - y0c, fx0 : fx0 + x1c - x0c]
    f = big[fy0 : fy0 + y1c - y0c, fx0 : fx0 + x1c - x0c]
    region = frame[y0c:y1c, x0c:x1c]
    frame[y0c:y1c, x0c:x1c] = region * (1 - a) + f * a
    return cx - s // 2, cy - s // 2, s, s


def camera(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uneven light, defocus, sensor noise; returns uint8 before the JPEG step."""
    x = np.clip(frame, 0, 255) / 255.0
    x = x ** float(rng.uniform(0.7, 1.4)) * float(rng.uniform(0.6, 1.3))
    side = float(rng.uniform(-0.35, 0.35))
    x = x * (1 + side * np.linspace(-1, 1, W, dtype=np.float32))[None, :]
    sigma = float(rng.uniform(0.0, 1.5))
    x = x * 255.0
    if sigma > 0.2:
        x = cv2.GaussianBlur(x.astype(np.float32), (0, 0), sigma)
    x = x + rng.normal(0, float(rng.uniform(2, 8)), size=x.shape)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def make_frame(face: np.ndarray, seed: int) -> tuple[np.ndarray, int]:
    """One frame for ``face`` and its JPEG quality; the same ``seed`` gives the same frame."""
    frame, quality, _ = make_frame_with_box(face, seed)
    return frame, quality


def make_frame_with_box(
    face: np.ndarray, seed: int, sizes: tuple[int, int] = FACE_SIZES
) -> tuple[np.ndarray, int, tuple[int, int, int, int]]:
    """:func:`make_frame` with a face size range, also returning where the face is."""
    rng = np.random.default_rng(seed)
    frame = background(rng)
    box = place_face(frame, face, rng, sizes)
    return camera(frame, rng), int(rng.integers(40, 91)), box


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "faces" / "fer2013")
    ap.add_argument("--out", type=Path, default=REPO / "build" / "fer-webcam")
    ap.add_argument("--ferplus", type=Path, default=REPO.parent / "shared" / "datasets" / "faces" / "ferplus")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, help="only the first N faces (a quick look)")
    ap.add_argument(
        "--split",
        choices=("test", "val", "train"),
        default="test",
        help="which FER-2013 split (val and train: for choices made in training and for training "
        "on the live crop); writes SPLIT.csv and SPLIT-ferplus.csv",
    )
    args = ap.parse_args()
    if not args.data.is_dir():
        print(f"{args.data}: no FER-2013 folder (see ../shared/datasets/README.md)", file=sys.stderr)
        return 2
    rows = load_split(args.data, args.split)[: args.limit]
    ferplus: dict[str, int] = {}
    if dataset_kind(args.ferplus) == "ferplus":
        ferplus = {r.x: r.label for r in load_split(args.ferplus, args.split)}
    frames = args.out / "frames"
    frames.mkdir(parents=True, exist_ok=True)
    plus = (
        open(args.out / f"{args.split}-ferplus.csv", "w", newline="", encoding="utf-8") if ferplus else None
    )
    wp = csv.writer(plus) if plus is not None else None
    if wp is not None:
        wp.writerow(["path", "label", "source"])
    with open(args.out / f"{args.split}.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "source"])
        for i, row in enumerate(rows):
            face = cv2.imread(str(row.x), cv2.IMREAD_GRAYSCALE)
            if face is None:
                print(f"{row.x}: cannot read", file=sys.stderr)
                return 1
            frame, quality = make_frame(face, args.seed * 1_000_003 + i)
            name = f"frames/{i:05d}.jpg"
            if not cv2.imwrite(str(args.out / name), frame, [cv2.IMWRITE_JPEG_QUALITY, quality]):
                print(f"cannot write {args.out / name}", file=sys.stderr)
                return 1
            w.writerow([name, LABELS[row.label], row.x])
            if wp is not None and row.x in ferplus:
                wp.writerow([name, LABELS[ferplus[row.x]], row.x])
    if plus is not None:
        plus.close()
    also = f" and {args.split}-ferplus.csv" if ferplus else ""
    print(f"wrote {len(rows)} frames and {args.out / f'{args.split}.csv'}{also}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
