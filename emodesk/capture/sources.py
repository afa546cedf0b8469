"""Turning a command-line ``SOURCE`` (path, ``camera[:N]``, ``demo``) into sources.

docs/formats.md, "Command-line conventions".
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from emodesk.capture.base import AudioSource, VideoSource
from emodesk.capture.clock import Clock, MonotonicClock
from emodesk.capture.files import (
    AUDIO_EXTENSIONS,
    AudioFileSource,
    VideoFileSource,
    has_audio_track,
)
from emodesk.errors import DeviceError, InputError
from emodesk.resources import assets_dir

DEMO_CLIP = "demo.mp4"


def demo_clip_path() -> Path:
    p = assets_dir() / DEMO_CLIP
    if not p.is_file():
        raise InputError(
            f"the demo clip {p} is missing; reinstall emodesk or run python -m emodesk.lab.assets.demo_clip"
        )
    return p


@dataclass
class SourceSet:
    """The video and audio sources of one run, sharing one clock and stop event."""

    video: VideoSource | None
    audio: AudioSource | None
    description: str
    clock: Clock
    stop: threading.Event
    demo: bool = False
    notes: list[str] = field(default_factory=list)


def parse_camera(spec: str) -> int | None:
    """``camera`` → 0, ``camera:2`` → 2, anything else → None."""
    if spec == "camera":
        return 0
    if spec.startswith("camera:"):
        rest = spec.split(":", 1)[1]
        if not rest.isdigit():
            raise InputError(f"bad camera source {spec!r}: expected camera or camera:N")
        return int(rest)
    return None


def open_sources(
    spec: str,
    *,
    audio: str | Path | None = None,
    mic: int | str | None = None,
    paced: bool,
    loop: bool = False,
    use_mic: bool = True,
    clock: Clock | None = None,
    stop: threading.Event | None = None,
) -> SourceSet:
    """Build (not open) the sources for ``spec``; raises InputError for bad files.

    For ``camera`` the microphone comes along unless ``use_mic`` is False or
    ``--audio`` names a file. A ``mic`` named with a video file (or ``demo``)
    plays the file's video with that microphone's audio, live (``paced``); with
    ``--audio``, an audio-only file, a recorded session or unpaced reading it is
    an InputError, never ignored. The sources are opened later, in their own threads.
    """
    clock = clock or MonotonicClock()
    stop = stop or threading.Event()
    audio_src: AudioSource | None = None
    if audio is not None and not Path(audio).is_file():
        raise InputError(f"--audio {audio}: no such file")
    if mic is not None and audio is not None:
        raise InputError(f"--mic {mic} and --audio {audio} both give the audio: pass one of them")
    if mic is not None and not paced:
        raise InputError(f"--mic {mic}: a microphone is live, and this reads its input as fast as it can")
    if audio is not None:
        audio_src = AudioFileSource(audio, paced=paced, clock=clock, loop=loop, stop=stop)

    cam = parse_camera(spec)
    if cam is not None:
        from emodesk.capture.webcam import CameraSource

        if audio_src is None and use_mic:
            from emodesk.capture.microphone import MicrophoneSource

            audio_src = MicrophoneSource(mic, clock=clock, stop=stop)
        return SourceSet(CameraSource(cam, clock=clock, stop=stop), audio_src, f"camera {cam}", clock, stop)

    demo = spec == "demo"
    path = demo_clip_path() if demo else Path(spec)
    loop = loop or (demo and paced)
    if not path.exists():
        raise InputError(f"input file {path} does not exist")
    if path.is_dir() and (path / "session.json").is_file():  # a recorded session replays as a source
        if audio is not None or mic is not None:
            which = "--audio" if audio is not None else "--mic"
            raise InputError(f"{which} given with a session SOURCE, which has its own audio")
        v, a = path / "video.mp4", path / "audio.wav"
        if not v.is_file() and not a.is_file():
            raise InputError(f"session {path} has neither video.mp4 nor audio.wav")
        vs = VideoFileSource(v, paced=paced, clock=clock, loop=loop, stop=stop) if v.is_file() else None
        as_ = AudioFileSource(a, paced=paced, clock=clock, loop=loop, stop=stop) if a.is_file() else None
        return SourceSet(vs, as_, f"session {path.name}", clock, stop)
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a video/audio file or a recorded session")
    if path.suffix.lower() in AUDIO_EXTENSIONS:
        if audio is not None or mic is not None:
            which = "--audio" if audio is not None else "--mic"
            raise InputError(f"{which} given with an audio-only SOURCE; pass one of them")
        audio_src = AudioFileSource(path, paced=paced, clock=clock, loop=loop, stop=stop)
        return SourceSet(None, audio_src, f"audio file {path.name}", clock, stop)
    video = VideoFileSource(path, paced=paced, clock=clock, loop=loop, stop=stop)
    video.open()  # probe now so a bad file is a usage error before any thread starts
    video.close()
    desc = f"demo clip {path.name}" if demo else f"video file {path.name}"
    if mic is not None:  # the file's video, the microphone's audio (its own track left out)
        from emodesk.capture.microphone import MicrophoneSource

        mic_src = MicrophoneSource(mic, clock=clock, stop=stop)
        return SourceSet(video, mic_src, f"{desc} with microphone {mic}", clock, stop, demo=demo)
    if audio_src is None and has_audio_track(path):
        audio_src = AudioFileSource(
            path,
            paced=paced,
            clock=clock,
            loop=loop,
            loop_period=video.duration if loop and video.duration else None,
            stop=stop,
        )
    return SourceSet(video, audio_src, desc, clock, stop, demo=demo)


def camera_available(index: int = 0) -> bool:
    from emodesk.capture.webcam import camera_present

    return camera_present(index)


def require_named_microphone(
    mic: int | str | None, present: Callable[[int | str | None], bool] | None = None
) -> None:
    """A microphone the user named must be there: DeviceError saying so (never dropped quietly)."""
    if mic is not None and not (present or microphone_available)(mic):
        raise DeviceError(f"--mic {mic}: no such microphone (`emodesk devices` lists them)")


def microphone_available(mic: int | str | None = None) -> bool:
    from emodesk.capture.microphone import resolve_microphone

    try:
        resolve_microphone(mic)
    except DeviceError:
        return False
    return True
