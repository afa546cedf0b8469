"""Frame → faces → expression probabilities per face and model, with stable track ids.

**Member schedule.** Several face members on every frame cost a 2-core laptop
its latency budget (three members: 57 ms p95 against 40 ms; ``emodesk bench
demo --every-member-every-frame`` measures it, README "Performance"). So the cheapest member (the
smallest model file) scores every frame and the others take turns, one per
frame by frame index (deterministic, so ``analyze`` gives the same records on
any machine); a single other member takes every other frame (the shipped pair,
``-s`` 4.4 ms and ``-m`` 7.7 ms a face on one thread of a 2-core EPYC: both on
every frame took the unpaced face path under twice the fer-style baseline's rate).
Between its turns a member's last score for a track is carried forward — with
the time it was made, at most ``hold_s`` old — so the fusion and the display
always see every member; ``FaceFrameResult.fresh`` says which
entries were scored on this frame, and only those become score records.
``rotate=False`` scores every member on every frame.

**Detector schedule.** BlazeFace with its letterbox and decoding is about a
quarter of a frame's cost on a 2-core laptop (4–5 ms of ~17). A face moves
little in one frame, so the boxes of the last detection are reused for frames
at most ``reuse_boxes_s`` of media time after it (default 40 ms: every other
frame at 30 fps, every frame again at 15 fps), and the detector runs again
after that, on any frame where the last detection found no face, and when
media time goes backwards (a looped or restarted source). ``reuse_boxes_s=0``
detects on every frame (``emodesk bench --detect-every-frame``).

**Zoom schedule.** A face too small for the detector's 128-px view of the
whole frame (someone a metre or more from a 640×480 camera) is found by its
zoomed second look at four corner tiles (``FaceDetector.zoom_when_empty``),
which costs four more detector passes. While the zoom is what finds the faces,
every detection zooms, into one tile centred on the last face (one more pass)
and into all four every ``zoom_every_s`` of media time (default 0.25 s: someone
else far away is found too); with no face at all it zooms at most that often,
so an empty room costs the detector a few passes a second, not four more on
every frame.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from emodesk.pipeline.tracking import FaceTracker
from emodesk.types import FaceBox, FaceFrameResult, Frame, ModalityScores

if TYPE_CHECKING:
    from emodesk.inference.face_detector import FaceDetector
    from emodesk.inference.members import FaceMember

REUSE_BOXES_S = 0.04  # media seconds a detection's boxes serve (the next frame at 30 fps)
ZOOM_EVERY_S = 0.25  # with no face anywhere, media seconds between the detector's zoomed looks


class FacePipeline:
    """Detect, track and score every face of a frame: one batched call per model."""

    def __init__(
        self,
        detector: FaceDetector,
        scorers: Sequence[FaceMember],
        tracker: FaceTracker | None = None,
        *,
        max_faces: int = 8,
        rotate: bool = True,
        hold_s: float = 1.0,
        reuse_boxes_s: float = REUSE_BOXES_S,
        zoom_every_s: float = ZOOM_EVERY_S,
    ) -> None:
        self.detector = detector
        self.scorers = sorted(scorers, key=_cost)
        self.tracker = tracker or FaceTracker()
        self.max_faces = max_faces
        self.rotate = rotate and len(self.scorers) > 1
        self.hold_s = hold_s
        self.reuse_boxes_s = reuse_boxes_s
        self.detections = 0  # detector runs so far (the bench reports them per frame)
        self._last_boxes: list[FaceBox] = []
        self._last_detect_t: float | None = None
        self.zoom_every_s = zoom_every_s
        self._last_zoom_t: float | None = None
        self._zoom_found = False  # the last detection's faces came from the zoomed look
        self._held: dict[tuple[int | None, str], tuple[ModalityScores, np.ndarray]] = {}

    def due(self, index: int) -> list[FaceMember]:
        """The members that score frame ``index``: the cheapest always, the others by turns (over at
        least two frames, so that a single other member scores every other one)."""
        if not self.rotate:
            return list(self.scorers)
        rest = self.scorers[1:]
        turn = index % max(len(rest), 2)
        return [self.scorers[0], rest[turn]] if turn < len(rest) else [self.scorers[0]]

    def boxes(self, frame: Frame) -> list[FaceBox]:
        """The faces of ``frame``: the last detection's while it is fresh enough, else a new one."""
        last = self._last_detect_t
        fresh = last is not None and 0 <= frame.t - last <= self.reuse_boxes_s
        if self.reuse_boxes_s > 0 and self._last_boxes and fresh:
            return self._last_boxes
        lz = self._last_zoom_t
        due = lz is None or not 0 <= frame.t - lz < self.zoom_every_s  # a look at all four tiles
        near = self._last_boxes[0].box if self._zoom_found and self._last_boxes and not due else None
        self._last_boxes = self.detector.detect(frame.image, zoom=self._zoom_found or due, near=near)[
            : self.max_faces
        ]
        if getattr(self.detector, "searched_all_tiles", False):
            self._last_zoom_t = frame.t
        self._zoom_found = bool(getattr(self.detector, "searched_tiles", False)) and bool(self._last_boxes)
        self._last_detect_t = frame.t
        self.detections += 1
        return self._last_boxes

    def process(self, frame: Frame) -> FaceFrameResult:
        boxes = self.boxes(frame)
        ids = self.tracker.update(frame.t, [b.box for b in boxes])
        faces: list[ModalityScores] = []
        smoothed: list[np.ndarray] = []
        fresh: list[bool] = []
        due = {id(s) for s in self.due(frame.index)}
        for scorer in self.scorers:
            mid = scorer.model.id
            if id(scorer) not in due:
                for b, tid in zip(boxes, ids, strict=True):
                    held = self._held.get((tid, mid))
                    if held is not None and 0 <= frame.t - held[0].t <= self.hold_s:
                        faces.append(replace(held[0], box=b.box))
                        smoothed.append(held[1])
                        fresh.append(False)
                continue
            probs = scorer.score(frame.image, boxes) if boxes else np.zeros((0, 7), np.float32)
            for b, tid, p in zip(boxes, ids, probs, strict=True):
                s = ModalityScores(
                    kind="face",
                    model=mid,
                    t=frame.t,
                    probs=p.astype(np.float64),
                    track=tid,
                    box=b.box,
                    wall=frame.wall,
                )
                sm = self.tracker.smooth(tid, s.model, frame.t, s.probs)
                faces.append(s)
                smoothed.append(sm)
                fresh.append(True)
                self._held[(tid, mid)] = (s, sm)
        if len(self._held) > 4 * len(self.scorers) * self.max_faces:  # forget tracks long gone
            self._held = {k: v for k, v in self._held.items() if frame.t - v[0].t <= self.hold_s}
        return FaceFrameResult(
            t=frame.t,
            index=frame.index,
            frame_size=frame.size,
            faces=tuple(faces),
            wall_captured=frame.wall,
            wall_done=time.monotonic(),
            smoothed=tuple(smoothed),
            fresh=tuple(fresh),
        )


def _cost(scorer: FaceMember) -> tuple[int, str]:
    """A stable cost proxy: the model file's size (then the id, for a fixed order)."""
    try:
        size = scorer.model.manifest.model_path.stat().st_size
    except (OSError, AttributeError):
        size = 0
    return size, scorer.model.id
