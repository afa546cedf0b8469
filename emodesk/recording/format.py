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

SCHEMA_VERSION = 1
SESSION_FILE = "session.json"
VIDEO_FILE = "video.mp4"
AUDIO_FILE = "audio.wav"
SCORES_FILE = "scores.jsonl"
LABELS_FILE = "labels.jsonl"
LOCK_FILE = ".recording.lock"  # flock-ed by the writing process while the session is open
SAMPLE_RATE = 16000
STATES = ("recording", "complete", "stopped", "repaired")


def write_session_json(folder: Path, doc: dict[str, Any]) -> None:
    """``session.json`` written atomically (temp file, fsync, rename), 0600."""
    from emodesk.recording import files

    files.replace_atomic(
        folder / SESSION_FILE, (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    )


def read_session_json(folder: Path) -> dict[str, Any]:
    """``session.json`` as a dict; ``ValueError`` when it is not a JSON object (it is user input:
    ``[]``, a nesting bomb or a 4,400-digit integer must be a message, not a traceback)."""
    try:
        doc = json.loads((folder / SESSION_FILE).read_text(encoding="utf-8"))
    except RecursionError:
        raise ValueError(f"{SESSION_FILE} nests too deeply") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{SESSION_FILE} must hold a JSON object, not {type(doc).__name__}")
    return doc
