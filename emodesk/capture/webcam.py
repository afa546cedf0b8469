"""The webcam, via OpenCV, opened at its native resolution with the fast backend.

Cameras that "take ages to open" are mostly Windows' Media Foundation
hardware transforms; we disable them and prefer DirectShow there.
"""

from __future__ import annotations

import glob
import os
import sys
import threading
import time

from emodesk.capture.clock import Clock, MonotonicClock
from emodesk.errors import DeviceError
from emodesk.types import Frame

if sys.platform == "win32":  # must be set before cv2 is imported anywhere
    os.environ.setdefault("OPENCV_VIDEOIO_MSMF_ENABLE_HW_TRANSFORMS", "0")


def _backend() -> int:
    import cv2

    if sys.platform == "win32":
        return int(cv2.CAP_DSHOW)
    if sys.platform == "darwin":
        return int(cv2.CAP_AVFOUNDATION)
    return int(cv2.CAP_V4L2)


def camera_present(index: int = 0) -> bool:
    """A cheap check that does not open the device (Linux: /dev/videoN exists)."""
    if sys.platform.startswith("linux"):
        return os.path.exists(f"/dev/video{index}")
    return True  # elsewhere only opening tells


def list_linux_cameras() -> list[int]:
    return sorted(int(p.removeprefix("/dev/video")) for p in glob.glob("/dev/video[0-9]*"))


class CameraSource:
    """Frames from camera ``index``; media time from the shared clock at capture."""

    def __init__(
        self,
        index: int = 0,
        *,
        clock: Clock | None = None,
        size: tuple[int, int] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.index = index
        self.name = f"camera {index}"
        self.clock: Clock = clock or MonotonicClock()
        self.requested_size = size
        self.stop = stop or threading.Event()
        self._cap: object | None = None
        self._fps = 30.0
        self._count = 0
        self._failures = 0
        self.size = (0, 0)

    @property
    def fps(self) -> float:
        return self._fps

    def open(self) -> None:
        import cv2

        if not camera_present(self.index):
            raise DeviceError(
                f"no camera {self.index}: /dev/video{self.index} does not exist "
                f"(cameras found: {list_linux_cameras() or 'none'})"
            )
        t0 = time.monotonic()
        cap = cv2.VideoCapture(self.index, _backend())
        if not cap.isOpened():
            cap = cv2.VideoCapture(self.index)  # any backend
        if not cap.isOpened():
            raise DeviceError(
                f"camera {self.index} did not open; is another program using it? "
                "pick another camera with camera:N"
            )
        if self.requested_size:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.requested_size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.requested_size[1])
        ok, img = cap.read()
        if not ok or img is None:
            cap.release()
            raise DeviceError(f"camera {self.index} opened but delivered no frame")
        fps = cap.get(cv2.CAP_PROP_FPS)
        self._fps = float(fps) if fps and 1.0 <= fps <= 240.0 else 30.0
        self.size = (int(img.shape[1]), int(img.shape[0]))
        self.open_seconds = time.monotonic() - t0
        self._cap = cap

    def read(self) -> Frame | None:
        cap = self._cap
        if cap is None:
            raise RuntimeError("CameraSource.read() before open()")
        while not self.stop.is_set():
            ok, img = cap.read()  # type: ignore[attr-defined]
            if ok and img is not None:
                self._failures = 0
                self._count += 1
                return Frame(t=self.clock.now(), image=img, index=self._count - 1, wall=time.monotonic())
            self._failures += 1
            if self._failures > 30:
                raise DeviceError(f"camera {self.index} stopped delivering frames (unplugged?)")
            time.sleep(0.01)
        return None

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()  # type: ignore[attr-defined]
