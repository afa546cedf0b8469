"""The pictures of ``emodesk report``: an input's timeline, the share of time per emotion, and a
labelled session's confusion, drawn with the strips the live window draws (:mod:`.strips`).

- :func:`draw_timeline`: the fused probabilities, then the face (its most-scored track), the voice
  and the words, one panel each over media time; under them a session's labels and where each
  utterance was said (amber: the recogniser doubted it), and the time axis;
- :func:`draw_shares`: one stacked bar per row (a modality of an input, or an input of a run),
  each label's share of the time in its colour.
"""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen

from emodesk import private
from emodesk.errors import InputError
from emodesk.labels import LABELS, N_LABELS, probs_vector
from emodesk.results.inputs import LoadedInput, ResultInput
from emodesk.results.report import (
    MODALITIES,
    InputReport,
    aggregate_confusion,
    aggregate_shares,
    build_input_report,
    href,
    input_html,
    page_names,
    run_html,
)
from emodesk.results.tables import fused_rows
from emodesk.ui.render.canvas import font, new_image, painter, png_bytes
from emodesk.ui.render.confusion import draw_confusion
from emodesk.ui.render.strips import LABEL_COLORS, TimeMap, paint_axis, paint_span, paint_trace

WIDTH = 1000
GUTTER, RIGHT = 74, 16
LEGEND_H, PANEL_GAP, STRIP_H, AXIS_H = 24, 8, 10, 22
PANELS = (("fused", 120), ("face", 60), ("voice", 60), ("words", 60))
FUSED_GAP_S, FACE_GAP_S = 1.05, 0.5  # longer without a reading: the line breaks (nothing fresh)
INK, MUTED, GRID, PLOT_BG = QColor("#333333"), QColor("#777777"), QColor("#e6e6e6"), QColor("#ffffff")
TRUSTED, DOUBTED = QColor("#4a6fa5"), QColor("#c0a060")


@dataclass
class Series:
    """Media times and one probability row per time (a NaN row: a gap)."""

    times: np.ndarray
    probs: np.ndarray

    @classmethod
    def empty(cls) -> Series:
        return cls(np.zeros(0), np.zeros((0, N_LABELS)))


def _with_gaps(points: Sequence[tuple[float, np.ndarray]], gap_s: float, hold_s: float) -> Series:
    """Points in time order as steps: each reading holds until the next when that comes within
    ``gap_s``, else for ``hold_s`` and then the line breaks (nothing fresh: no line)."""
    ts: list[float] = []
    ps: list[np.ndarray] = []
    nan = np.full(N_LABELS, np.nan)
    for i, (t, v) in enumerate(points):
        ts.append(t)
        ps.append(v)
        nxt = points[i + 1][0] if i + 1 < len(points) else None
        if nxt is not None and nxt - t <= gap_s:
            if nxt - t > 2e-3:
                ts.append(nxt - 1e-3)
                ps.append(v)
        else:
            ts += [t + hold_s, t + hold_s + 1e-4]
            ps += [v, nan]
    return Series(np.array(ts), np.vstack(ps)) if ts else Series.empty()


