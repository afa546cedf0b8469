"""Frame → faces → expression probabilities per face and model, with stable track ids."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from emodesk.pipeline.tracking import FaceTracker
from emodesk.types import FaceFrameResult, Frame, ModalityScores

if TYPE_CHECKING:
    from emodesk.inference.face_detector import FaceDetector
    from emodesk.inference.face_scorer import FaceExpressionScorer


class FacePipeline:
    """Detect, track and score every face of a frame: one batched call per model."""

    def __init__(
        self,
        detector: FaceDetector,
        scorers: Sequence[FaceExpressionScorer],
        tracker: FaceTracker | None = None,
        *,
        max_faces: int = 8,
    ) -> None:
        self.detector = detector
        self.scorers = list(scorers)
        self.tracker = tracker or FaceTracker()
        self.max_faces = max_faces

    def process(self, frame: Frame) -> FaceFrameResult:
        boxes = self.detector.detect(frame.image)[: self.max_faces]
        ids = self.tracker.update(frame.t, [b.box for b in boxes])
        faces: list[ModalityScores] = []
        smoothed: list[np.ndarray] = []
        for scorer in self.scorers:
            probs = scorer.score(frame.image, boxes) if boxes else np.zeros((0, 7), np.float32)
            for b, tid, p in zip(boxes, ids, probs, strict=True):
                s = ModalityScores(
                    kind="face",
                    model=scorer.model.id,
                    t=frame.t,
                    probs=p.astype(np.float64),
                    track=tid,
                    box=b.box,
                    wall=frame.wall,
                )
                faces.append(s)
                smoothed.append(self.tracker.smooth(tid, s.model, frame.t, s.probs))
        return FaceFrameResult(
            t=frame.t,
            index=frame.index,
            frame_size=frame.size,
            faces=tuple(faces),
            wall_captured=frame.wall,
            wall_done=time.monotonic(),
            smoothed=tuple(smoothed),
        )
