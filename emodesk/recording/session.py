"""Reading, checking and repairing session folders (``emodesk sessions list|check|repair``).

``check`` never writes. ``repair`` makes a session that a killed process, a
full disk or a torn write left behind readable again, and is idempotent:

- ``audio.wav`` whose header lags the data (the writer refreshes it every
  0.5 s): the header is rewritten to cover every whole sample in the file;
- a torn last line in ``scores.jsonl`` / ``labels.jsonl`` is cut, any other
  unparsable line dropped;
- ``session.json`` gets ``state: repaired``, the counts and end time measured
  from the files, and a ``repairs`` list of what was done.

``video.mp4`` is a fragmented MP4: a kill leaves it readable up to its last
complete fragment, so it needs no repair; only its frame count and end are read.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emodesk.errors import InputError
from emodesk.labels import LABELS
from emodesk.readers import JsonRefused, parse_json
from emodesk.recording import files
from emodesk.recording.format import (
    AUDIO_FILE,
    LABELS_FILE,
    LOCK_FILE,
    MAX_T,
    SAMPLE_RATE,
    SCHEMA_VERSION,
    SCORES_FILE,
    SESSION_FILE,
    STATES,
    VIDEO_FILE,
    read_session_json,
    write_session_json,
)


@dataclass
class SessionReport:
    path: Path
    problems: list[str] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def _alive(folder: Path, doc: dict[str, Any]) -> bool:
    """A writer has the session open: it holds the lock file (or, without flock, its pid runs)."""
    try:
        import fcntl
    except ImportError:
        return _pid_alive(doc)
    lock = folder / LOCK_FILE
    if not lock.exists():
        return False
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing releases a lock we took
    return False


def _pid_alive(doc: dict[str, Any]) -> bool:
    pid = doc.get("pid")
    if not isinstance(pid, int) or doc.get("host") != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wav_status(path: Path) -> tuple[int, int]:
    """(samples the header declares, whole samples in the file)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(files.WAV_HEADER_BYTES)
    if len(head) < files.WAV_HEADER_BYTES or head[:4] != b"RIFF" or head[36:40] != b"data":
        raise InputError(f"{path.name} is not the WAV emodesk writes")
    declared = struct.unpack("<I", head[40:44])[0] // 2
    return declared, (size - files.WAV_HEADER_BYTES) // 2


def read_audio(folder: Path) -> tuple[np.ndarray, float | None]:
    """All whole samples of ``audio.wav`` (float32, header or not) and its start media time."""
    doc = read_session_json(folder)
    raw = (folder / AUDIO_FILE).read_bytes()[files.WAV_HEADER_BYTES :]
    pcm = np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2").astype(np.float32) / 32767.0
    start = doc.get("audio", {}).get("start_t")
    return pcm, (float(start) if start is not None else None)


def iter_video(folder: Path) -> Iterator[tuple[float, np.ndarray]]:
    """(media time, BGR image) of every readable frame of ``video.mp4``."""
    import av

    doc = read_session_json(folder)
    start = float(doc.get("video", {}).get("start_t") or 0.0)
    try:
        with av.open(str(folder / VIDEO_FILE)) as c:
            for fr in c.decode(video=0):
                try:
                    yield start + float(fr.time or 0.0), fr.to_ndarray(format="bgr24")
                except (av.error.FFmpegError, ValueError):
                    return
    except av.error.FFmpegError:
        return


def _video_summary(folder: Path) -> tuple[int, float | None, str | None]:
    """(frames, last frame's media time, error) without decoding pixels."""
    import av

    p = folder / VIDEO_FILE
    if not p.exists():
        return 0, None, None
    n, last = 0, None
    try:
        with av.open(str(p)) as c:
            for pkt in c.demux(video=0):
                if pkt.pts is None:
                    continue
                n += 1
                t = float(pkt.pts * pkt.time_base)
                last = t if last is None else max(last, t)
    except av.error.FFmpegError as e:
        if n == 0:
            return 0, None, f"{VIDEO_FILE} is unreadable ({e})"
    return n, last, None


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) <= MAX_T


def label_line_ok(obj: dict[str, Any]) -> bool:
    """A label change as ``labels.jsonl`` holds it: a time, a label (one of the seven, or null)."""
    if "label" not in obj:
        return False
    label = obj["label"]
    return (
        _finite(obj.get("t"))
        and (label is None or label in LABELS)
        and isinstance(obj.get("source", ""), str)
    )


