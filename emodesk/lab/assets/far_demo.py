"""The demo clip with the speaker twice as far away: for timing the face path on a small face.

Every frame of ``assets/demo.mp4`` is shrunk to ``--scale`` (default 0.45) and
placed in the middle of a 640×480 frame of the clip's own edge colour, so the
face is about 70 px wide — too small for the detector's whole-frame view, which
makes every detection take its zoomed second look (``FaceDetector``). The audio
track is copied. Deterministic.

    python -m emodesk.lab.assets.far_demo [--out build/demo-far.mp4]
    emodesk bench build/demo-far.mp4 --seconds 60 --frames 600 --no-baseline \\
        --json docs/results/bench-2core-far-face.json
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import cv2
import numpy as np

from emodesk.lab.paths import REPO


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, default=REPO / "assets" / "demo.mp4")
    ap.add_argument("--out", type=Path, default=REPO / "build" / "demo-far.mp4")
    ap.add_argument("--scale", type=float, default=0.45)
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(args.src)) as src, av.open(str(args.out), "w") as dst:
        vin, ain = src.streams.video[0], src.streams.audio[0]
        rate = Fraction(vin.average_rate or 30)
        vout = cast("av.video.stream.VideoStream", dst.add_stream("libx264", rate=rate))
        vout.width, vout.height, vout.pix_fmt = vin.width, vin.height, "yuv420p"
        vout.options = {"crf": "18", "preset": "veryfast"}
        aout = cast("av.audio.stream.AudioStream", dst.add_stream("aac", rate=ain.rate))
        for frame in src.decode(vin, ain):
            if isinstance(frame, av.VideoFrame):
                img = frame.to_ndarray(format="bgr24")
                h, w = img.shape[:2]
                size = (round(w * args.scale), round(h * args.scale))
                small = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
                out = np.empty_like(img)
                out[:] = img[0, 0]
                y0, x0 = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
                out[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
                vf = av.VideoFrame.from_ndarray(out, format="bgr24")
                vf.pts, vf.time_base = frame.pts, frame.time_base
                for pkt in vout.encode(vf):
                    dst.mux(pkt)
            elif isinstance(frame, av.AudioFrame):
                frame.pts = None
                for pkt in aout.encode(frame):
                    dst.mux(pkt)
        for pkt in [*vout.encode(None), *aout.encode(None)]:
            dst.mux(pkt)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
