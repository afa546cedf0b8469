"""What ``emodesk report`` says about each input, and the HTML it says it in (Qt-free: the
pictures are drawn by :mod:`emodesk.ui.render.report` and handed in as PNG bytes).

A page is self-contained: its pictures are embedded (``data:`` URIs) and it loads nothing, so it
opens from an e-mail or a USB stick; the same pictures are written beside it as PNG files for a
paper. For a labelled session the fused read-out is compared with the labels per media second
(the seconds with both a label and a fused reading): a confusion matrix, accuracy and UAR.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import html
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emodesk import __version__
from emodesk.evaluation.metrics import confusion_scores
from emodesk.labels import LABEL_COLORS, LABELS
from emodesk.results.inputs import LoadedInput, ResultInput
from emodesk.results.summary import HOLD_S, emotion_summary
from emodesk.results.tables import LabelClock, fused_rows, label_spans, timeline, utterances

MODALITIES = (("fused", "fused"), ("face", "face"), ("voice", "voice"), ("text", "words"))


@dataclass
class InputReport:
    """One input's facts, readings and (for a labelled session) agreement with the labels."""

    inp: ResultInput
    start: float = 0.0
    end: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)
    utterances: list[dict[str, Any]] = field(default_factory=list)
    label_spans: list[tuple[float, float, str | None]] | None = None
    confusion: np.ndarray | None = None  # seconds, rows the label, columns the fused top

    @property
    def agreement(self) -> dict[str, float] | None:
        if self.confusion is None or not self.confusion.sum():
            return None
        s = confusion_scores(self.confusion)
        return {
            "seconds": float(self.confusion.sum()),
            "accuracy": float(s["accuracy"]),
            "uar": float(s["uar"]),
        }


def build_input_report(inp: ResultInput, loaded: LoadedInput) -> InputReport:
    rep = InputReport(inp, start=loaded.start, end=loaded.end)
    if not inp.has_records:
        return rep
    rep.summary = emotion_summary(loaded.records, media_end=loaded.end)
    rows = timeline(loaded)
    fused = fused_rows(loaded.records)
    fused_t = [f[0] for f in fused]
    for u in utterances(loaded.records):
        # the fused read-out when the utterance ended: the first fused row at or after its end
        # (its scores are fused there), within a second
        i = bisect.bisect_left(fused_t, u["t1"])
        ok = i < len(fused) and fused[i][0] - u["t1"] <= HOLD_S
        u["fused_top"] = LABELS[int(np.argmax(fused[i][2]))] if ok else None
        rep.utterances.append(u)
    if loaded.labels is not None:
        clock = LabelClock(loaded.labels)  # the label at the utterance's middle, as the table gives it
        for u in rep.utterances:
            u["label"] = clock.at((u["t0"] + u["t1"]) / 2)
        rep.label_spans = label_spans(loaded.labels, loaded.start, loaded.end)
        conf = np.zeros((len(LABELS), len(LABELS)), np.int64)
        for r in rows:
            if r["label"] in LABELS and r["fused_top"] in LABELS:
                conf[LABELS.index(r["label"]), LABELS.index(r["fused_top"])] += 1
        rep.confusion = conf
    return rep


def aggregate_shares(reports: Sequence[InputReport], kind: str = "fused") -> tuple[dict[str, float], float]:
    """The share of time per label over every input (each weighted by its seconds), and the seconds."""
    secs = np.zeros(len(LABELS))
    for r in reports:
        m = r.summary.get(kind)
        if m:
            secs += np.array([m["share"][lab] for lab in LABELS]) * m["seconds"]
    total = float(secs.sum())
    return ({lab: float(s / total) if total else 0.0 for lab, s in zip(LABELS, secs, strict=True)}, total)


def aggregate_confusion(reports: Sequence[InputReport]) -> tuple[np.ndarray | None, int]:
    """The summed confusion of the labelled inputs (None when no second is labelled), and how many."""
    labelled = [r.confusion for r in reports if r.confusion is not None]
    conf = sum(labelled, np.zeros((len(LABELS), len(LABELS)), np.int64))
    return (conf if labelled and conf.sum() else None), len(labelled)


# ------------------------------------------------------------------ HTML

