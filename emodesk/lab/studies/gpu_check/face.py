"""Check the face path on CUDA: the provider really used, per-frame time, and CPU/CUDA agreement.

Run on a machine with onnxruntime-gpu and an NVIDIA GPU:

    python -m emodesk.lab.studies.gpu_check.face --frames 300 --json gpu-face.json

It builds the face path twice (``device="cuda"`` and ``device="cpu"``) over
the demo clip and reports which execution provider each model got (and why),
milliseconds per frame, the expression scorer's time at batch 1 and 32, and
the largest difference between the CUDA and CPU probabilities.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from emodesk import machine
from emodesk.capture.files import VideoFileSource
from emodesk.capture.sources import demo_clip_path
from emodesk.pipeline.models import load_face_pipeline
from emodesk.types import Frame


def _frames(n: int) -> list[Frame]:
    src = VideoFileSource(demo_clip_path())
    src.open()
    out: list[Any] = []
    try:
        while len(out) < n and (f := src.read()) is not None:
            out.append(f)
    finally:
        src.close()
    return out


def run(device: str, frames: list[Frame]) -> dict:
    pipe, statuses = load_face_pipeline(device=device)  # type: ignore[arg-type]
    if pipe is None:
        raise SystemExit("; ".join(s.message for s in statuses))
    for f in frames[:20]:  # warm-up: CUDA kernels, arena growth
        pipe.process(f)
    times, probs = [], []
    for f in frames:
        t0 = time.perf_counter()
        r = pipe.process(f)
        times.append((time.perf_counter() - t0) * 1000)
        probs.append(r.faces[0].probs if r.faces else np.full(7, np.nan))
    scorer = pipe.scorers[0]
    crop = scorer.crop(frames[0].image, pipe.detector.detect(frames[0].image)[0].box)
    batch = {}
    for n in (1, 32):
        crops = [crop] * n
        scorer.score_crops(crops)
        t0 = time.perf_counter()
        for _ in range(50):
            scorer.score_crops(crops)
        batch[f"batch{n}_ms"] = round((time.perf_counter() - t0) / 50 * 1000, 3)
    return {
        "providers": {s.slot: s.provider for s in statuses},
        "reasons": {s.slot: s.message for s in statuses},
        "frame_ms_p50": round(statistics.median(times), 3),
        "frame_ms_p95": round(float(np.percentile(times, 95)), 3),
        "scorer": batch,
        "probs": np.array(probs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import onnxruntime as ort

    frames = _frames(args.frames)
    cuda, cpu = run("cuda", frames), run("cpu", frames)
    diff = float(np.nanmax(np.abs(cuda.pop("probs") - cpu.pop("probs"))))
    gpu_name = machine.gpu_name() or ""
    report = {
        "gpu": gpu_name,
        "onnxruntime": ort.__version__,
        "available": ort.get_available_providers(),
        "frames": len(frames),
        "cuda": cuda,
        "cpu": cpu,
        "max_abs_prob_diff": diff,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
