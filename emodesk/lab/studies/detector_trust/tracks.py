"""Two people for a minute: how many face tracks does the face path make?

    python -m emodesk.lab.studies.detector_trust.tracks [--seconds 60] [--seed 0]

A synthetic 30 fps video: two copies of ``assets/face_astronaut.png`` (150 and
120 px) sway slowly on a room background (``scenes.room``, fixed), through the
colour webcam model. Two kinds of trouble are added, seeded:

- *head turns*: one face is painted over by the background for 0.5–2.0 s,
  about every 8 s per face (it looks away; the detector cannot see it);
- *missed detections*: on 5 % of frames the detector's result is dropped
  (whatever it found), as a weak frame would.

The face path's own schedule runs (``FacePipeline.boxes``: boxes reused for
40 ms, zoomed looks) with the shipped trust rule, and the tracker as it is
(``FaceTracker()``); it prints the number of tracks and how they split.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import cv2
import numpy as np

from emodesk.inference.face_detector import FaceDetector
from emodesk.inference.registry import find_model
from emodesk.inference.runtime import OnnxModel
from emodesk.lab.paths import REPO
from emodesk.lab.studies.detector_trust import scenes
from emodesk.pipeline.face_path import FacePipeline
from emodesk.pipeline.tracking import FaceTracker
from emodesk.types import Frame

FPS = 30
SIDES = (150, 120)
MISS_RATE = 0.05


def hidden_spans(rng: np.random.Generator, seconds: float) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    t = float(rng.uniform(2, 8))
    while t < seconds:
        d = float(rng.uniform(0.5, 2.0))
        out.append((t, t + d))
        t += d + float(rng.uniform(5, 11))
    return out


def run(seconds: float, seed: int, max_age_s: float | None = None) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    portrait = cv2.imread(str(REPO / "assets" / "face_astronaut.png"), cv2.IMREAD_COLOR)
    assert portrait is not None
    bg = np.clip(scenes.room(np.random.default_rng(seed + 1)), 0, 255).astype(np.uint8)
    faces = [cv2.resize(portrait, (s, s), interpolation=cv2.INTER_AREA) for s in SIDES]
    hides = [hidden_spans(rng, seconds) for _ in SIDES]
    det = FaceDetector(OnnxModel(find_model("face-detector-blazeface-short"), device="cpu"))
    tracker = FaceTracker() if max_age_s is None else FaceTracker(max_age_s=max_age_s)
    path = FacePipeline(det, [], tracker)
    ids: Counter[int] = Counter()
    for i in range(int(seconds * FPS)):
        t = i / FPS
        img = bg.copy()
        for k, (f, s) in enumerate(zip(faces, SIDES, strict=True)):
            if any(a <= t < b for a, b in hides[k]):
                continue
            x = int(60 + 300 * k + 25 * np.sin(2 * np.pi * t / (7 + 3 * k)))
            y = int(120 + 15 * np.sin(2 * np.pi * t / (5 + 2 * k)))
            img[y : y + s, x : x + s] = f
        frame = Frame(t=t, image=scenes.camera(img.astype(np.float32), rng), index=i)
        boxes = path.boxes(frame)
        if rng.random() < MISS_RATE:
            boxes = []
        for tid in path.tracker.update(t, [b.box for b in boxes]):
            ids[tid] += 1
    return {
        "seconds": seconds,
        "seed": seed,
        "tracker_max_age_s": tracker.max_age_s,
        "hidden_spans_s": [[round(b - a, 2) for a, b in h] for h in hides],
        "tracks": len(ids),
        "frames_per_track": dict(sorted(ids.items())),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-age-s", type=float, help="the tracker's max_age_s (default: FaceTracker's)")
    args = ap.parse_args()
    print(json.dumps(run(args.seconds, args.seed, args.max_age_s)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
