"""Which fusion rule and which Aquila variant to ship, chosen on validation rows only (issue 21).

Every candidate — the rule (``weighted-sum`` or ``log-linear``), scalar or per-class weights, the
optimizer (the faithful ``ao`` or ``ao-levy-ls``) and the objective's likelihood weight
(:data:`NLL_WEIGHTS`) — is judged by 5-fold cross-validation *inside* the paired validation rows
(stratified by label, seeded): searched on four folds at the default budget (30 agents, 100
iterations, penalty 0.01), scored by macro-F1 on the fifth. The best mean is then searched once
more on all validation rows, and that ``fusion.json`` is written. Only after that, with ``--test``,
the test rows are read once: the written fusion, equal weights and a stacking logistic regression
fitted on the validation rows (the comparison study's reference) are scored on them (``emodesk
fusion eval`` measures the file alone).

    python -m emodesk.lab.studies.fusion_rule.choose --manifest build/fusion/val-live.csv \\
        --cache build/fusion/scores.npz --out models/fusion.json \\
        --json emodesk/lab/studies/fusion_rule/choice.json --test build/fusion/test-live.csv
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from emodesk.evaluation.metrics import batch_confusions, confusion_scores
from emodesk.fusion.config import write_fusion_json
from emodesk.fusion.paired import load_paired_manifest
from emodesk.fusion.search import (
    FusionProblem,
    MemberScores,
    ScoreCache,
    fusion_document,
    optimize_weights,
    score_paired,
)
from emodesk.inference.members import MEMBER_MODALITIES
from emodesk.inference.registry import installed_manifests

FORMS = (("weighted-sum", False), ("weighted-sum", True), ("log-linear", False), ("log-linear", True))
OPTIMIZERS = ("ao", "ao-levy-ls")
NLL_WEIGHTS = (0.0, 0.03, 0.1, 0.3)  # the objective's likelihood term (emodesk/fusion/search.py)


def folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """A fold index per row, each label spread evenly over the ``k`` folds."""
    rng = np.random.default_rng(seed)
    out = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        out[idx] = np.arange(len(idx)) % k
    return out


def cv_score(
    s: MemberScores, rule: str, per_class: bool, optimizer: str, k: int, seed: int, nll_weight: float = 0.0
) -> list[float]:
    """Held-out macro-F1 of each fold."""
    fold = folds(s.y, k, seed)
    scores = []
    for f in range(k):
        train, held = s.rows(np.flatnonzero(fold != f)), s.rows(np.flatnonzero(fold == f))
        problem = FusionProblem(train, rule=rule, per_class=per_class, nll_weight=nll_weight)
        res, _ = optimize_weights(problem, optimizer=optimizer)
        test = FusionProblem(held, rule=rule, per_class=per_class)
        pred = np.argmax(test.fused(res.x[None]), axis=2)
        scores.append(float(confusion_scores(batch_confusions(test.y, pred))["macro_f1"][0]))
    return scores


def _test_once(
    val: MemberScores, test: MemberScores, problem: FusionProblem, x: np.ndarray
) -> dict[str, Any]:
    """Macro-F1 [95% bootstrap] on the test rows of the chosen fusion, equal weights and stacking."""
    from emodesk.evaluation.metrics import compute_metrics
    from emodesk.fusion.search import fused_probs
    from emodesk.lab.studies.fusion_comparison.methods import fit_stacking

    candidates = {
        "chosen": fused_probs(test, problem.weight_dict(x), problem.rule_of(x)),
        "equal_weights": fused_probs(test, None),
        "stacking": fit_stacking(val).predict(test),
    }
    out = {}
    for name, p in candidates.items():
        m = compute_metrics(test.y, p, bootstrap=1000)
        out[name] = {"macro_f1": m["macro_f1"], "ci95": m["ci95"]["macro_f1"], "n": m["n"]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, required=True, help="paired validation rows")
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="the fusion.json to write")
    ap.add_argument("--json", type=Path, required=True, help="every candidate's fold scores")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test", type=Path, help="paired test rows, read once after the choice")
    args = ap.parse_args(argv)
    members = sorted(
        (m for m in installed_manifests().values() if m.modality in MEMBER_MODALITIES), key=lambda m: m.id
    )
    rows = load_paired_manifest(args.manifest)
    s = score_paired(rows, members, cache=ScoreCache(args.cache), device="cpu")
    results: list[dict[str, Any]] = []
    for rule, per_class in FORMS:
        for opt in OPTIMIZERS:
            for lam in NLL_WEIGHTS:
                f1 = cv_score(s, rule, per_class, opt, args.folds, args.seed, lam)
                results.append(
                    {
                        "rule": rule,
                        "per_class": per_class,
                        "optimizer": opt,
                        "nll_weight": lam,
                        "folds": f1,
                        "mean": float(np.mean(f1)),
                    }
                )
                print(
                    f"{rule:13s} per-class={per_class!s:5s} {opt:11s} nll {lam:<4g} CV macro-F1 "
                    f"{np.mean(f1):.4f} ± {np.std(f1):.4f}",
                    file=sys.stderr,
                    flush=True,
                )
    best = max(results, key=lambda r: r["mean"])
    problem = FusionProblem(s, rule=best["rule"], per_class=best["per_class"], nll_weight=best["nll_weight"])
    res, weights = optimize_weights(problem, optimizer=best["optimizer"], seed=args.seed)
    doc = fusion_document(
        problem, res, weights, optimizer=best["optimizer"], manifest=args.manifest, rows=len(rows)
    )
    doc["optimizer"]["chosen_by"] = (
        f"{args.folds}-fold cross-validation inside the validation rows (seed {args.seed}), mean macro-F1 "
        f"{best['mean']:.4f}: emodesk/lab/studies/fusion_rule/choice.json"
    )
    write_fusion_json(args.out, doc)
    test_once = None
    if args.test is not None:
        test = score_paired(load_paired_manifest(args.test), members, cache=ScoreCache(args.cache))
        test_once = _test_once(s, test, problem, res.x)
    args.json.write_text(
        json.dumps(
            {
                "manifest": args.manifest.name,
                "manifest_sha256": hashlib.sha256(args.manifest.read_bytes()).hexdigest(),
                "rows": len(rows),
                "members": [m.id for m in members],
                "folds": args.folds,
                "seed": args.seed,
                "candidates": results,
                "chosen": {k: best[k] for k in ("rule", "per_class", "optimizer", "nll_weight", "mean")},
                "fit_on_all_val": {
                    "objective": float(res.f),
                    "macro_f1": float(problem.metric(res.x[None])[0]),
                },
                "test_once": test_once,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(
        f"chose {best['rule']} (per-class {best['per_class']}, NLL weight {best['nll_weight']:g}) by "
        f"{best['optimizer']}; wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
