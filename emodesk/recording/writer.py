"""The session writer: its own thread behind bounded queues, crash-safe files, never blocking capture.

``SessionWriter.start()`` creates the session folder (0700) and its files
(0600); ``add_frame`` / ``add_audio`` / ``add_record`` / ``set_label`` only
enqueue and return at once, from any thread; the writer thread does the I/O.
A full frame queue drops the frame and counts it (shown live); audio is never
shifted: a gap in the chunks' timestamps (a drop upstream) is written as
silence, so audio and video stay on the one media clock. An I/O error (disk
full, permission denied) stops the recording, keeps every file written so far
readable, records the reason in ``session.json`` when it still can, and calls
``on_error``; the live view is not affected.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from emodesk import __version__
from emodesk.labels import canonical_label
from emodesk.recording import files
from emodesk.recording.format import (
    AUDIO_FILE,
    LABELS_FILE,
    LOCK_FILE,
    SAMPLE_RATE,
    SCHEMA_VERSION,
    SCORES_FILE,
    SESSION_FILE,
    VIDEO_FILE,
    write_session_json,
)

log = logging.getLogger(__name__)

FRAME_QUEUE = 60  # 2 s of 30 fps video (about 55 MB at 640×480)
#: the frame queue's bound in bytes: 2 s of 640×480 fit; 4K frames (25 MB each) are held at most
#: 3 at a time instead of 60 (1.5 GB); the one frame being encoded is outside it.
FRAME_QUEUE_BYTES = 80 * 1024 * 1024
DATA_QUEUE = 20000  # audio chunks, score records, labels


@dataclass
class WriterStats:
    frames: int = 0
    audio_samples: int = 0
    records: int = 0
    labels: int = 0
    dropped_frames: int = 0
    dropped_records: int = 0
    frames_offered: int = 0
    max_queued_bytes: int = 0
    audio_gap_s: float = 0.0
    shed: dict[str, float] = field(default_factory=dict)  # speech work skipped under load, summed


@dataclass
class SessionMeta:
    """What ``session.json`` says about where the session came from."""

    source: str = ""
    devices: Mapping[str, str] = field(default_factory=dict)
    models: list[dict[str, str]] = field(default_factory=list)
    fusion: Mapping[str, Any] = field(default_factory=dict)
    notes: str = ""
    privacy: str = "full"  # "full" frames or "face-crops" only


class RecordingError(OSError):
    """The recording stopped on an I/O error (its message says which file and why)."""


class SessionWriter:
    def __init__(
        self,
        parent: Path,
        meta: SessionMeta | None = None,
        *,
        on_error: Callable[[str], None] | None = None,
        fps: float = 30.0,
    ) -> None:
        self.parent = Path(parent)
        self.meta = meta or SessionMeta()
        self.on_error = on_error
        self.fps = fps
        self.stats = WriterStats()
        self.error: str | None = None
        self.path: Path | None = None
        self._frames: deque[tuple[np.ndarray, float]] = deque()
        self._frame_bytes = 0
        self._frame_in_flight = False
        self._data: deque[tuple[str, Any]] = deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._video: files.VideoWriter | None = None
        self._audio: files.WavWriter | None = None
        self._scores: files.JsonlWriter | None = None
        self._labels: files.JsonlWriter | None = None
        self._doc: dict[str, Any] = {}
        self._audio_next_t: float | None = None
        self._start_t: float | None = None
        self._end_t: float | None = None
        self.label: str | None = None
        self._lock_fd: int | None = None

    # ------------------------------------------------------------ control

    @property
    def recording(self) -> bool:
        return self._thread is not None and not self._stopping and self.error is None

    def start(self, t: float | None = None) -> Path:
        """Create the session folder and files; ``t`` is the media time recording starts at."""
        if self._thread is not None:
            raise RuntimeError("SessionWriter.start() called twice")
        created = datetime.now(UTC)
        sid = created.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.parent.mkdir(mode=files.DIR_MODE, parents=True, exist_ok=True)
        path = self.parent / sid
        files.make_dir(path)
        self.path = path
        self._lock_fd = _lock(path / LOCK_FILE)
        self._start_t = t
        self._doc = session_document(sid, created, self.meta, t)
        self._doc.update({"pid": os.getpid(), "host": socket.gethostname()})
        try:
            write_session_json(path, self._doc)
            self._audio = files.WavWriter(path / AUDIO_FILE)
            self._scores = files.JsonlWriter(path / SCORES_FILE)
            self._labels = files.JsonlWriter(path / LABELS_FILE)
        except OSError as e:
            self._close_files()
            raise RecordingError(e.errno, f"cannot start a recording in {path}: {e.strerror or e}") from None
        self._thread = threading.Thread(target=self._run, name="emodesk-recorder", daemon=True)
        self._thread.start()
        log.info("recording to %s", path)
        return path

    def stop(self, t: float | None = None, timeout: float = 30.0) -> Path | None:
        """Write what is queued, close the files, finish ``session.json``; the session's path."""
        with self._cv:
            if self._thread is None:
                return self.path
            self._end_t = t
            self._stopping = True
            self._cv.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():  # the encoder is behind (4K on a slow machine): the rest is dropped
            with self._cv:
                left = len(self._frames)
                self._frames.clear()
                self._frame_bytes = 0
                self.stats.dropped_frames += left
            log.warning(
                "the video encoder was %d frame(s) behind after %.0f s; they are dropped", left, timeout
            )
            self._thread.join(timeout)
        return self.path

    # ----------------------------------------------------- producer side

    def add_frame(self, image: np.ndarray, t: float) -> bool:
        with self._cv:
            if not self.recording:
                return False
            self.stats.frames_offered += 1
            size = int(image.nbytes)
            full = len(self._frames) >= FRAME_QUEUE or self._frame_bytes + size > FRAME_QUEUE_BYTES
            if full and self._frames:
                self.stats.dropped_frames += 1  # full (in frames or in bytes): counted, shown
                return False
            self._frames.append((image, t))
            self._frame_bytes += size
            self.stats.max_queued_bytes = max(self.stats.max_queued_bytes, self._frame_bytes)
            self._cv.notify()
            return True

    def add_audio(self, samples: np.ndarray, t0: float) -> bool:
        return self._put("audio", (samples, t0))

    def add_record(self, record: Mapping[str, Any]) -> bool:
        return self._put("record", dict(record))

    def set_label(self, label: str | None, t: float, source: str = "hotkey") -> None:
        """The label from media time ``t`` on (None clears it); spans run to the next change."""
        name = None if label is None else canonical_label(label)
        self.label = name
        self._put("label", {"t": round(float(t), 3), "label": name, "source": source})

    def count_shed(self, skipped: Mapping[str, float | int]) -> None:
        """Add what load shedding skipped (the fields of a ``shed`` record) to ``session.json``'s stats."""
        for k, v in skipped.items():
            if k != "backlog_s":
                self.stats.shed[k] = self.stats.shed.get(k, 0.0) + float(v)

    def set_notes(self, notes: str) -> None:
        """Free-text notes for ``session.json`` (written when the session closes)."""
        self._doc["notes"] = notes
        self.meta.notes = notes

    def _put(self, kind: str, item: Any) -> bool:
        with self._cv:
            if not self.recording:
                return False
            if len(self._data) >= DATA_QUEUE:
                if kind != "audio":  # dropped audio becomes silence, counted as a gap when written
                    self.stats.dropped_records += 1
                return False
            self._data.append((kind, item))
            self._cv.notify()
            return True

    # ------------------------------------------------------- writer side

    def _run(self) -> None:
        try:
            while True:
                with self._cv:
                    while not self._frames and not self._data and not self._stopping:
                        self._cv.wait(0.5)
                    # one frame at a time: the queue's bytes stay bounded while the encoder works,
                    # and frames still queued when stop() gives up can be counted as dropped
                    frame = self._frames.popleft() if self._frames else None
                    if frame is not None:
                        self._frame_bytes -= int(frame[0].nbytes)
                    data = list(self._data)
                    self._data.clear()
                    done = self._stopping and frame is None and not data
                if done:
                    break
                for kind, item in data:
                    self._write(kind, item)
                if frame is not None:
                    self._frame_in_flight = True
                    self._write_frame(*frame)
                    self._frame_in_flight = False
        except OSError as e:
            self._fail(e)
        finally:
            self._finish()

    def _write(self, kind: str, item: Any) -> None:
        if kind == "audio":
            samples, t0 = item
            assert self._audio is not None
            if self._audio_next_t is None:
                self._doc["audio"]["start_t"] = round(float(t0), 6)
                self._audio_next_t = float(t0)
                self._stream_record("audio", {"rate": SAMPLE_RATE})
                self._starts_known()
            gap = round((t0 - self._audio_next_t) * SAMPLE_RATE)
            if gap > SAMPLE_RATE // 100:  # > 10 ms missing: a drop upstream, keep the clock
                self._audio.write(np.zeros(gap, np.float32))
                self.stats.audio_gap_s += gap / SAMPLE_RATE
                self._audio_next_t += gap / SAMPLE_RATE
            self._audio.write(samples)
            self._audio_next_t += len(samples) / SAMPLE_RATE
            self.stats.audio_samples = self._audio.samples
        elif kind == "record":
            assert self._scores is not None
            self._scores.write(item)
            self.stats.records += 1
        elif kind == "label":
            assert self._labels is not None
            self._labels.write(item)
            self._labels.flush()  # labels are few and precious
            self.stats.labels += 1

    def _write_frame(self, image: np.ndarray, t: float) -> None:
        if self._video is None:
            h, w = image.shape[:2]
            self._video = files.VideoWriter(self.path / VIDEO_FILE, w, h, fps=self.fps)  # type: ignore[operator]
            self._doc["video"].update(
                {"start_t": round(float(t), 6), "width": w - w % 2, "height": h - h % 2}
            )
            self._stream_record(
                "video", {"width": w - w % 2, "height": h - h % 2, "privacy": self.meta.privacy}
            )
            self._starts_known()
        self._video.write(image, t)
        self.stats.frames = self._video.frames

    def _stream_record(self, stream: str, extra: Mapping[str, Any]) -> None:
        """A ``stream`` record in ``scores.jsonl`` when a stream's first sample or frame is written:
        the start time lives in a second file, so ``sessions repair`` can rebuild a lost
        ``session.json`` with audio and video still on the media clock."""
        assert self._scores is not None
        start = self._doc[stream]["start_t"]
        self._scores.write({"t": start, "kind": "stream", "stream": stream, "start_t": start, **extra})
        self._scores.flush()

    def _starts_known(self) -> None:
        """Persist the streams' start times as soon as they are known: a killed session needs them."""
        assert self.path is not None
        write_session_json(self.path, self._doc)

    def _fail(self, e: OSError) -> None:
        what = {28: "the disk is full", 13: "permission denied", 122: "the disk quota is exceeded"}.get(
            e.errno or 0, e.strerror or str(e)
        )
        where = e.filename if isinstance(e.filename, str) else self.path
        self.error = f"recording stopped: {what} ({where})"
        log.error(self.error)
        with self._cv:
            self._stopping = True
            # the queued frames, and the one whose write failed, are lost: counted, so that
            # frames_offered = written + dropped holds after an error too
            self.stats.dropped_frames += len(self._frames) + int(self._frame_in_flight)
            self._frames.clear()
            self._frame_bytes = 0
            self._data.clear()

    def _close_files(self) -> None:
        for w in (self._video, self._audio, self._scores, self._labels):
            if w is None:
                continue
            try:
                w.close()
            except (OSError, ValueError) as e:  # a full disk can refuse the last bytes too
                log.warning("closing %s: %s", getattr(w, "path", w), e)
                if self.error is None:
                    self.error = f"recording stopped: {getattr(e, 'strerror', None) or e}"

    def _finish(self) -> None:
        self._close_files()
        doc = self._doc
        doc["state"] = "complete" if self.error is None else "stopped"
        doc.pop("pid", None)
        if self.error:
            doc["stop_reason"] = self.error
        doc["end_t"] = self._end_t
        if doc.get("start_t") is None:  # started before any source ran: its first sample or frame
            starts = [x for x in (doc["video"]["start_t"], doc["audio"]["start_t"]) if x is not None]
            doc["start_t"] = min(starts) if starts else None
        doc["video"]["frames"] = self.stats.frames
        doc["audio"]["samples"] = self.stats.audio_samples
        doc["scores"]["records"] = self.stats.records
        doc["labels"]["changes"] = self.stats.labels
        doc["stats"] = {
            "frames_offered": self.stats.frames_offered,
            "dropped_frames": self.stats.dropped_frames,
            "max_queued_mb": round(self.stats.max_queued_bytes / 2**20, 1),
            "dropped_records": self.stats.dropped_records,
            "audio_gap_s": round(self.stats.audio_gap_s, 3),
        }
        if self.stats.shed:
            doc["stats"]["shed"] = {k: round(v, 3) for k, v in sorted(self.stats.shed.items())}
        doc["ended"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if self.path is not None:
            try:
                write_session_json(self.path, doc)
            except OSError as e:  # the disk may still be full: check/repair rebuild it from the files
                log.warning("cannot finish %s: %s", self.path / SESSION_FILE, e)
        _unlock(self._lock_fd, None if self.path is None else self.path / LOCK_FILE)
        self._lock_fd = None
        if self.error and self.on_error is not None:
            self.on_error(self.error)


def session_document(sid: str, created: datetime, meta: SessionMeta, start_t: float | None) -> dict[str, Any]:
    """A new ``session.json`` (format.py describes it), state ``recording``; the writer fills in
    the streams and counts, and ``sessions repair`` starts from it when it rebuilds a lost one."""
    return {
        "schema": SCHEMA_VERSION,
        "format": "emodesk-session",
        "id": sid,
        "app_version": __version__,
        "created": created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "state": "recording",
        "clock": "media seconds of the source's monotonic clock; every time below is on it",
        "start_t": start_t,
        "end_t": None,
        "source": meta.source,
        "devices": dict(meta.devices),
        "models": list(meta.models),
        "fusion": dict(meta.fusion),
        "privacy": meta.privacy,
        "notes": meta.notes,
        "video": {
            "file": VIDEO_FILE,
            "container": "fragmented MP4 (frag_keyframe+empty_moov)",
            "codec": "h264",
            "timestamps": "presentation time in ms = media time - start_t",
            "start_t": None,
            "width": None,
            "height": None,
            "frames": 0,
        },
        "audio": {
            "file": AUDIO_FILE,
            "format": "WAV PCM s16le",
            "rate": SAMPLE_RATE,
            "channels": 1,
            "start_t": None,
            "samples": 0,
        },
        "scores": {"file": SCORES_FILE, "records": 0},
        "labels": {"file": LABELS_FILE, "changes": 0},
        "stats": {},
    }


def _lock(path: Path) -> int | None:
    """Hold an exclusive lock on ``path`` while recording (released by the OS if the process dies)."""
    try:
        import fcntl
    except ImportError:  # Windows: check falls back to the pid in session.json
        return None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, files.FILE_MODE)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def _unlock(fd: int | None, path: Path | None) -> None:
    if fd is None:
        return
    try:
        if path is not None:
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)


def labels_at(changes: list[dict[str, Any]], t: float) -> str | None:
    """The label in force at media time ``t``: the last change at or before ``t``."""
    label = None
    for c in sorted(changes, key=lambda c: c["t"]):
        if c["t"] <= t:
            label = c["label"]
        else:
            break
    return label
