"""Which member scores are fresh at a media time, and their fusion.

Freshness is judged in media time, never wall-clock, so batch results do not
depend on CPU speed (docs/formats.md, "Fusion").
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import numpy as np

from emodesk.fusion.config import FusionConfig
from emodesk.types import FaceFrameResult, FusedScores, ModalityScores

DEFAULT_CUTOFFS: Mapping[str, float] = {"face": 1.0, "voice": 10.0, "text": 10.0}


class FusionState:
    """Latest score per member; ``fused(t)`` fuses those still fresh at media time ``t``."""

    def __init__(self, config: FusionConfig, cutoffs: Mapping[str, float] | None = None) -> None:
        self.config = config
        self.cutoffs = dict(DEFAULT_CUTOFFS if cutoffs is None else cutoffs)
        self._face: FaceFrameResult | None = None
        self._utt: dict[str, ModalityScores] = {}

    def update_face(self, result: FaceFrameResult) -> None:
        if self._face is None or result.t >= self._face.t:
            self._face = result

    def update_score(self, score: ModalityScores) -> None:
        if score.kind == "face":
            raise ValueError("face scores arrive as FaceFrameResult via update_face()")
        prev = self._utt.get(score.model)
        if prev is None or score.t >= prev.t:
            self._utt[score.model] = score

    def fresh(self, t: float) -> tuple[dict[str, np.ndarray], int | None]:
        """Fresh member probabilities at ``t`` and the face track that contributed."""
        out: dict[str, np.ndarray] = {}
        track: int | None = None
        face = self._face
        if face is not None and face.faces and 0 <= t - face.t <= self.cutoffs["face"]:
            # Several faces: the largest tracked face speaks for the frame.
            largest = max(face.faces, key=lambda s: (s.box[2] * s.box[3]) if s.box else 0.0)
            for s in face.faces:
                if s.track == largest.track and s.model in self.config.weights:
                    out[s.model] = s.probs
                    track = s.track
        for m, s in self._utt.items():
            ended = s.t1 if s.t1 is not None else s.t
            if not s.trusted:  # the words of a transcript the recogniser doubts; nor an older score
                continue
            if m in self.config.weights and 0 <= t - ended <= self.cutoffs[s.kind]:
                out[m] = s.probs
        return out, track

    def fused(self, t: float) -> FusedScores | None:
        probs, track = self.fresh(t)
        if not probs:
            return None
        p = self.config.fuse(probs)
        return FusedScores(
            t=t,
            probs=p,
            members=tuple(sorted(probs)),
            track=track,
            weights={m: self.config.scalar_weight(m) for m in probs},
        )


class LockedFusionState:
    """``FusionState`` behind a lock, for the live window: the face and speech threads write, the
    GUI timer and the recorder read."""

    def __init__(self, config: FusionConfig) -> None:
        self.state = FusionState(config)
        self._lock = threading.Lock()

    def update_face(self, result: FaceFrameResult) -> None:
        with self._lock:
            self.state.update_face(result)

    def update_score(self, score: ModalityScores) -> None:
        with self._lock:
            self.state.update_score(score)

    def fused(self, t: float) -> FusedScores | None:
        with self._lock:
            return self.state.fused(t)

    def set_config(self, config: FusionConfig) -> None:
        """New weights from the next fused read on; the members' latest scores are kept."""
        with self._lock:
            self.state.config = config
