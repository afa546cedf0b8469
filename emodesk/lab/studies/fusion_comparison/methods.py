"""Does AO-tuned fusion pay? Every fusion method fitted on validation rows, measured on test rows.

Methods, all fitted on the validation rows only and scored on the test rows:

- ``best-single``: the member with the best validation macro-F1, alone;
- ``equal-weights``: one weight per member (docs/formats.md's equal weights);
- ``equal-per-modality``: each modality weighs the same, shared by its members;
- ``ao`` (the faithful Aquila Optimizer), ``ao-levy-ls`` (its improved variant),
  ``de`` (scipy's differential evolution), ``pso``, ``random``: the same
  :class:`~emodesk.fusion.search.FusionProblem` at the same evaluation budget;
- ``ao-per-class``: AO on one weight per member and class (same budget);
- ``stacking``: multinomial logistic regression on the concatenated member
  probabilities and presence flags, its L2 strength picked by 5-fold
  cross-validation on the validation rows.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from emodesk.errors import EmodeskError
from emodesk.evaluation.metrics import compute_metrics
from emodesk.fusion.search import (
    DEFAULT_AGENTS,
    DEFAULT_ITERATIONS,
    DEFAULT_PENALTY,
    FusionProblem,
    MemberScores,
    fused_probs,
    optimize_weights,
)
from emodesk.labels import N_LABELS

SEARCHERS = ("ao", "ao-levy-ls", "de", "pso", "random")
METHODS = ("best-single", "equal-weights", "equal-per-modality", *SEARCHERS, "ao-per-class", "stacking")
STACKING_C = (0.01, 0.1, 1.0, 10.0, 100.0)


def _features(s: MemberScores) -> np.ndarray:
    present = s.present.T.astype(np.float64)  # (n, m)
    probs = np.nan_to_num(s.P, nan=0.0).transpose(1, 0, 2).reshape(len(s.y), -1)
    return np.hstack([probs, present, np.ones((len(s.y), 1))])


@dataclass(frozen=True)
class Stacking:
    """Softmax regression ``p = softmax(F @ B)`` over :func:`_features`."""

    B: np.ndarray
    C: float

    def predict(self, s: MemberScores) -> np.ndarray:
        z = _features(s) @ self.B
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


def _fit_softmax(F: np.ndarray, y: np.ndarray, C: float) -> np.ndarray:
    try:
        from scipy.optimize import minimize as sp_minimize
    except ImportError:
        raise EmodeskError("the stacking baseline needs scipy: pip install scipy") from None
    n, d = F.shape
    Y = np.eye(N_LABELS)[y]
    reg = np.ones((d, 1))
    reg[-1] = 0  # no penalty on the bias

    def f(b: np.ndarray) -> tuple[float, np.ndarray]:
        B = b.reshape(d, N_LABELS)
        z = F @ B
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = -(Y * logp).sum() / n + 0.5 / (C * n) * float((reg * B * B).sum())
        g = F.T @ (np.exp(logp) - Y) / n + (reg * B) / (C * n)
        return loss, g.ravel()

    res = sp_minimize(f, np.zeros(d * N_LABELS), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return np.asarray(res.x).reshape(d, N_LABELS)


def fit_stacking(val: MemberScores, *, seed: int = 0, folds: int = 5) -> Stacking:
    """Logistic regression on the validation rows; C by ``folds``-fold CV macro-F1."""
    F, y = _features(val), val.y
    order = np.random.default_rng(seed).permutation(len(y))
    parts = np.array_split(order, folds)
    best_c, best = STACKING_C[0], -1.0
    for C in STACKING_C:
        pred = np.empty(len(y), dtype=np.int64)
        for k in range(folds):
            test = parts[k]
            train = np.concatenate([parts[j] for j in range(folds) if j != k])
            pred[test] = np.argmax(F[test] @ _fit_softmax(F[train], y[train], C), axis=1)
        score = compute_metrics(y, np.eye(N_LABELS)[pred], bootstrap=0)["macro_f1"]
        if score > best + 1e-12:
            best_c, best = C, score
    return Stacking(_fit_softmax(F, y, best_c), best_c)


def _metrics(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    rows = ~np.isnan(probs).any(axis=1)
    m = compute_metrics(y[rows], probs[rows], bootstrap=0)
    return {k: float(m[k]) for k in ("accuracy", "uar", "macro_f1", "weighted_f1")}


def equal_per_modality(s: MemberScores) -> dict[str, float]:
    counts = {mod: s.modalities.count(mod) for mod in set(s.modalities)}
    return {m: 1.0 / counts[mod] for m, mod in zip(s.ids, s.modalities, strict=True)}


def compare_methods(
    val: MemberScores,
    test: MemberScores,
    *,
    seed: int = 0,
    agents: int = DEFAULT_AGENTS,
    iterations: int = DEFAULT_ITERATIONS,
    penalty: float = DEFAULT_PENALTY,
    objective: str = "macro_f1",
    methods: Sequence[str] = METHODS,
) -> dict[str, dict[str, Any]]:
    """``{method: {"test": metrics, "val": metrics, "evaluations", "seconds", "weights"}}`` for one seed."""
    if val.ids != test.ids:
        raise ValueError(f"validation members {val.ids} differ from test members {test.ids}")
    if unknown := [m for m in methods if m not in METHODS]:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}")
    out: dict[str, dict[str, Any]] = {}

    def record(name: str, weights: Mapping[str, Any] | None, seconds: float = 0.0, evals: int = 0) -> None:
        out[name] = {
            "val": _metrics(val.y, fused_probs(val, weights)),
            "test": _metrics(test.y, fused_probs(test, weights)),
            "weights": None if weights is None else dict(weights),
            "seconds": seconds,
            "evaluations": evals,
        }

    if "best-single" in methods:
        pres = val.present
        val_f1 = [
            compute_metrics(val.y[pres[i]], val.P[i, pres[i]], bootstrap=0)["macro_f1"]
            if pres[i].any()
            else -1
            for i in range(len(val.ids))
        ]
        bi = int(np.argmax(val_f1))
        record("best-single", {val.ids[bi]: 1.0})
        # measured where the member is present (elsewhere the fusion would fall back to the others)
        keep = test.present[bi]
        out["best-single"]["test"] = _metrics(test.y[keep], test.P[bi, keep])
        best = val.ids[bi]
        out["best-single"]["member"] = best
    if "equal-weights" in methods:
        record("equal-weights", None)
    if "equal-per-modality" in methods:
        record("equal-per-modality", equal_per_modality(val))
    problem = FusionProblem(val, objective=objective, penalty=penalty)
    for name in SEARCHERS:
        if name not in methods:
            continue
        res, weights = optimize_weights(
            problem, optimizer=name, agents=agents, iterations=iterations, seed=seed
        )
        record(name, weights, res.seconds, res.n_evals)
        out[name]["val_objective"] = float(res.f)
    if "ao-per-class" in methods:
        pc = FusionProblem(val, objective=objective, penalty=penalty, per_class=True)
        res, weights = optimize_weights(pc, optimizer="ao", agents=agents, iterations=iterations, seed=seed)
        record("ao-per-class", weights, res.seconds, res.n_evals)
        out["ao-per-class"]["val_objective"] = float(res.f)
    if "stacking" in methods:
        t0 = time.perf_counter()
        model = fit_stacking(val, seed=seed)
        seconds = time.perf_counter() - t0
        out["stacking"] = {
            "val": _metrics(val.y, model.predict(val)),
            "test": _metrics(test.y, model.predict(test)),
            "weights": None,
            "C": model.C,
            "seconds": seconds,
            "evaluations": 0,
        }
    return out


def summarise(runs: Sequence[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Mean and standard deviation over seeds of each method's test metrics."""
    out: dict[str, dict[str, Any]] = {}
    for method in runs[0]:
        entry: dict[str, Any] = {"seeds": len(runs)}
        for key in ("macro_f1", "accuracy", "uar", "weighted_f1"):
            v = np.array([r[method]["test"][key] for r in runs])
            entry[key] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
        vf = np.array([r[method]["val"]["macro_f1"] for r in runs])
        entry["val_macro_f1"] = {
            "mean": float(vf.mean()),
            "std": float(vf.std(ddof=1)) if len(vf) > 1 else 0.0,
        }
        entry["evaluations"] = int(np.median([r[method]["evaluations"] for r in runs]))
        entry["seconds"] = float(np.median([r[method]["seconds"] for r in runs]))
        out[method] = entry
    return out