def series_from_records(
    records: Sequence[Mapping[str, Any]], utterances: Sequence[Mapping[str, Any]]
) -> dict[str, Series]:
    """The four panels' lines: fused rows; the most-scored face track's frames (its members'
    mean); each utterance's voice and (trusted) words scores held over its span."""
    fused = [(t, v) for t, _track, v in fused_rows(records)]
    # members score faces by turns: each frame shows the mean of every member's latest score of
    # the track (fresh within a second), as the live fusion holds them, not a zigzag between members
    by_track: dict[Any, dict[float, np.ndarray]] = defaultdict(dict)
    latest: dict[Any, dict[Any, tuple[float, np.ndarray]]] = defaultdict(dict)
    faces = sorted(
        [
            r
            for r in records
            if r.get("kind") == "face"
            and isinstance(r.get("t"), (int, float))
            and not isinstance(r.get("t"), bool)
        ],
        key=lambda r: float(r["t"]),
    )
    for r in faces:
        v = probs_vector(r.get("probs"))
        if v is None:
            continue
        t, tr = float(r["t"]), r.get("track")
        latest[tr][r.get("model")] = (t, v)
        fresh = [u for tu, u in latest[tr].values() if t - tu <= 1.0]
        by_track[tr][t] = np.mean(fresh, axis=0)
    # per frame, the face of the longest-seen track among those on it (a face that changes is
    # followed; with several people, the one seen most)
    weight = {tr: len(frames) for tr, frames in by_track.items()}
    at: dict[float, list[Any]] = defaultdict(list)
    for tr, frames in by_track.items():
        for t in frames:
            at[t].append(tr)
    face = [(t, by_track[max(trs, key=lambda x: weight[x])][t]) for t, trs in sorted(at.items())]
    step = float(np.median(np.diff([t for t, _ in face]))) if len(face) > 1 else FACE_GAP_S
    out = {
        "fused": _with_gaps(fused, FUSED_GAP_S, hold_s=1.0),  # a fused row holds a second at most
        "face": _with_gaps(face, FACE_GAP_S, hold_s=min(step, FACE_GAP_S)),  # a lone frame: one frame long
    }
    nan = np.full(N_LABELS, np.nan)
    for name in ("voice", "words"):
        ts: list[float] = []
        ps: list[np.ndarray] = []
        for u in sorted(utterances, key=lambda u: float(u["t0"])):
            v = u.get(name)
            if v is None or (name == "words" and not u.get("trusted", True)):
                continue
            t0, t1 = float(u["t0"]), max(float(u["t1"]), float(u["t0"]) + 1e-3)
            ts += [t0, t1, t1 + 1e-4]  # held over the utterance, then a gap
            ps += [v, v, nan]
        out[name] = Series(np.array(ts), np.vstack(ps)) if ts else Series.empty()
    return out


def _legend(p: QPainter, y: float, width: float, note: str = "") -> None:
    p.setFont(font(12))
    x = float(GUTTER)
    for lab in LABELS:
        p.fillRect(QRectF(x, y + 6, 12, 12), QColor(LABEL_COLORS[lab]))
        p.setPen(INK)
        p.drawText(QRectF(x + 16, y + 2, 90, 20), Qt.AlignmentFlag.AlignVCenter, lab)
        x += 22 + p.fontMetrics().horizontalAdvance(lab) + 14
    if note and x < width:
        p.setPen(MUTED)
        p.drawText(
            QRectF(x, y + 2, width - x - RIGHT, 20),
            Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
            note,
        )


def timeline_height(labelled: bool) -> int:
    strips = (2 if labelled else 1) * (STRIP_H + 4)
    return LEGEND_H + sum(h + PANEL_GAP for _, h in PANELS) + strips + AXIS_H + 6


def draw_timeline(
    series: Mapping[str, Series],
    *,
    start: float,
    end: float,
    utterances: Sequence[Mapping[str, Any]] = (),
    label_spans: Sequence[tuple[float, float, str | None]] | None = None,
    width: int = WIDTH,
) -> QImage:
    """One input's timeline (see the module's docstring); ``label_spans`` for a session."""
    labelled = label_spans is not None
    img = new_image(width, timeline_height(labelled))
    p = painter(img)
    _legend(p, 0, width, "probability, 0 to 1, per panel")
    tm = TimeMap(start, max(end, start + 1.0), GUTTER, width - GUTTER - RIGHT)
    y = float(LEGEND_H)
    right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
    for name, h in PANELS:
        r = QRectF(GUTTER, y, tm.width, h)
        p.fillRect(r, PLOT_BG)
        p.setPen(QPen(GRID, 1))
        for frac in (0.25, 0.5, 0.75):
            yy = round(y + h * (1 - frac)) + 0.5
            p.drawLine(QPointF(tm.left, yy), QPointF(tm.left + tm.width, yy))
        s = series.get(name, Series.empty())
        p.setClipRect(r)
        paint_trace(p, tm, y + 1, h - 2, s.times, s.probs, width=2.0 if name == "fused" else 1.5)
        if len(s.times) == 1:  # one reading: a dot per label
            for i, lab in enumerate(LABELS):
                p.setPen(QPen(QColor(LABEL_COLORS[lab]), 4))
                p.drawPoint(QPointF(tm.x(float(s.times[0])), y + 1 + (1 - s.probs[0, i]) * (h - 2)))
        p.setClipping(False)
        p.setPen(QPen(QColor("#999999"), 1))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRect(r)
        p.setFont(font(12, bold=name == "fused"))
        p.setPen(INK)
        p.drawText(QRectF(0, y, GUTTER - 8, h / 2), right, name)
        if not len(s.times):
            p.setPen(MUTED)
            p.setFont(font(11))
            p.drawText(r, Qt.AlignmentFlag.AlignCenter, "no readings")
        y += h + PANEL_GAP
    p.setFont(font(10))
    if labelled:
        p.setPen(INK)
        p.drawText(QRectF(0, y - 2, GUTTER - 8, STRIP_H + 4), right, "label")
        for a, b, span_label in label_spans or ():
            paint_span(p, tm, a, b, y, STRIP_H, span_label)
        y += STRIP_H + 4
    p.setPen(INK)
    p.drawText(QRectF(0, y - 2, GUTTER - 8, STRIP_H + 4), right, "speech")
    for u in utterances:
        x0, x1 = tm.x(max(float(u["t0"]), tm.t0)), tm.x(min(float(u["t1"]), tm.t1))
        p.fillRect(QRectF(x0, y, max(x1 - x0, 2.0), STRIP_H), TRUSTED if u.get("trusted", True) else DOUBTED)
    y += STRIP_H + 4
    p.setFont(font(11))
    paint_axis(p, tm, y, color="#555555", min_px=80.0, earliest=start)
    p.end()
    return img


