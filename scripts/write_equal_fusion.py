"""Write ``models/fusion.json`` with equal weights per modality over the shipped members.

A baseline (and the fallback when no paired data is at hand); the shipped
weights come from ``emodesk fusion optimize`` (README, "Fusion weights").
Rerun after re-exporting any member (its sha256 is recorded).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

from emodesk import __version__
from emodesk.inference.registry import installed_manifests
from emodesk.labels import LABELS
from emodesk.pipeline.models import MEMBER_MODALITIES

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", type=Path, default=REPO / "models")
    args = ap.parse_args()
    ms = [m for m in installed_manifests([args.models]).values() if m.modality in MEMBER_MODALITIES]
    doc = {
        "version": 1,
        "classes": list(LABELS),
        "members": [
            {"id": m.id, "sha256": m.sha256, "modality": m.modality} for m in sorted(ms, key=lambda m: m.id)
        ],
        # each modality weighs the same in total, shared equally by its members
        "weights": {
            m.id: 1.0 / sum(o.modality == m.modality for o in ms) for m in sorted(ms, key=lambda m: m.id)
        },
        "optimizer": {"name": "equal-weights", "params": {}, "seed": None, "evaluations": 0},
        "objective": {"name": "none", "value": None},
        "data": {"manifest": None, "sha256": None, "rows": 0},
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "emodesk_version": __version__,
    }
    out = args.models / "fusion.json"
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}: members {[m['id'] for m in doc['members']]}")


if __name__ == "__main__":
    main()
