"""File sources: a video file's frames and an audio track, both decoded by PyAV (FFmpeg).

Paced sources release each frame or chunk when the shared media clock reaches
its timestamp (the live app); unpaced ones run as fast as they can (batch).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from emodesk.capture.clock import Clock, MonotonicClock
from emodesk.errors import InputError
from emodesk.types import AudioChunk, Frame

AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma"}
SAMPLE_RATE = 16000

log = logging.getLogger(__name__)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"input file {path} does not exist")
    if not path.is_file():
        raise InputError(f"input {path} is not a file")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise InputError(f"input file {path} is unreadable: {e.strerror}") from None


def has_audio_track(path: Path) -> bool:
    import av

    try:
        with av.open(str(path)) as c:
            return len(c.streams.audio) > 0
    except (av.error.FFmpegError, OSError):
        return False


def media_duration(path: Path) -> float | None:
    import av

    try:
        with av.open(str(path)) as c:
            if c.duration is not None:
                return float(c.duration) / 1_000_000
    except (av.error.FFmpegError, OSError):
        return None
    return None


def audio_stream_duration(path: Path) -> float | None:
    """The length the file's audio track itself declares (end of its last packet as the header has
    it), s, from the file's start; None when the track does not say (a raw WAV, an estimated MP3)."""
    import av

    try:
        with av.open(str(path)) as c:
            if not c.streams.audio:
                return None
            st = c.streams.audio[0]
            if st.duration is None or st.time_base is None or c.format.name in ("mp3", "wav"):
                return None
            start = float(st.start_time * st.time_base) if st.start_time is not None else 0.0
            return start + float(st.duration * st.time_base)
    except (av.error.FFmpegError, OSError):
        return None


class VideoFileSource:
    """Frames of a video file with media time ``index / fps`` (plus loop offsets)."""

    def __init__(
        self,
        path: Path | str,
        *,
        paced: bool = False,
        clock: Clock | None = None,
        loop: bool = False,
        stop: threading.Event | None = None,
    ) -> None:
        self.path = Path(path)
        self.name = f"video file {self.path.name}"
        self.paced = paced
        self.clock: Clock = clock or MonotonicClock()
        self.loop = loop
        self.stop = stop or threading.Event()
        self._container: Any = None
        self._frames: Iterator[Any] = iter(())
        self._first: np.ndarray | None = None
        self._bgr: Any = None
        self._fps = 30.0
        self._index = 0  # frames delivered in this pass
        self._offset = 0.0  # media seconds added by earlier loops
        self._total = 0
        self.frame_count = 0
        self.size = (0, 0)

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def duration(self) -> float:
        return self.frame_count / self._fps if self.frame_count else 0.0

    def _start(self) -> None:
        """(Re)open the file and position the decoder at its first frame."""
        import av

        try:
            container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError) as e:
            raise InputError(f"cannot read {self.path} as video: {e}") from None
        if not container.streams.video:
            container.close()
            raise InputError(f"{self.path} has no video track")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame threads: decoding keeps up with any display rate
        self._container, self._frames = container, container.decode(stream)
        # One converter for the whole file: PyAV's to_ndarray(format=...) builds a new one per frame.
        self._bgr = av.video.reformatter.VideoReformatter()

    def open(self) -> None:
        import av

        _check_file(self.path)
        self._start()
        stream = self._container.streams.video[0]
        try:
            first = self._next_image()
        except InputError:
            self.close()
            raise
        if first is None:
            self.close()
            raise InputError(f"{self.path} holds no readable video frames")
        self._first = first
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        self._fps = fps if 1.0 <= fps <= 240.0 else 30.0
        count = int(stream.frames or 0)
        if count <= 0 and stream.duration is not None and stream.time_base is not None:
            count = round(float(stream.duration * stream.time_base) * self._fps)
        elif count <= 0 and self._container.duration is not None:
            count = round(self._container.duration / av.time_base * self._fps)
        self.frame_count = max(0, count)
        self.size = (int(first.shape[1]), int(first.shape[0]))

    def _next_image(self) -> np.ndarray | None:
        """The next decoded frame as BGR, None at the end; a file corrupt from the start is an InputError."""
        import av

        try:
            return self._bgr.reformat(next(self._frames), format="bgr24").to_ndarray()
        except StopIteration:
            return None
        except av.error.FFmpegError as e:
            if self._index == 0 and self._first is None:
                raise InputError(f"{self.path} holds no readable video frames: {e}") from None
            log.warning(
                "video %s is corrupt after frame %d (%s); treating it as its end", self.path, self._index, e
            )
            return None

    def read(self) -> Frame | None:
        if self._container is None:
            raise RuntimeError("VideoFileSource.read() before open()")
        if self._first is not None:
            img: np.ndarray | None = self._first
            self._first = None
        else:
            img = self._next_image()
        if img is None:
            if not self.loop or self._index == 0:
                return None
            self._offset += self._index / self._fps
            self._index = 0
            self._container.close()
            self._start()
            img = self._next_image()
            if img is None:
                return None
        t = self._offset + self._index / self._fps
        self._index += 1
        self._total += 1
        if self.paced and not self.clock.sleep_until(t, self.stop):
            return None
        return Frame(t=t, image=img, index=self._total - 1, wall=time.monotonic())

    def close(self) -> None:
        container, self._container, self._frames = self._container, None, iter(())
        if container is not None:
            container.close()


