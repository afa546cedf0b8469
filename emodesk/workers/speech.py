"""The speech thread: owns the VAD, whisper and the voice/text sessions.

It drains the audio queue in order (speech needs every chunk), turns
utterances into transcripts and voice/text scores, and keeps only bounded
results for the GUI: the last final lines, the current partial line, the
latest score per member.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from PySide6.QtCore import QObject

from emodesk.machine import Device
from emodesk.pipeline.shedding import LoadShedder, ShedCounts, delta
from emodesk.pipeline.utterance_path import UtteranceOutput, UtterancePipeline
from emodesk.types import AudioChunk, ModalityScores, SlotStatus, Transcript
from emodesk.workers.base import LOADING, Worker
from emodesk.workers.queues import BoundedChunkQueue
from emodesk.workers.stats import LatencyWindow

log = logging.getLogger(__name__)

LIGHT_BATCH_S = 0.2  # audio taken per step while shedding load (about one utterance end at most)


class SpeechEventSource(Protocol):
    """What the worker needs of ``SpeechProcessor``: events carrying utterance + transcript."""

    def insert(self, chunk: AudioChunk) -> Sequence[Any]: ...

    def insert_many(self, chunks: Sequence[AudioChunk]) -> Sequence[Any]: ...

    def finish(self) -> Sequence[Any]: ...

    def drop_open(self) -> bool: ...

    light: bool
    shed_partials: int
    shed_greedy: int


@dataclass
class SpeechModels:
    """What the speech loader returns; ``speech`` None means the path cannot run."""

    speech: SpeechEventSource | None
    voice: list[Any] = field(default_factory=list)
    text: list[Any] = field(default_factory=list)
    statuses: list[SlotStatus] = field(default_factory=list)


SpeechLoader = Callable[[], SpeechModels]


def _unavailable(modality: str, reason: str) -> SlotStatus:
    from emodesk.inference.registry import models_of

    if not models_of(modality):
        return SlotStatus(modality, "missing", "no model installed")
    return SlotStatus(modality, "error", f"speech path unavailable: {reason}")


def default_speech_loader(
    *,
    asr_model: str | None = None,
    device: Device = "auto",
    partial_interval_s: float | None = 1.0,
    language: str = "en",
    vad_threshold: float | None = None,
) -> SpeechLoader:
    """Loads VAD + ASR + voice/text members; called inside the speech thread."""

    def load() -> SpeechModels:
        from emodesk.pipeline.models import load_speech_processor, load_utterance_scorers

        speech, statuses = load_speech_processor(
            asr_model=asr_model,
            device=device,
            partial_interval_s=partial_interval_s,
            language=language,
            vad_threshold=vad_threshold,
        )
        if speech is None:
            reason = "; ".join(s.message for s in statuses if not s.ok)
            return SpeechModels(
                None, statuses=[*statuses, _unavailable("voice", reason), _unavailable("text", reason)]
            )
        voice, text, more = load_utterance_scorers(device=device)
        return SpeechModels(speech, list(voice), list(text), [*statuses, *more])

    return load


class SpeechWorker(Worker):
    """Loads the speech models in ``run()``, then drains the audio queue until it is exhausted."""

    role = "speech"

    def __init__(
        self,
        chunks: BoundedChunkQueue[AudioChunk],
        stop: threading.Event,
        loader: SpeechLoader,
        parent: QObject | None = None,
        *,
        on_score: Callable[[ModalityScores], None] | None = None,
        on_transcript: Callable[[Transcript], None] | None = None,
        to_wall: Callable[[float], float] | None = None,
        history: int = 200,
        poll_s: float = 0.1,
        max_batch: int = 250,
        shed: LoadShedder | None = None,
        on_shed: Callable[[float, dict[str, float | int]], None] | None = None,
    ) -> None:
        super().__init__(stop, parent)
        self.chunks = chunks
        self.loader = loader
        self.on_score = on_score
        self.on_transcript = on_transcript
        self.poll_s = poll_s
        self.max_batch = max(1, max_batch)  # 250 chunks of 20 ms: at most 5 s of audio per step
        self.statuses: list[SlotStatus] = [
            SlotStatus(s, "missing", LOADING) for s in ("asr", "voice", "text")
        ]
        self.loaded = False
        self.to_wall = to_wall
        self.latency = LatencyWindow(100)  # utterance cut by the VAD → final transcript (ASR time)
        self.delay = LatencyWindow(100)  # end of the utterance on the media clock → final transcript
        self.scores_delay = LatencyWindow(100)  # end of the utterance → the later of its voice/text scores
        self.position: float | None = None  # media time up to which audio has been processed
        self.utterances = 0
        self.audio_seconds = 0.0
        self._lock = threading.Lock()
        self._finals: deque[Transcript] = deque(maxlen=history)
        self._partial: Transcript | None = None
        self._scores: dict[str, ModalityScores] = {}
        self._history: deque[ModalityScores] = deque(maxlen=history * 4)  # every member, newest last
        self._version = 0
        # Load shedding (live sources): armed once the models are loaded and the start-up backlog
        # is cleared; the queue then holds at most shed.bound_s seconds of audio.
        self.shed = shed
        self.on_shed = on_shed
        self.shed_armed = False
        self.backlog_s = 0.0  # audio waiting when the last step began
        self._pipeline: UtterancePipeline | None = None
        self._queue_shed = 0  # the queue's shed count the worker has accounted for
        self._shed_reported = ShedCounts()
        self._shed_report_t: float | None = None

    # ---------------------------------------------------------- GUI side

    def transcripts(self) -> tuple[tuple[Transcript, ...], Transcript | None, int]:
        """(final lines oldest first, current partial or None, version that changes on news)."""
        with self._lock:
            return tuple(self._finals), self._partial, self._version

    def shed_counts(self) -> ShedCounts | None:
        """What shedding skipped so far (None when this path never sheds)."""
        if self.shed is None:
            return None
        c = self.shed.counts
        p = self._pipeline
        return dataclasses.replace(
            c,
            drops=self.chunks.shed,
            audio_dropped_s=self.chunks.shed_weight,
            partials_skipped=p.speech.shed_partials if p is not None else 0,
            greedy_finals=p.speech.shed_greedy if p is not None else 0,
            voice_scores_skipped=p.shed_voice if p is not None else 0,
        )

    def latest_scores(self) -> dict[str, ModalityScores]:
        """The newest score of each voice/text member, by model id."""
        with self._lock:
            return dict(self._scores)

    def score_history(self) -> tuple[ModalityScores, ...]:
        """The voice and text scores of the recent utterances (bounded like the transcript), oldest first."""
        with self._lock:
            return tuple(self._history)

    # ------------------------------------------------------- worker side

    def work(self) -> None:
        models = self.loader()
        self.statuses = list(models.statuses)
        self.loaded = models.speech is not None
        self.statuses_changed.emit()
        if models.speech is None:
            self.chunks.close()  # the audio capture stops instead of counting drops
            self.chunks.clear()
            return
        pipeline = UtterancePipeline(models.speech, models.voice, models.text)  # type: ignore[arg-type]
        if pipeline.disabled:  # a voice member whose encoder could not be loaded: say so
            from emodesk.types import SlotStatus

            why = "; ".join(pipeline.disabled)
            kept = tuple(v.id for v in pipeline.voice)
            state = (
                SlotStatus("voice", "ok", f"{', '.join(kept)} (left out: {why})", kept)
                if kept
                else (SlotStatus("voice", "error", why))
            )
            self.statuses = [s for s in self.statuses if s.slot != "voice"] + [state]
            self.statuses_changed.emit()
        self._pipeline = pipeline
        while not self.stopping:
            chunk = self.chunks.get(self.poll_s)
            if chunk is None:
                if self.chunks.exhausted:
                    if not self.stopping:  # a finite source ended: transcribe its last words
                        self._publish(pipeline.finish())
                    break
                continue
            self.backlog_s = self.chunks.weight + chunk.duration
            if self.shed is not None:
                self._shed_step(pipeline)
            # Behind (ASR was busy)? Take the backlog in one go: the processor then
            # transcribes only its newest partial instead of every stale one.
            batch = [chunk, *self.chunks.drain(self._batch_items(pipeline, chunk) - 1)]
            self.audio_seconds += sum(len(c.samples) / c.sample_rate for c in batch)
            for part in self._split_at_drops(pipeline, batch):
                out = pipeline.insert(part[0]) if len(part) == 1 else pipeline.insert_many(part)
                self._publish(out)
                self.position = part[-1].t1
            if self.shed is not None:
                self._report_shed(batch[-1].t1)

    def _batch_items(self, pipeline: UtterancePipeline, chunk: AudioChunk) -> int:
        """How many chunks one step takes. Shedding, at most ``LIGHT_BATCH_S`` of audio: what is not
        taken stays in the bounded queue, so the path's lag stays the bound plus one short step
        instead of the bound plus a whole backlog's worth of recognition."""
        if not pipeline.light or chunk.duration <= 0:
            return self.max_batch
        return max(1, min(self.max_batch, int(LIGHT_BATCH_S / chunk.duration)))

    def _shed_step(self, pipeline: UtterancePipeline) -> None:
        assert self.shed is not None
        if not self.shed_armed:
            if self.backlog_s > self.shed.light_s:
                return  # still catching up on the audio that came in while the models loaded
            self.shed_armed = True
            self.chunks.limit(self.shed.bound_s)
            log.info("speech path: load shedding armed (at most %.1f s of audio waiting)", self.shed.bound_s)
        light = self.shed.step(self.backlog_s)
        if light != pipeline.light:
            pipeline.light = light
            log.info(
                "speech path: %s optional work (%.1f s of audio waiting)",
                "shedding" if light else "back to",
                self.backlog_s,
            )

    def _split_at_drops(self, pipeline: UtterancePipeline, batch: list[AudioChunk]) -> list[list[AudioChunk]]:
        """The batch in runs of contiguous audio; where the queue shed audio, the utterance that was
        open is dropped (its start is gone) before the next run goes in."""
        shed = self.chunks.shed
        if shed == self._queue_shed:
            return [batch]
        self._queue_shed = shed
        parts: list[list[AudioChunk]] = []
        expected = self.position
        for c in batch:
            gap = expected is not None and c.t0 - expected > 0.005
            if gap and self.shed is not None and pipeline.drop_open():
                self.shed.counts.utterances_dropped += 1
            if gap or not parts:
                parts.append([])
            parts[-1].append(c)
            expected = c.t1
        return parts

    def _report_shed(self, t: float) -> None:
        """A ``shed`` event for the recording: at a drop, else at most once a media second."""
        now = self.shed_counts()
        if now is None or self.on_shed is None:
            return
        d = delta(now, self._shed_reported)
        if not d:
            return
        if "drops" not in d and self._shed_report_t is not None and t - self._shed_report_t < 1.0:
            return
        self._shed_reported = now
        self._shed_report_t = t
        self.on_shed(t, {**d, "backlog_s": round(self.backlog_s, 3)})

    def cleanup(self) -> None:
        # Whatever ended this thread, nobody drains the queue any more: close it so the
        # audio capture stops instead of filling it and counting drops.
        self.chunks.close()

    def _publish(self, out: UtteranceOutput) -> None:
        now = time.monotonic()
        for ev in out.events:
            tr = getattr(ev, "transcript", None)
            utt = getattr(ev, "utterance", None)
            if tr is None or tr.partial:
                continue
            done = tr.wall or now
            if utt is not None and utt.wall_end:
                self.latency.add(done - utt.wall_end)
            if self.to_wall is not None:
                # Includes the VAD's wait for silence and any backlog in the audio queue:
                # what the user sees between stopping speaking and reading the line.
                self.delay.add(done - self.to_wall(tr.t1))
        if self.to_wall is not None:
            # An utterance's voice and text scores are published together, here: the later of them.
            for t1 in {s.t1 if s.t1 is not None else s.t for s in out.scores}:
                self.scores_delay.add(now - self.to_wall(t1))
        if not out.transcripts and not out.scores:
            return
        with self._lock:
            for tr in out.transcripts:
                if tr.partial:
                    self._partial = tr
                else:
                    self.utterances += 1
                    if tr.text.strip():
                        self._finals.append(tr)
                    self._partial = None
            for s in out.scores:
                self._scores[s.model] = s
                self._history.append(s)
            self._version += 1
        for tr in out.transcripts:
            if not tr.partial:
                log.info("transcript %.2f–%.2f s: %s", tr.t0, tr.t1, tr.text)
        if self.on_transcript is not None:
            for tr in out.transcripts:
                self.on_transcript(tr)
        if self.on_score is not None:
            for s in out.scores:
                self.on_score(s)
