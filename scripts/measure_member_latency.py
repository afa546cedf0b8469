"""Per-member inference time at batch 1 on one CPU thread: what each model costs the live app.

Face members score one 48×48 (or their own size) crop per call, preprocessing
included (the scorer's ``score_crops`` on an already-cropped face); voice
members score one 3-s utterance given the ASR's encoder pass (shared with the
transcript, so only pooling, normalisation and the head are theirs), and the
encoder pass itself is reported once; text members score one 12-word sentence.
Median and p95 over ``--runs`` calls after a warm-up. Run on a quiet machine.

    python scripts/measure_member_latency.py [--runs 300] [--json docs/member-latency.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from emodesk.inference.registry import installed_manifests  # noqa: E402
from emodesk.inference.runtime import OnnxModel  # noqa: E402

SENTENCE = "I honestly did not expect the meeting to go this well today, thank you"


def timed(fn: Callable[[], object], runs: int) -> dict[str, float]:
    for _ in range(max(5, runs // 10)):
        fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": float(np.percentile(ts, 50)), "p95_ms": float(np.percentile(ts, 95))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    from emodesk.inference.face_scorer import FaceExpressionScorer
    from emodesk.inference.utterance_scorers import TextScorer, VoiceScorer
    from emodesk.speech.asr import Transcriber

    rng = np.random.default_rng(0)
    crop = rng.integers(0, 255, size=(96, 96, 3), dtype=np.uint8)
    t = np.arange(3 * 16000) / 16000
    audio = (0.1 * np.sin(2 * np.pi * 180 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    report: dict[str, object] = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": 1},
        "members": {},
    }
    members: dict[str, object] = {}
    asr = Transcriber(device="cpu", cpu_threads=1)
    encoded = asr.encode(audio)
    members["asr-encoder-pass (shared)"] = {"modality": "voice", **timed(lambda: asr.encode(audio), 30)}
    for m in sorted(installed_manifests().values(), key=lambda m: (m.modality, m.id)):
        model = OnnxModel(m, device="cpu", intra_op_threads=1)
        if m.modality == "face":
            face = FaceExpressionScorer(model)
            members[m.id] = {"modality": "face", **timed(lambda f=face: f.score_crops([crop]), args.runs)}
        elif m.modality == "voice":
            voice = VoiceScorer(model, asr_device="cpu")
            members[m.id] = {
                "modality": "voice",
                **timed(lambda v=voice: v.score(audio, encoded=encoded), args.runs),
            }
        elif m.modality == "text":
            text = TextScorer(model)
            members[m.id] = {"modality": "text", **timed(lambda s=text: s.score(SENTENCE), args.runs)}
    report["members"] = members
    for name, r in members.items():
        print(f"{name:36s} {r['modality']:6s} p50 {r['p50_ms']:7.2f} ms   p95 {r['p95_ms']:7.2f} ms")  # type: ignore[index]
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
