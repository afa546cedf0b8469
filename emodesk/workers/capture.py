"""Capture threads: each owns one source (open, read, close in the same thread).

Video fans out into latest-wins slots (one per consumer: the face worker and
the display), so a slow consumer drops stale frames instead of delaying the
picture; audio goes into a bounded queue whose drops are counted, because the
speech path needs a continuous stream.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from PySide6.QtCore import QObject

from emodesk.capture.base import AudioSource, VideoSource
from emodesk.capture.buffers import LatestSlot
from emodesk.types import AudioChunk, Frame
from emodesk.workers.base import Worker
from emodesk.workers.queues import BoundedChunkQueue
from emodesk.workers.stats import RateMeter

log = logging.getLogger(__name__)


class VideoCaptureWorker(Worker):
    """Reads frames until the source ends or stop is set; closes its slots when done."""

    role = "video capture"

    def __init__(
        self,
        source: VideoSource,
        slots: Sequence[LatestSlot[Frame]],
        stop: threading.Event,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(stop, parent)
        self.source = source
        self.slots = list(slots)
        self.taps: tuple[Callable[[Frame], object], ...] = ()  # e.g. a session recorder; never blocks
        self.fps_meter = RateMeter(2.0)
        self.frames = 0
        self.opened = False
        self.ended = False  # the source delivered everything (not stopped, not failed)
        self._open = False

    def work(self) -> None:
        self.source.open()
        self._open = True
        self.opened = True
        self.statuses_changed.emit()
        log.info("video source %s opened", self.source.name)
        while not self.stopping:
            frame = self.source.read()
            if frame is None:
                self.ended = not self.stopping
                break
            self.frames += 1
            self.fps_meter.tick()
            for s in self.slots:
                s.put(frame)
            for tap in self.taps:
                tap(frame)
        log.info(
            "video source %s: %s after %d frames",
            self.source.name,
            "ended" if self.ended else "stopped",
            self.frames,
        )

    def cleanup(self) -> None:
        for s in self.slots:
            s.close()  # consumers drain the last frame, then see the end
        if self._open:
            self._open = False
            self.source.close()


class AudioCaptureWorker(Worker):
    """Reads chunks into a bounded queue; ends at the end of a finite source or when stopped.

    It also ends when the consumer closes the queue (the speech path could
    not load): reading a device nobody listens to would only count drops.
    """

    role = "audio capture"

    def __init__(
        self,
        source: AudioSource,
        queue: BoundedChunkQueue[AudioChunk],
        stop: threading.Event,
        parent: QObject | None = None,
        *,
        read_timeout: float = 0.2,
    ) -> None:
        super().__init__(stop, parent)
        self.source = source
        self.queue = queue
        self.taps: tuple[Callable[[AudioChunk], object], ...] = ()  # e.g. a session recorder; never blocks
        self.read_timeout = read_timeout
        self.chunks = 0
        self.seconds = 0.0
        self.opened = False
        self.ended = False
        self._open = False

    @property
    def overflows(self) -> int:
        """Overflows the source itself counted (device ring, PortAudio); thread-safe int read."""
        try:
            return int(self.source.overflows)
        except (AttributeError, RuntimeError):
            return 0

    def work(self) -> None:
        self.source.open()
        self._open = True
        self.opened = True
        self.statuses_changed.emit()
        log.info("audio source %s opened", self.source.name)
        while not self.stopping:
            chunk = self.source.read(self.read_timeout)
            if chunk is None:
                if self.source.ended:
                    self.ended = not self.stopping
                    break
                continue  # a live device timed out: keep listening
            self.chunks += 1
            self.seconds += len(chunk.samples) / chunk.sample_rate
            for tap in self.taps:
                tap(chunk)
            if not self.queue.put(chunk) and not self.taps:
                log.info("audio queue closed by its consumer; %s stops", self.role)
                break
        log.info(
            "audio source %s: %s after %.1f s",
            self.source.name,
            "ended" if self.ended else "stopped",
            self.seconds,
        )

    def cleanup(self) -> None:
        self.queue.close()
        if self._open:
            self._open = False
            self.source.close()
