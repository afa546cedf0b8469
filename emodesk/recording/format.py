"""The session folder, format version 1 (documented in ``docs/sessions.md``).

::

    <parent>/<YYYYmmdd-HHMMSS>-<6 hex>/      0700
        session.json   schema, app version, source and devices, models with sha256,
                       fusion weights, privacy mode, start/end media time, state, counts
        video.mp4      H.264, fragmented MP4 (readable after a kill up to its last
                       0.5 s fragment); pts in ms = media time − video.start_t
        audio.wav      16 kHz mono PCM s16le; sample k is at audio.start_t + k / 16000
        scores.jsonl   every score record of docs/formats.md (face, voice, text, fused,
                       transcript), ``t`` on the same media clock
        labels.jsonl   label changes {"t", "label" (canonical or null), "source"};
                       a label holds from its ``t`` to the next change

Every file is 0600. ``state`` is ``recording`` while a writer has it open,
``complete`` after a clean stop, ``stopped`` after an I/O error (``stop_reason``
says which), ``repaired`` after ``emodesk sessions repair``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from emodesk.errors import InputError
from emodesk.readers import read_json

SCHEMA_VERSION = 1
SESSION_FILE = "session.json"
VIDEO_FILE = "video.mp4"
AUDIO_FILE = "audio.wav"
SCORES_FILE = "scores.jsonl"
LABELS_FILE = "labels.jsonl"
LOCK_FILE = ".recording.lock"  # flock-ed by the writing process while the session is open
SAMPLE_RATE = 16000
STATES = ("recording", "complete", "stopped", "repaired")
MAX_T = 1e9  # seconds on the media clock (about 31 years): a larger time is a broken file


def write_session_json(folder: Path, doc: dict[str, Any]) -> None:
    """``session.json`` written atomically (temp file, fsync, rename), 0600."""
    from emodesk.recording import files

    files.replace_atomic(
        folder / SESSION_FILE, (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    )


class SessionFileError(InputError, ValueError):
    """``session.json`` is missing or is not what this format describes (a ``ValueError`` too, so
    the readers that skip a broken session catch it; the commands report it, exit 2)."""


def read_session_json(folder: Path) -> dict[str, Any]:
    """``session.json`` as a dict; ``ValueError`` saying what is wrong when it is not the object
    this format describes (it is user input: ``[]``, a nesting bomb, a 4,400-digit integer or a
    time that is not a number must be a message, not a traceback).

    The fields the session commands read are type-checked here, so they can trust them:
    ``id``, ``state``, ``privacy``, ``notes`` (text); ``start_t``, ``end_t`` and the streams'
    ``start_t`` (a number or null, at most :data:`MAX_T` in size); ``video``, ``audio``,
    ``scores``, ``labels``, ``stats`` (objects)."""
    f = read_json(folder / SESSION_FILE, what="session file", error=SessionFileError)
    try:
        for key in ("id", "state", "privacy", "notes", "created", "source"):
            f.text(key, None)
        for key in ("start_t", "end_t"):
            f.number(key, None, lo=-MAX_T, hi=MAX_T)
        doc = dict(f.data)
        for key in ("video", "audio", "scores", "labels", "stats", "devices", "fusion"):
            sub = f.obj(key, {})
            if key in doc:
                doc[key] = dict(sub.data)  # null reads as {}: callers .get() inside it
            if key in ("video", "audio"):
                sub.number("start_t", None, lo=-MAX_T, hi=MAX_T)
                for n in ("frames", "samples", "width", "height"):
                    sub.integer(n, None, lo=0, hi=10**12)
        f.array("repairs", None, max_len=10_000)
    except InputError as e:
        raise SessionFileError(str(e)) from None
    return doc
