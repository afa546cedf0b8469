"""``emodesk record``: a session recorded headless, in the same format as from the window.

Runs the live pipeline (every model, paced in real time) with the recorder
attached from the first frame, until ``duration`` media seconds have passed
or the source ends, then closes the session and returns its folder. Here
because it runs a Qt event loop (docs/architecture.md: Qt only in ``ui`` and ``workers``).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emodesk.errors import DeviceError, EmodeskError
from emodesk.machine import Device

log = logging.getLogger(__name__)


def record_headless(
    spec: str,
    parent: Path,
    *,
    duration: float | None = None,
    label: str | None = None,
    audio: str | None = None,
    privacy: str = "full",
    notes: str = "",
    device: Device = "auto",
    asr_model: str | None = None,
    use_mic: bool = True,
    mic: int | str | None = None,
    on_started: Callable[[Path], None] | None = None,
) -> Path:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QCoreApplication, QTimer

    from emodesk.workers.live import LivePipeline

    app = QCoreApplication.instance() or QCoreApplication(sys.argv[:1])
    pipeline = LivePipeline.from_spec(
        spec, audio=audio, mic=mic, loop=False, use_mic=use_mic, device=device, asr_model=asr_model
    )
    failed: list[str] = []
    pipeline.finished.connect(app.quit)
    pipeline.start(record={"parent": parent, "privacy": privacy, "notes": notes, "label": label})
    rec = pipeline.recorder
    assert rec is not None and rec.writer.path is not None
    path = rec.writer.path
    if on_started is not None:
        on_started(path)
    start: list[float] = []

    def poll() -> None:
        if rec.writer.error:
            failed.append(rec.writer.error)
            app.quit()
            return
        if _fatal(pipeline.devices()):  # the source asked for did not open
            app.quit()
            return
        t = pipeline._media_time()
        if t is None:
            return
        if not start:
            start.append(t)
        if duration is not None and t - start[0] >= duration:
            app.quit()

    timer = QTimer()
    timer.setInterval(20)  # also lets Python run the signal handlers below
    timer.timeout.connect(poll)
    timer.start()
    old = {s: signal.signal(s, lambda *_: app.quit()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        app.exec()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        timer.stop()
        pipeline.stop_recording()
        pipeline.stop()
    if rec.writer.error:
        raise EmodeskError(f"{rec.writer.error}; what was written is in {path}")
    broken = _fatal(pipeline.devices())
    stats = rec.writer.stats
    if not broken and stats.frames == 0 and stats.audio_samples == 0:
        broken = ["no frame and no audio sample arrived from " + spec]
    if broken:
        reason = "; ".join(broken)
        _mark_stopped(path, reason)
        raise DeviceError(f"{reason}; the session {path} holds what was recorded")
    return path


def _fatal(devices: list[Any]) -> list[str]:
    """Why the recording cannot go on: the video source (the one named) failed, or every source
    did. A microphone that is missing beside a working camera is said, and the video recorded."""
    errors = [d for d in devices if d.state == "error"]
    present = [d for d in devices if d.state != "missing" or d in errors]
    if any(d.slot == "video" for d in errors) or (errors and len(errors) == len(present)):
        return [f"{d.slot}: {d.message}" for d in errors]
    return []


def _mark_stopped(path: Path, reason: str) -> None:
    """``state: stopped`` with the reason, so a session whose source failed is not "complete"."""
    from emodesk.recording.format import read_session_json, write_session_json

    try:
        doc = read_session_json(path)
        doc.update({"state": "stopped", "stop_reason": f"recording stopped: {reason}"})
        write_session_json(path, doc)
    except OSError as e:  # the session itself is kept either way
        log.warning("cannot mark %s stopped: %s", path, e)
