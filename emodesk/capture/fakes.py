"""In-memory sources for tests and synthetic input: the same interface, no device."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from emodesk.capture.clock import Clock, ManualClock
from emodesk.types import AudioChunk, Frame

SAMPLE_RATE = 16000


class ArrayVideoSource:
    """Frames from a list (or a function of the frame index) at ``fps``."""

    def __init__(
        self,
        frames: Sequence[np.ndarray] | Callable[[int], np.ndarray | None],
        *,
        fps: float = 30.0,
        paced: bool = False,
        clock: Clock | None = None,
        stop: threading.Event | None = None,
        name: str = "synthetic video",
    ) -> None:
        self._frames = frames
        self._fps = fps
        self.paced = paced
        self.clock: Clock = clock or ManualClock()
        self.stop = stop or threading.Event()
        self.name = name
        self._i = 0
        self.opened = False

    @property
    def fps(self) -> float:
        return self._fps

    def open(self) -> None:
        self.opened = True

    def read(self) -> Frame | None:
        if callable(self._frames):
            img = self._frames(self._i)
        else:
            img = self._frames[self._i] if self._i < len(self._frames) else None
        if img is None:
            return None
        t = self._i / self._fps
        self._i += 1
        if self.paced and not self.clock.sleep_until(t, self.stop):
            return None
        return Frame(t=t, image=img, index=self._i - 1, wall=time.monotonic())

    def close(self) -> None:
        self.opened = False


class ArrayAudioSource:
    """16 kHz samples from an array, in chunks, optionally paced."""

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        samples: np.ndarray,
        *,
        chunk_s: float = 0.02,
        paced: bool = False,
        clock: Clock | None = None,
        stop: threading.Event | None = None,
        name: str = "synthetic audio",
    ) -> None:
        self._x = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._chunk = max(1, round(chunk_s * SAMPLE_RATE))
        self.paced = paced
        self.clock: Clock = clock or ManualClock()
        self.stop = stop or threading.Event()
        self.name = name
        self._pos = 0

    @property
    def ended(self) -> bool:
        return self._pos >= len(self._x)

    @property
    def overflows(self) -> int:
        return 0

    def open(self) -> None:
        pass

    def read(self, timeout: float = 0.5) -> AudioChunk | None:
        if self.ended:
            return None
        seg = self._x[self._pos : self._pos + self._chunk]
        t0 = self._pos / SAMPLE_RATE
        self._pos += len(seg)
        if self.paced and not self.clock.sleep_until(self._pos / SAMPLE_RATE, self.stop):
            return None
        return AudioChunk(t0=t0, samples=seg, sample_rate=SAMPLE_RATE, wall=time.monotonic())

    def close(self) -> None:
        pass
