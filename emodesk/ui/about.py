"""The About dialog: every model's card (data, license in full, measured accuracy), the fusion
weights in use, where the models run and where the log file is."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

from emodesk import __version__
from emodesk.fusion.config import FusionConfig
from emodesk.inference.manifest import ModelManifest
from emodesk.types import SlotStatus


def _metrics(m: ModelManifest) -> list[str]:
    out = []
    for name, met in m.metrics.items():
        if not isinstance(met, dict):
            continue
        parts = []
        for key in ("accuracy", "uar", "macro_f1", "weighted_f1"):
            v = met.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                parts.append(f"{key.replace('_', '-')} {v:.3f}")
        if parts:
            out.append(f"{name}: {', '.join(parts)}")
    return out


def _obj(m: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    v = m.get(key)
    return v if isinstance(v, Mapping) else {}


def _fusion_origin(raw: Mapping[str, Any]) -> list[str]:
    """Where the weights came from: the optimizer, and for a retrained set its sessions and verdict."""
    e = html.escape
    out: list[str] = []
    opt = _obj(raw, "optimizer")
    if opt.get("rule"):
        out.append(f"<li><b>rule:</b> {e(str(opt['rule']))}</li>")
    elif opt.get("name"):
        out.append(f"<li><b>found by:</b> {e(str(opt['name']))}</li>")
    sessions = _obj(_obj(raw, "data"), "sessions")
    for side, name in (("adapt", "adapted on"), ("fusion", "weights searched on"), ("held_out", "judged on")):
        keys = sessions.get(side)
        if isinstance(keys, list) and keys:
            out.append(f"<li><b>{name}:</b> {len(keys)} session(s): {e(', '.join(map(str, keys)))}</li>")
    verdict = _obj(raw, "verdict")
    f1 = _obj(verdict, "held_out_macro_f1")
    before, after = f1.get("active"), f1.get("new")
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        parts = [
            f"{k} {before[k]:.3f} → {after[k]:.3f}"
            for k in after
            if isinstance(before.get(k), (int, float)) and isinstance(after.get(k), (int, float))
        ]
        ci = verdict.get("gain_ci95")
        gain = f"; fused gain 95% interval [{ci[0]:+.3f}, {ci[1]:+.3f}]" if isinstance(ci, list) else ""
        rows = verdict.get("held_out_rows")
        n = f" ({rows} held-out utterances)" if isinstance(rows, int) else ""
        out.append(f"<li><b>held-out macro-F1, before → after{n}:</b> {e(', '.join(parts))}{gain}</li>")
    return out


def about_html(
    manifests: Sequence[ModelManifest],
    fusion: FusionConfig | None,
    statuses: Sequence[SlotStatus],
    log_path: Path | None,
) -> str:
    """The dialog's text, as HTML (a test reads it; nothing in it is cut)."""
    e = html.escape
    rows = [
        f"<h2>emodesk {e(__version__)}</h2>",
        "<p>Everything runs on this machine; nothing leaves it.</p>",
    ]
    rows.append(f"<p><b>Log file:</b> {e(str(log_path)) if log_path else 'not set up'}</p>")
    rows.append("<h3>Where the models run</h3><ul>")
    rows += [f"<li><b>{e(s.slot)}</b>: {e(s.message)}</li>" for s in statuses]
    rows.append("</ul><h3>Fusion weights in use</h3>")
    if fusion is None:
        rows.append("<p>none yet (the models are loading)</p>")
    else:
        where = str(fusion.path) if fusion.path is not None else "equal weights (no fusion.json)"
        how = {"weighted-sum": "weighted sum", "log-linear": "weighted product with class biases"}
        rows.append(f"<p>{e(where)}; rule: {e(how[fusion.rule.name])}</p><ul>")
        rows += [f"<li>{e(m)}: {fusion.scalar_weight(m):.3f}</li>" for m in fusion.members]
        rows.append("</ul>")
        origin = _fusion_origin(fusion.raw)
        if origin:
            rows += ["<ul>", *origin, "</ul>"]
        rows += [f"<p style='color:#b36b00'>{e(w)}</p>" for w in fusion.warnings]
    rows.append("<h3>Models</h3>")
    for m in sorted(manifests, key=lambda m: (m.modality, m.id)):
        src = m.source if isinstance(m.source, dict) else {}
        data = src.get("data") or src.get("dataset") or src.get("datasets")
        rows.append(f"<h4>{e(m.id)} <span style='color:#777'>({e(m.modality)})</span></h4><ul>")
        if data:
            rows.append(f"<li><b>data:</b> {e(str(data))}</li>")
        rows.append(f"<li><b>license:</b> {e(m.license) or 'not stated'}</li>")
        if m.usage:
            rows.append(f"<li style='color:#b36b00'><b>restriction:</b> {e(m.usage)}</li>")
        for line in _metrics(m):
            rows.append(f"<li><b>measured:</b> {e(line)}</li>")
        rows.append("</ul>")
    return "".join(rows)


class AboutDialog(QDialog):
    def __init__(self, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About emodesk")
        self.resize(640, 520)
        lay = QVBoxLayout(self)
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(False)
        self.browser.setHtml(text)
        lay.addWidget(self.browser)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
