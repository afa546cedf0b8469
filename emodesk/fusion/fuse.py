"""The fusion rule of CONTRACTS.md: a renormalised weighted sum of member probabilities."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from emodesk.labels import N_LABELS

Weight = float | np.ndarray


def weight_vector(w: Weight) -> np.ndarray:
    v = np.asarray(w, dtype=np.float64)
    if v.ndim == 0:
        return np.full(N_LABELS, float(v))
    if v.shape != (N_LABELS,):
        raise ValueError(f"a weight must be a number or {N_LABELS} numbers, got shape {v.shape}")
    return v


def fuse(probs: Mapping[str, np.ndarray], weights: Mapping[str, Weight] | None = None) -> np.ndarray:
    """``q = Σ_m w_m ⊙ p_m``, ``p = q / Σ_c q_c`` over the members given in ``probs``.

    ``weights`` maps member id to a scalar or a per-class vector; members
    missing from it weigh 0. If every present member weighs 0 (or no weights
    are given), every member gets weight 1: equal weights per *member*.
    """
    if not probs:
        raise ValueError("fuse() needs at least one member's probabilities")
    ps = {m: np.asarray(p, dtype=np.float64) for m, p in probs.items()}
    for m, p in ps.items():
        if p.shape != (N_LABELS,):
            raise ValueError(f"member {m}: probabilities must have shape ({N_LABELS},), got {p.shape}")
    ws = {m: weight_vector(weights.get(m, 0.0)) if weights else np.ones(N_LABELS) for m in ps}
    if all(not np.any(w) for w in ws.values()):
        ws = {m: np.ones(N_LABELS) for m in ps}
    q = np.zeros(N_LABELS)
    for m, p in ps.items():
        q += ws[m] * p
    total = q.sum()
    if not np.isfinite(total) or total <= 0:
        # Per-class weights can zero out every class a member voted for; fall back
        # to equal weights rather than divide by zero.
        q = np.mean(list(ps.values()), axis=0)
        total = q.sum()
    return q / total