def draw_shares(rows: Sequence[tuple[str, Mapping[str, float], float]], *, width: int = WIDTH) -> QImage:
    """One bar per ``(name, share per label, seconds)``: each label's share of the time, left to
    right in label order; a row with no time is written "no readings"."""
    name_w, secs_w, row_h, gap = 170, 90, 24, 6
    img = new_image(width, LEGEND_H + max(len(rows), 1) * (row_h + gap) + 8)
    p = painter(img)
    _legend(p, 0, width, "share of the time with readings")
    bar_w = width - name_w - secs_w - RIGHT
    y = float(LEGEND_H + 4)
    for name, share, seconds in rows:
        p.setFont(font(12))
        p.setPen(INK)
        shown = p.fontMetrics().elidedText(name, Qt.TextElideMode.ElideMiddle, name_w - 10)
        p.drawText(
            QRectF(0, y, name_w - 10, row_h),
            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
            shown,
        )
        x = float(name_w)
        total = sum(float(share.get(lab, 0.0)) for lab in LABELS)
        if seconds <= 0 or total <= 0:
            p.setPen(MUTED)
            p.drawText(QRectF(x, y, bar_w, row_h), Qt.AlignmentFlag.AlignVCenter, "no readings")
        else:
            for lab in LABELS:
                w = bar_w * float(share.get(lab, 0.0)) / total
                if w <= 0:
                    continue
                seg = QRectF(x, y, w, row_h)
                p.fillRect(seg, QColor(LABEL_COLORS[lab]))
                frac = float(share.get(lab, 0.0)) / total
                if w >= 34:
                    p.setFont(font(11))
                    p.setPen(QColor("#ffffff") if lab in ("angry", "fear", "sad", "disgust") else INK)
                    p.drawText(seg, Qt.AlignmentFlag.AlignCenter, f"{frac:.0%}")
                x += w
        p.setFont(font(11))
        p.setPen(MUTED)
        p.drawText(
            QRectF(name_w + bar_w + 6, y, secs_w - 6, row_h),
            Qt.AlignmentFlag.AlignVCenter,
            f"{seconds:,.0f} s" if seconds >= 10 else f"{seconds:.1f} s",
        )
        y += row_h + gap
    p.end()
    return img


# ------------------------------------------------------------------ the report's files

RUN_SHARE_ROWS = 60  # inputs drawn in a run's share picture (every input is in its table)


def _input_pictures(rep: InputReport, loaded: LoadedInput, width: int) -> dict[str, bytes]:
    pics: dict[str, bytes] = {}
    series = series_from_records(loaded.records, rep.utterances)
    pics["timeline"] = png_bytes(
        draw_timeline(
            series,
            start=rep.start,
            end=rep.end,
            utterances=rep.utterances,
            label_spans=rep.label_spans,
            width=width,
        )
    )
    rows = [(name, rep.summary[kind]["share"], rep.summary[kind]["seconds"]) for kind, name in MODALITIES]
    pics["shares"] = png_bytes(draw_shares(rows, width=width))
    if rep.agreement:
        assert rep.confusion is not None
        ag = rep.agreement
        pics["confusion"] = png_bytes(
            draw_confusion(
                rep.confusion,
                title=f"{rep.inp.id}: fused read-out against the labels",
                subtitle=f"{ag['seconds']:.0f} labelled seconds, accuracy {ag['accuracy']:.1%}, "
                f"UAR {ag['uar']:.1%}",
                note="one row per media second; colour and %: share of the label's seconds",
            )
        )
    return pics


