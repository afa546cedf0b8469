"""Audio → utterances → transcript, voice scores and text scores.

Synchronous like the rest of the pipeline: a worker (live) or ``analyze``
(batch) feeds chunks and collects what comes out.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from emodesk.errors import EmodeskError
from emodesk.inference.utterance_scorers import context_before
from emodesk.types import AudioChunk, Kind, ModalityScores, Transcript, Utterance

if TYPE_CHECKING:
    from emodesk.inference.members import TextMember, VoiceMember
    from emodesk.speech.processor import SpeechEvent, SpeechProcessor


log = logging.getLogger(__name__)


@dataclass
class UtteranceOutput:
    """What a step produced; ``events`` keep the utterances (their times, for latency)."""

    transcripts: list[Transcript] = field(default_factory=list)
    scores: list[ModalityScores] = field(default_factory=list)
    events: list[SpeechEvent] = field(default_factory=list)

    def extend(self, other: UtteranceOutput) -> None:
        self.transcripts.extend(other.transcripts)
        self.scores.extend(other.scores)
        self.events.extend(other.events)


class UtterancePipeline:
    """Speech processor plus the voice and text members that score each final utterance."""

    def __init__(
        self,
        speech: SpeechProcessor,
        voice: Sequence[VoiceMember] = (),
        text: Sequence[TextMember] = (),
    ) -> None:
        self.speech = speech
        self.text = list(text)
        # the stream's trusted final transcripts (t0, t1, words), as many as a text member reads
        self._said: deque[tuple[float, float, str]] = deque(
            maxlen=max((int(getattr(m, "context", 0)) for m in self.text), default=0)
        )
        self.disabled: list[str] = []
        """Why a voice member was left out (it needs an encoder that cannot be loaded)."""
        # members built on the ASR's own encoder reuse its pass over each utterance
        # (one encoder run per utterance, not two), members on encoder blocks of their
        # own reuse its log-mel window; the others load their own encoder now,
        # in this (the worker's) thread, or are left out with the reason
        self.voice: list[VoiceMember] = []
        self._shares: list[bool] = []
        for v in voice:
            shares = v.accepts(speech.transcriber)
            if not shares:
                try:
                    v.prepare()
                except EmodeskError as e:
                    log.warning("%s", e)
                    self.disabled.append(str(e))
                    continue
            self.voice.append(v)
            # a member running encoder blocks of its own still reuses the pass's log-mel window
            self._shares.append(shares or v.reads_mel)
        speech.encode_finals = any(self._shares)
        self.shed_voice = 0  # voice member scores skipped while shedding load
        self._light = False

    @property
    def light(self) -> bool:
        """Shedding load (``emodesk.pipeline.shedding``): only the first voice member scores, the
        recogniser makes no partials and decodes finals greedily. Live paths only."""
        return self._light

    @light.setter
    def light(self, on: bool) -> None:
        self._light = on
        self.speech.light = on

    @property
    def settled_t(self) -> float | None:
        """No transcript or score still to come is stamped before this media time."""
        return self.speech.settled_t

    def drop_open(self) -> bool:
        """The audio before the next chunk was dropped: forget the open utterance (True if one was)."""
        return self.speech.drop_open()

    def insert(self, chunk: AudioChunk) -> UtteranceOutput:
        return self._score(self.speech.insert(chunk))

    def insert_many(self, chunks: Sequence[AudioChunk]) -> UtteranceOutput:
        """A backlog at once: only its newest partial is transcribed (``SpeechProcessor.insert_many``)."""
        return self._score(self.speech.insert_many(chunks))

    def finish(self) -> UtteranceOutput:
        return self._score(self.speech.finish())

    def _score(self, events: Sequence[SpeechEvent]) -> UtteranceOutput:
        out = UtteranceOutput(events=list(events))
        for ev in events:
            tr = ev.transcript
            out.transcripts.append(tr)
            if tr.partial:
                continue
            utt = ev.utterance
            members = list(zip(self.voice, self._shares, strict=True))
            if self.light and len(members) > 1:
                self.shed_voice += len(members) - 1  # the second and later voice members are optional
                members = members[:1]
            for v, shares in members:
                probs = v.score(utt.audio, encoded=ev.encoded) if shares else v.score(utt.audio)
                out.scores.append(_score("voice", v.id, utt, probs))
            if tr.text.strip():
                # a transcript the recogniser doubts is still scored and recorded, marked, and
                # left out of the fusion (FusionState.fresh)
                before = self._context(utt.t0)
                for m in self.text:
                    used = before[: int(getattr(m, "context", 0))]
                    if used and hasattr(m, "score_read"):
                        probs, read = m.score_read(tr.text, [w for _, w in used])
                        used = used[:read]  # what fitted the model's input: the record names only that
                    else:
                        probs = m.score(tr.text, [w for _, w in used]) if used else m.score(tr.text)
                    out.scores.append(
                        _score(
                            "text",
                            m.id,
                            utt,
                            probs,
                            trusted=tr.trusted,
                            reason=tr.reason,
                            context=tuple(t0 for t0, _ in used),
                        )
                    )
                if tr.trusted and self._said.maxlen:
                    self._said.append((utt.t0, utt.t1, tr.text))
        return out

    def _context(self, t0: float) -> list[tuple[float, str]]:
        return context_before(self._said, t0)


def _score(
    kind: Kind,
    model: str,
    utt: Utterance,
    probs: np.ndarray,
    *,
    trusted: bool = True,
    reason: str = "",
    context: tuple[float, ...] = (),
) -> ModalityScores:
    """An utterance-level member score: ``t`` is the utterance's end (docs/formats.md, "Score records")."""
    return ModalityScores(
        kind=kind,
        model=model,
        t=utt.t1,
        probs=probs,
        t0=utt.t0,
        t1=utt.t1,
        wall=time.monotonic(),
        trusted=trusted,
        reason=reason,
        context=context,
    )
