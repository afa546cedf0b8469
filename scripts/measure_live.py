"""Measure the live pipeline on this machine: the demo clip (or any source), paced in real time.

Runs the same worker threads as the window (no window), for ``--seconds``,
then prints and optionally writes the stats: capture and face frames/s,
frame → face-score latency, end of utterance → transcript latency, drops,
CPU use and peak RSS. Also times the unpaced face path (``analyze``) for
throughput. The numbers in README.md come from:

    python scripts/measure_live.py --seconds 60 --json docs/live-2core.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def measure_live(spec: str, seconds: float) -> dict:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QCoreApplication, QTimer

    from emodesk.workers.live import LivePipeline

    app = QCoreApplication.instance() or QCoreApplication(sys.argv[:1])
    pipeline = LivePipeline.from_spec(spec, loop=True, use_mic=False)
    cpu0, wall0 = _cpu_seconds(), time.monotonic()
    pipeline.start()
    QTimer.singleShot(int(seconds * 1000), app.quit)
    app.exec()
    snap = pipeline.snapshot()
    cpu = (_cpu_seconds() - cpu0) / (time.monotonic() - wall0) * 100
    joined = pipeline.stop()
    s = snap.stats
    return {
        "source": snap.source,
        "seconds": seconds,
        "capture_fps": round(s.capture_fps, 1),
        "face_fps": round(s.face_fps, 1),
        "face_latency_ms": {"p50": s.face_latency_p50_ms, "p95": s.face_latency_p95_ms},
        "utterances": s.utterances,
        "transcript_latency_ms": {"p50": s.transcript_latency_p50_ms, "p95": s.transcript_latency_p95_ms},
        "end_of_utterance_to_transcript_ms": {
            "p50": s.transcript_delay_p50_ms,
            "p95": s.transcript_delay_p95_ms,
        },
        "dropped_frames": s.dropped_frames,
        "audio_overflows": s.audio_overflows,
        "audio_dropped": s.audio_dropped,
        "cpu_percent": round(cpu, 1),
        "rss_mb_peak": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "providers": {st.slot: st.provider for st in snap.statuses if st.provider},
        "threads_joined": joined,
    }


def measure_throughput(spec: str) -> dict:
    from emodesk.capture.sources import open_sources
    from emodesk.pipeline.analyze import analyze

    sources = open_sources(spec, paced=False, use_mic=False)
    sources.audio = None  # face path only: its capacity in frames/s
    with tempfile.TemporaryDirectory() as d:
        summary = analyze(sources, Path(d) / "out.jsonl")
    return {"frames": summary.frames, "face_fps_unpaced": round(summary.face_fps, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", nargs="?", default="demo")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "unpaced": measure_throughput(args.source),
        "live": measure_live(args.source, args.seconds),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
