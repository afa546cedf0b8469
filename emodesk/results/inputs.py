"""What ``emodesk table`` and ``emodesk report`` read: the results of ``analyze`` runs and
recorded sessions, each as one :class:`ResultInput` (its records, its labels, its media span).

A path given is one of:

- a **run folder** (``analyze SOURCE... --out DIR``: ``DIR/runs.jsonl``): every input's latest
  line that is not a skip; an ``ok`` or ``degraded`` one with its ``ID.jsonl``, a ``failed`` one
  with its error and no records;
- an **analyze output**, a ``.jsonl`` of score records (id: the file's stem);
- a **recorded session** (a folder with ``session.json`` or ``scores.jsonl``: id the session's),
  with its ``labels.jsonl``;
- a **folder of sessions** (the sessions folder, or a study's): every session in it.

Inputs load one at a time (:meth:`ResultInput.load`), so a run of a thousand inputs never sits in
memory at once. Anything else, or two inputs with one id, is an :class:`InputError` (exit 2)
before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emodesk.errors import InputError
from emodesk.records import read_records
from emodesk.results.runs import RUNS, RunIndex

#: the longest span an input's records may cover: a recording of a week is 604,800 media seconds,
#: so a file claiming more (a broken or hostile ``t``) is refused rather than tabled second by second
MAX_SPAN_S = 7 * 24 * 3600.0


@dataclass
class LoadedInput:
    """One input's records (file order), label changes (time order) and media span."""

    records: list[dict[str, Any]]
    labels: list[dict[str, Any]] | None  # a session's; None: not a session (no labels to compare)
    start: float
    end: float


@dataclass
class ResultInput:
    id: str
    kind: str  # "run" (an input of a run folder), "analyze" (a JSONL), "session"
    path: Path  # the JSONL or the session folder
    source: str  # what was analyzed or recorded
    status: str = "ok"  # a run's line: ok, degraded, failed
    error: str | None = None
    media_s: float | None = None
    entry: dict[str, Any] = field(default_factory=dict)  # the run's line, when from a run

    @property
    def has_records(self) -> bool:
        return self.status in ("ok", "degraded")

    def load(self) -> LoadedInput:
        """Read the records (and a session's labels); :class:`InputError` naming a bad file."""
        if not self.has_records:
            return LoadedInput([], None, 0.0, 0.0)
        if self.kind == "session":
            return _load_session(self.path)
        records = read_records(self.path)
        end = max(self.media_s or 0.0, _last_t(records))
        return _bounded(self.id, LoadedInput(records, None, 0.0, end))


def _is_time(t: Any) -> bool:
    return isinstance(t, (int, float)) and not isinstance(t, bool)


def _last_t(records: Sequence[dict[str, Any]]) -> float:
    return max((float(r["t"]) for r in records if _is_time(r.get("t"))), default=0.0)


def _bounded(ident: str, loaded: LoadedInput) -> LoadedInput:
    if not (-MAX_SPAN_S <= loaded.start <= loaded.end <= loaded.start + MAX_SPAN_S):
        raise InputError(
            f"{ident}: its records span {loaded.start:g}–{loaded.end:g} s, more than a week: "
            "not records emodesk wrote (a time is broken)"
        )
    return loaded


def _is_session(folder: Path) -> bool:
    from emodesk.recording.format import SCORES_FILE, SESSION_FILE

    return (folder / SESSION_FILE).is_file() or (folder / SCORES_FILE).is_file()


def _load_session(folder: Path) -> LoadedInput:
    from emodesk.recording.format import read_session_json
    from emodesk.recording.session import read_labels
    from emodesk.recording.session import read_records as read_session_records

    records = [r for r in read_session_records(folder) if r.get("kind") != "stream"]
    try:
        doc = read_session_json(folder)
    except (ValueError, OSError):
        doc = {}  # a session.json lost or broken: the span comes from the records
    ts = [float(r["t"]) for r in records]
    s0, e0 = doc.get("start_t"), doc.get("end_t")
    start = float(s0) if isinstance(s0, (int, float)) and _is_time(s0) else min(ts, default=0.0)
    # records written after the stop (the last utterance's scores) still count
    end = max(float(e0) if isinstance(e0, (int, float)) and _is_time(e0) else start, max(ts, default=start))
    return _bounded(folder.name, LoadedInput(records, read_labels(folder), start, max(end, start)))


def _session_input(folder: Path) -> ResultInput:
    from emodesk.recording.format import read_session_json

    try:
        doc = read_session_json(folder)
    except (ValueError, OSError):
        doc = {}
    got = doc.get("id")
    sid = got if isinstance(got, str) and got else folder.name
    return ResultInput(sid, "session", folder, str(doc.get("source") or folder))


def _run_inputs(folder: Path) -> list[ResultInput]:
    out = []
    for e in RunIndex(folder).latest().values():
        status = str(e["status"]) if e.get("status") in ("ok", "degraded", "failed") else "failed"
        name = str(e.get("output") or f"{e['id']}.jsonl")
        output = folder / Path(name).name
        error = e.get("error") if e.get("error") is None else str(e.get("error"))
        if Path(name).name != name or name in (".", ".."):  # the driver writes bare names only
            status, error = "failed", f"{RUNS} names its output {name!r}, outside the run folder"
        elif status != "failed" and not output.is_file():
            status, error = "failed", f"its output {output.name} is gone"
        media = e.get("media_s")
        out.append(
            ResultInput(
                e["id"],
                "run",
                output,
                str(e.get("input") or ""),
                status=status,
                error=error,
                media_s=float(media) if isinstance(media, (int, float)) else None,
                entry=e,
            )
        )
    return out


def find_results(paths: Sequence[str | Path]) -> list[ResultInput]:
    """Every input the paths name, in the order given (a run's in its index order, a folder's
    sessions by name); :class:`InputError` for a path that is none of the kinds, or a repeated id."""
    if not paths:
        raise InputError("name a run folder, an analyze .jsonl or a recorded session")
    found: list[ResultInput] = []
    for raw in paths:
        p = Path(raw)
        if p.is_file():
            if p.suffix.lower() != ".jsonl":
                raise InputError(f"{p} is not an analyze output (.jsonl), a run folder or a session")
            found.append(ResultInput(p.stem, "analyze", p, str(p)))
        elif p.is_dir():
            if (p / RUNS).is_file():
                found.extend(_run_inputs(p))
            elif _is_session(p):
                found.append(_session_input(p))
            else:
                sessions = sorted(q for q in p.iterdir() if q.is_dir() and _is_session(q))
                if not sessions:
                    raise InputError(
                        f"{p} is neither a run folder (no {RUNS}), a recorded session nor a folder of "
                        "sessions (a session has session.json or scores.jsonl)"
                    )
                found.extend(_session_input(q) for q in sessions)
        else:
            raise InputError(f"{p} does not exist")
    seen: dict[str, Path] = {}
    for r in found:
        if r.id in seen:
            raise InputError(f"two inputs have the id {r.id!r}: {seen[r.id]} and {r.path}")
        seen[r.id] = r.path
    return found