def record_line_ok(obj: dict[str, Any]) -> bool:
    """A score record whose fields the session commands read have the types docs/formats.md gives
    (records of kinds this version does not know need only their time)."""
    if not _finite(obj.get("t")) or not isinstance(obj.get("kind"), str):
        return False
    kind = obj["kind"]
    if kind == "face":
        box = obj.get("box")
        if box is not None and not (isinstance(box, list) and len(box) == 4 and all(map(_finite, box))):
            return False
    if kind in ("voice", "text", "transcript"):
        if not (_finite(obj.get("t0")) and _finite(obj.get("t1"))):
            return False
    if kind == "transcript" and not isinstance(obj.get("text", ""), str):
        return False
    probs = obj.get("probs")
    if probs is not None and not (isinstance(probs, dict) and all(map(_finite, probs.values()))):
        return False
    return True


def read_jsonl(
    path: Path, valid: Callable[[dict[str, Any]], bool] | None = None
) -> tuple[list[dict[str, Any]], list[int], bool]:
    """(objects, 1-based numbers of bad lines, whether the last line is torn). A line is bad when
    it is not a JSON object within :mod:`emodesk.readers`' limits, or ``valid`` refuses it."""
    if not path.exists():
        return [], [], False
    if valid is None:
        valid = {LABELS_FILE: label_line_ok, SCORES_FILE: record_line_ok}.get(path.name)
    data = path.read_bytes()
    torn = bool(data) and not data.endswith(b"\n")
    out: list[dict[str, Any]] = []
    bad: list[int] = []
    lines = data.split(b"\n")
    if not torn:
        lines = lines[:-1]
    for i, line in enumerate(lines, start=1):
        if torn and i == len(lines):
            break
        try:
            obj = parse_json(line, max_bytes=1 << 20)
        except JsonRefused:
            bad.append(i)
            continue
        if isinstance(obj, dict) and (valid is None or valid(obj)):
            out.append(obj)
        else:
            bad.append(i)
    return out, bad, torn


def read_labels(folder: Path) -> list[dict[str, Any]]:
    """The valid label changes of ``labels.jsonl``, in time order."""
    return sorted(read_jsonl(folder / LABELS_FILE)[0], key=lambda c: float(c["t"]))


def read_records(folder: Path) -> list[dict[str, Any]]:
    """The valid score records of ``scores.jsonl``."""
    return read_jsonl(folder / SCORES_FILE)[0]


def inspect(folder: Path | str) -> SessionReport:
    """Everything ``check`` reports, and what ``repair`` would need to fix, without writing."""
    f = Path(folder)
    rep = SessionReport(f)
    try:
        doc = read_session_json(f)
    except (OSError, ValueError) as e:
        rep.problems.append(f"{SESSION_FILE} is missing or unreadable ({e})")
        return rep
    if doc.get("schema") != SCHEMA_VERSION:
        rep.problems.append(f"schema {doc.get('schema')!r} is not {SCHEMA_VERSION}")
    state = doc.get("state")
    if state not in STATES:
        rep.problems.append(f"state {state!r} is not one of {', '.join(STATES)}")
    live = state == "recording" and _alive(f, doc)
    rep.info.update(
        {
            "id": doc.get("id", f.name),
            "state": state,
            "created": doc.get("created"),
            "notes": doc.get("notes", ""),
            "live": live,
        }
    )
    if state == "recording" and not live:
        rep.problems.append("the recording was never closed (the process ended without stopping it)")
    ends: list[float] = []
    # audio
    a = f / AUDIO_FILE
    a_start = doc.get("audio", {}).get("start_t")
    if a.exists():
        try:
            declared, actual = _wav_status(a)
            rep.info["audio_s"] = actual / SAMPLE_RATE
            if declared != actual:
                rep.problems.append(
                    f"{AUDIO_FILE}: its header covers {declared / SAMPLE_RATE:.2f} s of the "
                    f"{actual / SAMPLE_RATE:.2f} s written"
                )
            if actual and a_start is None:
                rep.problems.append(f"{AUDIO_FILE}: start time unknown (session.json has no audio.start_t)")
            if actual and a_start is not None:
                ends.append(float(a_start) + actual / SAMPLE_RATE)
        except (OSError, InputError) as e:
            rep.problems.append(str(e))
    # video
    frames, last, err = _video_summary(f)
    if err:
        rep.problems.append(err)
    rep.info["frames"] = frames
    v_start = doc.get("video", {}).get("start_t")
    if frames and last is not None and v_start is not None:
        ends.append(float(v_start) + last)
        rep.info["video_s"] = last
    # jsonl files
    for name in (SCORES_FILE, LABELS_FILE):
        objs, bad, torn = read_jsonl(f / name)
        rep.info[name.split(".")[0]] = sum(o.get("kind") != "stream" for o in objs)
        if torn:
            rep.problems.append(f"{name}: the last line is torn (cut off mid-write)")
        if bad:
            rep.problems.append(
                f"{name}: unparsable or invalid line(s) {', '.join(map(str, bad[:5]))}"
                + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            )
        ts = [float(o["t"]) for o in objs]
        if ts and name == SCORES_FILE:
            ends.append(max(ts))
    start = doc.get("start_t")
    starts = [x for x in (start, a_start, v_start) if x is not None]
    if starts and ends:
        rep.info["duration_s"] = max(ends) - min(float(x) for x in starts)
    rep.info["end_t"] = max(ends) if ends else None
    return rep


