"""The fusion rule of docs/formats.md: a renormalised weighted sum of member probabilities.

One implementation, :func:`fuse_population`, serves the live app (one row, one
weight set, through :func:`fuse`), ``fusion eval`` (many rows) and the weight
search (many rows × a whole population of candidate weights in one call), so
what the optimizer measured is exactly what the window shows.
"""

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


def fuse_population(P: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Fused probabilities ``(k, n, 7)`` of ``n`` rows under ``k`` weight sets.

    ``P`` is ``(m, n, 7)``: member ``m``'s probabilities for row ``n``, NaN where
    the member is absent (its modality missing or stale). ``W`` is ``(k, m, 7)``:
    per-class weights (a scalar weight is a constant vector). Per row and weight
    set: ``q = Σ_m w_m ⊙ p_m`` over the present members, ``p = q / Σ_c q_c``; if
    every present member weighs 0, equal weights (1 each); if the weighted sum
    is 0 anyway (per-class weights that zero out every voted class), the plain
    mean of the present members. Rows with no member present are NaN.
    """
    P = np.asarray(P, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    if P.ndim != 3 or P.shape[2] != N_LABELS:
        raise ValueError(f"P must have shape (members, rows, {N_LABELS}), got {P.shape}")
    if W.ndim != 3 or W.shape[1:] != (P.shape[0], N_LABELS):
        raise ValueError(f"W must have shape (k, {P.shape[0]}, {N_LABELS}), got {W.shape}")
    present = ~np.isnan(P).any(axis=2)  # (m, n)
    P0 = np.where(present[:, :, None], P, 0.0)
    q = np.einsum("kmc,mnc->knc", W, P0)
    weighted = (W != 0).any(axis=2).astype(np.float64) @ present.astype(np.float64)  # (k, n)
    plain = P0.sum(axis=0)  # equal weights, 1 per present member
    q = np.where((weighted > 0)[:, :, None], q, plain[None])
    total = q.sum(axis=2, keepdims=True)
    bad = ~np.isfinite(total) | (total <= 0)
    q = np.where(bad, plain[None], q)
    total = np.where(bad, plain.sum(axis=1)[None, :, None], total)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = q / total
    out[:, ~present.any(axis=0)] = np.nan
    return out


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
    ids = list(ps)
    W = np.stack([weight_vector(weights.get(m, 0.0)) if weights else np.ones(N_LABELS) for m in ids])
    P = np.stack([ps[m] for m in ids])[:, None, :]
    return fuse_population(P, W[None])[0, 0]
