"""Tidy tables of results (``emodesk table``; docs/formats.md, "Tables"): one row per
observation, the input's id a column, the same columns for every input, so a whole study loads
in one line (``pandas.read_csv``, ``pandas.read_parquet``, ``read.csv`` in R).

- ``faces``: one row per face score record (a member's scores of one face on one frame;
  members score by turns, so a frame has one row per member that ran on it);
- ``utterances``: one row per final utterance: its span, words, whether the recogniser
  trusted them, the voice and the words members' mean probabilities;
- ``timeline``: one row per media second: the fused probabilities in force, the face (of the
  track the fusion used), the voice and the words of the utterance said then, and a session's label;
- ``inputs``: one row per input: where it came from, its status, span and top fused emotion.

Rows are built one input at a time (:func:`input_rows`); :class:`TableWriter` streams them to CSV
(always) or Parquet (``pyarrow``, the ``tables`` extra), private files written whole or not at all.
"""

from __future__ import annotations

import bisect
import csv
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emodesk import private
from emodesk.errors import InputError
from emodesk.labels import LABELS, probs_vector
from emodesk.recording.writer import labels_at
from emodesk.results.inputs import LoadedInput, ResultInput
from emodesk.results.summary import HOLD_S, emotion_summary

FORMATS = ("csv", "parquet")


def _probs(prefix: str) -> list[tuple[str, str]]:
    return [(f"{prefix}{lab}", "float") for lab in LABELS]


#: every table's columns and their types (str, float, int, bool): the same for every input
SCHEMAS: dict[str, list[tuple[str, str]]] = {
    "faces": [
        ("input", "str"),
        ("t", "float"),
        ("track", "int"),
        ("model", "str"),
        ("box_x", "float"),
        ("box_y", "float"),
        ("box_w", "float"),
        ("box_h", "float"),
        *_probs(""),
        ("top", "str"),
        ("label", "str"),
    ],
    "utterances": [
        ("input", "str"),
        ("t0", "float"),
        ("t1", "float"),
        ("text", "str"),
        ("trusted", "bool"),
        ("reason", "str"),
        *_probs("voice_"),
        ("voice_top", "str"),
        *_probs("text_"),
        ("text_top", "str"),
        ("label", "str"),
    ],
    "timeline": [
        ("input", "str"),
        ("t", "float"),
        *_probs("fused_"),
        ("fused_top", "str"),
        ("track", "int"),
        *_probs("face_"),
        *_probs("voice_"),
        *_probs("text_"),
        ("label", "str"),
    ],
    "inputs": [
        ("input", "str"),
        ("kind", "str"),
        ("source", "str"),
        ("status", "str"),
        ("error", "str"),
        ("start", "float"),
        ("end", "float"),
        ("records", "int"),
        ("utterances", "int"),
        ("fused_top", "str"),
        ("labelled_s", "float"),
    ],
}
TABLES = ("faces", "utterances", "timeline", "inputs")


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


INT64_MAX = 2**63 - 1


def _track(x: Any) -> int | None:
    """A face track id, or None (a bool or a number beyond int64 is not one)."""
    return x if isinstance(x, int) and not isinstance(x, bool) and abs(x) <= INT64_MAX else None


def _text(x: Any) -> str | None:
    return None if x is None else str(x)


def _top(v: np.ndarray | None) -> str | None:
    return None if v is None else LABELS[int(np.argmax(v))]


def _put(row: dict[str, Any], prefix: str, v: np.ndarray | None) -> None:
    for i, lab in enumerate(LABELS):
        row[f"{prefix}{lab}"] = None if v is None else round(float(v[i]), 6)


class LabelClock:
    """The label in force at a time, from a session's label changes (the last change at or before
    it; of several at one instant the last in the file)."""

    def __init__(self, changes: Sequence[Mapping[str, Any]] | None) -> None:
        ordered = sorted((c for c in changes or () if _num(c.get("t")) is not None), key=lambda c: c["t"])
        self._t = [float(c["t"]) for c in ordered]
        self._label = [c.get("label") for c in ordered]

    def at(self, t: float) -> str | None:
        i = bisect.bisect_right(self._t, t) - 1
        return self._label[i] if i >= 0 else None


def label_spans(
    changes: Sequence[Mapping[str, Any]], t0: float, t1: float
) -> list[tuple[float, float, str | None]]:
    """The labels in force over [t0, t1) as (start, end, label) spans; None is no label.

    A label holds from its change's ``t`` to the next change (docs/sessions.md);
    of several changes at one instant the last in the file wins, as in ``labels_at``.
    """
    ordered = sorted(changes, key=lambda c: float(c["t"]))
    label = labels_at([dict(c) for c in ordered], t0)
    out: list[tuple[float, float, str | None]] = []
    a = t0
    for c in ordered:
        t = float(c["t"])
        if t <= t0:
            continue
        if t >= t1:
            break
        if t > a:
            out.append((a, t, label))
        a, label = t, c.get("label")
    out.append((a, t1, label))
    return out


