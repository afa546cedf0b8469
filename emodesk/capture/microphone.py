"""The microphone, via sounddevice, at the device's native rate, resampled to 16 kHz.

Many devices refuse 16 kHz, so we never ask for it. The PortAudio callback
only copies into a bounded ring and counts overflows (Friture's pattern);
resampling happens in the reading thread.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from emodesk.capture.buffers import AudioRing
from emodesk.capture.clock import Clock, MonotonicClock
from emodesk.capture.resample import StreamingResampler
from emodesk.errors import DeviceError
from emodesk.types import AudioChunk

SAMPLE_RATE = 16000


def _sounddevice() -> Any:
    try:
        import sounddevice as sd
    except OSError as e:  # the PortAudio shared library is missing
        raise DeviceError(
            f"no audio system: PortAudio is not installed ({e}); "
            "on Debian/Ubuntu: sudo apt install libportaudio2"
        ) from None
    return sd


def list_microphones() -> list[dict[str, Any]]:
    """Input devices as sounddevice reports them (index, name, channels, default rate)."""
    sd = _sounddevice()
    try:
        devices = sd.query_devices()
    except sd.PortAudioError as e:
        raise DeviceError(f"cannot list audio devices: {e}") from None
    return [
        {
            "index": i,
            "name": d["name"],
            "channels": d["max_input_channels"],
            "samplerate": d["default_samplerate"],
        }
        for i, d in enumerate(devices)
        if d["max_input_channels"] > 0
    ]


def resolve_microphone(spec: int | str | None) -> dict[str, Any]:
    """The input device for ``--mic N|NAME`` (None: the system default)."""
    sd = _sounddevice()
    mics = list_microphones()
    if not mics:
        raise DeviceError("no microphone found; connect one or run with a file source")
    if spec is None:
        try:
            info = sd.query_devices(kind="input")
        except (sd.PortAudioError, ValueError):
            return mics[0]
        for m in mics:
            if m["name"] == info["name"]:
                return m
        return mics[0]
    if isinstance(spec, int) or str(spec).isdigit():
        idx = int(spec)
        for m in mics:
            if m["index"] == idx:
                return m
        raise DeviceError(
            f"no microphone with index {idx}; inputs: {[(m['index'], m['name']) for m in mics]}"
        )
    hits = [m for m in mics if str(spec).lower() in m["name"].lower()]
    if not hits:
        raise DeviceError(f"no microphone matches {spec!r}; inputs: {[m['name'] for m in mics]}")
    return hits[0]


class MicrophoneSource:
    """16 kHz mono chunks from a live input device; media time from the shared clock."""

    sample_rate = SAMPLE_RATE
    paced = True  # a device: its audio comes in real time

    def __init__(
        self,
        device: int | str | None = None,
        *,
        clock: Clock | None = None,
        block_s: float = 0.02,
        ring_s: float = 10.0,
        stop: threading.Event | None = None,
    ) -> None:
        self.device_spec = device
        self.clock: Clock = clock or MonotonicClock()
        self.block_s = block_s
        self.ring_s = ring_s
        self.stop = stop or threading.Event()
        self.name = "microphone"
        self.native_rate = 0
        self._stream: Any = None
        self._ring: AudioRing | None = None
        self._resampler: StreamingResampler | None = None
        self._status_overflows = 0
        self._anchor = 0.0
        self._anchored = False

    @property
    def ended(self) -> bool:
        return False

    @property
    def overflows(self) -> int:
        """PortAudio input-overflow callbacks plus ring overflows (reader too slow)."""
        ring = self._ring.overflow_events if self._ring is not None else 0
        return self._status_overflows + ring

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status and status.input_overflow:
            self._status_overflows += 1
        assert self._ring is not None
        if not self._anchored:
            # Media time starts with the first block the device delivers, not at
            # start(): a device may take seconds to deliver (PulseAudio, Bluetooth)
            # and drops what it did not capture, which would put all audio early.
            self._anchor = self.clock.now() - frames / self.native_rate
            self._anchored = True
        self._ring.write(indata[:, 0])

    def open(self) -> None:
        sd = _sounddevice()
        info = resolve_microphone(self.device_spec)
        self.name = f"microphone {info['name']}"
        self.native_rate = int(info["samplerate"]) or 48000
        self._ring = AudioRing(int(self.native_rate * self.ring_s))
        self._resampler = StreamingResampler(self.native_rate, SAMPLE_RATE)
        try:
            self._stream = sd.InputStream(
                device=info["index"],
                channels=1,
                samplerate=self.native_rate,
                dtype="float32",
                blocksize=int(self.native_rate * self.block_s),
                callback=self._callback,
            )
            self._anchored = False
            self._stream.start()
        except (sd.PortAudioError, ValueError) as e:
            self._stream = None
            raise DeviceError(
                f"{self.name} did not open at its native {self.native_rate} Hz: {e}; "
                "pick another microphone with --mic"
            ) from None

    def read(self, timeout: float = 0.5) -> AudioChunk | None:
        if self._ring is None or self._resampler is None:
            raise RuntimeError("MicrophoneSource.read() before open()")
        raw = self._ring.read(timeout=timeout)
        if len(raw) == 0:
            return None
        out = self._resampler.process(raw)
        if len(out) == 0:
            return None
        # Media time counts the samples consumed (overflowed ones included), so a
        # dropout shows as a gap instead of shifting later speech earlier.
        consumed = self._ring.total_read
        t1 = self._anchor + consumed / self.native_rate
        t0 = t1 - len(out) / SAMPLE_RATE
        return AudioChunk(t0=t0, samples=out, sample_rate=SAMPLE_RATE, wall=time.monotonic())

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
                stream.close()
            except Exception:  # noqa: BLE001 - PortAudio errors on close must not block shutdown
                pass