def _write(path: Path, data: bytes | str) -> None:
    try:
        with private.open_private(path, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}") from None


GENERATOR_MARK = '<meta name="generator" content="emodesk'


def _is_report(folder: Path) -> bool:
    """Whether ``folder`` holds a report this command wrote (its index.html says so)."""
    try:
        with open(folder / "index.html", encoding="utf-8", errors="replace") as f:
            return GENERATOR_MARK in f.read(4096)
    except OSError:
        return False


def write_report(
    inputs: Sequence[ResultInput], out: Path, *, title: str | None = None, width: int = WIDTH
) -> Path:
    """The report of ``inputs`` into ``out`` (created 0700, files 0600); its ``index.html``.

    One input: ``index.html`` is its page, with ``timeline.png``, ``shares.png`` and, for a
    labelled session, ``confusion.png`` beside it. Several: ``index.html`` is the overview (the
    aggregate's ``shares.png`` and ``confusion.png``, a row per input) and each input's page and
    pictures are in ``inputs/`` (``NAME.html``, ``NAME-timeline.png``, …; NAME the id made safe
    for a file name, :func:`page_names`).

    The report is written into ``OUT.partial`` beside ``out`` and put in place when whole: a
    failure leaves ``out`` as it was. An ``out`` that exists must be empty or an earlier report
    (which the new one replaces whole, no stale page left); anything else is refused."""
    if not inputs:
        raise InputError("nothing to report")
    out = Path(out)
    private.check_writable(out, what="--out", folder=True)
    if out.is_dir() and any(out.iterdir()) and not _is_report(out):
        raise InputError(f"{out} is not empty and holds no emodesk report: give a new or empty --out folder")
    work = out.with_name(out.name + ".partial")
    if work.exists():
        shutil.rmtree(work)  # a killed earlier run's, never a finished report
    private.make_dirs(work)
    try:
        _write_report_into(inputs, work, title=title, width=width)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if out.exists():
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(work, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, out)
    return out / "index.html"


def _write_report_into(inputs: Sequence[ResultInput], out: Path, *, title: str | None, width: int) -> None:
    if len(inputs) == 1:
        loaded = inputs[0].load()
        rep = build_input_report(inputs[0], loaded)
        pics = _input_pictures(rep, loaded, width) if inputs[0].has_records else {}
        for name, data in pics.items():
            _write(out / f"{name}.png", data)
        _write(out / "index.html", input_html(rep, pics))
        return
    pages = private.make_dirs(out / "inputs")
    names = page_names([i.id for i in inputs])
    reports: list[InputReport] = []
    links: dict[str, str] = {}
    for inp in inputs:
        loaded = inp.load()
        rep = build_input_report(inp, loaded)
        pics = _input_pictures(rep, loaded, width) if inp.has_records else {}
        stem = names[inp.id]
        for name, data in pics.items():
            _write(pages / f"{stem}-{name}.png", data)
        _write(pages / f"{stem}.html", input_html(rep, pics, back="../index.html"))
        links[inp.id] = href(f"inputs/{stem}.html")
        del loaded
        reports.append(rep)
    ok = [r for r in reports if r.inp.has_records]
    share, secs = aggregate_shares(ok)
    rows: list[tuple[str, Mapping[str, float], float]] = [("all inputs", share, secs)]
    rows += [
        (r.inp.id, r.summary["fused"]["share"], r.summary["fused"]["seconds"]) for r in ok[:RUN_SHARE_ROWS]
    ]
    if len(ok) > RUN_SHARE_ROWS:
        rows.append((f"… {len(ok) - RUN_SHARE_ROWS} more in the table", {}, 0.0))
    pics = {"shares": png_bytes(draw_shares(rows, width=width))}
    conf, n_labelled = aggregate_confusion(ok)
    if conf is not None:
        pics["confusion"] = png_bytes(
            draw_confusion(
                conf,
                title="fused read-out against the labels, all labelled inputs",
                subtitle=f"{int(conf.sum())} labelled seconds in {n_labelled} sessions",
                note="one row per media second; colour and %: share of the label's seconds",
            )
        )
    for name, data in pics.items():
        _write(out / f"{name}.png", data)
    _write(out / "index.html", run_html(reports, pics, links, title=title or f"{len(inputs)} inputs"))
