"""The Aquila Optimizer (AO) as Abualigah et al. state it (Computers & Industrial
Engineering 157 (2021) 107250), vectorised over the population.

Each iteration ``t = 1..T`` builds one candidate per agent with one of four
strategies, clips the candidates to the bounds, scores all of them in one
``problem.evaluate`` call, and lets each agent keep its *own* candidate only if
it is strictly better (greedy). Evaluations: ``pop_size * (T + 1)`` — the
initial population once, then one candidate per agent per iteration; nothing
is re-evaluated.

Where the paper, the authors' MATLAB and mealpy's ``OriginalAO`` disagree, this
module follows the paper; each choice and why:

- **Xbest and XM once per iteration.** Xbest (best so far) and XM (Eq. 4, the
  mean of the population's *positions*) are computed at the start of an
  iteration and held while its candidates are built, which is what lets the
  population be scored in one call. The authors' code updates Xbest only
  between iterations too. mealpy computes XM from fitness values, a scalar.
- **X1 (Eq. 3)** is ``Xbest·(1 − t/T) + (XM − Xbest·rand)`` as printed. The
  authors' code and mealpy use ``rand·(XM − Xbest)``, and the authors' code
  takes XM as agent i's own coordinate mean.
- **X2 (Eq. 5)**: XR is any agent, drawn uniformly (the paper does not exclude
  agent i; the authors' code draws from all N). The spiral (Eqs. 7–12) uses
  r1 = 10, U = 0.00565 (the paper's value; the authors' code has 0.0265),
  ω = 0.005, D1 = 1..D.
- **Lévy flight (Eq. 6)** is ``s·u·σ / |v|^(1/β)`` with s = 0.01 as the paper
  prints it (the authors' code and mealpy drop s), β = 1.5, and u, v ~ N(0, 1)
  by Mantegna's method as the authors' code does (the paper's text calls them
  random numbers in (0, 1); with uniform v ≥ 0 the step would never point
  backwards, which is not a Lévy flight).
- **X3 (Eq. 13)** ``(Xbest − XM)·α − rand + ((UB − LB)·rand + LB)·δ``,
  α = δ = 0.1, with per-variable bounds.
- **X4 (Eq. 14)** ``QF·Xbest − G1·X·rand − G2·Levy(D) + rand·G1`` with G1 in
  both places (mealpy uses G2 in the X term; the authors' code swaps the names
  G1/G2 but computes the paper's formula).
- **rand** is a fresh scalar U(0, 1) at each use, per agent (the paper calls it
  "a random value"; the authors' code draws scalars). The branch choice uses its
  own draw, never reused inside the update. QF (Eq. 15) and G1 (Eq. 16) contain
  rand and are drawn per agent too; the authors' code and mealpy draw them once
  per iteration. With T = 500 QF stays within 2e-5 of 1, so the difference is
  only G1's.
- **t counts 1..T** (QF is undefined at t = 0) and the exploration phase is
  ``t <= 2T/3``. G2 = 2·(1 − t/T) (Eq. 17) reaches 0 at t = T.
- **Bounds**: candidates are clipped before they are evaluated (the authors'
  code evaluates out-of-bounds candidates and clips them afterwards).
- **Selection**: each agent is compared with its own candidate (mealpy's loop
  overwrites its index in the X2 branch and so compares with a random agent).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import gamma, pi, sin
from typing import Any

import numpy as np

from emodesk.fusion.optimize.problem import Callback, Problem, RunOutput

BETA = 1.5


@lru_cache(maxsize=8)
def mantegna_sigma(beta: float = BETA) -> float:
    """σ of Eq. 6: ``(Γ(1+β)·sin(πβ/2) / (Γ((1+β)/2)·β·2^((β−1)/2)))^(1/β)``."""
    return float(
        (gamma(1 + beta) * sin(pi * beta / 2) / (gamma((1 + beta) / 2) * beta * 2 ** ((beta - 1) / 2)))
        ** (1 / beta)
    )


def levy_flight(
    rng: np.random.Generator, size: int | tuple[int, ...], *, beta: float = BETA, s: float = 0.01
) -> np.ndarray:
    """Lévy steps by Mantegna's method (Eq. 6): ``s·u·σ / |v|^(1/β)``, u, v ~ N(0, 1)."""
    uv = rng.standard_normal((2, *np.atleast_1d(size)))
    return (s * mantegna_sigma(beta)) * uv[0] / np.abs(uv[1]) ** (1.0 / beta)


def spiral_y_minus_x(n_var: int, *, r1: float = 10.0, U: float = 0.00565, omega: float = 0.005) -> np.ndarray:
    """``y − x`` of Eq. 5 from the spiral of Eqs. 7–12, for D1 = 1..D."""
    d1 = np.arange(1, n_var + 1, dtype=np.float64)
    r = r1 + U * d1  # Eq. 8
    theta = -omega * d1 + 3 * pi / 2  # Eq. 11 (θ1 = 3π/2, Eq. 12)
    x = r * np.sin(theta)  # Eq. 9
    y = r * np.cos(theta)  # Eq. 10
    return y - x


@dataclass(frozen=True)
class AquilaParams:
    """The paper's constants (Sections 3.2–3.3)."""

    alpha: float = 0.1  # Eq. 13
    delta: float = 0.1  # Eq. 13
    r1: float = 10.0  # Eq. 8: "a value between 1 and 20 ... fixed"
    U: float = 0.00565  # Eq. 8
    omega: float = 0.005  # Eq. 11
    beta: float = BETA  # Eq. 6
    levy_s: float = 0.01  # Eq. 6
    switch: float = 2 / 3  # t <= switch·T explores


