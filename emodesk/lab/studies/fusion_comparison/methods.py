"""Does AO-tuned fusion pay? Every fusion method fitted on validation rows, measured on test rows.

Methods, all fitted on the validation rows only and scored on every test set given:

- ``best-single``: the member with the best validation macro-F1, alone (scored where it is present);
- ``equal-weights``: one weight per member, the weighted sum (docs/formats.md's equal weights);
- ``ao`` (the faithful Aquila Optimizer), ``ao-levy-ls`` (its variant with a Lévy local search),
  ``de`` (scipy's differential evolution), ``pso``, ``random``, ``cmaes``: the same
  :class:`~emodesk.fusion.search.FusionProblem` — the shipped rule (log-linear, a weight per member
  and class, seven class biases) — at the same evaluation budget;
- ``ao-weighted-sum``: AO on one weight per member of the weighted sum (the rule shipped before);
- ``stacking``: multinomial logistic regression on the concatenated member
  probabilities and presence flags, its L2 strength picked by 5-fold
  cross-validation on the validation rows (the upper reference).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from emodesk.errors import EmodeskError
from emodesk.evaluation.metrics import compute_metrics
from emodesk.fusion.fuse import WEIGHTED_SUM, Rule
from emodesk.fusion.search import (
    DEFAULT_AGENTS,
    DEFAULT_ITERATIONS,
    DEFAULT_NLL_WEIGHT,
    DEFAULT_PENALTY,
    FusionProblem,
    MemberScores,
    convergence_curve,
    fused_probs,
    optimize_weights,
)
from emodesk.labels import N_LABELS

SEARCHERS = ("ao", "ao-levy-ls", "de", "pso", "random", "cmaes")
METHODS = ("best-single", "equal-weights", *SEARCHERS, "ao-weighted-sum", "stacking")
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


def without(s: MemberScores, modality: str) -> MemberScores:
    """Every row of ``s`` with ``modality``'s members absent (their scores NaN)."""
    P = s.P.copy()
    P[[i for i, m in enumerate(s.modalities) if m == modality]] = np.nan
    return MemberScores(s.ids, s.modalities, s.sha256, P, s.y)


def validation_f1(val: MemberScores) -> list[float]:
    """Each member's validation macro-F1 over the rows it scored (−1 if none)."""
    pres = val.present
    return [
        compute_metrics(val.y[pres[i]], val.P[i, pres[i]], bootstrap=0)["macro_f1"] if pres[i].any() else -1.0
        for i in range(len(val.ids))
    ]


Predictor = Callable[[MemberScores], np.ndarray]


