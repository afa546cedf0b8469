"""The webcam, through FFmpeg's capture devices (PyAV): V4L2, DirectShow, AVFoundation.

Why FFmpeg and not OpenCV: the app already carries FFmpeg (PyAV decodes
audio and writes recordings), and OpenCV's second copy cost 157 MB of the
bundle. FFmpeg's device inputs open a camera directly in the format asked
for, which also avoids Windows' Media Foundation hardware transforms that
make cameras "take ages to open" elsewhere.

Camera N is ``/dev/videoN`` on Linux and the N-th video capture device
FFmpeg lists on Windows (DirectShow) and macOS (AVFoundation).
"""

from __future__ import annotations

import glob
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from emodesk.capture.clock import Clock, MonotonicClock
from emodesk.errors import DeviceError
from emodesk.types import Frame

#: Frame rates tried in order where the device must be told one (AVFoundation
#: refuses to open at a rate the camera does not offer).
_RATES = ("30", "25", "15", "60", "29.97")


def _device_format() -> str:
    if sys.platform == "win32":
        return "dshow"
    if sys.platform == "darwin":
        return "avfoundation"
    return "v4l2"


def camera_present(index: int = 0) -> bool:
    """A cheap check that does not open the device (Linux: /dev/videoN exists)."""
    if sys.platform.startswith("linux"):
        return os.path.exists(f"/dev/video{index}")
    return True  # elsewhere only opening tells


def list_linux_cameras() -> list[int]:
    return sorted(int(p.removeprefix("/dev/video")) for p in glob.glob("/dev/video[0-9]*"))


def list_cameras() -> list[tuple[int, str]]:
    """(index, description) of every camera, in the numbering ``camera:N`` uses."""
    if sys.platform.startswith("linux"):
        out = []
        for i in list_linux_cameras():
            try:
                with open(f"/sys/class/video4linux/video{i}/name", encoding="utf-8") as f:
                    out.append((i, f.read().strip()))
            except OSError:
                out.append((i, f"/dev/video{i}"))
        return out
    return [(i, d.description or d.name) for i, d in enumerate(_video_devices())]


def _video_devices() -> list[Any]:
    import av

    try:
        devices = av.enumerate_input_devices(_device_format())
    except (av.error.FFmpegError, ValueError) as e:
        raise DeviceError(f"cannot list cameras through FFmpeg's {_device_format()} input: {e}") from None
    return [d for d in devices if "video" in d.media_types]


def _candidates(index: int, size: tuple[int, int] | None) -> list[tuple[str, str, dict[str, str]]]:
    """(file, format, options) to try in order for camera ``index``."""
    fmt = _device_format()
    video_size = {"video_size": f"{size[0]}x{size[1]}"} if size else {}
    if fmt == "v4l2":
        path = f"/dev/video{index}"
        tries = []
        if size and size[0] * size[1] > 640 * 480:
            # Raw YUYV above VGA usually runs at 5–10 fps over USB 2; MJPEG gives 30.
            tries.append((path, fmt, {**video_size, "input_format": "mjpeg"}))
        tries += [(path, fmt, dict(video_size)), (path, fmt, {})]
        return tries
    devices = _video_devices()
    if index >= len(devices):
        names = ", ".join(f"camera:{i} ({d.description or d.name})" for i, d in enumerate(devices))
        raise DeviceError(f"no camera {index}: cameras found: {names or 'none'}")
    dev = devices[index]
    if fmt == "dshow":
        path = f"video={dev.name}"
        return [
            (path, fmt, {**video_size, "framerate": "30"}),
            (path, fmt, dict(video_size)),
            (path, fmt, {}),
        ]
    path = f"{dev.name}:none"  # avfoundation: "<video index>:<audio index>"
    return [(path, fmt, {**video_size, "framerate": r}) for r in _RATES] + [
        (path, fmt, {"framerate": r}) for r in _RATES
    ]


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
        self._container: Any = None
        self._frames: Iterator[Any] | None = None
        self._first: np.ndarray | None = None
        self._bgr: Any = None
        self._fps = 30.0
        self._count = 0
        self._failures = 0
        self.size = (0, 0)
        self.open_seconds = 0.0
        self.opened_with = ""

    @property
    def fps(self) -> float:
        return self._fps

    def open(self) -> None:
        import av

        if not camera_present(self.index):
            raise DeviceError(
                f"no camera {self.index}: /dev/video{self.index} does not exist "
                f"(cameras found: {list_linux_cameras() or 'none'})"
            )
        t0 = time.monotonic()
        errors = []
        for path, fmt, options in _candidates(self.index, self.requested_size):
            try:
                container = av.open(path, format=fmt, options=options, timeout=(10.0, 5.0))
            except (av.error.FFmpegError, OSError) as e:
                errors.append(f"{options or 'defaults'}: {e}")
                continue
            if not container.streams.video:
                container.close()
                errors.append(f"{options or 'defaults'}: no video stream")
                continue
            stream = container.streams.video[0]
            frames = container.decode(stream)
            bgr = av.video.reformatter.VideoReformatter()  # one converter, not one per frame
            try:
                first = bgr.reformat(next(frames), format="bgr24").to_ndarray()
            except (av.error.FFmpegError, OSError, StopIteration) as e:
                container.close()
                errors.append(
                    f"{options or 'defaults'}: opened but delivered no frame ({e or 'end of stream'})"
                )
                continue
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else 0.0
            self._fps = fps if 1.0 <= fps <= 240.0 else 30.0
            self.size = (int(first.shape[1]), int(first.shape[0]))
            self._container, self._frames, self._first, self._bgr = container, frames, first, bgr
            self.opened_with = f"{fmt} {path} {options}"
            self.open_seconds = time.monotonic() - t0
            return
        raise DeviceError(
            f"camera {self.index} did not open; is another program using it? "
            f"pick another camera with camera:N ({'; '.join(errors[-3:])})"
        )

    def read(self) -> Frame | None:
        import av

        if self._container is None:
            raise RuntimeError("CameraSource.read() before open()")
        while not self.stop.is_set():
            img: np.ndarray | None = None
            if self._first is not None:
                img, self._first = self._first, None
            else:
                try:
                    assert self._frames is not None
                    img = self._bgr.reformat(next(self._frames), format="bgr24").to_ndarray()
                except StopIteration:
                    raise DeviceError(f"camera {self.index} stopped delivering frames (unplugged?)") from None
                except (av.error.FFmpegError, OSError):
                    # a decoder error ends the generator: start a new one on the same device
                    self._frames = self._container.decode(self._container.streams.video[0])
            if img is not None:
                self._failures = 0
                self._count += 1
                return Frame(t=self.clock.now(), image=img, index=self._count - 1, wall=time.monotonic())
            self._failures += 1
            if self._failures > 30:
                raise DeviceError(f"camera {self.index} stopped delivering frames (unplugged?)")
            time.sleep(0.01)
        return None

    def close(self) -> None:
        container, self._container, self._frames = self._container, None, None
        if container is not None:
            container.close()
