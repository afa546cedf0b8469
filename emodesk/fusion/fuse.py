"""The fusion rules of docs/formats.md ("Fusion"), over the members present in a row.

- ``weighted-sum`` (``fusion.json`` version 1, and the equal-weight baseline): a renormalised
  weighted sum of member probabilities, ``p ∝ Σ_m w_m ⊙ p_m``.
- ``log-linear`` (version 2): a weighted product of experts with a class bias,
  ``p = softmax(Σ_m w_m ⊙ ln(p_m + ε) + b)``. A member's weight is also its temperature (a weight
  of 2 sharpens its vote, 0.5 flattens it), ``b`` corrects the classes the members together
  over- or under-call, and an absent member (its modality missing or stale) contributes
  nothing, so a row with one modality missing is the same rule over the other two.

One implementation, :func:`fuse_population`, serves the live app (one row, one
weight set, through :func:`fuse`), ``fusion eval`` (many rows) and the weight
search (many rows × a whole population of candidate weights in one call), so
what the optimizer measured is exactly what the window shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from emodesk.labels import N_LABELS

Weight = float | np.ndarray
RULES = ("weighted-sum", "log-linear")
EPSILON = 1e-4  # log-linear: ln(p + ε), so a member's 0 never vetoes a class outright


@dataclass(frozen=True)
class Rule:
    """How the weighted member probabilities combine: ``name`` one of :data:`RULES`; ``bias`` the
    seven class biases of ``log-linear`` (zeros for ``weighted-sum``), ``epsilon`` its floor."""

    name: str = "weighted-sum"
    bias: tuple[float, ...] = (0.0,) * N_LABELS
    epsilon: float = EPSILON

    def __post_init__(self) -> None:
        if self.name not in RULES:
            raise ValueError(f"fusion rule must be one of {RULES}, got {self.name!r}")
        if len(self.bias) != N_LABELS or not all(np.isfinite(self.bias)):
            raise ValueError(f"a rule's bias must be {N_LABELS} finite numbers, got {self.bias!r}")
        if self.name == "weighted-sum" and any(self.bias):
            raise ValueError("the weighted-sum rule has no class bias")
        if not 0 < self.epsilon <= 0.1:
            raise ValueError(f"epsilon must be in (0, 0.1], got {self.epsilon}")

    @classmethod
    def log_linear(cls, bias: Sequence[float] | np.ndarray, epsilon: float = EPSILON) -> Rule:
        return cls("log-linear", tuple(float(b) for b in np.asarray(bias, dtype=np.float64)), epsilon)


WEIGHTED_SUM = Rule()


def weight_vector(w: Weight) -> np.ndarray:
    v = np.asarray(w, dtype=np.float64)
    if v.ndim == 0:
        return np.full(N_LABELS, float(v))
    if v.shape != (N_LABELS,):
        raise ValueError(f"a weight must be a number or {N_LABELS} numbers, got shape {v.shape}")
    return v


def fuse_population(
    P: np.ndarray,
    W: np.ndarray,
    rule: Rule = WEIGHTED_SUM,
    B: np.ndarray | None = None,
) -> np.ndarray:
    """Fused probabilities ``(k, n, 7)`` of ``n`` rows under ``k`` weight sets.

    ``P`` is ``(m, n, 7)``: member ``m``'s probabilities for row ``n``, NaN where
    the member is absent (its modality missing or stale). ``W`` is ``(k, m, 7)``:
    per-class weights (a scalar weight is a constant vector). Per row and weight
    set, over the present members: ``weighted-sum`` gives ``q = Σ_m w_m ⊙ p_m``,
    ``p = q / Σ_c q_c``; if every present member weighs 0, equal weights (1 each);
    if the weighted sum is 0 anyway (per-class weights that zero out every voted
    class), the plain mean of the present members. ``log-linear`` gives
    ``p = softmax(Σ_m w_m ⊙ ln(p_m + ε) + b)`` with ``b`` the rule's bias, or
    ``B`` ``(k, 7)``, one bias per weight set (the search); if every present member
    weighs 0 there too, each weighs 1. Rows with no member present are NaN.
    """
    P = np.asarray(P, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    if P.ndim != 3 or P.shape[2] != N_LABELS:
        raise ValueError(f"P must have shape (members, rows, {N_LABELS}), got {P.shape}")
    if W.ndim != 3 or W.shape[1:] != (P.shape[0], N_LABELS):
        raise ValueError(f"W must have shape (k, {P.shape[0]}, {N_LABELS}), got {W.shape}")
    if rule.name == "log-linear":
        return _log_linear(P, W, rule, B)
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


def _log_linear(P: np.ndarray, W: np.ndarray, rule: Rule, B: np.ndarray | None) -> np.ndarray:
    k = W.shape[0]
    if B is None:
        B = np.broadcast_to(np.asarray(rule.bias, dtype=np.float64), (k, N_LABELS))
    B = np.asarray(B, dtype=np.float64)
    if B.shape != (k, N_LABELS):
        raise ValueError(f"B must have shape ({k}, {N_LABELS}), got {B.shape}")
    present = ~np.isnan(P).any(axis=2)  # (m, n)
    L = np.where(present[:, :, None], np.log(np.where(present[:, :, None], P, 1.0) + rule.epsilon), 0.0)
    z = np.einsum("kmc,mnc->knc", W, L)
    weighted = (W != 0).any(axis=2).astype(np.float64) @ present.astype(np.float64)  # (k, n)
    z = np.where((weighted > 0)[:, :, None], z, L.sum(axis=0)[None]) + B[:, None, :]
    z -= z.max(axis=2, keepdims=True)
    e = np.exp(z)
    out = e / e.sum(axis=2, keepdims=True)
    out[:, ~present.any(axis=0)] = np.nan
    return out


def fuse(
    probs: Mapping[str, np.ndarray],
    weights: Mapping[str, Weight] | None = None,
    rule: Rule = WEIGHTED_SUM,
) -> np.ndarray:
    """The fused probabilities of one row under ``rule`` over the members given in ``probs``
    (``weighted-sum``: ``q = Σ_m w_m ⊙ p_m``, ``p = q / Σ_c q_c``; module docstring).

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
    P = np.stack([ps[m] for m in ids])
    if np.isnan(P).any():  # a member without a score: the batch rule treats it as absent
        return fuse_population(P[:, None, :], W[None], rule)[0, 0]
    return _one_row(P, W, rule)


def _one_row(P: np.ndarray, W: np.ndarray, rule: Rule) -> np.ndarray:
    """:func:`fuse_population`'s arithmetic for one row with every member present, without its batch
    machinery: the window fuses a row per frame (tests check that the two agree)."""
    if not W.any():  # every member weighs 0: one weight each
        W = np.ones_like(W)
    if rule.name == "log-linear":
        z = (W * np.log(P + rule.epsilon)).sum(axis=0) + np.asarray(rule.bias)
        e = np.exp(z - z.max())
        return np.asarray(e / e.sum())
    q = (W * P).sum(axis=0)
    total = q.sum()
    if not np.isfinite(total) or total <= 0:  # the weights zero out every voted class: the plain mean
        q = P.sum(axis=0)
        total = q.sum()
    return np.asarray(q / total)