def compare_methods(
    val: MemberScores,
    tests: Mapping[str, MemberScores],
    *,
    seed: int = 0,
    agents: int = DEFAULT_AGENTS,
    iterations: int = DEFAULT_ITERATIONS,
    penalty: float = DEFAULT_PENALTY,
    nll_weight: float = DEFAULT_NLL_WEIGHT,
    objective: str = "macro_f1",
    rule: str = "log-linear",
    per_class: bool = True,
    methods: Sequence[str] = METHODS,
    one_missing_on: str | None = None,
) -> dict[str, dict[str, Any]]:
    """``{method: {"val": metrics, <test name>: metrics, …, "evaluations", "seconds", …}}`` for one
    seed; searchers also carry their best-so-far ``curve`` (:func:`convergence_curve`). With
    ``one_missing_on`` (a name in ``tests``), each method also gets ``one_missing``
    (:func:`one_missing` on that test set)."""
    for name, t in tests.items():
        if val.ids != t.ids:
            raise ValueError(f"validation members {val.ids} differ from {name} members {t.ids}")
    if unknown := [m for m in methods if m not in METHODS]:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}")
    out: dict[str, dict[str, Any]] = {}
    predictors: dict[str, Predictor] = {}

    def record(name: str, predict: Predictor, **extra: Any) -> None:
        predictors[name] = predict
        out[name] = {"val": _metrics(val.y, predict(val))}
        out[name].update({t: _metrics(s.y, predict(s)) for t, s in tests.items()})
        out[name].update({"seconds": 0.0, "evaluations": 0, **extra})

    def fused(weights: Mapping[str, Any] | None, r: Rule = WEIGHTED_SUM) -> Predictor:
        return lambda s: fused_probs(s, weights, r)

    if "best-single" in methods:
        bi = int(np.argmax(validation_f1(val)))
        # scored where the member is present (elsewhere there is nothing to score)
        record("best-single", lambda s: s.P[bi], member=val.ids[bi])
    if "equal-weights" in methods:
        record("equal-weights", fused(None))
    searches = [(n, rule, per_class, n) for n in SEARCHERS if n in methods]
    if "ao-weighted-sum" in methods:
        searches.append(("ao-weighted-sum", "weighted-sum", False, "ao"))
    for name, r, pc, optimizer in searches:
        problem = FusionProblem(
            val, objective=objective, penalty=penalty, rule=r, per_class=pc, nll_weight=nll_weight
        )
        res, weights = optimize_weights(
            problem, optimizer=optimizer, agents=agents, iterations=iterations, seed=seed
        )
        record(
            name,
            fused(weights, problem.rule_of(res.x)),
            seconds=res.seconds,
            evaluations=res.n_evals,
            val_objective=float(res.f),
            curve=[c["best"] for c in convergence_curve(res)],
            curve_evaluations=[c["evaluations"] for c in convergence_curve(res)],
        )
    if "stacking" in methods:
        t0 = time.perf_counter()
        model = fit_stacking(val, seed=seed)
        record("stacking", model.predict, seconds=time.perf_counter() - t0, C=model.C)
    if one_missing_on is not None:
        table = one_missing(val, tests[one_missing_on], predictors)
        for name in out:
            out[name]["one_missing"] = {
                k: {"macro_f1": v[name], **{x: v[x] for x in ("best_member", "best_member_macro_f1", "rows")}}
                for k, v in table.items()
            }
    return out


def one_missing(
    val: MemberScores, test: MemberScores, predictors: Mapping[str, Predictor]
) -> dict[str, dict[str, Any]]:
    """Every test row with one modality taken away, per missing modality: each predictor's
    macro-F1, and that of the best member among those left (chosen by validation macro-F1)."""
    f1 = validation_f1(val)
    out: dict[str, dict[str, Any]] = {}
    for mod in sorted(set(test.modalities)):
        s = without(test, mod)
        left = [i for i, m in enumerate(s.modalities) if m != mod]
        bi = max(left, key=lambda i: f1[i])
        keep = s.present[bi]
        entry: dict[str, Any] = {
            "best_member": s.ids[bi],
            "best_member_macro_f1": _metrics(s.y[keep], s.P[bi, keep])["macro_f1"],
            "rows": int(keep.sum()),
        }
        for name, predict in predictors.items():
            p = predict(s)[keep]
            # a predictor with nothing left on these rows (the best single member, when its modality is
            # the one taken away) has no score here
            entry[name] = None if np.isnan(p).any(axis=1).all() else _metrics(s.y[keep], p)["macro_f1"]
        out[f"no {mod}"] = entry
    return out


def summarise(runs: Sequence[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Mean and standard deviation over seeds of each method's metrics on every row set."""
    out: dict[str, dict[str, Any]] = {}

    def ms(v: np.ndarray) -> dict[str, float]:
        return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}

    sets = [k for k, v in runs[0][next(iter(runs[0]))].items() if isinstance(v, dict) and "macro_f1" in v]
    for method in runs[0]:
        entry: dict[str, Any] = {"seeds": len(runs)}
        for name in sets:
            entry[name] = {
                key: ms(np.array([r[method][name][key] for r in runs]))
                for key in ("macro_f1", "accuracy", "uar", "weighted_f1")
            }
        entry["evaluations"] = int(np.median([r[method]["evaluations"] for r in runs]))
        entry["seconds"] = float(np.median([r[method]["seconds"] for r in runs]))
        out[method] = entry
    return out
