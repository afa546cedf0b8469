"""The passes of ``emodesk bench`` (the paced one, which needs a Qt event loop, lives in
:mod:`emodesk.workers.measure`) and the measurements they share.

1. **Paced** (first, so start-up is timed from a fresh process): the live
   worker threads of the window, headless, on the source looped in real time
   for ``seconds``. Latencies (frame capture → face scores; end of utterance →
   transcript, → the later of its voice and text scores), dropped frames,
   audio overflows, process CPU (100 = one core, measured after the first
   scored frame), RSS sampled every second (peak, final, growth from the end
   of the first quarter to the end), the execution provider of every model,
   ``startup_s`` (the bench's start → models loaded) and ``first_frame_s``
   (the bench's start → first scored frame). Not from the process's launch: a
   bench run inside a longer process (a test session) would count all of it.
2. **Unpaced**: the face path of ``emodesk analyze`` (decode, detect, crop,
   every face member, track) as fast as it goes, for ``face.fps``.
3. **Baseline**: the ``fer``-style pipeline (:mod:`emodesk.lab.baseline`, reached through
   ``cli.common.lab_module``) over the same video for the same number of frames;
   ``baseline.ratio`` = our fps / its fps.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from emodesk.machine import Device, cpu_name

Log = Callable[[str], None]


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
    import onnxruntime as ort

    info: dict[str, Any] = {
        "cpu": cpu_name(),
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


def unpaced_pass(
    spec: str,
    *,
    frames: int,
    device: Device,
    log: Log | None,
    rotate: bool = True,
    reuse_boxes_s: float | None = None,
) -> dict[str, Any]:
    """The face path over ``frames`` frames (after 10 warm-up frames) as fast as it goes."""
    from emodesk.capture.sources import open_sources
    from emodesk.pipeline.models import load_face_pipeline

    sources = open_sources(spec, paced=False, loop=True, use_mic=False)
    if sources.video is None:
        return {"fps": None, "frames": 0, "why": "the source has no video"}
    pipeline, statuses = load_face_pipeline(device=device, rotate=rotate, reuse_boxes_s=reuse_boxes_s)
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
        detections0 = pipeline.detections
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
        "detections_per_frame": (pipeline.detections - detections0) / n if n else None,
        "members": [m for s in statuses if s.slot == "face" for m in s.models],
    }


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (first-call allocations, CUDA kernels)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return float(sorted(times)[len(times) // 2])


def stage_timings(
    video: Path, *, device: Device, repeats: int = 30, log: Log | None = None
) -> dict[str, Any]:
    """Median ms of every stage at batch 1 on ``device``, each model on the provider it really got.

    Face: detection and each face member on one frame of ``video`` (its largest
    face), plus each member on a batch of 8 faces (batching pays on a GPU).
    Utterance: the whisper encoder pass, the decode, each voice and text member,
    on a 3 s utterance of the clip's audio.
    """
    from emodesk.evaluation.evaluate import read_audio_16k
    from emodesk.pipeline.models import load_face_pipeline, load_speech_processor, load_utterance_scorers

    out: dict[str, Any] = {"device": device, "providers": {}}
    import av

    with av.open(str(video)) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="bgr24")
    pipe, _ = load_face_pipeline(device=device)
    if pipe is not None:
        det = pipe.detector
        boxes = det.detect(frame)[:1]
        out["providers"]["face detector"] = det.model.provider
        out["face_detect_ms"] = _median_ms(lambda: det.detect(frame), repeats)
        members: dict[str, Any] = {}
        for sc in pipe.scorers:
            out["providers"][sc.model.id] = sc.model.provider
            if boxes:
                crops = [sc.crop(frame, boxes[0])] * 8
                members[sc.model.id] = {
                    "batch1_ms": _median_ms(partial(sc.score, frame, boxes), repeats),
                    "batch8_ms": _median_ms(partial(sc.score_crops, crops), repeats),
                }
        out["face_members"] = members
    try:
        audio = read_audio_16k(video)[16000 : 16000 * 4]
    except Exception:  # noqa: BLE001 - a clip without audio: no utterance stages
        audio = None
    if audio is not None and len(audio) > 16000:
        speech, _ = load_speech_processor(device=device)
        if speech is not None:
            asr: Any = speech.transcriber
            out["providers"]["asr"] = asr.device
            enc = asr.encode(audio)
            out["asr_encode_ms"] = _median_ms(lambda: asr.encode(audio), max(3, repeats // 5))
            out["asr_decode_ms"] = _median_ms(
                lambda: asr.transcribe(audio, encoded=enc), max(3, repeats // 5)
            )
            voice, text, _ = load_utterance_scorers(device=device)
            for v in voice:
                out["providers"][v.id] = v.model.provider
                v.reset_session()
                ok = v.accepts(asr)
                out.setdefault("voice_ms", {})[v.id] = _median_ms(
                    partial(v.score, audio, encoded=enc if ok else None), max(3, repeats // 5)
                )
            sentence = "I am so happy to see you today."
            for tx in text:
                out["providers"][tx.id] = tx.model.provider
                out.setdefault("text_ms", {})[tx.id] = _median_ms(partial(tx.score, sentence), repeats)
    if log:
        log(f"stage timings on {device}: done")
    return out


def fusion_timing(rows: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Microseconds to fuse one row with the active ``fusion.json`` (its rule and every member present),
    as the live window does it (:meth:`FusionConfig.fuse`), over ``rows`` random score rows."""
    from emodesk.fusion.config import load_active_fusion
    from emodesk.labels import N_LABELS

    cfg = load_active_fusion()
    if not cfg.members:
        return {"rule": cfg.rule.name, "members": 0, "row_us": None}
    rng = np.random.default_rng(seed)
    data = [{m: rng.dirichlet(np.ones(N_LABELS)) for m in cfg.members} for _ in range(rows + 100)]
    for probs in data[:100]:  # warm-up
        cfg.fuse(probs)
    times = []
    for probs in data[100:]:
        t0 = time.perf_counter()
        cfg.fuse(probs)
        times.append((time.perf_counter() - t0) * 1e6)
    return {
        "rule": cfg.rule.name,
        "members": len(cfg.members),
        "rows": rows,
        "row_us": {"p50": float(np.percentile(times, 50)), "p95": float(np.percentile(times, 95))},
    }
