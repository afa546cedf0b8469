"""The file layer of a session: every byte a recording writes goes through here.

Each writer survives a killed process with at most about a second lost:

- :class:`WavWriter`: 16 kHz mono PCM16 WAV. The header's sizes are rewritten
  every ``refresh_s`` of audio, so after a kill the file is a valid WAV of
  everything up to the last refresh; ``sessions repair`` fixes the sizes to
  the bytes really there.
- :class:`JsonlWriter`: one JSON object per line, handed to the OS each
  ``flush_s``; a kill can leave a torn last line, which ``check`` reports and
  ``repair`` cuts.
- :class:`VideoWriter`: H.264 in a **fragmented MP4** (``frag_keyframe +
  empty_moov``, a keyframe every ``gop`` frames, packets flushed to the OS as
  they are written): a plain MP4 has no index until it is closed, a fragmented
  one is readable up to its last complete fragment (0.5 s at 30 fps). Each
  frame's presentation time is its media time in milliseconds, so audio and
  video share the source's one clock.

Files are opened through :data:`opener` (tests swap it to inject ENOSPC or
EACCES at this layer, which still fails when the tests run as root) and
created 0600 inside 0700 folders.
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import numpy as np

FILE_MODE = 0o600
DIR_MODE = 0o700


def _open(path: Path, mode: str) -> IO[Any]:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    if "+" in mode:
        flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags | getattr(os, "O_BINARY", 0), FILE_MODE)
    return os.fdopen(fd, mode)


opener: Callable[[Path, str], IO[Any]] = _open
"""How the session's files are opened (a seam for fault-injection tests)."""


def json_line(obj: dict[str, Any]) -> bytes:
    """One JSON-lines record as the session files store it (compact, UTF-8, newline)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def replace_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data``: a crash leaves the old file or the new, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with opener(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _named(method: Callable[..., Any]) -> Callable[..., Any]:
    """Re-raise an OSError with the file's path, so the message says which file failed."""

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except OSError as e:
            raise OSError(e.errno, e.strerror or str(e), str(self.path)) from e

    wrapper.__doc__ = method.__doc__
    return wrapper


def make_dir(path: Path) -> None:
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=False)
    os.chmod(path, DIR_MODE)


def wav_header(data_bytes: int, rate: int = 16000, channels: int = 1, bits: int = 16) -> bytes:
    block = channels * bits // 8
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, bits)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


WAV_HEADER_BYTES = 44


def pcm16(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] as little-endian 16-bit PCM (clipped)."""
    return (np.clip(np.asarray(samples, np.float32), -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> None:
    """A whole mono WAV in one go (exports; a recording uses :class:`WavWriter`)."""
    data = pcm16(samples)
    with opener(path, "wb") as fh:
        fh.write(wav_header(len(data), rate) + data)


class WavWriter:
    def __init__(self, path: Path, rate: int = 16000, refresh_s: float = 0.5) -> None:
        self.path, self.rate = path, rate
        self._fh = opener(path, "wb+")
        self._fh.write(wav_header(0, rate))
        self.samples = 0
        self._since = 0
        self._refresh = max(1, int(refresh_s * rate))

    @_named
    def write(self, samples: np.ndarray) -> None:
        data = pcm16(samples)
        self._fh.write(data)
        self.samples += len(data) // 2
        self._since += len(data) // 2
        if self._since >= self._refresh:
            self.refresh()

    @_named
    def refresh(self) -> None:
        """Rewrite the header's sizes and hand everything to the OS."""
        n = self.samples * 2
        self._fh.seek(4)
        self._fh.write(struct.pack("<I", 36 + n))
        self._fh.seek(40)
        self._fh.write(struct.pack("<I", n))
        self._fh.seek(0, os.SEEK_END)
        self._fh.flush()
        self._since = 0

    def close(self) -> None:
        try:
            self.refresh()
        finally:
            self._fh.close()


class JsonlWriter:
    def __init__(self, path: Path, flush_s: float = 0.5) -> None:
        self.path = path
        self._fh = opener(path, "ab")
        self.count = 0
        self._flush_s = flush_s
        self._last = time.monotonic()

    @_named
    def write(self, obj: dict[str, Any]) -> None:
        self._fh.write(json_line(obj))
        self.count += 1
        now = time.monotonic()
        if now - self._last >= self._flush_s:
            self._fh.flush()
            self._last = now

    @_named
    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        try:
            self._fh.flush()
        finally:
            self._fh.close()


class VideoWriter:
    """BGR frames → H.264 fragmented MP4 with media-time timestamps (ms)."""

    def __init__(self, path: Path, width: int, height: int, *, fps: float = 30.0, gop: int = 15) -> None:
        import av

        self.path = path
        self._fh = opener(path, "wb")
        self._container = av.open(
            self._fh,
            "w",
            format="mp4",
            options={"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"},
        )
        stream = self._container.add_stream("libx264", rate=Fraction(round(fps * 1000), 1000))
        stream.width, stream.height = width - width % 2, height - height % 2
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(gop), "crf": "23"}
        self._stream = stream
        self.frames = 0
        self._last_pts = -1
        self.t0: float | None = None

    @_named
    def write(self, image: np.ndarray, t: float) -> None:
        import av

        if self.t0 is None:
            self.t0 = t
        pts = max(self._last_pts + 1, round((t - self.t0) * 1000))
        h, w = self._stream.height, self._stream.width
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:h, :w]), format="bgr24")
        frame.pts = pts
        frame.time_base = Fraction(1, 1000)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self._fh.flush()  # fragments reach the OS as soon as the muxer writes them
        self._last_pts = pts
        self.frames += 1

    def close(self) -> None:
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
        finally:
            self._fh.close()


def safe_name(text: str) -> str:
    """``text`` as one file-name part: letters, digits, ``-``, ``_`` and inner dots only, so an
    id such as ``../../../x`` (a session.json is user input) cannot name a path outside a folder."""
    out = re.sub(r"[^A-Za-z0-9._-]", "_", text).strip(".") or "session"
    return out[:120]