CSS = """
body{font-family:"DejaVu Sans",system-ui,sans-serif;margin:2em auto;max-width:1040px;color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}
h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
.meta{color:#555;font-size:.9em} img{max-width:100%;height:auto;display:block;margin:.5em 0}
table{border-collapse:collapse;font-size:.88em;width:100%}
th,td{padding:.25em .5em;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{background:#f6f6f6} td.n{text-align:right;font-variant-numeric:tabular-nums}
.chip{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.3em;vertical-align:-1px}
.doubt{color:#8a6d1f} .err{color:#b03030} .bar{display:flex;height:14px;min-width:220px;background:#eee}
.bar span{display:block;height:100%} footer{margin-top:3em;color:#888;font-size:.8em}
"""


def page_names(ids: Sequence[str]) -> dict[str, str]:
    """A file name stem per input id, safe on every file system: only ``[A-Za-z0-9._-]``, never
    starting with a dot, unique compared case-blind; an id changed to get there (or that would
    collide) gets 8 hex digits of its sha256."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for ident in ids:
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", ident).lstrip(".")[:80] or "input"
        if stem != ident or stem.lower() in taken:
            stem = f"{stem}-{hashlib.sha256(ident.encode()).hexdigest()[:8]}"
        taken.add(stem.lower())
        out[ident] = stem
    return out


def href(path: str) -> str:
    return urllib.parse.quote(path)


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _img(png: bytes | None, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="{data_uri(png)}">' if png else ""


def _label(lab: str | None, p: float | None = None) -> str:
    if lab is None:
        return '<span class="meta">—</span>'
    chip = f'<span class="chip" style="background:{LABEL_COLORS.get(lab, "#ccc")}"></span>'
    return chip + _e(lab) + (f" {p:.0%}" if p is not None else "")


def _bar(share: Mapping[str, float]) -> str:
    parts = "".join(
        f'<span title="{lab} {share[lab]:.0%}" '
        f'style="width:{share[lab] * 100:.2f}%;background:{LABEL_COLORS[lab]}"></span>'
        for lab in LABELS
        if share.get(lab, 0) > 0
    )
    return f'<div class="bar">{parts}</div>'


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="generator" content="emodesk {_e(__version__)}"><title>{_e(title)}</title>'
        f"<style>{CSS}</style></head><body>\n{body}\n<footer>Written by emodesk {_e(__version__)} "
        "(emodesk report), on this machine; nothing was sent anywhere. The pictures are embedded "
        "and also written beside this page as PNG files.</footer></body></html>\n"
    )


def _span(rep: InputReport) -> str:
    return f"{rep.start:.1f}–{rep.end:.1f} s ({rep.end - rep.start:.1f} s)"


def input_html(rep: InputReport, pictures: Mapping[str, bytes], *, back: str | None = None) -> str:
    """The page of one input: its facts, timeline, shares, agreement with labels, transcript."""
    inp = rep.inp
    head = f'<p class="meta"><a href="{_e(back)}">← all inputs</a></p>' if back else ""
    body = [head, f"<h1>{_e(inp.id)}</h1>"]
    facts = [f"{_e(inp.kind)}: {_e(inp.source)}", f"status {_e(inp.status)}"]
    if inp.has_records:
        facts.append(_span(rep))
    body.append(f'<p class="meta">{" · ".join(facts)}</p>')
    if inp.error:
        body.append(f'<p class="err">{_e(inp.error)}</p>')
    if not inp.has_records:
        return _page(inp.id, "\n".join(body))
    top = rep.summary["fused"]["top"]
    body.append(
        f"<p>Most of the time the fused read-out was <b>{_label(top)}</b> "
        f"({rep.summary['fused']['share'][top]:.0%} of {rep.summary['fused']['seconds']:.0f} s).</p>"
        if top
        else "<p>No fused readings.</p>"
    )
    body += ["<h2>Timeline</h2>", _img(pictures.get("timeline"), "timeline of probabilities")]
    body.append(
        '<p class="meta">Each panel: every label\'s probability over media time (fused: what the app '
        "shows; face: the face seen most; voice and words: each utterance for its length). Below: "
        + ("the session's labels, " if rep.label_spans is not None else "")
        + "where speech was heard (amber: the recogniser doubted the words, which are then not fused).</p>"
    )
    body += ["<h2>Share of time per emotion</h2>", _img(pictures.get("shares"), "share of time per emotion")]
    ag = rep.agreement
    if rep.confusion is not None:
        body.append("<h2>Fused read-out against the labels</h2>")
        if ag:
            body.append(
                f"<p>Over the {ag['seconds']:.0f} labelled seconds: accuracy <b>{ag['accuracy']:.1%}</b>, "
                f"UAR (mean recall of the labels present) <b>{ag['uar']:.1%}</b>. One row per media "
                "second: the label in force at its middle against the fused read-out then.</p>"
            )
            body.append(_img(pictures.get("confusion"), "confusion of fused read-out against labels"))
        else:
            body.append("<p>No second has both a label and a fused reading.</p>")
    body.append(f"<h2>Transcript ({len(rep.utterances)} utterances)</h2>")
    if rep.utterances:
        rows = []
        for u in rep.utterances:
            v, w = u.get("voice"), u.get("words")
            vtop = _label(LABELS[int(np.argmax(v))], float(np.max(v))) if v is not None else _label(None)
            wtop = _label(LABELS[int(np.argmax(w))], float(np.max(w))) if w is not None else _label(None)
            said = _e(u["text"]) or '<span class="meta">(no words)</span>'
            if not u["trusted"]:
                why = _e(u.get("reason") or "")
                said = f'<span class="doubt" title="{why}">{said} (doubted, not fused)</span>'
            label = ""
            if rep.label_spans is not None:
                label = f"<td>{_label(u.get('label'))}</td>"
            rows.append(
                f'<tr><td class="n">{u["t0"]:.1f}–{u["t1"]:.1f}</td><td>{said}</td><td>{vtop}</td>'
                f"<td>{wtop}</td><td>{_label(u.get('fused_top'))}</td>{label}</tr>"
            )
        lab_h = "<th>label</th>" if rep.label_spans is not None else ""
        body.append(
            "<table><tr><th>s</th><th>words</th><th>voice</th><th>words' emotion</th><th>fused after</th>"
            f"{lab_h}</tr>{''.join(rows)}</table>"
        )
    else:
        body.append('<p class="meta">Nobody was heard.</p>')
    return _page(inp.id, "\n".join(body))


def run_html(
    reports: Sequence[InputReport], pictures: Mapping[str, bytes], links: Mapping[str, str], *, title: str
) -> str:
    """The page of many inputs: the aggregate, then one row per input linking to its page."""
    ok = [r for r in reports if r.inp.has_records]
    share, secs = aggregate_shares(ok)
    failed = len(reports) - len(ok)
    body = [f"<h1>{_e(title)}</h1>"]
    body.append(
        f'<p class="meta">{len(reports)} inputs, {len(ok)} with readings'
        + (f', <span class="err">{failed} failed</span>' if failed else "")
        + f" · {secs:,.0f} s of fused readings</p>"
    )
    if secs:
        top = max(share, key=lambda k: share[k])
        body.append(
            f"<p>Over all inputs the fused read-out was most often <b>{_label(top)}</b> "
            f"({share[top]:.0%}).</p>"
        )
    body += ["<h2>Share of time per emotion</h2>", _img(pictures.get("shares"), "share of time per emotion")]
    conf, n_labelled = aggregate_confusion(ok)
    if conf is not None:
        s = confusion_scores(conf)
        body.append("<h2>Fused read-out against the labels, all labelled inputs</h2>")
        body.append(
            f"<p>{int(conf.sum())} labelled seconds in {n_labelled} sessions: accuracy "
            f"<b>{float(s['accuracy']):.1%}</b>, UAR <b>{float(s['uar']):.1%}</b>.</p>"
        )
        body.append(_img(pictures.get("confusion"), "confusion of fused read-out against labels"))
    rows = []
    for r in reports:
        link = links.get(r.inp.id)
        name = f'<a href="{_e(link)}">{_e(r.inp.id)}</a>' if link else _e(r.inp.id)
        if r.inp.has_records:
            f = r.summary["fused"]
            ag = r.agreement
            rows.append(
                f'<tr><td>{name}</td><td>{_e(r.inp.status)}</td><td class="n">{r.end - r.start:.1f}</td>'
                f"<td>{_label(f['top'])}</td><td>{_bar(f['share'])}</td>"
                f'<td class="n">{len(r.utterances)}</td>'
                f'<td class="n">{"" if ag is None else format(ag["accuracy"], ".0%")}</td></tr>'
            )
        else:
            rows.append(
                f'<tr><td>{name}</td><td class="err">{_e(r.inp.status)}</td><td colspan="5" class="err">'
                f"{_e(r.inp.error or '')}</td></tr>"
            )
    body.append("<h2>Inputs</h2>")
    body.append(
        "<table><tr><th>input</th><th>status</th><th>s</th><th>most often</th><th>share of time (fused)</th>"
        f"<th>utterances</th><th>agrees with labels</th></tr>{''.join(rows)}</table>"
    )
    return _page(title, "\n".join(body))
