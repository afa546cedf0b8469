"""The models of ``analyze``, loaded once and reused for every later input of a batch worker.

Loading the detector, the face members, the VAD, the recogniser and the voice and text members
takes a second or two: a worker going through hundreds of short files should pay it once. What
depends on what came before is made afresh per input, so an input's records do not depend on
which inputs the worker saw earlier: a new face tracker and schedule (:class:`FacePipeline`), a new
segmenter on a VAD whose stream state is reset, the voice members' running normalisation reset.
The statuses of the first load are reported for every input.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from emodesk.machine import Device
from emodesk.pipeline.models import load_face_pipeline, load_speech_processor, load_utterance_scorers
from emodesk.types import SlotStatus

if TYPE_CHECKING:
    from emodesk.inference.members import TextMember, VoiceMember
    from emodesk.pipeline.face_path import FacePipeline
    from emodesk.speech.processor import SpeechProcessor


@dataclass
class SpeechParts:
    speech: SpeechProcessor | None
    voice: list[VoiceMember]
    text: list[TextMember]
    statuses: list[SlotStatus] = field(default_factory=list)


class ModelCache:
    """Loads on first use (in the calling thread), then hands out fresh pipelines on the same models."""

    def __init__(self, *, device: Device = "auto", asr_model: str | None = None) -> None:
        self.device = device
        self.asr_model = asr_model
        self._face: tuple[FacePipeline | None, list[SlotStatus]] | None = None
        self._speech: SpeechParts | None = None
        self._lock = threading.Lock()  # the face and the speech thread load their parts concurrently
        self.loads = 0  # how many times models were loaded (a test counts them)

    def face_pipeline(self) -> tuple[FacePipeline | None, list[SlotStatus]]:
        from emodesk.pipeline.face_path import FacePipeline

        with self._lock:
            first = self._face is None
        if first:
            loaded = load_face_pipeline(device=self.device)
            with self._lock:
                self._face, self.loads = loaded, self.loads + 1
            return loaded[0], list(loaded[1])
        assert self._face is not None
        p, statuses = self._face
        if p is None:
            return None, list(statuses)
        fresh = FacePipeline(
            p.detector,
            p.scorers,
            max_faces=p.max_faces,
            rotate=p.rotate,
            hold_s=p.hold_s,
            reuse_boxes_s=p.reuse_boxes_s,
            zoom_every_s=p.zoom_every_s,
        )
        return fresh, list(statuses)

    def speech_parts(self) -> SpeechParts:
        from emodesk.speech.processor import SpeechProcessor
        from emodesk.speech.segmenter import UtteranceSegmenter

        with self._lock:
            first = self._speech is None
        if first:
            speech, statuses = load_speech_processor(
                asr_model=self.asr_model, device=self.device, partial_interval_s=None, cpu_threads=1
            )
            voice, text, st2 = load_utterance_scorers(device=self.device)
            parts = SpeechParts(speech, voice, text, statuses + st2)
            with self._lock:
                self._speech, self.loads = parts, self.loads + 1
            return SpeechParts(speech, list(voice), list(text), list(parts.statuses))
        assert self._speech is not None
        s = self._speech
        for v in s.voice:
            v.reset_session()
        if s.speech is None:
            return SpeechParts(None, list(s.voice), list(s.text), list(s.statuses))
        seg = s.speech.segmenter
        seg.vad.reset()
        fresh = SpeechProcessor(UtteranceSegmenter(seg.vad, seg.config), s.speech.transcriber)
        return SpeechParts(fresh, list(s.voice), list(s.text), list(s.statuses))
