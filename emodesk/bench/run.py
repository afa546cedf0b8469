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

from emodesk.errors import EmodeskError
from emodesk.machine import Device, cpu_name, ctranslate2_cuda_missing, gpu_info

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

        info["ctranslate2"] = ctranslate2.__version__
        info["ctranslate2_cuda_devices"] = ctranslate2.get_cuda_device_count()
    except Exception:  # noqa: BLE001 - a broken CUDA install must not stop the bench
        info["ctranslate2_cuda_devices"] = 0
    info["ctranslate2_cublas"] = (
        (ctranslate2_cuda_missing() or "found")
        if info["ctranslate2_cuda_devices"]
        else "not needed: no CUDA device"
    )
    info["gpu"] = gpu_info()
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


SENTENCES = (  # the text rows: the first alone, all eight padded into one call
    "I am so happy to see you today.",
    "No.",
    "This is so frustrating, nothing works at all.",
    "Oh wow, I did not expect that!",
    "I feel so sad about it.",
    "Get out of here.",
    "That smells disgusting.",
    "What was that noise?",
)
MOSAIC_FACES = 10  # the face path's many-faces row: a frame with this many faces (5 × 2 tiles)
BATCH = 8  # the batched rows beside batch 1


class _KnownBoxes:
    """A stand-in detector that returns the mosaic's ten boxes: the face path's many-faces row times
    tracking and every member on ten faces; the real detector is timed on the same frame apart."""

    searched_tiles = searched_all_tiles = False

    def __init__(self, boxes: list[Any]) -> None:
        self.boxes = boxes

    def detect(self, image: np.ndarray, **_: Any) -> list[Any]:
        return list(self.boxes)