def init_population(problem: Problem, pop_size: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform random positions in the box (Eq. 1)."""
    return problem.xl + rng.random((pop_size, problem.n_var)) * (problem.xu - problem.xl)


def aquila_candidates(
    X: np.ndarray,
    xbest: np.ndarray,
    xm: np.ndarray,
    t: int,
    T: int,
    xl: np.ndarray,
    xu: np.ndarray,
    rng: np.random.Generator,
    p: AquilaParams,
    yx: np.ndarray,
    pool: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One candidate per row of ``X`` by the four strategies; also returns each row's strategy (1–4).

    ``xbest`` and ``xm`` are held for the whole iteration; XR is drawn from
    ``pool`` (default: ``X``, the whole population). Candidates are not
    clipped here. Both strategies of the current phase are computed for every
    row and one is kept per row (a few extra flops are far cheaper than
    per-branch indexing in Python); every rand below is its own column of ``R``,
    so no draw is reused.
    """
    n, d = X.shape
    explore = t <= p.switch * T
    R = rng.random((n, 3 if explore else 7))
    pick = R[:, 0] < 0.5  # the branch's own draw
    levy = np.zeros((n, d))  # Lévy steps only where X2 or X4 uses them: they cost most of an iteration
    levy[~pick] = levy_flight(rng, (n - int(pick.sum()), d), beta=p.beta, s=p.levy_s)
    if explore:
        # Eq. 3 (expanded exploration, high soar): Xbest·(1 − t/T) + (XM − Xbest·rand)
        x1 = xbest * (1 - t / T) + (xm - xbest * R[:, 1:2])
        # Eq. 5 (narrowed exploration, contour flight): Xbest·Levy(D) + XR + (y − x)·rand
        pool = X if pool is None else pool
        xr = pool[rng.integers(0, pool.shape[0], size=n)]
        x2 = xbest * levy + xr + yx * R[:, 2:3]
        return np.where(pick[:, None], x1, x2), np.where(pick, 1, 2).astype(np.int8)
    # Eq. 13 (expanded exploitation, low flight): (Xbest − XM)·α − rand + ((UB − LB)·rand + LB)·δ
    x3 = (xbest - xm) * p.alpha - R[:, 1:2] + ((xu - xl) * R[:, 2:3] + xl) * p.delta
    # Eq. 14 (narrowed exploitation, walk and grab): QF·Xbest − G1·X·rand − G2·Levy(D) + rand·G1
    qf = float(t) ** ((2 * R[:, 3:4] - 1) / (1 - T) ** 2) if T > 1 else np.ones((n, 1))  # Eq. 15
    g1 = 2 * R[:, 4:5] - 1  # Eq. 16
    g2 = 2 * (1 - t / T)  # Eq. 17
    x4 = qf * xbest - g1 * X * R[:, 5:6] - g2 * levy + R[:, 6:7] * g1
    return np.where(pick[:, None], x3, x4), np.where(pick, 3, 4).astype(np.int8)


def clip_to_bounds(cand: np.ndarray, xl: np.ndarray, xu: np.ndarray) -> np.ndarray:
    """Clip in place (the same as ``np.clip``, without its dispatch overhead)."""
    np.maximum(cand, xl, out=cand)
    np.minimum(cand, xu, out=cand)
    return cand


def replace_greedy(X: np.ndarray, F: np.ndarray, cand: np.ndarray, fc: np.ndarray, *, ties: bool) -> None:
    """Each agent takes its own candidate when better (or, with ``ties``, as good), in place."""
    better = fc <= F if ties else fc < F
    X[better] = cand[better]
    F[better] = fc[better]


class AquilaOptimizer:
    """The faithful AO (see the module docstring for every choice). The default for emodesk."""

    name = "emodesk"

    def __init__(self, pop_size: int = 50, **constants: float) -> None:
        if int(pop_size) < 2:
            raise ValueError(f"pop_size must be at least 2, got {pop_size!r}")
        self.pop_size = int(pop_size)
        self.constants = AquilaParams(**constants)

    def params(self) -> dict[str, Any]:
        c = self.constants
        return {
            "pop_size": self.pop_size,
            "alpha": c.alpha,
            "delta": c.delta,
            "r1": c.r1,
            "U": c.U,
            "omega": c.omega,
            "beta": c.beta,
            "levy_s": c.levy_s,
            "switch": c.switch,
        }

    def run(
        self, problem: Problem, n_iter: int, rng: np.random.Generator, callback: Callback | None = None
    ) -> RunOutput:
        p, T = self.constants, n_iter
        X = init_population(problem, self.pop_size, rng)
        F = problem.evaluate(X)
        n_evals = X.shape[0]
        history = np.empty(T + 1)
        history[0] = F.min()
        if callback:
            callback(0, X, F)
        yx = spiral_y_minus_x(problem.n_var, r1=p.r1, U=p.U, omega=p.omega)
        for t in range(1, T + 1):
            ib = int(np.argmin(F))
            xbest, xm = X[ib].copy(), X.mean(axis=0)  # Xbest and XM (Eq. 4), held for the iteration
            cand, _ = aquila_candidates(X, xbest, xm, t, T, problem.xl, problem.xu, rng, p, yx)
            clip_to_bounds(cand, problem.xl, problem.xu)  # clip *before* evaluating
            fc = problem.evaluate(cand)
            n_evals += cand.shape[0]
            replace_greedy(X, F, cand, fc, ties=False)  # each agent against its own candidate
            history[t] = F.min()
            if callback:
                callback(t, X, F)
        ib = int(np.argmin(F))
        return RunOutput(x=X[ib].copy(), f=float(F[ib]), n_evals=n_evals, history=history)
