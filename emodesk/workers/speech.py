"""The speech thread: owns the VAD, whisper and the voice/text sessions.

It drains the audio queue in order (speech needs every chunk), turns
utterances into transcripts and voice/text scores, and keeps only bounded
results for the GUI: the last final lines, the current partial line, the
latest score per member.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from PySide6.QtCore import QObject

from emodesk.machine import Device
from emodesk.pipeline.utterance_path import UtteranceOutput, UtterancePipeline
from emodesk.types import AudioChunk, ModalityScores, SlotStatus, Transcript
from emodesk.workers.base import LOADING, Worker
from emodesk.workers.queues import BoundedChunkQueue
from emodesk.workers.stats import LatencyWindow

log = logging.getLogger(__name__)


class SpeechEventSource(Protocol):
    """What the worker needs of ``SpeechProcessor``: events carrying utterance + transcript."""

    def insert(self, chunk: AudioChunk) -> Sequence[Any]: ...

    def insert_many(self, chunks: Sequence[AudioChunk]) -> Sequence[Any]: ...

    def finish(self) -> Sequence[Any]: ...


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
    *, asr_model: str | None = None, device: Device = "auto", partial_interval_s: float | None = 1.0
) -> SpeechLoader:
    """Loads VAD + ASR + voice/text members; called inside the speech thread."""

    def load() -> SpeechModels:
        from emodesk.pipeline.models import load_speech_processor, load_utterance_scorers

        speech, statuses = load_speech_processor(
            asr_model=asr_model, device=device, partial_interval_s=partial_interval_s
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

    # ---------------------------------------------------------- GUI side

    def transcripts(self) -> tuple[tuple[Transcript, ...], Transcript | None, int]:
        """(final lines oldest first, current partial or None, version that changes on news)."""
        with self._lock:
            return tuple(self._finals), self._partial, self._version

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
        while not self.stopping:
            chunk = self.chunks.get(self.poll_s)
            if chunk is None:
                if self.chunks.exhausted:
                    if not self.stopping:  # a finite source ended: transcribe its last words
                        self._publish(pipeline.finish())
                    break
                continue
            # Behind (ASR was busy)? Take the backlog in one go: the processor then
            # transcribes only its newest partial instead of every stale one.
            batch = [chunk, *self.chunks.drain(self.max_batch - 1)]
            self.audio_seconds += sum(len(c.samples) / c.sample_rate for c in batch)
            out = pipeline.insert(chunk) if len(batch) == 1 else pipeline.insert_many(batch)
            self._publish(out)
            self.position = batch[-1].t1

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
