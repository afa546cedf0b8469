"""What a live session hands the session writer: frames, audio, and every score record.

:class:`SessionRecorder` is called from the capture, face and speech threads
(``LivePipeline.start_recording`` wires it in) and only enqueues, so
recording never slows the live view. It writes the score records of
docs/formats.md into ``scores.jsonl``: each face member's scores as scored
(carried-forward ones are not repeated), each voice and text score, each final
transcript, and ``fused`` rows read from the live fusion (``fused(t)``, the
pipeline's own state, so a reloaded ``fusion.json`` is recorded as shown) —
one per media second while a member is fresh and one after every utterance
score, as ``emodesk analyze`` writes them. The caller updates that state
before handing the recorder a result.

Privacy mode ``face-crops`` records the largest face's crop (square, 224×224,
the last box the face path found) instead of the full frame, and a grey frame
when there is no face, so the video keeps its clock.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping

import numpy as np

from emodesk import imaging
from emodesk.capture.sources import SourceSet
from emodesk.fusion.config import FusionConfig
from emodesk.inference.registry import installed_manifests
from emodesk.labels import LABELS
from emodesk.recording.writer import SessionMeta, SessionWriter
from emodesk.records import fused_record, score_record, transcript_record
from emodesk.types import AudioChunk, FaceFrameResult, Frame, FusedScores, ModalityScores, Transcript

CROP_SIZE = 224
PRIVACY_MODES = ("full", "face-crops")


def live_session_meta(
    sources: SourceSet, fusion: FusionConfig | None, *, notes: str = "", privacy: str = "full"
) -> SessionMeta:
    """What ``session.json`` records of a live session: its source and devices, every installed
    model (id, sha256, modality) and the fusion weights in force when recording started."""
    return SessionMeta(
        source=sources.description,
        devices={
            k: v.name for k, v in (("video", sources.video), ("audio", sources.audio)) if v is not None
        },
        models=[
            {"id": m.id, "sha256": m.sha256, "modality": m.modality}
            for m in sorted(installed_manifests().values(), key=lambda m: m.id)
        ],
        fusion={
            "file": str(fusion.path) if fusion is not None and fusion.path else None,
            "weights": {k: fusion.scalar_weight(k) for k in fusion.weights} if fusion is not None else {},
            "rule": fusion.rule.name if fusion is not None else None,
        },
        notes=notes,
        privacy=privacy,
    )


class SessionRecorder:
    def __init__(
        self, writer: SessionWriter, fused: Callable[[float], FusedScores | None], *, privacy: str = "full"
    ) -> None:
        if privacy not in PRIVACY_MODES:
            raise ValueError(f"privacy must be one of {PRIVACY_MODES}, got {privacy!r}")
        self.writer = writer
        self.privacy = privacy
        self._fused = fused
        self._lock = threading.Lock()
        self._next_second: float | None = None
        self._box: tuple[float, float, float, float] | None = None

    @property
    def label(self) -> str | None:
        return self.writer.label

    def set_label(self, label: str | None, t: float, source: str = "hotkey") -> None:
        self.writer.set_label(label, t, source)

    def hotkey(self, key: int, t: float) -> str | None:
        """1–7 set the canonical labels in order, 0 clears; returns the label now in force."""
        if not 0 <= key <= len(LABELS):
            raise ValueError(f"label hotkeys are 0–{len(LABELS)}, got {key}")
        label = None if key == 0 else LABELS[key - 1]
        self.set_label(label, t)
        return label

    # ------------------------------------------------------- capture taps

    def on_frame(self, frame: Frame) -> None:
        image = frame.image
        if self.privacy == "face-crops":
            image = self._crop(image)
        self.writer.add_frame(image, frame.t)

    def on_audio(self, chunk: AudioChunk) -> None:
        self.writer.add_audio(chunk.samples, chunk.t0)

    def _crop(self, image: np.ndarray) -> np.ndarray:
        box = self._box
        if box is None:
            return np.full((CROP_SIZE, CROP_SIZE, 3), 128, np.uint8)
        x, y, w, h = box
        side = max(1, round(max(w, h) * 1.2))
        return np.ascontiguousarray(
            imaging.resize(imaging.crop_square(image, x + w / 2, y + h / 2, side), (CROP_SIZE, CROP_SIZE))
        )

    # ------------------------------------------------------------ scores

    def on_face(self, result: FaceFrameResult) -> None:
        if result.faces:
            largest = max(result.faces, key=lambda s: (s.box[2] * s.box[3]) if s.box else 0.0)
            self._box = largest.box
        for s in result.scored():
            self.writer.add_record(score_record(s))
        with self._lock:
            self._tick(result.t)

    def on_score(self, score: ModalityScores) -> None:
        self.writer.add_record(score_record(score))
        fused = self._fused(score.t1 if score.t1 is not None else score.t)
        if fused is not None:
            self.writer.add_record(fused_record(fused))

    def on_shed(self, t: float, skipped: Mapping[str, float | int]) -> None:
        """Speech work skipped under load (``emodesk.pipeline.shedding``): a ``shed`` record, and its
        counts added up for ``session.json``."""
        self.writer.add_record({"t": round(t, 3), "kind": "shed", **skipped})
        self.writer.count_shed(skipped)

    def on_transcript(self, tr: Transcript) -> None:
        if not tr.partial:
            self.writer.add_record(transcript_record(tr))

    def _tick(self, t: float) -> None:
        """A fused row at each whole media second the face path passes (at least one a second)."""
        if self._next_second is None:
            self._next_second = float(math.floor(t))
        while t >= self._next_second:
            fused = self._fused(t)
            if fused is not None:
                self.writer.add_record(fused_record(fused))
            self._next_second += 1.0