def check_session(folder: Path | str) -> SessionReport:
    return _inspect_or_report(Path(folder))


def _rewrite_jsonl(path: Path) -> int:
    objs, bad, torn = read_jsonl(path)
    if not bad and not torn:
        return 0
    files.replace_atomic(path, b"".join(files.json_line(o) for o in objs))
    return len(bad) + int(torn)


def repair_session(folder: Path | str) -> SessionReport:
    """Fix what :func:`inspect` found; returns the report after repair (``repairs`` lists what was done)."""
    f = Path(folder)
    before = inspect(f)
    if before.info.get("live") or _alive(f, {}):
        raise InputError(f"{f} is being recorded right now; stop that recording first")
    repairs: list[str] = []
    try:
        doc = read_session_json(f)
    except (OSError, ValueError) as e:
        doc = _rebuilt_session_json(f, str(e), repairs)
        write_session_json(f, doc)  # what follows inspects the folder through it
    _fill_stream_starts(f, doc, repairs)
    a = f / AUDIO_FILE
    if a.exists():
        try:
            declared, actual = _wav_status(a)
        except InputError as e:
            raise InputError(f"{f}: {e}; cannot repair it") from None
        size = a.stat().st_size
        if size != files.WAV_HEADER_BYTES + 2 * actual:
            os.truncate(a, files.WAV_HEADER_BYTES + 2 * actual)
            repairs.append(f"{AUDIO_FILE}: cut a torn last sample")
        if declared != actual:
            with open(a, "r+b") as fh:
                fh.write(files.wav_header(2 * actual))
            now, was = actual / SAMPLE_RATE, declared / SAMPLE_RATE
            repairs.append(f"{AUDIO_FILE}: header now covers {now:.2f} s (was {was:.2f} s)")
        doc.setdefault("audio", {})["samples"] = actual
    for name in (SCORES_FILE, LABELS_FILE):
        n = _rewrite_jsonl(f / name)
        if n:
            repairs.append(f"{name}: dropped {n} torn or unparsable line(s)")
    after = inspect(f)
    if doc.get("state") in ("recording", "stopped") or repairs:
        if doc.get("state") == "recording":
            repairs.append("state: recording → repaired (never closed)")
        doc["state"] = "repaired"
        doc.pop("pid", None)
        (f / LOCK_FILE).unlink(missing_ok=True)
        doc["end_t"] = doc.get("end_t") or after.info.get("end_t")
        doc.setdefault("video", {})["frames"] = after.info.get("frames", 0)
        doc.setdefault("scores", {})["records"] = after.info.get("scores", 0)
        doc.setdefault("labels", {})["changes"] = after.info.get("labels", 0)
        doc["repairs"] = [*(doc.get("repairs") or []), *repairs]
        write_session_json(f, doc)
    final = inspect(f)
    final.repairs = repairs
    return final


def stream_starts(folder: Path) -> dict[str, float]:
    """The start media time of each stream from the ``stream`` records of ``scores.jsonl``."""
    out: dict[str, float] = {}
    for r in read_records(folder):
        if r.get("kind") == "stream" and r.get("stream") in ("video", "audio") and _finite(r.get("start_t")):
            out.setdefault(r["stream"], float(r["start_t"]))
    return out


def _fill_stream_starts(f: Path, doc: dict[str, Any], repairs: list[str]) -> None:
    """Start times ``session.json`` lacks (a kill before it was written) taken from the stream records."""
    for stream, t in stream_starts(f).items():
        sub = doc.setdefault(stream, {})
        if sub.get("start_t") is None:
            sub["start_t"] = t
            repairs.append(f"{stream}.start_t: {t:g} from its stream record in {SCORES_FILE}")


