"""Fakes for the live pipeline tests: a speech processor, voice/text members, slow and failing sources.

Fakes, not mocks: each keeps the real interface the workers drive.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from emodesk.capture.fakes import ArrayVideoSource
from emodesk.errors import DeviceError
from emodesk.labels import LABELS, N_LABELS
from emodesk.types import AudioChunk, FaceFrameResult, Frame, SlotStatus, Transcript, Utterance
from emodesk.workers import SpeechModels


@dataclass(frozen=True)
class FakeEvent:
    utterance: Utterance
    transcript: Transcript


class FakeSpeech:
    """Every ``utt_s`` of audio is one utterance: a partial halfway, then a final line."""

    def __init__(self, utt_s: float = 0.4, final_s: float = 0.0) -> None:
        self.transcriber = None  # no ASR: no voice member shares an encoder pass
        self.utt_s = utt_s
        self.final_s = final_s  # seconds each final "transcription" takes (a slow recogniser)
        self.light = False  # shedding load: no partials
        self.shed_partials = 0
        self.shed_greedy = 0
        self.dropped_open = 0
        self._buf: list[np.ndarray] = []
        self._t0: float | None = None
        self._partial_sent = False
        self.n = 0
        self.batches: list[int] = []

    def insert(self, chunk: AudioChunk) -> list[FakeEvent]:
        if self._t0 is None:
            self._t0 = chunk.t0
        self._buf.append(chunk.samples)
        t1 = chunk.t1
        out: list[FakeEvent] = []
        if not self._partial_sent and t1 - self._t0 >= self.utt_s / 2:
            self._partial_sent = True
            if self.light:
                self.shed_partials += 1
            else:
                out.append(self._event(t1, final=False))
        if t1 - self._t0 >= self.utt_s:
            out.append(self._event(t1, final=True))
            self._buf, self._t0, self._partial_sent = [], None, False
        return out

    def finish(self) -> list[FakeEvent]:
        return []

    def drop_open(self) -> bool:
        was_open = self._t0 is not None
        self.dropped_open += was_open
        self._buf, self._t0, self._partial_sent = [], None, False
        return was_open

    def insert_many(self, chunks: Sequence[AudioChunk]) -> list[FakeEvent]:
        self.batches.append(len(chunks))
        return [ev for c in chunks for ev in self.insert(c)]

    def _event(self, t1: float, *, final: bool) -> FakeEvent:
        assert self._t0 is not None
        audio = np.concatenate(self._buf)
        if final:
            self.n += 1
            if self.final_s:
                time.sleep(self.final_s)
        text = f"line {self.n}" if final else "partial words"
        utt = Utterance(self._t0, t1, audio, final=final, wall_end=time.monotonic())
        return FakeEvent(utt, Transcript(self._t0, t1, text, partial=not final, wall=time.monotonic() + 0.01))


class FakeTextMember:
    """A text member (``emodesk.inference.members.TextMember``) that always says ``label``."""

    def __init__(self, model_id: str, label: str) -> None:
        self.id = model_id
        self.probs = np.full(N_LABELS, 0.02)
        self.probs[LABELS.index(label)] = 1 - 0.02 * (N_LABELS - 1)

    def score(self, _text: str) -> np.ndarray:
        return self.probs.copy()


class FakeVoiceMember(FakeTextMember):
    """A voice member (``emodesk.inference.members.VoiceMember``) that always says ``label``; it
    shares no encoder pass, so the pipeline prepares it as one scoring alone."""

    reads_mel = False

    def __init__(self, model_id: str, label: str) -> None:
        super().__init__(model_id, label)
        self.prepared = 0

    def accepts(self, _transcriber: object) -> bool:
        return False

    def prepare(self) -> None:
        self.prepared += 1

    def reset_session(self) -> None:
        pass

    def score(self, _audio: object, *, encoded: object = None) -> np.ndarray:  # type: ignore[override]
        return self.probs.copy()


def fake_speech_loader(models: list[SpeechModels] | None = None, delay: float = 0.0) -> object:
    def load() -> SpeechModels:
        time.sleep(delay)  # a model load the audio has to wait for
        m = SpeechModels(
            FakeSpeech(),
            [FakeVoiceMember("fake-voice", "angry")],
            [FakeTextMember("fake-text", "sad")],
            [
                SlotStatus("asr", "ok", "fake asr"),
                SlotStatus("voice", "ok", "fake-voice"),
                SlotStatus("text", "ok", "fake-text"),
            ],
        )
        if models is not None:
            models.append(m)
        return m

    return load


class SlowFace:
    """A face 'pipeline' that takes ``delay`` seconds per frame and records what it saw."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.seen: list[int] = []

    def process(self, frame: Frame) -> FaceFrameResult:
        time.sleep(self.delay)
        self.seen.append(frame.index)
        return FaceFrameResult(frame.t, frame.index, frame.size, (), frame.wall, time.monotonic())


class FailingAudio:
    """An audio source whose device refuses to open."""

    name = "broken microphone"
    sample_rate = 16000
    paced = True
    ended = False
    overflows = 0

    def open(self) -> None:
        raise DeviceError("broken microphone did not open: device busy; pick another microphone")

    def read(self, timeout: float = 0.5) -> AudioChunk | None:
        raise AssertionError("read() after a failed open()")

    def close(self) -> None:
        raise AssertionError("close() after a failed open()")


class VideoThatDies(ArrayVideoSource):
    """Delivers ``n`` frames, then the camera is 'unplugged'."""

    def __init__(self, frames: Sequence[np.ndarray], n: int, **kw: object) -> None:
        super().__init__(frames, **kw)  # type: ignore[arg-type]
        self.n = n
        self.closed_in: str | None = None

    def read(self) -> Frame | None:
        if self._i >= self.n:
            raise DeviceError("camera 0 stopped delivering frames (unplugged?)")
        return super().read()

    def close(self) -> None:
        self.closed_in = threading.current_thread().name
        super().close()
