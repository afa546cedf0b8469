"""A prior toward neutral for the voice members, chosen on validation only.

    python -m emodesk.lab.studies.voice_calm.choose [--write] \
        [--json emodesk/lab/studies/voice_calm/results.json]

Real conversation is mostly neutral, and acted training corpora are not: a voice head trained on
RAVDESS puts angry or another high-arousal label on top of much calm speech from elsewhere
(URDU's neutral clips). The correction is a log-prior offset ``b`` on neutral: every member's
probabilities are multiplied by ``exp(b)`` on neutral and renormalised
(``postprocessing.label_bias``, applied by the members' scorer). For each installed voice member
the offset is the largest on the grid that costs at most :data:`MAX_UAR_LOSS` of UAR on RAVDESS
actors 19–20 (the trainer's validation speakers, each replayed as one live session, as
``emodesk eval`` does); the test actors, the office simulation and URDU are never read here.
``--write`` stores the chosen offsets in the members' manifests (``models/``), whose test
metrics must then be recorded again with the ``emodesk eval`` commands of ``models/README.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

GRID = tuple(round(float(b), 2) for b in np.arange(0.0, 3.01, 0.25))
MAX_UAR_LOSS = 0.01
#: the labels a calm speaker should not get, wider than eval's "high arousal" (angry, fear, surprise)
NOT_CALM = ("angry", "fear", "surprise", "happy", "disgust")


def shifted(p: np.ndarray, b: float, neutral: int) -> np.ndarray:
    q = p.copy()
    q[:, neutral] *= np.exp(b)
    return q / q.sum(axis=1, keepdims=True)


def main(argv: list[str] | None = None) -> int:
    from emodesk.evaluation.datasets import load_split
    from emodesk.evaluation.evaluate import load_scorer, score_rows
    from emodesk.evaluation.metrics import compute_metrics
    from emodesk.inference.manifest import ManifestDraft
    from emodesk.inference.registry import installed_manifests
    from emodesk.labels import LABELS
    from emodesk.resources import datasets_dir, shipped_models_dir

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="the shared datasets folder")
    ap.add_argument("--write", action="store_true", help="store the offsets in the shipped manifests")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    rows = load_split((a.data or datasets_dir()) / "speech" / "ravdess", "val")
    neutral = LABELS.index("neutral")
    y = np.array([r.label for r in rows])
    calm = y == neutral
    out: dict[str, Any] = {"val_rows": len(rows), "val_neutral_or_calm": int(calm.sum()), "members": {}}
    for man in sorted(installed_manifests([shipped_models_dir()]).values(), key=lambda m: m.id):
        if man.modality != "voice":
            continue
        scorer = load_scorer(man, device="cpu")
        setattr(scorer, "label_bias", None)  # noqa: B010  (choose from the member's own outputs)
        p = score_rows("voice", rows, scorer)
        curve = []
        for b in GRID:
            q = shifted(p, b, neutral)
            m = compute_metrics(y, q, bootstrap=0)
            top = q[calm].argmax(axis=1)
            curve.append(
                {
                    "bias": b,
                    "uar": m["uar"],
                    "accuracy": m["accuracy"],
                    "calm_as_angry": float(np.mean(top == LABELS.index("angry"))),
                    "calm_as_not_calm": float(
                        np.mean(np.isin(top, [LABELS.index(x) for x in NOT_CALM]))
                    ),
                    "neutral_on_top_of_others": float(np.mean(q[~calm].argmax(axis=1) == neutral)),
                }
            )
        base = curve[0]["uar"]
        chosen = max(c["bias"] for c in curve if base - c["uar"] <= MAX_UAR_LOSS)
        out["members"][man.id] = {"chosen_bias": chosen, "curve": curve}
        at = next(c for c in curve if c["bias"] == chosen)
        print(
            f"{man.id}: neutral offset {chosen} (val UAR {base:.3f} -> {at['uar']:.3f}, "
            f"non-neutral clips read neutral {curve[0]['neutral_on_top_of_others']:.3f} -> "
            f"{at['neutral_on_top_of_others']:.3f})",
            file=sys.stderr,
        )
        if a.write:
            draft = ManifestDraft.from_file(man.path)
            post = dict(draft.postprocessing or {})
            post["label_bias"] = {"neutral": chosen} if chosen else {}
            post["label_bias_source"] = (
                "python -m emodesk.lab.studies.voice_calm.choose --write: the largest log-prior offset on "
                f"neutral costing <= {MAX_UAR_LOSS:.0%} UAR on RAVDESS actors 19-20 (validation)"
            )
            replace(draft, postprocessing=post).write(man.path.parent / man.file)
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