def utterances(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``{t0, t1, text, trusted, reason, voice, words}`` per final utterance, in time order: the
    transcript, voice and text records joined on their span (``voice``/``words``: the members'
    mean probabilities, or None)."""
    by_span: dict[tuple[float, float], dict[str, Any]] = {}
    voice: dict[tuple[float, float], list[np.ndarray]] = defaultdict(list)
    text: dict[tuple[float, float], list[np.ndarray]] = defaultdict(list)
    for r in records:
        kind = r.get("kind")
        if kind not in ("transcript", "voice", "text") or r.get("partial"):
            continue
        t0, t1 = _num(r.get("t0")), _num(r.get("t1"))
        if t0 is None or t1 is None:
            continue
        span = (t0, t1)
        u = by_span.setdefault(span, {"t0": t0, "t1": t1, "text": "", "trusted": True, "reason": None})
        if kind == "transcript":
            u["text"] = r.get("text") if isinstance(r.get("text"), str) else ""
        if r.get("trusted") is False:
            u["trusted"] = False
            u["reason"] = r.get("reason") if isinstance(r.get("reason"), str) else u["reason"]
        v = probs_vector(r.get("probs"))
        if v is not None and kind in ("voice", "text"):
            (voice if kind == "voice" else text)[span].append(v)
    out = []
    for span in sorted(by_span):
        u = by_span[span]
        u["voice"] = np.mean(voice[span], axis=0) if voice[span] else None
        u["words"] = np.mean(text[span], axis=0) if text[span] else None
        out.append(u)
    return out


def _said_at(utts: Sequence[dict[str, Any]], starts: Sequence[float], t: float) -> dict[str, Any] | None:
    """The latest-starting utterance said at ``t`` (``utts`` in start order, ``starts`` their t0)."""
    i = bisect.bisect_right(starts, t) - 1
    while i >= 0:  # utterances do not overlap in practice: this looks at one or two
        if utts[i]["t1"] > t:
            return utts[i]
        if starts[i] < t - 3600:
            break
        i -= 1
    return None


def fused_rows(records: Iterable[Mapping[str, Any]]) -> list[tuple[float, Any, np.ndarray]]:
    """``(t, track, probabilities)`` of every fused record, in time order."""
    out = []
    for r in records:
        v, t = probs_vector(r.get("probs")), _num(r.get("t"))
        if r.get("kind") == "fused" and v is not None and t is not None:
            out.append((t, r.get("track"), v))
    out.sort(key=lambda x: x[0])
    return out


def timeline(loaded: LoadedInput) -> list[dict[str, Any]]:
    """One row per media second from the input's start: ``t`` (the second's start), the fused
    row in force at its middle (the last at or before it, held at most a second), its track, the
    face scores of that track in the second (members' mean), the utterance said at the middle
    (voice, and words when trusted), and the label then. Missing readings are None."""
    records = loaded.records
    fused = fused_rows(records)
    fused_t = [f[0] for f in fused]
    faces: dict[int, dict[Any, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        v, t = probs_vector(r.get("probs")), _num(r.get("t"))
        if r.get("kind") == "face" and v is not None and t is not None:
            faces[math.floor(t)][r.get("track")].append(v)
    utts = utterances(records)
    starts = [u["t0"] for u in utts]
    labels = LabelClock(loaded.labels)
    rows = []
    first, last = math.floor(loaded.start), math.ceil(loaded.end)
    for k in range(first, max(last, first + 1) if records else first):
        mid = k + 0.5
        row: dict[str, Any] = {"t": float(k)}
        i = bisect.bisect_right(fused_t, mid) - 1
        f = fused[i] if i >= 0 and mid - fused[i][0] <= HOLD_S else None
        _put(row, "fused_", f[2] if f else None)
        row["fused_top"] = _top(f[2]) if f else None
        track = _track(f[1]) if f else None
        in_second = faces.get(k, {})
        if track is None:  # no track named: the one scored most in this second
            cands = [(len(vs), tr) for tr, vs in in_second.items() if _track(tr) is not None]
            track = max(cands)[1] if cands else None
        row["track"] = track
        fv = in_second.get(track)
        _put(row, "face_", np.mean(fv, axis=0) if fv else None)
        u = _said_at(utts, starts, mid)
        _put(row, "voice_", u["voice"] if u else None)
        _put(row, "text_", u["words"] if u and u["trusted"] else None)
        row["label"] = labels.at(mid) if loaded.labels is not None else None
        rows.append(row)
    return rows


def input_rows(inp: ResultInput, loaded: LoadedInput) -> dict[str, list[dict[str, Any]]]:
    """The rows each table gets from one input (its id in every row)."""
    labels = LabelClock(loaded.labels)
    is_session = loaded.labels is not None
    faces = []
    for r in loaded.records:
        v, t = probs_vector(r.get("probs")), _num(r.get("t"))
        if r.get("kind") != "face" or v is None or t is None:
            continue
        got = r.get("box")
        box: list[Any] = got if isinstance(got, list) and len(got) == 4 else [None] * 4
        row = {
            "t": t,
            "track": _track(r.get("track")),
            "model": _text(r.get("model")),
            **{k: _num(b) for k, b in zip(("box_x", "box_y", "box_w", "box_h"), box, strict=True)},
        }
        _put(row, "", v)
        row["top"], row["label"] = _top(v), labels.at(t) if is_session else None
        faces.append(row)
    utts = []
    for u in utterances(loaded.records):
        row = {k: u[k] for k in ("t0", "t1", "text", "trusted", "reason")}
        _put(row, "voice_", u["voice"])
        row["voice_top"] = _top(u["voice"])
        _put(row, "text_", u["words"])
        row["text_top"] = _top(u["words"])
        row["label"] = labels.at((u["t0"] + u["t1"]) / 2) if is_session else None
        utts.append(row)
    tl = timeline(loaded)
    summary = emotion_summary(loaded.records, media_end=loaded.end) if inp.has_records else None
    info = {
        "kind": inp.kind,
        "source": _text(inp.source),
        "status": inp.status,
        "error": _text(inp.error),
        "start": round(loaded.start, 4) if inp.has_records else None,
        "end": round(loaded.end, 4) if inp.has_records else None,
        "records": len(loaded.records),
        "utterances": len(utts),
        "fused_top": summary["fused"]["top"] if summary else None,
        "labelled_s": float(sum(1 for r in tl if r["label"] is not None)) if is_session else None,
    }
    out = {"faces": faces, "utterances": utts, "timeline": tl, "inputs": [info]}
    for rows in out.values():
        for row in rows:
            row["input"] = inp.id
    return out


class TableWriter:
    """The four tables of one ``emodesk table`` run, appended input by input, into ``out_dir``;
    each file is written as ``NAME.EXT.partial`` and renamed when :meth:`close` completes them."""

    def __init__(self, out_dir: Path, fmt: str = "csv") -> None:
        if fmt not in FORMATS:
            raise InputError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        if fmt == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise InputError(
                    "--format parquet needs pyarrow (pip install 'emodesk[tables]'); csv needs nothing"
                ) from None
        private.check_writable(out_dir, what="--out", folder=True)
        private.make_dirs(out_dir)
        self.fmt, self.out_dir = fmt, out_dir
        self.counts = dict.fromkeys(TABLES, 0)
        self._files: dict[str, Any] = {}
        self._sinks: dict[str, Any] = {}
        for name in TABLES:
            final = self.path(name)
            tmp = final.with_name(final.name + ".partial")
            if fmt == "csv":
                f = private.open_private(tmp, "w", newline="", encoding="utf-8")
            else:
                f = private.open_private(tmp, "wb")
            self._files[name] = (f, tmp, final)
            cols = [c for c, _ in SCHEMAS[name]]
            if fmt == "csv":
                w = csv.writer(f)
                w.writerow(cols)
                self._sinks[name] = w
            else:
                import pyarrow.parquet as pq

                self._sinks[name] = pq.ParquetWriter(f, _arrow_schema(name))

    def path(self, name: str) -> Path:
        return self.out_dir / f"{name}.{self.fmt}"

    def add(self, rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        for name in TABLES:
            part = rows.get(name, ())
            if not part:
                continue
            cols = [c for c, _ in SCHEMAS[name]]
            if self.fmt == "csv":
                w = self._sinks[name]
                for row in part:
                    w.writerow([_csv(row.get(c)) for c in cols])
            else:
                import pyarrow as pa

                table = pa.Table.from_pylist(
                    [{c: row.get(c) for c in cols} for row in part], _arrow_schema(name)
                )
                self._sinks[name].write_table(table)
            self.counts[name] += len(part)

    def close(self) -> list[Path]:
        """Finish every file and give them their names; the paths written."""
        for name in TABLES:
            if self.fmt == "parquet":
                self._sinks[name].close()
            f, tmp, final = self._files[name]
            f.flush()
            os.fsync(f.fileno())
            f.close()
            os.replace(tmp, final)
        return [self.path(n) for n in TABLES]

    def abort(self) -> None:
        """Close and remove the unfinished files (nothing that looks complete is left)."""
        for name in TABLES:
            f, tmp, _final = self._files[name]
            try:
                if self.fmt == "parquet":
                    self._sinks[name].close()
            except Exception:  # noqa: BLE001 - the file is removed either way
                pass
            f.close()
            tmp.unlink(missing_ok=True)


def _csv(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return v


def _arrow_schema(name: str) -> Any:
    import pyarrow as pa

    types = {"str": pa.string(), "float": pa.float64(), "int": pa.int64(), "bool": pa.bool_()}
    return pa.schema([(c, types[t]) for c, t in SCHEMAS[name]])


def write_tables(
    inputs: Sequence[ResultInput], out_dir: Path, fmt: str = "csv"
) -> tuple[list[Path], dict[str, int]]:
    """Every input's rows into the four tables; (paths, rows per table). A file of an input that
    cannot be read is an :class:`InputError` and no table is left behind."""
    writer = TableWriter(out_dir, fmt)
    try:
        for inp in inputs:
            writer.add(input_rows(inp, inp.load()))
    except BaseException:
        writer.abort()
        raise
    return writer.close(), dict(writer.counts)
