"""Batch mode: run the live pipeline headless over files, unpaced, and write score records.

The face path runs in the calling thread and the speech path in a second one
(2 cores), each owning its models; their outputs are merged in media time so
the fused rows are exactly what a live run at infinite speed would show.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import queue
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
from emodesk.pipeline.model_cache import ModelCache
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
    fusion: FusionConfig | None = None  # the weights the fused rows used

    @property
    def face_fps(self) -> float:
        return self.frames / self.face_seconds if self.face_seconds > 0 else 0.0


Post = Callable[[str, Any], None]
"""How the speech thread reports: ``("out", (UtteranceOutput, settled_t))`` as it goes,
``("done", None)`` once at the end (``out`` then holds the statuses, the error, the media end)."""


def _run_speech(sources: SourceSet, models: ModelCache, out: dict[str, Any], post: Post) -> None:
    """Thread body: owns the audio source and the speech models; posts what it makes as it goes."""
    try:
        _speech_body(sources, models, out, post)
    except EmodeskError as e:
        out["error"] = str(e)
    except Exception as e:  # a dying worker thread must be reported, never silent
        log.debug("speech path crashed", exc_info=True)
        out["error"] = f"crashed: {type(e).__name__}: {e}"
    finally:
        post("done", None)


def _speech_body(sources: SourceSet, models: ModelCache, out: dict[str, Any], post: Post) -> None:
    audio = sources.audio
    assert audio is not None
    parts = models.speech_parts()
    out["statuses"] = parts.statuses
    speech = parts.speech
    if speech is None:
        out["error"] = "; ".join(s.message for s in parts.statuses if not s.ok and s.slot in ("vad", "asr"))
        return
    voice, text = parts.voice, parts.text
    pipe = UtterancePipeline(speech, voice, text)
    audio.open()
    corrupt: str | None = None
    posted = -math.inf
    try:
        while True:
            try:
                chunk = audio.read()
            except InputError as e:  # corrupt mid-file: the speech before it is still scored
                corrupt = str(e)
                break
            if chunk is None or sources.stop.is_set():  # the end, or the input was given up
                break
            step = pipe.insert(chunk)
            out["media_end"] = chunk.t1
            settled = pipe.settled_t
            # post what came, and the settled time every half second of media even when nothing did
            if step.transcripts or step.scores or (settled is not None and settled >= posted + 0.5):
                post("out", (step, settled))
                posted = settled if settled is not None else posted
    finally:
        audio.close()
    out["ran"] = True  # read to its end (or to where it is corrupt): what it made stands
    post("out", (pipe.finish(), math.inf))
    if corrupt is None:
        corrupt = _ends_early(audio, float(out.get("media_end", 0.0)))
    if corrupt is not None:
        at = f" after {out.get('media_end', 0.0):.1f} s" if "media_end" in out else ""
        out["error"] = f"{corrupt}{at}; the speech before it is kept"


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


def partial_path(out_path: Path) -> Path:
    """Where ``analyze`` writes until the input is done (``OUT.jsonl.partial``)."""
    return out_path.with_name(out_path.name + ".partial")


def analyze(
    sources: SourceSet,
    out_path: Path,
    *,
    device: Device = "auto",
    asr_model: str | None = None,
    fusion: FusionConfig | None = None,
    progress: Callable[[float], None] | None = None,
    models: ModelCache | None = None,
    observe: Callable[[dict[str, Any]], None] | None = None,
) -> AnalyzeSummary:
    """Run every path over ``sources`` and stream the records to ``out_path``.

    Records are written as they are made, in media-time order up to the time both paths have
    reached, to ``OUT.partial``, renamed to ``out_path`` when the input is done: a run killed
    midway leaves every record up to the kill in the partial file, never a file that looks whole.
    The records are exactly those of a run that merged everything at the end (:func:`merge_records`).
    ``progress`` gets the media time written up to. ``models``: loaded models to reuse (a batch
    worker's :class:`ModelCache`; fresh state per input either way), else they are loaded here.
    ``observe`` sees every record as it is written (the emotion summary is tallied that way).

    Raises EmodeskError when no path could run at all (and removes the empty partial file); a path
    whose models fail is reported in ``summary.statuses`` and the others still run.
    """
    start = time.monotonic()
    summary = AnalyzeSummary()
    fused_by = fusion or load_active_fusion()
    summary.fusion = fused_by
    # /dev/null, a pipe, a terminal: written as they are, with no partial file beside them
    regular = not out_path.exists() or out_path.is_file()
    partial = partial_path(out_path) if regular else out_path
    merger = StreamMerger(fused_by)
    writer = JsonlWriter(partial)  # an unwritable OUT fails here, before any model loads
    try:
        cache = models if models is not None else ModelCache(device=device, asr_model=asr_model)
        _analyze_into(sources, merger, writer, summary, cache, progress, observe)
    except BaseException:
        writer.close()
        if writer.count == 0 and regular:
            partial.unlink(missing_ok=True)
        raise
    writer.close()
    if regular:
        os.replace(partial, out_path)
    summary.records = writer.count
    summary.wall_seconds = time.monotonic() - start
    return summary


def _analyze_into(
    sources: SourceSet,
    merger: StreamMerger,
    writer: JsonlWriter,
    summary: AnalyzeSummary,
    models: ModelCache,
    progress: Callable[[float], None] | None,
    observe: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    speech_out: dict[str, Any] = {}
    posts: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    speech_thread: threading.Thread | None = None
    speech_wm = math.inf  # no speech path: it holds nothing back
    if sources.audio is not None:
        speech_wm = -math.inf
        speech_thread = threading.Thread(
            target=_run_speech,
            args=(sources, models, speech_out, lambda k, v: posts.put((k, v))),
            name="emodesk-speech",
            daemon=True,
        )
        speech_thread.start()
    transcripts: list[str] = []
    written_to = -math.inf

    def take(item: tuple[str, Any]) -> bool:
        """One post of the speech thread into the merger; False once it is done."""
        nonlocal speech_wm
        kind, payload = item
        if kind == "done":
            speech_wm = math.inf
            return False
        step, settled = payload
        merger.add_speech(step)
        transcripts.extend(t.text for t in step.transcripts if not t.partial)
        summary.utterances += sum(1 for t in step.transcripts if not t.partial)
        if settled is not None:
            speech_wm = max(speech_wm, settled)
        return True

    def release(until: float) -> None:
        nonlocal written_to
        for rec in merger.release(until):
            writer.write(rec)
            if observe is not None:
                observe(rec)
        if progress is not None and math.isfinite(until) and until > written_to:
            progress(until)
        written_to = max(written_to, until)

    speech_running = speech_thread is not None
    media_end = 0.0
    face_ran = False
    tracks: set[int | None] = set()
    try:
        if sources.video is not None:
            pipeline, statuses = models.face_pipeline()
            summary.statuses.extend(statuses)
            if pipeline is None:
                log.warning("face path disabled: %s", "; ".join(s.message for s in statuses if not s.ok))
            else:
                face_ran = True
                video = sources.video
                video.open()
                try:
                    t_face = time.monotonic()
                    while (frame := video.read()) is not None:
                        result = pipeline.process(frame)
                        merger.add_face(result)
                        summary.frames += 1
                        summary.frames_with_faces += bool(result.faces)
                        tracks.update(s.track for s in result.faces)
                        media_end = frame.t
                        while speech_running:
                            try:
                                speech_running = take(posts.get_nowait())
                            except queue.Empty:
                                break
                        release(min(frame.t, speech_wm))
                    summary.face_seconds = time.monotonic() - t_face
                finally:
                    video.close()
        summary.tracks = len(tracks)
        while speech_running:  # the face path is done (or absent): the speech path alone holds back
            speech_running = take(posts.get())
            release(speech_wm)
    except BaseException:
        # the face path failed or was interrupted: stop the speech thread and wait for it, so it
        # never runs on into the next input on the worker's shared models
        sources.stop.set()
        if speech_thread is not None:
            speech_thread.join()
        raise
    if speech_thread is not None:
        speech_thread.join()
        summary.statuses.extend(speech_out.get("statuses", []))
        if "error" in speech_out:
            log.warning("speech path failed: %s", speech_out["error"])
            summary.statuses.append(SlotStatus("speech path", "error", str(speech_out["error"])))
            if (sources.video is None or not summary.frames) and "ran" not in speech_out:
                raise EmodeskError(f"speech path failed: {speech_out['error']}")
        media_end = max(media_end, float(speech_out.get("media_end", 0.0)))
    if sources.video is not None and not face_ran and "ran" not in speech_out:
        raise EmodeskError("no path could run: " + "; ".join(s.message for s in summary.statuses if not s.ok))
    summary.transcript = transcripts
    summary.media_seconds = media_end
    for rec in merger.finish(media_end):
        writer.write(rec)
        if observe is not None:
            observe(rec)
    if progress is not None:
        progress(media_end)


class StreamMerger:
    """The face and speech paths' outputs merged in media time as they come.

    Each path says how far it has settled (no output still to come is stamped earlier);
    :meth:`release` gives the records of every event before the smaller of the two, in the order
    :func:`merge_records` gives them for the whole input at once: at equal times faces first, then
    transcripts, scores, and the fused row of each media second.
    """

    def __init__(self, fusion: FusionConfig) -> None:
        self.state = FusionState(fusion)
        self._events: list[tuple[float, int, int, object]] = []
        self._seq = 0
        self._next_tick = 0
        self._released = -math.inf  # every event before this was written

    def _check(self, t: float, what: str) -> None:
        if t < self._released:  # would be written out of order: a path settled too early
            raise RuntimeError(
                f"{what} at {t:.4f} s came after the records up to {self._released:.4f} s were written"
            )

    def _push(self, t: float, order: int, payload: object) -> None:
        heapq.heappush(self._events, (t, order, self._seq, payload))
        self._seq += 1

    def add_face(self, f: FaceFrameResult) -> None:
        self._check(f.t, "a face frame")
        self._push(f.t, 0, f)

    def add_speech(self, step: UtteranceOutput) -> None:
        for tr in step.transcripts:
            self._check(tr.t1, "a transcript")
            self._push(tr.t1, 1, tr)
        for s in step.scores:
            t = s.t1 if s.t1 is not None else s.t
            self._check(t, f"a {s.kind} score")
            self._push(t, 2, s)

    def _ticks_before(self, until: float, *, inclusive: bool = False) -> None:
        while self._next_tick < until or (inclusive and self._next_tick <= until):
            self._push(float(self._next_tick), 3, None)
            self._next_tick += 1

    def release(self, until: float) -> Iterator[dict[str, Any]]:
        """Records of every event stamped before ``until`` (media seconds)."""
        if not math.isfinite(until):
            return
        self._released = max(self._released, until)
        self._ticks_before(until)
        yield from self._drain(lambda t: t < until)

    def finish(self, media_end: float) -> Iterator[dict[str, Any]]:
        """Everything left, with a fused row for every media second up to ``media_end``."""
        self._ticks_before(float(math.floor(media_end)), inclusive=True)
        yield from self._drain(lambda t: True)

    def _drain(self, before: Callable[[float], bool]) -> Iterator[dict[str, Any]]:
        events, state = self._events, self.state
        while events and before(events[0][0]):
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


def merge_records(
    faces: list[FaceFrameResult],
    transcripts: list[Transcript],
    scores: list[ModalityScores],
    fusion: FusionConfig,
    media_end: float,
) -> Iterator[dict[str, Any]]:
    """All records of a whole input at once, in media-time order, with fused rows per media second
    and after each utterance score (what :func:`analyze` streams)."""
    merger = StreamMerger(fusion)
    for f in faces:
        merger.add_face(f)
    merger.add_speech(UtteranceOutput(transcripts=list(transcripts), scores=list(scores)))
    yield from merger.finish(media_end)
