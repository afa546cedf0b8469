"""Batch mode: run the live pipeline headless over files, unpaced, and write score records.

The face path runs in the calling thread and the speech path in a second one
(2 cores), each owning its models; their outputs are merged in media time so
the fused rows are exactly what a live run at infinite speed would show.
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emodesk.capture.files import AudioFileSource, audio_stream_duration
from emodesk.capture.sources import SourceSet
from emodesk.errors import EmodeskError, InputError
from emodesk.fusion.config import FusionConfig, load_active_fusion
from emodesk.fusion.state import FusionState
from emodesk.machine import Device
from emodesk.pipeline.models import (
    load_face_pipeline,
    load_speech_processor,
    load_utterance_scorers,
)
from emodesk.pipeline.utterance_path import UtteranceOutput, UtterancePipeline
from emodesk.records import JsonlWriter, fused_record, score_record, transcript_record
from emodesk.types import FaceFrameResult, ModalityScores, SlotStatus, Transcript

log = logging.getLogger(__name__)


@dataclass
class AnalyzeSummary:
    frames: int = 0
    frames_with_faces: int = 0
    tracks: int = 0
    utterances: int = 0
    transcript: list[str] = field(default_factory=list)
    records: int = 0
    media_seconds: float = 0.0
    wall_seconds: float = 0.0
    face_seconds: float = 0.0
    statuses: list[SlotStatus] = field(default_factory=list)

    @property
    def face_fps(self) -> float:
        return self.frames / self.face_seconds if self.face_seconds > 0 else 0.0


def _run_speech(sources: SourceSet, device: Device, asr_model: str | None, out: dict[str, Any]) -> None:
    """Thread body: owns the audio source and the speech models."""
    audio = sources.audio
    assert audio is not None
    try:
        speech, statuses = load_speech_processor(
            asr_model=asr_model, device=device, partial_interval_s=None, cpu_threads=1
        )
        voice, text, st2 = load_utterance_scorers(device=device)
        out["statuses"] = statuses + st2
        if speech is None:
            out["error"] = "; ".join(s.message for s in statuses if not s.ok)
            return
        pipe = UtterancePipeline(speech, voice, text)
        result = UtteranceOutput()
        audio.open()
        corrupt: str | None = None
        try:
            while True:
                try:
                    chunk = audio.read()
                except InputError as e:  # corrupt mid-file: the speech before it is still scored
                    corrupt = str(e)
                    break
                if chunk is None:
                    break
                result.extend(pipe.insert(chunk))
                out["media_end"] = chunk.t1
        finally:
            audio.close()
        result.extend(pipe.finish())
        out["result"] = result
        if corrupt is None:
            corrupt = _ends_early(audio, float(out.get("media_end", 0.0)))
        if corrupt is not None:
            at = f" after {out.get('media_end', 0.0):.1f} s" if "media_end" in out else ""
            out["error"] = f"{corrupt}{at}; the speech before it is kept"
    except EmodeskError as e:
        out["error"] = str(e)
    except Exception as e:  # a dying worker thread must be reported, never silent
        log.debug("speech path crashed", exc_info=True)
        out["error"] = f"crashed: {type(e).__name__}: {e}"


def _ends_early(audio: object, decoded_s: float) -> str | None:
    """A file whose audio stops more than a second before the length its audio track declares was
    cut short (a copy or download that did not finish): said, not taken for the whole file."""
    if not isinstance(audio, AudioFileSource) or audio.loop:
        return None
    declared = audio_stream_duration(audio.path)
    if declared is None or decoded_s >= declared - 1.0:
        return None
    return (
        f"audio of {audio.path} ends at {decoded_s:.1f} s of the {declared:.1f} s its audio track "
        "declares (truncated?)"
    )


def analyze(
    sources: SourceSet,
    out_path: Path,
    *,
    device: Device = "auto",
    asr_model: str | None = None,
    fusion: FusionConfig | None = None,
    progress: Callable[[float], None] | None = None,
) -> AnalyzeSummary:
    """Run every path over ``sources`` and write the records to ``out_path``.

    Raises EmodeskError when no path could run at all; a path whose models fail
    is reported in ``summary.statuses`` and the others still run.
    """
    start = time.monotonic()
    summary = AnalyzeSummary()
    speech_out: dict[str, Any] = {}
    speech_thread: threading.Thread | None = None
    if sources.audio is not None:
        speech_thread = threading.Thread(
            target=_run_speech,
            args=(sources, device, asr_model, speech_out),
            name="emodesk-speech",
            daemon=True,
        )
        speech_thread.start()

    faces: list[FaceFrameResult] = []
    media_end = 0.0
    if sources.video is not None:
        pipeline, statuses = load_face_pipeline(device=device)
        summary.statuses.extend(statuses)
        if pipeline is None:
            log.warning("face path disabled: %s", "; ".join(s.message for s in statuses if not s.ok))
        video = sources.video
        if pipeline is not None:
            video.open()
            try:
                t_face = time.monotonic()
                while (frame := video.read()) is not None:
                    faces.append(pipeline.process(frame))
                    media_end = frame.t
                    if progress is not None and frame.index % 30 == 0:
                        progress(frame.t)
                summary.face_seconds = time.monotonic() - t_face
            finally:
                video.close()
            summary.frames = len(faces)
            summary.frames_with_faces = sum(1 for f in faces if f.faces)
            summary.tracks = len({s.track for f in faces for s in f.faces})

    utter = UtteranceOutput()
    if speech_thread is not None:
        speech_thread.join()
        summary.statuses.extend(speech_out.get("statuses", []))
        if "error" in speech_out:
            log.warning("speech path failed: %s", speech_out["error"])
            summary.statuses.append(SlotStatus("speech path", "error", str(speech_out["error"])))
            if (sources.video is None or not faces) and "result" not in speech_out:
                raise EmodeskError(f"speech path failed: {speech_out['error']}")
        utter = speech_out.get("result", utter)
        media_end = max(media_end, float(speech_out.get("media_end", 0.0)))
    if sources.video is not None and not faces and not utter.transcripts and "result" not in speech_out:
        raise EmodeskError("no path could run: " + "; ".join(s.message for s in summary.statuses if not s.ok))

    finals = [t for t in utter.transcripts if not t.partial]
    summary.utterances = len(finals)
    summary.transcript = [t.text for t in finals]
    summary.media_seconds = media_end
    with JsonlWriter(out_path) as w:
        fused_by = fusion or load_active_fusion()
        for rec in merge_records(faces, utter.transcripts, utter.scores, fused_by, media_end):
            w.write(rec)
        summary.records = w.count
    summary.wall_seconds = time.monotonic() - start
    return summary


def merge_records(
    faces: list[FaceFrameResult],
    transcripts: list[Transcript],
    scores: list[ModalityScores],
    fusion: FusionConfig,
    media_end: float,
) -> Iterator[dict[str, Any]]:
    """All records in media-time order, with fused rows per media second and after each utterance score."""
    state = FusionState(fusion)
    # (t, order, seq, payload): at equal t, faces first, then transcripts, scores, ticks.
    events: list[tuple[float, int, int, object]] = []
    seq = 0
    for f in faces:
        events.append((f.t, 0, seq, f))
        seq += 1
    for tr in transcripts:
        events.append((tr.t1, 1, seq, tr))
        seq += 1
    for s in scores:
        events.append((s.t1 if s.t1 is not None else s.t, 2, seq, s))
        seq += 1
    for k in range(math.floor(media_end) + 1):
        events.append((float(k), 3, seq, None))
        seq += 1
    heapq.heapify(events)
    while events:
        t, _order, _, payload = heapq.heappop(events)
        if isinstance(payload, FaceFrameResult):
            state.update_face(payload)
            for s in payload.scored():
                yield score_record(s)
        elif isinstance(payload, Transcript):
            yield transcript_record(payload)
        elif isinstance(payload, ModalityScores):
            state.update_score(payload)
            yield score_record(payload)
            fused = state.fused(t)
            if fused is not None:
                yield fused_record(fused)
        else:
            fused = state.fused(t)
            if fused is not None:
                yield fused_record(fused)
