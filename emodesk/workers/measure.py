"""The paced pass of ``emodesk bench``: the live worker threads, headless, in real time.

Here because it runs a Qt event loop (docs/architecture.md: Qt only in
``ui`` and ``workers``); what it measures is described in :mod:`emodesk.bench.run`.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from emodesk.bench.run import Log, _cpu_s, peak_rss_mb, rss_mb
from emodesk.machine import Device


def _spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    v = sorted(values)
    return {
        "p50": round(v[len(v) // 2], 3),
        "p95": round(v[min(len(v) - 1, int(0.95 * len(v)))], 3),
        "max": round(v[-1], 3),
    }


def paced_pass(
    spec: str,
    *,
    audio: str | None,
    seconds: float,
    device: Device,
    asr_model: str | None,
    log: Log | None,
    rotate: bool = True,
    reuse_boxes_s: float | None = None,
    started: float | None = None,
) -> dict[str, Any]:
    """``started``: the bench's own start (``time.monotonic()``), from which ``startup_s`` and
    ``first_frame_s`` are timed; by default the call of this function. Never the process's launch:
    a bench run inside a longer process (a test session, a notebook) would count everything the
    process did before it."""
    launched = time.monotonic() if started is None else started
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QCoreApplication, QTimer

    from emodesk.workers.base import LOADING
    from emodesk.workers.live import LivePipeline

    app = QCoreApplication.instance() or QCoreApplication(sys.argv[:1])
    pipeline = LivePipeline.from_spec(
        spec,
        audio=audio,
        loop=True,
        use_mic=False,
        device=device,
        asr_model=asr_model,
        rotate_face_members=rotate,
        reuse_face_boxes_s=reuse_boxes_s,
    )
    marks: dict[str, float] = {}
    samples: list[tuple[float, float]] = []
    cpu_mark: list[float] = []
    backlog: list[float] = []  # seconds of audio waiting for the speech thread, every 50 ms
    lag: list[float] = []  # media time now minus the end of the audio the speech thread has done

    def poll() -> None:
        now = time.monotonic()
        snap_statuses = pipeline.statuses()
        if "loaded" not in marks and snap_statuses and all(s.message != LOADING for s in snap_statuses):
            marks["loaded"] = now
        face = pipeline.result_slot.peek()
        if "first_frame" not in marks and face is not None:
            marks["first_frame"] = now
            cpu_mark[:] = [_cpu_s(), now]
            QTimer.singleShot(int(seconds * 1000), app.quit)
            if log:
                log(
                    f"first scored frame after {now - launched:.2f} s; measuring {seconds:.0f} s in real time"
                )
        if "first_frame" in marks:
            samples.append((now - marks["first_frame"], rss_mb()))
            sw = pipeline.speech_worker
            if sw is not None and sw.shed_armed:  # after the start-up backlog (model loading) is cleared
                backlog.append(pipeline.audio_queue.weight)
                if sw.position is not None:
                    lag.append(max(0.0, pipeline.sources.clock.now() - sw.position))

    timer = QTimer()
    timer.setInterval(50)
    timer.timeout.connect(poll)
    timer.start()
    pipeline.start()
    # no scored frame at all (no video, or the face path failed): measure from the start
    QTimer.singleShot(int((seconds + 60) * 1000), app.quit)
    app.exec()
    timer.stop()
    snap = pipeline.snapshot()
    end = time.monotonic()
    cpu = None
    if cpu_mark:
        cpu = (_cpu_s() - cpu_mark[0]) / max(1e-9, end - cpu_mark[1]) * 100
    final = rss_mb()
    joined = pipeline.stop()
    s = snap.stats
    quarter = [r for t, r in samples if t >= 0.25 * seconds]
    growth = None
    if quarter:
        growth = (final - quarter[0]) / quarter[0] * 100
    return {
        "source": snap.source,
        "seconds": seconds,
        "capture_fps": s.capture_fps,
        "face_fps_live": s.face_fps,
        "face_latency_ms": {"p50": s.face_latency_p50_ms, "p95": s.face_latency_p95_ms},
        "utterances": s.utterances,
        "transcript_latency_ms": {"p50": s.transcript_delay_p50_ms, "p95": s.transcript_delay_p95_ms},
        "asr_latency_ms": {"p50": s.transcript_latency_p50_ms, "p95": s.transcript_latency_p95_ms},
        "scores_latency_ms": {"p50": s.scores_delay_p50_ms, "p95": s.scores_delay_p95_ms},
        "dropped_frames": s.dropped_frames,
        "audio_overflows": s.audio_overflows + s.audio_dropped,
        "cpu_percent": cpu,
        "rss_mb": {"peak": peak_rss_mb(), "final": final, "growth_pct": growth},
        "rss_samples": [[round(t, 1), round(r, 1)] for t, r in samples[:: max(1, len(samples) // 120)]],
        "startup_s": marks["loaded"] - launched if "loaded" in marks else None,
        "first_frame_s": marks["first_frame"] - launched if "first_frame" in marks else None,
        "providers": {
            f"{st.slot}:{m}": st.provider
            for st in snap.statuses
            if st.provider
            for m in (st.models or (st.slot,))
        },
        "threads_joined": joined,
        "speech_backlog_s": _spread(backlog),
        "speech_lag_s": _spread(lag),
        "shed": s.shed.as_record() if s.shed is not None else None,
        "shed_bound_s": pipeline.speech_worker.shed.bound_s
        if pipeline.speech_worker is not None and pipeline.speech_worker.shed is not None
        else None,
        # what failed while measuring (a model slot in error, a member refused, a worker's error):
        # the command reports it and exits 1, the report is still written
        "failed": [f"{st.slot}: {st.message}" for st in snap.statuses if st.state == "error"]
        + [f"{st.slot}: {f}" for st in snap.statuses for f in st.failed]
        + list(snap.errors),
    }
