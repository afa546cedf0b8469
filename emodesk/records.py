"""Score records: the JSON lines of ``analyze`` and of a session's ``scores.jsonl``.

docs/formats.md, "Score records". One function per kind, so every writer agrees.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import IO, Any

from emodesk import private
from emodesk.errors import InputError
from emodesk.labels import probs_dict
from emodesk.readers import read_jsonl_objects
from emodesk.types import FusedScores, ModalityScores, Transcript

Record = dict[str, Any]


def _r(x: float) -> float:
    return round(float(x), 4)


def score_record(s: ModalityScores) -> Record:
    rec: Record = {"t": _r(s.t), "kind": s.kind, "model": s.model, "probs": probs_dict(s.probs)}
    if s.kind == "face":
        rec["track"] = s.track
        if s.box is not None:
            rec["box"] = [round(float(v), 1) for v in s.box]
    else:
        if s.t0 is None or s.t1 is None:
            raise ValueError(f"{s.kind} score of {s.model} lacks its utterance times")
        rec["t"] = _r(s.t1)
        rec["t0"], rec["t1"] = _r(s.t0), _r(s.t1)
    if not s.trusted:
        rec["trusted"], rec["reason"] = False, s.reason
    if s.context:
        rec["context"] = [_r(t) for t in s.context]
    return rec


def transcript_record(tr: Transcript) -> Record:
    rec: Record = {"t": _r(tr.t1), "kind": "transcript", "t0": _r(tr.t0), "t1": _r(tr.t1), "text": tr.text}
    if tr.partial:
        rec["partial"] = True
    if not tr.trusted:
        rec["trusted"], rec["reason"] = False, tr.reason
    if tr.asr:
        rec["asr"] = dict(tr.asr)
    return rec


def fused_record(f: FusedScores) -> Record:
    rec: Record = {"t": _r(f.t), "kind": "fused", "probs": probs_dict(f.probs), "members": list(f.members)}
    if f.track is not None:
        rec["track"] = f.track
    return rec


class JsonlWriter:
    """Appends records, one JSON object per line, flushed per line so a kill loses little."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self._f: IO[str] | None = private.open_private(self.path, "w", encoding="utf-8")
        except OSError as e:
            raise InputError(f"cannot write {self.path}: {e.strerror}") from None
        self.count = 0

    def write(self, rec: Record) -> None:
        assert self._f is not None
        self._f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self._f.flush()
        self.count += 1

    def close(self) -> None:
        f, self._f = self._f, None
        if f is not None:
            f.flush()
            if stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # /dev/null or a pipe cannot be synced
                os.fsync(f.fileno())
            f.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(path: Path | str) -> list[Record]:
    """The records of an ``analyze`` JSONL; :class:`InputError` naming the line that is not one."""
    return read_jsonl_objects(path, what="a score record")
