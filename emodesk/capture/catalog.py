"""What can be picked as a source, each with the figures a user chooses by.

Cameras with their resolution and frame rate (opening one briefly tells), input
devices with their sample rate and channels, files with their picture size,
frame rate, length and audio. No Qt here: the window's source picker
(``ui/source_picker.py``) and ``emodesk devices`` both read it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from emodesk.errors import EmodeskError, InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CameraInfo:
    index: int
    name: str
    size: tuple[int, int] | None = None  # known once the camera was opened
    fps: float | None = None
    error: str | None = None  # why opening it failed

    @property
    def spec(self) -> str:
        return f"camera:{self.index}"

    def describe(self, pending: str = "not opened yet") -> str:
        if self.error:
            how = f"cannot open: {self.error}"
        elif self.size:
            how = f"{self.size[0]}×{self.size[1]}" + (f", {self.fps:.0f} fps" if self.fps else "")
        else:
            how = pending
        return f"Camera {self.index} — {self.name} ({how})"


@dataclass(frozen=True)
class MicInfo:
    index: int
    name: str
    samplerate: float
    channels: int

    def describe(self) -> str:
        return f"{self.index}: {self.name} ({self.samplerate / 1000:g} kHz, {self.channels} ch)"


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    kind: str  # "video", "audio" or "session"
    size: tuple[int, int] | None = None
    fps: float | None = None
    duration_s: float | None = None
    audio_rate: int | None = None  # None: no audio track

    @property
    def has_audio(self) -> bool:
        return self.audio_rate is not None

    def describe(self) -> str:
        parts = []
        if self.size:
            parts.append(f"{self.size[0]}×{self.size[1]}")
        if self.fps:
            parts.append(f"{self.fps:.3g} fps")
        if self.duration_s:
            parts.append(f"{self.duration_s:.0f} s")
        parts.append(f"audio {self.audio_rate / 1000:g} kHz" if self.audio_rate else "no audio")
        what = {"video": "File", "audio": "Audio file", "session": "Session"}[self.kind]
        return f"{what} {self.path.name} ({', '.join(parts)})"


def cameras() -> list[CameraInfo]:
    """Every camera in the numbering ``camera:N`` uses (not opened: see :func:`probe_camera`)."""
    from emodesk.capture.webcam import list_cameras

    try:
        return [CameraInfo(i, name) for i, name in list_cameras()]
    except EmodeskError as e:
        log.info("no cameras listed: %s", e)
        return []


def probe_camera(info: CameraInfo) -> CameraInfo:
    """Open the camera once to learn its resolution and frame rate; the error if it will not open."""
    from emodesk.capture.webcam import CameraSource

    src = CameraSource(info.index)
    try:
        src.open()
    except EmodeskError as e:
        return CameraInfo(info.index, info.name, error=str(e))
    try:
        return CameraInfo(info.index, info.name, src.size, src.fps)
    finally:
        src.close()


def microphones() -> list[MicInfo]:
    """Input devices with their default sample rate and channels ([] with no audio system)."""
    from emodesk.capture.microphone import list_microphones

    try:
        return [
            MicInfo(int(m["index"]), str(m["name"]), float(m["samplerate"]), int(m["channels"]))
            for m in list_microphones()
        ]
    except EmodeskError as e:
        log.info("no microphones listed: %s", e)
        return []


def media_info(path: str | Path) -> MediaInfo:
    """The figures of a video or audio file, or of a recorded session's folder (or its session.json)."""
    import av

    p = Path(path).expanduser()
    if p.name == "session.json" and p.is_file():
        p = p.parent
    if p.is_dir():
        if not (p / "session.json").is_file():
            raise InputError(f"{p} is a folder, not a video/audio file or a recorded session")
        video, audio = p / "video.mp4", p / "audio.wav"
        if not video.is_file() and not audio.is_file():
            raise InputError(f"session {p} has neither video.mp4 nor audio.wav")
        pic = media_info(video) if video.is_file() else None
        snd = media_info(audio) if audio.is_file() else None
        either = pic or snd
        return MediaInfo(
            p,
            "session",
            pic.size if pic else None,
            pic.fps if pic else None,
            either.duration_s if either else None,
            snd.audio_rate if snd else None,
        )
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    try:
        with av.open(str(p)) as c:
            v = c.streams.video[0] if c.streams.video else None
            a = c.streams.audio[0] if c.streams.audio else None
            duration = float(c.duration) / 1_000_000 if c.duration else None
            if v is None and a is None:
                raise InputError(f"{p} has neither a picture nor sound")
            fps = v.average_rate or v.guessed_rate if v is not None else None
            return MediaInfo(
                p,
                "video" if v is not None else "audio",
                (int(v.codec_context.width), int(v.codec_context.height)) if v is not None else None,
                float(fps) if fps else None,
                duration,
                int(a.codec_context.sample_rate) if a is not None else None,
            )
    except av.error.FFmpegError as e:
        raise InputError(f"{p} is not a video or audio file FFmpeg can read: {e}") from None
