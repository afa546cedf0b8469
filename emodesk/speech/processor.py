"""Audio chunks in, (utterance, transcript) pairs out: the speech path as one processor.

Why one object, no threads (whisper_streaming's ``OnlineASRProcessor``
shape): the audio worker owns it and calls ``insert`` with whatever chunks
it has; a test calls the same methods with a file and runs an hour of audio
without waiting for it. The utterance travels with its transcript because
the caller also scores the utterance audio (voice emotion) and the text
(text emotion) and must give both rows the same ``t0``/``t1``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from emodesk.speech.asr import Transcription
from emodesk.speech.segmenter import UtteranceSegmenter
from emodesk.types import AudioChunk, Transcript, Utterance


class SpeechToText(Protocol):
    """What the processor needs from an ASR (``Transcriber``, or a test fake)."""

    def transcribe(self, audio: np.ndarray, *, partial: bool = False) -> str: ...


@dataclass(frozen=True)
class SpeechEvent:
    """One utterance (or a growing snapshot of it) and what was said in it.

    ``transcript.text`` may be "" (Whisper judged it non-speech); the
    utterance is still real audio the voice model can score.
    """

    utterance: Utterance
    transcript: Transcript
    encoded: Any = None
    """The ASR's encoder pass over a final utterance (``EncodedAudio``) when ``encode_finals`` is on."""

    @property
    def final(self) -> bool:
        return self.utterance.final

    @property
    def asr_latency_s(self) -> float:
        """Wall seconds from the segmenter emitting the utterance to its text being ready."""
        return self.transcript.wall - self.utterance.wall_end


class SpeechProcessor:
    """Segment, then transcribe; synchronous, fed by one worker thread."""

    def __init__(
        self,
        segmenter: UtteranceSegmenter,
        transcriber: SpeechToText,
        *,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        self.segmenter = segmenter
        self.transcriber = transcriber
        self._wall = wall
        self.partials_skipped = 0
        """Partial snapshots not transcribed because a newer one (or the final) came with them."""
        self.encode_finals = False
        """Keep each final utterance's encoder output on its event (voice members built on it)."""
        self.light = False
        """Shedding load (``emodesk.pipeline.shedding``): no partial transcripts, greedy finals."""
        self.shed_partials = 0
        self.shed_greedy = 0

    def insert(self, chunk: AudioChunk) -> list[SpeechEvent]:
        """Feed one chunk; returns events for utterances it ended or snapshotted."""
        return self._transcribe(self.segmenter.push(chunk))

    def insert_many(self, chunks: Iterable[AudioChunk]) -> list[SpeechEvent]:
        """Feed a backlog at once (a worker that fell behind drains its queue here).

        Only the newest partial snapshot is transcribed, so a busy CPU spends
        its time on the final transcript instead of stale partial ones.
        """
        utts: list[Utterance] = []
        for chunk in chunks:
            utts += self.segmenter.push(chunk)
        return self._transcribe(utts)

    def finish(self) -> list[SpeechEvent]:
        """End of stream: transcribe the utterance still open, if any."""
        return self._transcribe(self.segmenter.flush())

    @property
    def settled_t(self) -> float | None:
        """No event still to come ends before this media time (``UtteranceSegmenter.settled_t``)."""
        return self.segmenter.settled_t

    def drop_open(self) -> bool:
        """Audio before the next chunk was dropped: forget the utterance it belonged to.
        True when one was open (its start is gone; transcribing the rest would be wrong)."""
        was_open = self.segmenter.in_speech
        self.segmenter.reset()
        return was_open

    def _transcribe(self, utts: list[Utterance]) -> list[SpeechEvent]:
        out: list[SpeechEvent] = []
        for i, u in enumerate(utts):
            if not u.final and i + 1 < len(utts):
                self.partials_skipped += 1  # superseded by what came after it
                continue
            if not u.final and self.light:
                self.shed_partials += 1  # shedding load: only finals are transcribed
                continue
            encoded = None
            if u.final and self.encode_finals:
                encoded = self.transcriber.encode(u.audio)  # type: ignore[attr-defined]
            kwargs: dict[str, Any] = {"encoded": encoded} if encoded is not None else {"partial": not u.final}
            full = getattr(self.transcriber, "transcribe_full", None)
            if (
                self.light
                and u.final
                and full is not None
                and getattr(self.transcriber, "final_beam_size", 1) > 1
            ):
                kwargs["beam"] = 1  # greedy: the beam is optional work
                self.shed_greedy += 1
            # the real recogniser gives its text with its verdict on it; a plain one (a test fake) text only
            res = (
                full(u.audio, **kwargs)
                if full is not None
                else Transcription(self.transcriber.transcribe(u.audio, **kwargs))
            )
            asr = res.signals.as_record() if res.signals is not None and u.final else None
            tr = Transcript(
                t0=u.t0,
                t1=u.t1,
                text=res.text,
                partial=not u.final,
                wall=self._wall(),
                trusted=res.trusted,
                reason=res.reason,
                asr=asr,
            )
            out.append(SpeechEvent(u, tr, encoded))
        return out
