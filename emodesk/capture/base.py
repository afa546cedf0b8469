"""The two source interfaces. Each source is opened, read and closed by one owner thread."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from emodesk.types import AudioChunk, Frame


@runtime_checkable
class VideoSource(Protocol):
    name: str

    def open(self) -> None:
        """Acquire the device or file; raise DeviceError / InputError with a clear message."""

    def read(self) -> Frame | None:
        """The next frame (blocking, paced if the source is paced); None at end of stream."""

    def close(self) -> None: ...

    @property
    def fps(self) -> float: ...


@runtime_checkable
class AudioSource(Protocol):
    name: str
    sample_rate: int  # of the chunks read() returns: always 16 kHz
    paced: bool  # audio arrives in real time (a device, a file played live): the speech path may shed load

    def open(self) -> None: ...

    def read(self, timeout: float = 0.5) -> AudioChunk | None:
        """The next chunk; None at end of stream (or on timeout for live devices, see ``ended``)."""

    def close(self) -> None: ...

    @property
    def ended(self) -> bool:
        """True once a finite source has delivered everything."""

    @property
    def overflows(self) -> int:
        """Input overflows so far (device and ring), for the status bar and bench."""