class AudioFileSource:
    """The audio track of any file PyAV reads (wav, flac, mp3, a video's track), at 16 kHz mono.

    ``loop_period`` makes a looping track repeat every that many seconds (padding
    with silence or cutting), so it stays in step with a looping video.
    """

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        path: Path | str,
        *,
        paced: bool = False,
        clock: Clock | None = None,
        chunk_s: float = 0.02,
        loop: bool = False,
        loop_period: float | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.path = Path(path)
        self.name = f"audio of {self.path.name}"
        self.paced = paced
        self.clock: Clock = clock or MonotonicClock()
        self.chunk = max(1, round(chunk_s * SAMPLE_RATE))
        self.loop = loop
        self.loop_period = loop_period
        self.stop = stop or threading.Event()
        self._pass_samples = 0
        self._emitted = 0  # samples emitted over all passes
        self._offset = 0.0
        self._pending = np.zeros(0, dtype=np.float32)
        self._gen: Generator[np.ndarray, None, None] | None = None
        self._ended = False

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def overflows(self) -> int:
        return 0

    def _decode(self) -> Generator[np.ndarray, None, None]:
        import av

        try:
            container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError) as e:
            raise InputError(f"cannot read audio from {self.path}: {e}") from None
        with container:
            if not container.streams.audio:
                raise InputError(f"{self.path} has no audio track")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            try:
                for frame in container.decode(stream):
                    for out in resampler.resample(frame):
                        yield out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                for out in resampler.resample(None):
                    yield out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
            except av.error.FFmpegError as e:
                raise InputError(f"audio of {self.path} is corrupt: {e}") from None

    def open(self) -> None:
        _check_file(self.path)
        self._gen = self._decode()
        # Decode the first packet now so a bad file fails at open, not mid-stream.
        first = next(self._gen, None)
        if first is None:
            raise InputError(f"{self.path} holds no audio samples")
        self._pending = first

    def _next_samples(self) -> np.ndarray | None:
        assert self._gen is not None
        while len(self._pending) < self.chunk:
            nxt = next(self._gen, None)
            if nxt is None:
                break
            self._pending = np.concatenate([self._pending, nxt])
        if len(self._pending) == 0:
            return None
        out, self._pending = self._pending[: self.chunk], self._pending[self.chunk :]
        return out

    def _restart(self) -> None:
        period = self.loop_period or self._pass_samples / SAMPLE_RATE
        self._offset += period
        self._pass_samples = 0
        self._gen = self._decode()
        self._pending = np.zeros(0, dtype=np.float32)

    def read(self, timeout: float = 0.5) -> AudioChunk | None:
        if self._gen is None:
            raise RuntimeError("AudioFileSource.read() before open()")
        if self._ended:
            return None
        samples: np.ndarray | None
        period_samples = round(self.loop_period * SAMPLE_RATE) if self.loop_period else None
        if period_samples is not None and self._pass_samples >= period_samples:
            samples = None  # cut the track at the loop period
        else:
            samples = self._next_samples()
            if samples is None and period_samples is not None and self.loop:
                n = min(self.chunk, period_samples - self._pass_samples)
                samples = np.zeros(n, dtype=np.float32) if n > 0 else None  # pad to the period
            elif samples is not None and period_samples is not None:
                samples = samples[: period_samples - self._pass_samples]
        if samples is None or len(samples) == 0:
            if not self.loop or self._pass_samples == 0:
                self._ended = True
                return None
            self._restart()
            return self.read(timeout)
        t0 = self._offset + self._pass_samples / SAMPLE_RATE
        self._pass_samples += len(samples)
        self._emitted += len(samples)
        t1 = t0 + len(samples) / SAMPLE_RATE
        if self.paced and not self.clock.sleep_until(t1, self.stop):
            self._ended = True
            return None
        return AudioChunk(t0=t0, samples=samples, sample_rate=SAMPLE_RATE, wall=time.monotonic())

    def close(self) -> None:
        gen, self._gen = self._gen, None
        if gen is not None:
            gen.close()
