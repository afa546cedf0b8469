"""Audio → utterances → transcript, voice scores and text scores.

Synchronous like the rest of the pipeline: a worker (live) or ``analyze``
(batch) feeds chunks and collects what comes out.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from emodesk.types import AudioChunk, ModalityScores, Transcript

if TYPE_CHECKING:
    from emodesk.inference.utterance_scorers import TextScorer, VoiceScorer
    from emodesk.speech.processor import SpeechEvent, SpeechProcessor


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
        voice: Sequence[VoiceScorer] = (),
        text: Sequence[TextScorer] = (),
    ) -> None:
        self.speech = speech
        self.voice = list(voice)
        self.text = list(text)

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
            for v in self.voice:
                out.scores.append(
                    ModalityScores(
                        kind="voice",
                        model=v.id,
                        t=utt.t1,
                        probs=v.score(utt.audio),
                        t0=utt.t0,
                        t1=utt.t1,
                        wall=time.monotonic(),
                    )
                )
            if tr.text.strip():
                for s in self.text:
                    out.scores.append(
                        ModalityScores(
                            kind="text",
                            model=s.id,
                            t=utt.t1,
                            probs=s.score(tr.text),
                            t0=utt.t0,
                            t1=utt.t1,
                            wall=time.monotonic(),
                        )
                    )
        return out
