"""The index of a batch run: ``runs.jsonl`` beside the outputs, one line per input per run
(docs/formats.md, "Batch runs").

Appended by the driver only, one whole line at a time and flushed, so a killed run leaves every
finished input's line. ``--resume`` reads the last line of each input: ``ok`` with the same input
bytes (sha256) and the same model set (:func:`model_set_identity`) and its output still there is
not redone.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emodesk import private
from emodesk.errors import InputError
from emodesk.readers import parse_json
from emodesk.resources import sha256_file

RUNS = "runs.jsonl"
#: statuses of an input's line: ok, degraded (a path failed, what ran is kept), failed, skipped
STATUSES = ("ok", "degraded", "failed", "skipped")


def model_set_identity(asr_model: str | None = None) -> dict[str, Any]:
    """What decides the records besides the input: each model folder's lock (the sha256 of its
    ``lock.json``, which lists every file of the set) or, for a folder without one, its members'
    sha256; the active ``fusion.json``; the recogniser asked for. ``key`` is their digest."""
    from emodesk.fusion.config import find_fusion_config
    from emodesk.inference.lock import LOCK_FILE
    from emodesk.inference.registry import installed_manifests
    from emodesk.resources import model_search_dirs

    folders: dict[str, str] = {}
    for d in model_search_dirs():
        lock = d / LOCK_FILE
        folders[d.name] = f"lock:{sha256_file(lock)}" if lock.is_file() else "unlocked"
    members = {m.id: m.sha256 for m in installed_manifests().values()}
    fusion = find_fusion_config()
    doc: dict[str, Any] = {
        "folders": folders,
        "members": dict(sorted(members.items())),
        "fusion_sha256": sha256_file(fusion) if fusion is not None else None,
        "asr_model": asr_model or "default",
    }
    doc["key"] = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    return doc


class RunIndex:
    """``runs.jsonl`` of an output folder."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / RUNS

    def entries(self) -> list[dict[str, Any]]:
        """Every line, oldest first; a line cut by a kill (the last, unterminated) is skipped."""
        if not self.path.is_file():
            return []
        out = []
        with open(self.path, "rb") as f:
            for i, line in enumerate(f, start=1):
                if not line.endswith(b"\n"):
                    break  # the line a kill cut off
                if not line.strip():
                    continue
                try:
                    rec = parse_json(line, max_bytes=1 << 20)
                except ValueError as e:
                    raise InputError(f"{self.path}, line {i}: not a run entry ({e})") from None
                if isinstance(rec, dict) and isinstance(rec.get("id"), str):
                    out.append(rec)
        return out

    def latest(self) -> dict[str, dict[str, Any]]:
        """The last entry of each input id that was not a skip."""
        out: dict[str, dict[str, Any]] = {}
        for e in self.entries():
            if e.get("status") != "skipped":
                out[e["id"]] = e
        return out

    def append(self, entry: Mapping[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        if self.path.is_file() and self.path.stat().st_size:
            with open(self.path, "rb+") as f:
                data = f.read()
                if not data.endswith(b"\n"):  # a line a kill cut, never whole: cut it off
                    f.truncate(data.rfind(b"\n") + 1)
        with private.open_private(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


def done_before(entry: Mapping[str, Any] | None, *, input_sha256: str, model_key: str, output: Path) -> bool:
    """Whether ``entry`` (the input's latest line) finished this input with this model set."""
    return (
        entry is not None
        and entry.get("status") == "ok"
        and entry.get("sha256") == input_sha256
        and isinstance(entry.get("model_set"), Mapping)
        and entry["model_set"].get("key") == model_key
        and output.is_file()
    )


def input_sha256(path: Path) -> str:
    """sha256 of a file, or of a recorded session's media files (name and bytes, in name order)."""
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(q for q in path.iterdir() if q.is_file() and q.name in {"video.mp4", "audio.wav"}):
        h.update(f.name.encode() + b"\0" + sha256_file(f).encode())
    return h.hexdigest()
