"""The passes of ``emodesk bench`` (the paced one, which needs a Qt event loop, lives in
:mod:`emodesk.workers.measure`) and the measurements they share.

1. **Paced** (first, so start-up is timed from a fresh process): the live
   worker threads of the window, headless, on the source looped in real time
   for ``seconds``. Latencies (frame capture → face scores; end of utterance →
   transcript, → the later of its voice and text scores), dropped frames,
   audio overflows, process CPU (100 = one core, measured after the first
   scored frame), RSS sampled every second (peak, final, growth from the end
   of the first quarter to the end), the execution provider of every model,
   ``startup_s`` (process launch → models loaded) and ``first_frame_s``
   (launch → first scored frame).
2. **Unpaced**: the face path of ``emodesk analyze`` (decode, detect, crop,
   every face member, track) as fast as it goes, for ``face.fps``.
3. **Baseline**: the ``fer``-style pipeline (:mod:`.baseline`) over the same
   video for the same number of frames; ``baseline.ratio`` = our fps / its fps.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emodesk.inference.runtime import Device

Log = Callable[[str], None]


def process_age_s() -> float | None:
    """Seconds since this process was launched (Linux: /proc), else None."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def rss_mb() -> float:
    """Current resident set size in MB (peak where the current one cannot be read)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError, AttributeError):
        return peak_rss_mb()


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime as ort

    info: dict[str, Any] = {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": ort.get_available_providers(),
    }
    try:
        import ctranslate2

        info["ctranslate2_cuda_devices"] = ctranslate2.get_cuda_device_count()
    except Exception:  # noqa: BLE001 - a broken CUDA install must not stop the bench
        info["ctranslate2_cuda_devices"] = 0
    return info


def unpaced_pass(spec: str, *, frames: int, device: Device, log: Log | None) -> dict[str, Any]:
    """The face path over ``frames`` frames (after 10 warm-up frames) as fast as it goes."""
    from emodesk.capture.sources import open_sources
    from emodesk.pipeline.models import load_face_pipeline

    sources = open_sources(spec, paced=False, loop=True, use_mic=False)
    if sources.video is None:
        return {"fps": None, "frames": 0, "why": "the source has no video"}
    pipeline, statuses = load_face_pipeline(device=device)
    if pipeline is None:
        return {"fps": None, "frames": 0, "why": "; ".join(s.message for s in statuses if not s.ok)}
    video = sources.video
    video.open()
    n = faces = 0
    try:
        for _ in range(10):
            frame = video.read()
            if frame is None:
                break
            pipeline.process(frame)
        t0 = time.perf_counter()
        while n < frames and (frame := video.read()) is not None:
            faces += len({s.track for s in pipeline.process(frame).faces})
            n += 1
        seconds = time.perf_counter() - t0
    finally:
        video.close()
    if log:
        log(f"unpaced face path: {n} frames in {seconds:.1f} s")
    return {
        "fps": n / seconds if seconds > 0 else None,
        "frames": n,
        "faces_per_frame": faces / n if n else None,
        "members": [m for s in statuses if s.slot == "face" for m in s.models],
    }
