"""The index of a batch run: ``runs.jsonl`` beside the outputs, one line per input per run
(docs/formats.md, "Batch runs"); written by :mod:`emodesk.batch`, read back by ``--resume``,
``emodesk table`` and ``emodesk report``.

Appended by the driver only, one whole line at a time and flushed, so a killed run leaves every
finished input's line. ``--resume`` reads the last line of each input: ``ok`` with the same input
bytes (sha256) and the same model set and its output still there is not redone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emodesk import private
from emodesk.readers import read_jsonl_objects

RUNS = "runs.jsonl"
#: statuses of an input's line: ok, degraded (a path failed, what ran is kept), failed, skipped
STATUSES = ("ok", "degraded", "failed", "skipped")


class RunIndex:
    """``runs.jsonl`` of an output folder."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / RUNS

    def entries(self) -> list[dict[str, Any]]:
        """Every line, oldest first; a line cut by a kill (the last, unterminated) is skipped."""
        if not self.path.is_file():
            return []
        lines = read_jsonl_objects(self.path, what="a run entry", skip_cut_last=True)
        return [e for e in lines if isinstance(e.get("id"), str)]

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