def face_mosaic(
    frame: np.ndarray, box: tuple[float, float, float, float], n: int = MOSAIC_FACES
) -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
    """A frame of ``n`` copies (5 a row) of ``frame``'s face with a margin around it, and their boxes."""
    x, y, w, h = box
    ih, iw = frame.shape[:2]
    x0, y0 = max(0, int(x - 0.3 * w)), max(0, int(y - 0.3 * h))
    x1, y1 = min(iw, int(x + 1.3 * w)), min(ih, int(y + 1.3 * h))
    tile = frame[y0:y1, x0:x1]
    th, tw = tile.shape[:2]
    cols = min(n, 5)
    rows = -(-n // cols)
    out = np.zeros((rows * th, cols * tw, 3), np.uint8)
    boxes = []
    for k in range(n):
        r, c = divmod(k, cols)
        out[r * th : (r + 1) * th, c * tw : (c + 1) * tw] = tile
        boxes.append((c * tw + x - x0, r * th + y - y0, w, h))
    return out, boxes


def stage_timings(
    video: Path, *, device: Device, repeats: int = 30, log: Log | None = None
) -> dict[str, Any]:
    """Median ms of every stage at batch 1 and, where the stage has a batched call, at batch 8, on
    ``device``, each model on the provider it really got (``providers``) and where each slot runs and
    why (``status``: the loaders' lines, a fallback's reason included).

    ``rows``: one ``{"stage", "batch", "ms"}`` per measurement. Face: the detector on one frame of
    ``video``, each member on its largest face, on 8 crops and on a frame of 10 faces, and the face
    path on that frame (tracking + every member, boxes given; the detector is timed on it apart and
    ``mosaic_faces_found`` says what it found). Utterance, on 3 s of the clip's audio: the whisper
    encoder (1 and 8 utterances a call), its greedy decode (1 and 8), the final transcript as the app
    makes it (beam search and checks; the recogniser on ``auto`` for ``cuda``, so it falls back with
    its reason as the ONNX models do),
    each voice member, each text member (one sentence, and 8 padded into one call). ``outputs``: what
    each model answered on the same inputs, for the CPU/CUDA agreement (:func:`agreement`).
    """
    from emodesk.evaluation.evaluate import read_audio_16k
    from emodesk.pipeline.face_path import FacePipeline
    from emodesk.pipeline.models import load_face_pipeline, load_speech_processor, load_utterance_scorers
    from emodesk.types import FaceBox, Frame

    out: dict[str, Any] = {"device": device, "providers": {}, "status": {}, "rows": [], "outputs": {}}
    rows: list[dict[str, Any]] = out["rows"]

    def row(stage: str, batch: int, fn: Callable[[], object], n: int = repeats, *, model: str) -> None:
        """``model``: the key of ``providers`` the stage ran on."""
        rows.append({"stage": stage, "batch": batch, "ms": _median_ms(fn, n), "model": model})

    import av

    with av.open(str(video)) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="bgr24")
    pipe, statuses = load_face_pipeline(device=device)
    out["status"].update({s.slot: s.message for s in statuses})
    if pipe is not None:
        det = pipe.detector
        boxes = det.detect(frame)[:1]
        out["providers"]["face detector"] = det.model.provider
        row("face detection, one frame", 1, lambda: det.detect(frame), model="face detector")
        if boxes:
            mosaic, mboxes = face_mosaic(frame, boxes[0].box)
            out["mosaic_faces_found"] = len(det.detect(mosaic))
            row(
                f"face detection, a frame of {MOSAIC_FACES} faces",
                1,
                lambda: det.detect(mosaic),
                model="face detector",
            )
            for sc in pipe.scorers:
                out["providers"][sc.model.id] = sc.model.provider
                # every row crops from the frame, as the face path does: 1 face, the same face 8
                # times, the mosaic's 10
                row(f"`{sc.model.id}`", 1, partial(sc.score, frame, boxes), model=sc.model.id)
                row(f"`{sc.model.id}`", BATCH, partial(sc.score, frame, boxes * BATCH), model=sc.model.id)
                row(f"`{sc.model.id}`", MOSAIC_FACES, partial(sc.score, mosaic, mboxes), model=sc.model.id)
                out["outputs"][sc.model.id] = sc.score(frame, boxes)[0].tolist()
            many = FacePipeline(
                _KnownBoxes([FaceBox(b, 1.0) for b in mboxes]),  # type: ignore[arg-type]
                pipe.scorers,
                max_faces=MOSAIC_FACES,
                rotate=False,
                reuse_boxes_s=0.0,
            )
            ticks = iter(range(10**9))

            def path() -> object:
                i = next(ticks)
                return many.process(Frame(t=i / 30, image=mosaic, index=i))

            row(
                "face path: tracking + every member, boxes given",
                MOSAIC_FACES,
                path,
                model=",".join(sc.model.id for sc in pipe.scorers),
            )
    try:
        audio = read_audio_16k(video)[16000 : 16000 * 4]
    except Exception:  # noqa: BLE001 - a clip without audio: no utterance stages
        audio = None
    few = max(3, repeats // 5)
    asr: Any = None
    enc: Any = None
    if audio is not None and len(audio) > 16000:
        # "auto" on CUDA: as the ONNX models do, the recogniser falls back to the CPU with its reason
        # (a plain "cuda" refuses to start without CTranslate2's cuBLAS), and the page shows where it ran
        speech, statuses = load_speech_processor(device="auto" if device == "cuda" else device)
        out["status"].update({s.slot: s.message for s in statuses})
        if speech is not None:
            asr = speech.transcriber
            out["providers"]["asr"] = asr.device
            out["asr"] = {"device": asr.device, "compute_type": asr.compute_type, "reason": asr.reason}
            enc = asr.encode(audio)
            n = len(audio)
            one, eight = asr.encode_batch([audio]), asr.encode_batch([audio] * BATCH)
            # the encoder rows include the log-mel; their output stays on the device for the decoder
            row("whisper encoder, 3 s utterance", 1, lambda: asr.encode(audio), few, model="asr")
            row(
                "whisper encoder, 3 s utterance",
                BATCH,
                lambda: asr.encode_batch([audio] * BATCH),
                few,
                model="asr",
            )
            row("whisper decode, greedy", 1, lambda: asr.decode_batch(one, [n]), few, model="asr")
            row(
                "whisper decode, greedy",
                BATCH,
                lambda: asr.decode_batch(eight, [n] * BATCH),
                few,
                model="asr",
            )
            row(  # what the app runs on an utterance's end: the decode, its checks and verdict
                f"whisper final transcript (beam {asr.final_beam_size}, checks included)",
                1,
                lambda: asr.transcribe(audio, encoded=enc),
                few,
                model="asr",
            )
            out["outputs"]["asr"] = asr.transcribe(audio, encoded=enc)
    voice, text, statuses = load_utterance_scorers(device=device)
    out["status"].update({s.slot: s.message for s in statuses})
    utterance = audio if audio is not None and len(audio) > 16000 else None
    for v in voice if utterance is not None else []:
        assert utterance is not None
        out["providers"][v.id] = v.model.provider
        given = enc if asr is not None and (v.accepts(asr) or v.reads_mel) else None
        try:  # without the recogniser, a member that reads its encoder loads its own, which may fail
            v.reset_session()
            row(f"`{v.id}`", 1, partial(v.score, utterance, encoded=given), few, model=v.id)
        except EmodeskError as e:
            out["status"][v.id] = f"not timed: {e}"
            continue
        v.reset_session()
        out["outputs"][v.id] = v.score(utterance, encoded=given).tolist()
    for tx in text:
        out["providers"][tx.id] = tx.model.provider
        row(f"`{tx.id}`", 1, partial(tx.score, SENTENCES[0]), model=tx.id)
        row(f"`{tx.id}`", BATCH, partial(tx.score_many, SENTENCES), model=tx.id)
        alone = np.stack([tx.score(s) for s in SENTENCES])
        out["outputs"][tx.id] = tx.score(SENTENCES[0]).tolist()
        # a dynamically quantized (int8) member scales each batch as a whole: a row's
        # probabilities move with its batch-mates
        out.setdefault("batch_vs_alone", {})[tx.id] = float(np.abs(tx.score_many(SENTENCES) - alone).max())
    if log:
        log(f"stage timings on {device}: done")
    return out


ON_CUDA = ("CUDAExecutionProvider", "cuda")  # what ``providers`` says of a model that ran on the GPU


def agreement(stages: dict[str, Any]) -> dict[str, Any]:
    """Largest |CUDA − CPU| probability of each model on the same input (transcripts: equal or not),
    for the models that really ran on CUDA in the ``cuda`` pass (a fallback would compare the CPU
    with itself)."""
    cpu, cuda = (stages.get(d, {}).get("outputs", {}) for d in ("cpu", "cuda"))
    where = stages.get("cuda", {}).get("providers", {})
    out: dict[str, Any] = {}
    for k in sorted(set(cpu) & set(cuda)):
        if where.get(k) not in ON_CUDA:
            continue
        a, b = cpu[k], cuda[k]
        out[k] = a == b if isinstance(a, str) else float(np.abs(np.asarray(a) - np.asarray(b)).max())
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
