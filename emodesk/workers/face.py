"""The face thread: owns the detector and expression sessions, scores the newest frame.

It always takes the *newest* frame from a latest-wins slot, so when scoring
is slower than the camera the frames in between are dropped (and counted by
the slot) instead of queueing up and making the read-out lag further and
further behind the face.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from PySide6.QtCore import QObject

from emodesk.capture.buffers import LatestSlot
from emodesk.machine import Device
from emodesk.types import FaceFrameResult, Frame, SlotStatus
from emodesk.workers.base import LOADING, Worker
from emodesk.workers.stats import LatencyWindow, RateMeter

log = logging.getLogger(__name__)


class FaceProcessor(Protocol):
    def process(self, frame: Frame) -> FaceFrameResult: ...


FaceLoader = Callable[[], tuple[FaceProcessor | None, list[SlotStatus]]]


def default_face_loader(
    device: Device = "auto", *, rotate: bool = True, reuse_boxes_s: float | None = None
) -> FaceLoader:
    """Loads the installed face models; called inside the face thread."""

    def load() -> tuple[FaceProcessor | None, list[SlotStatus]]:
        from emodesk.pipeline.models import load_face_pipeline

        return load_face_pipeline(device=device, rotate=rotate, reuse_boxes_s=reuse_boxes_s)

    return load


class FaceWorker(Worker):
    """Loads the face pipeline in ``run()``, then scores the newest frame until the slot closes."""

    role = "face"

    def __init__(
        self,
        frames: LatestSlot[Frame],
        results: LatestSlot[FaceFrameResult],
        stop: threading.Event,
        loader: FaceLoader,
        parent: QObject | None = None,
        *,
        on_result: Callable[[FaceFrameResult], None] | None = None,
        poll_s: float = 0.1,
    ) -> None:
        super().__init__(stop, parent)
        self.frames = frames
        self.results = results
        self.loader = loader
        self.on_result = on_result
        self.poll_s = poll_s
        self.statuses: list[SlotStatus] = [SlotStatus("face", "missing", LOADING)]
        self.loaded = False
        self.fps_meter = RateMeter(2.0)
        self.latency = LatencyWindow(200)
        self.processed = 0

    def work(self) -> None:
        pipeline, statuses = self.loader()
        self.statuses = list(statuses)
        self.loaded = pipeline is not None
        self.statuses_changed.emit()
        if pipeline is None:
            # Nothing to score with: the capture keeps feeding the display slot
            # and this slot just overwrites its one frame; no backlog builds up.
            log.warning("face path unavailable: %s", "; ".join(s.message for s in statuses if not s.ok))
            return
        while not self.stopping:
            frame = self.frames.take(self.poll_s)
            if frame is None:
                if not self.frames.closed:
                    continue
                frame = self.frames.take(0)  # a last frame put just before the close
                if frame is None:
                    break  # the capture ended and every frame was seen
            result = pipeline.process(frame)
            self.processed += 1
            self.fps_meter.tick()
            if result.wall_captured > 0 and result.wall_done > 0:
                self.latency.add(result.wall_done - result.wall_captured)
            self.results.put(result)
            if self.on_result is not None:
                self.on_result(result)