def _rebuilt_session_json(f: Path, why: str, repairs: list[str]) -> dict[str, Any]:
    """A new ``session.json`` from the media and score files, when the old one is missing or cannot
    be read; the broken one is kept beside it as ``session.json.broken`` (never deleted)."""
    from datetime import UTC, datetime

    from emodesk.recording.writer import SessionMeta, session_document

    if not any((f / n).exists() for n in (VIDEO_FILE, AUDIO_FILE, SCORES_FILE, LABELS_FILE)):
        raise InputError(
            f"{f}: {SESSION_FILE} is missing or unreadable and there are no media or score files"
        )
    old = f / SESSION_FILE
    if old.exists():
        keep = old.with_name(SESSION_FILE + ".broken")
        n = 1
        while keep.exists():
            n += 1
            keep = old.with_name(f"{SESSION_FILE}.broken{n}")
        os.replace(old, keep)
        repairs.append(f"{SESSION_FILE}: unreadable ({why}); kept as {keep.name}, rebuilt from the files")
    else:
        repairs.append(f"{SESSION_FILE}: missing; rebuilt from the media and score files")
    try:
        created = datetime.strptime(f.name[:15], "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        created = datetime.fromtimestamp(min(p.stat().st_mtime for p in f.iterdir()), UTC)
    video = next((r for r in read_records(f) if r.get("kind") == "stream" and r.get("stream") == "video"), {})
    privacy = str(video["privacy"]) if video.get("privacy") in ("full", "face-crops") else "full"
    meta = SessionMeta(source="unknown (rebuilt by repair)", privacy=privacy)
    doc = session_document(files.safe_name(f.name), created, meta, None)
    doc["state"] = "repaired"
    if "privacy" not in video:
        repairs.append("privacy mode unknown (no video stream record): taken as full frames")
    starts = stream_starts(f)
    if not starts and ((f / AUDIO_FILE).exists() or (f / VIDEO_FILE).exists()):
        repairs.append(
            f"audio and video start times are unknown ({SCORES_FILE} has no stream records: an older "
            "recording); the media are kept but cannot be aligned with the scores"
        )
    return doc


def list_sessions(parent: Path | str) -> list[SessionReport]:
    p = Path(parent)
    if not p.is_dir():
        raise InputError(f"{p} is not a folder")
    return [_inspect_or_report(d) for d in sorted(p.iterdir()) if (d / SESSION_FILE).exists()]


def _inspect_or_report(folder: Path) -> SessionReport:
    """:func:`inspect`, with a session whose files have an unexpected structure reported as broken
    instead of failing the whole listing."""
    try:
        return inspect(folder)
    except (AttributeError, TypeError, KeyError, ValueError, RecursionError) as e:
        rep = SessionReport(folder)
        rep.problems.append(
            f"its files have an unexpected structure ({type(e).__name__}: {e}); try emodesk sessions repair"
        )
        return rep


END_SLACK_S = 0.05  # a span may end this far past the session's end (rounding of typed times)


def relabel(folder: Path | str, t0: float, t1: float | None, label: str | None) -> list[dict[str, Any]]:
    """Set ``label`` (None: no label) on media time [t0, t1) after the fact; the rest is kept.

    ``t1`` None: to the session's end. Rewrites ``labels.jsonl`` atomically:
    changes before ``t0`` stay, the span gets one change at ``t0``, the label
    that was in force at ``t1`` resumes there, and later changes stay. Refused
    while the session is being recorded, and for times outside the session.
    """
    from emodesk.labels import canonical_label
    from emodesk.recording.writer import labels_at

    f = Path(folder)
    doc = read_session_json(f)
    if doc.get("state") == "recording" and _alive(f, doc):
        raise InputError(f"{f} is being recorded right now; relabel it after it stops")
    raw_start, raw_end = doc.get("start_t"), doc.get("end_t")
    start = float(raw_start) if raw_start is not None and _finite(raw_start) else 0.0
    end = float(raw_end) if raw_end is not None and _finite(raw_end) else None
    if t1 is None:
        if end is None:
            raise InputError(
                f"{f} records no end time, so --to end is unknown; run emodesk sessions repair {f}"
            )
        t1 = end
    if not MAX_T >= t1 > t0 >= 0:
        raise InputError(f"need 0 <= FROM < TO <= {MAX_T:g} seconds, got {t0} and {t1}")
    if end is not None and (t1 > end + END_SLACK_S or t0 < start - END_SLACK_S):
        raise InputError(
            f"{f.name} runs from {start:g} to {end:g} s (media time); {t0:g}–{t1:g} s lies outside it "
            "(use --to end for the rest of the session)"
        )
    name = None if label is None else canonical_label(label)
    objs, bad, torn = read_jsonl(f / LABELS_FILE)
    if bad or torn:
        raise InputError(f"{f / LABELS_FILE} has torn or unparsable lines; run emodesk sessions repair {f}")
    changes = sorted(objs, key=lambda c: c["t"])
    resume = labels_at(changes, t1)
    out = [c for c in changes if c["t"] < t0]
    out.append({"t": round(t0, 3), "label": name, "source": "edit"})
    out.append({"t": round(t1, 3), "label": resume, "source": "edit"})
    out += [c for c in changes if c["t"] > t1]
    files.replace_atomic(f / LABELS_FILE, b"".join(files.json_line(c) for c in out))
    doc.setdefault("labels", {})["changes"] = len(out)
    write_session_json(f, doc)
    return out
