"""How much of each label each side of a retrain holds, and what a missing label means.

Per side (adapt, fusion, held out) and label: labelled seconds (from
``labels.jsonl``), labelled utterances and the face crops among them (the
exported rows). A label absent from a side is a warning with its consequence:
absent from training, no member can learn it from your sessions; absent from
the held-out sessions, the verdict says nothing about it (the per-class
metrics cover only the labels present).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from emodesk.fusion.paired import PairedRow
from emodesk.lab.retrain.split import SIDES
from emodesk.labels import LABELS


def labelled_seconds(folder: Path) -> dict[str, float]:
    """Seconds per label: each change holds until the next one or the session's end."""
    from emodesk.recording.format import read_session_json
    from emodesk.recording.session import read_labels

    changes = read_labels(folder)
    if not changes:
        return {}
    try:
        doc = read_session_json(folder)
    except (OSError, ValueError):
        doc = {}
    end = doc.get("end_t") if isinstance(doc.get("end_t"), (int, float)) else None
    if end is None:
        end = max(float(c["t"]) for c in changes)
    out: dict[str, float] = {}
    for c, nxt in zip(changes, [*changes[1:], None], strict=True):
        label = c.get("label")
        t1 = float(nxt["t"]) if nxt is not None else float(end)
        if label and t1 > float(c["t"]):
            out[label] = out.get(label, 0.0) + t1 - float(c["t"])
    return out


@dataclass
class Coverage:
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)  # side -> label -> s
    utterances: dict[str, dict[str, int]] = field(default_factory=dict)
    face_crops: dict[str, dict[str, int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "seconds": {s: {k: round(v, 2) for k, v in d.items()} for s, d in self.seconds.items()},
            "utterances": self.utterances,
            "face_crops": self.face_crops,
            "warnings": self.warnings,
        }

    def table(self) -> str:
        """Label × side: utterances (face crops) / seconds."""
        head = f"{'label':10s}" + "".join(f"{s:>22s}" for s in SIDES)
        lines = [head]
        for lab in LABELS:
            cells = []
            for s in SIDES:
                u = self.utterances.get(s, {}).get(lab, 0)
                f = self.face_crops.get(s, {}).get(lab, 0)
                sec = self.seconds.get(s, {}).get(lab, 0.0)
                cells.append(f"{u:4d} utt ({f:3d} face) {sec:5.0f} s")
            lines.append(f"{lab:10s}" + "".join(f"{c:>22s}" for c in cells))
        return "\n".join(lines)


def coverage(
    sessions: Mapping[str, Path],
    rows: Mapping[str, Sequence[PairedRow]],
    sides: Mapping[str, str],
) -> Coverage:
    """Coverage of the sessions in ``sides`` (``sessions``: key -> folder, ``rows``: key -> rows)."""
    cov = Coverage({s: {} for s in SIDES}, {s: {} for s in SIDES}, {s: {} for s in SIDES})
    for key, side in sides.items():
        for lab, sec in labelled_seconds(sessions[key]).items():
            cov.seconds[side][lab] = cov.seconds[side].get(lab, 0.0) + sec
        for r in rows.get(key, ()):
            lab = LABELS[r.label]
            cov.utterances[side][lab] = cov.utterances[side].get(lab, 0) + 1
            if r.face:
                cov.face_crops[side][lab] = cov.face_crops[side].get(lab, 0) + 1
    present = {s: {lab for lab, n in cov.utterances[s].items() if n} for s in SIDES}
    everywhere = set().union(*present.values())
    trained = present["adapt"] | present["fusion"]
    for lab in LABELS:
        if lab not in everywhere:
            cov.warnings.append(f"{lab}: in no session (nothing here can learn or judge it)")
            continue
        if lab not in present["adapt"]:
            cov.warnings.append(
                f"{lab}: not in the adapt sessions (the adapted output layers learn nothing of it from you)"
            )
        if lab not in present["held_out"]:
            cov.warnings.append(
                f"{lab}: not in the held-out sessions (the verdict says nothing about it; "
                "per-class metrics cover only the labels present)"
            )
        elif lab not in trained:
            cov.warnings.append(f"{lab}: only in the held-out sessions (no training session has it)")
    return cov
