"""Which face members the live app fuses, chosen on FER+ validation only.

    python -m emodesk.lab.studies.face_ferplus.choose_members MODEL.onnx [MODEL.onnx ...] \
        [--json emodesk/lab/studies/face_ferplus/members.json]

Every candidate (its manifest beside it) scores the FER+ **val** faces (a seeded 10 % of FER-2013's
training images that no member trained on; majority labels, rows without one left out) through the
app's own path (``FaceExpressionScorer.score_crops``), and every non-empty subset is fused with the
live rule at equal weights (:func:`emodesk.fusion.fuse.fuse`, as ``emodesk eval`` reports the
modality). The subset with the best val accuracy is the one to ship; a subset within 0.1 points of
it with fewer members is preferred (each member costs time on every frame). The test split is never
read here.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emodesk.lab.paths import REPO

TIE = 0.001


def score_members(paths: Sequence[Path], ferplus: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each candidate's (n, 7) probabilities on the FER+ val faces, and the majority labels."""
    import cv2

    from emodesk.errors import InputError
    from emodesk.evaluation.datasets import load_rows
    from emodesk.inference.face_scorer import FaceExpressionScorer
    from emodesk.inference.manifest import ModelManifest
    from emodesk.inference.runtime import OnnxModel

    rows = load_rows(ferplus, column="path", split="val")
    if not rows:
        raise InputError(f"{ferplus}: no FER+ val rows")
    faces = []
    for r in rows:
        im = cv2.imread(str(r.x), cv2.IMREAD_GRAYSCALE)
        if im is None:
            raise InputError(f"unreadable image {r.x}")
        faces.append(im)
    y = np.asarray([r.label for r in rows], np.int64)
    probs: dict[str, np.ndarray] = {}
    for p in paths:
        scorer = FaceExpressionScorer(OnnxModel(ModelManifest.load(p.with_suffix(".json")), device="cpu"))
        probs[scorer.id] = np.concatenate(
            [scorer.score_crops(faces[i : i + 512]) for i in range(0, len(faces), 512)]
        )
        print(
            f"{scorer.id}: val accuracy {float((probs[scorer.id].argmax(1) == y).mean()):.4f}",
            file=sys.stderr,
        )
    return probs, y


def subsets(probs: dict[str, np.ndarray], y: np.ndarray) -> list[dict[str, Any]]:
    """Equal-weight fused val accuracy of every non-empty subset, best first."""
    from emodesk.evaluation.metrics import compute_metrics
    from emodesk.fusion.fuse import fuse

    ids = sorted(probs)
    out = []
    for k in range(1, len(ids) + 1):
        for members in itertools.combinations(ids, k):
            fused = np.array([fuse({m: probs[m][i] for m in members}) for i in range(len(y))])
            m = compute_metrics(y, fused)
            out.append(
                {
                    "members": list(members),
                    "accuracy": m["accuracy"],
                    "ci95": m["ci95"]["accuracy"],
                    "uar": m["uar"],
                }
            )
    return sorted(out, key=lambda r: (-r["accuracy"], len(r["members"])))


def choose(table: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The best subset, or a smaller one within :data:`TIE` of it."""
    best = table[0]["accuracy"]
    close = [r for r in table if r["accuracy"] >= best - TIE]
    return min(close, key=lambda r: (len(r["members"]), -r["accuracy"]))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", type=Path, help="candidate face members (.onnx, manifest beside)")
    ap.add_argument("--ferplus", type=Path, default=REPO.parent / "shared" / "datasets" / "faces" / "ferplus")
    ap.add_argument("--json", type=Path, help="write the table and the choice")
    args = ap.parse_args(argv)
    probs, y = score_members(args.models, args.ferplus)
    table = subsets(probs, y)
    pick = choose(table)
    print("| members | FER+ val accuracy | UAR |\n|---|---|---|")
    for r in table:
        lo, hi = r["ci95"]
        mark = " **(chosen)**" if r is pick else ""
        print(
            f"| {', '.join(r['members'])}{mark} | {r['accuracy']:.1%} [{lo:.1%}, {hi:.1%}] | {r['uar']:.1%} |"
        )
    if args.json:
        doc = {
            "n": len(y),
            "split": "FER+ val (majority labels)",
            "rule": f"best equal-weight fused accuracy; fewer members within {TIE:.1%}",
            "command": "python -m emodesk.lab.studies.face_ferplus.choose_members "
            + " ".join(str(p) for p in args.models),
            "chosen": pick["members"],
            "table": table,
        }
        args.json.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
