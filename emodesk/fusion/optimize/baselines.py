"""Reference optimizers for the fusion comparison, in the same ``minimize`` shape as AO.

Each spends ``pop_size * (n_iter + 1)`` evaluations like :class:`AquilaOptimizer`
(differential evolution: as close as scipy's population rule allows; the
evaluations it really spent are counted and reported), so "AO vs the rest" compares equal budgets.

- :class:`ParticleSwarm`: global-best PSO with Clerc–Kennedy constriction
  (w = 0.7298, c1 = c2 = 1.49618), velocities clamped to the box width.
- :class:`RandomSearch`: uniform samples in the box; the floor any optimizer must beat.
- :class:`DifferentialEvolution`: scipy's ``differential_evolution`` (a dev
  dependency), vectorised, deferred updating, no polishing, started from ``pop_size`` uniform
  agents (scipy's own rule, ``popsize × n_var`` agents, would spend more evaluations than AO
  on a problem with more variables than agents).
- :class:`CMAES`: the (μ/μ_w, λ) covariance matrix adaptation evolution strategy (Hansen's
  standard parameter settings, "The CMA Evolution Strategy: A Tutorial", 2016), λ = ``pop_size``,
  searched in the box scaled to the unit cube from a uniform random mean with σ₀ = 0.3; a sample
  outside the box is evaluated at its projection onto the box and ranked with the squared
  distance of the projection added, so the search is pulled back inside.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emodesk.errors import EmodeskError
from emodesk.fusion.optimize.aquila import clip_to_bounds, init_population
from emodesk.fusion.optimize.problem import Callback, Problem, RunOutput


class ParticleSwarm:
    name = "pso"

    def __init__(
        self, pop_size: int = 50, w: float = 0.7298, c1: float = 1.49618, c2: float = 1.49618
    ) -> None:
        if int(pop_size) < 2:
            raise ValueError(f"pop_size must be at least 2, got {pop_size!r}")
        self.pop_size, self.w, self.c1, self.c2 = int(pop_size), float(w), float(c1), float(c2)

    def params(self) -> dict[str, Any]:
        return {"pop_size": self.pop_size, "w": self.w, "c1": self.c1, "c2": self.c2}

    def run(
        self, problem: Problem, n_iter: int, rng: np.random.Generator, callback: Callback | None = None
    ) -> RunOutput:
        X = init_population(problem, self.pop_size, rng)
        span = problem.xu - problem.xl
        V = rng.uniform(-span, span, X.shape) * 0.1
        F = problem.evaluate(X)
        pbest, pf = X.copy(), F.copy()
        history = np.empty(n_iter + 1)
        history[0] = pf.min()
        if callback:
            callback(0, X, F)
        for t in range(1, n_iter + 1):
            g = pbest[int(np.argmin(pf))]
            r1, r2 = rng.random(X.shape), rng.random(X.shape)
            V = self.w * V + self.c1 * r1 * (pbest - X) + self.c2 * r2 * (g - X)
            V = np.clip(V, -span, span)
            X = X + V
            clip_to_bounds(X, problem.xl, problem.xu)
            F = problem.evaluate(X)
            better = F < pf
            pbest[better], pf[better] = X[better], F[better]
            history[t] = pf.min()
            if callback:
                callback(t, X, F)
        ib = int(np.argmin(pf))
        return RunOutput(pbest[ib].copy(), float(pf[ib]), self.pop_size * (n_iter + 1), history)


class _BestSoFar:
    """The best point any generation evaluated, and the best value after each generation."""

    def __init__(self, n_var: int, n_iter: int) -> None:
        self.x, self.f = np.empty(n_var), np.inf
        self.history = np.empty(n_iter + 1)

    def record(self, t: int, X: np.ndarray, F: np.ndarray) -> None:
        i = int(np.argmin(F))
        if F[i] < self.f:
            self.x, self.f = X[i].copy(), float(F[i])
        self.history[t] = self.f

    def output(self, evaluations: int) -> RunOutput:
        return RunOutput(self.x, self.f, evaluations, self.history)


class RandomSearch:
    name = "random"

    def __init__(self, pop_size: int = 50) -> None:
        self.pop_size = int(pop_size)

    def params(self) -> dict[str, Any]:
        return {"pop_size": self.pop_size}

    def run(
        self, problem: Problem, n_iter: int, rng: np.random.Generator, callback: Callback | None = None
    ) -> RunOutput:
        best = _BestSoFar(problem.n_var, n_iter)
        for t in range(n_iter + 1):
            X = init_population(problem, self.pop_size, rng)
            F = problem.evaluate(X)
            best.record(t, X, F)
            if callback:
                callback(t, X, F)
        return best.output(self.pop_size * (n_iter + 1))


class DifferentialEvolution:
    name = "de"

    def __init__(self, pop_size: int = 50) -> None:
        self.pop_size = int(pop_size)

    def params(self) -> dict[str, Any]:
        return {"pop_size": self.pop_size, "strategy": "best1bin", "updating": "deferred", "polish": False}

    def run(
        self, problem: Problem, n_iter: int, rng: np.random.Generator, callback: Callback | None = None
    ) -> RunOutput:
        try:
            from scipy.optimize import differential_evolution
        except ImportError:
            raise EmodeskError("the 'de' optimizer needs scipy: pip install scipy") from None
        if self.pop_size < 5:
            raise ValueError(f"differential evolution needs at least 5 agents, got {self.pop_size}")
        history: list[float] = []
        evals = [0]

        def f(xT: np.ndarray) -> np.ndarray:
            out = problem.evaluate(np.atleast_2d(xT.T))
            evals[0] += len(out)
            history.append(float(out.min()) if not history else min(history[-1], float(out.min())))
            if callback:
                callback(len(history) - 1, np.atleast_2d(xT.T), out)  # the generation just evaluated
            return out

        res = differential_evolution(
            f,
            list(zip(problem.xl, problem.xu, strict=True)),
            init=init_population(problem, self.pop_size, rng),  # our population size, not scipy's
            maxiter=n_iter,
            polish=False,
            tol=0,
            atol=-1,  # never "converged": a flat objective (macro-F1 alone) still spends the budget
            seed=rng,
            vectorized=True,
            updating="deferred",
        )
        return RunOutput(np.asarray(res.x, dtype=np.float64), float(res.fun), evals[0], np.asarray(history))


class CMAES:
    name = "cmaes"

    def __init__(self, pop_size: int = 50, sigma0: float = 0.3) -> None:
        if int(pop_size) < 4:
            raise ValueError(f"CMA-ES needs at least 4 samples a generation, got {pop_size!r}")
        if not 0 < sigma0 <= 1:
            raise ValueError(f"sigma0 is a fraction of the box, in (0, 1], got {sigma0!r}")
        self.pop_size, self.sigma0 = int(pop_size), float(sigma0)

    def params(self) -> dict[str, Any]:
        return {"pop_size": self.pop_size, "sigma0": self.sigma0, "mu": self.pop_size // 2}

    def run(
        self, problem: Problem, n_iter: int, rng: np.random.Generator, callback: Callback | None = None
    ) -> RunOutput:
        d, lam = problem.n_var, self.pop_size
        mu = lam // 2
        w = np.log(mu + 0.5) - np.log(np.arange(1, mu + 1))
        w /= w.sum()
        mueff = 1.0 / float((w**2).sum())
        cc = (4 + mueff / d) / (d + 4 + 2 * mueff / d)
        cs = (mueff + 2) / (d + mueff + 5)
        c1 = 2 / ((d + 1.3) ** 2 + mueff)
        cmu = min(1 - c1, 2 * (mueff - 2 + 1 / mueff) / ((d + 2) ** 2 + mueff))
        damps = 1 + 2 * max(0.0, np.sqrt((mueff - 1) / (d + 1)) - 1) + cs
        chi_n = np.sqrt(d) * (1 - 1 / (4 * d) + 1 / (21 * d * d))
        span = problem.xu - problem.xl
        mean, sigma = rng.random(d), self.sigma0
        C, B, D = np.eye(d), np.eye(d), np.ones(d)
        pc, ps = np.zeros(d), np.zeros(d)
        best = _BestSoFar(d, n_iter)
        for t in range(n_iter + 1):
            Y = (rng.standard_normal((lam, d)) * D) @ B.T  # y ~ N(0, C)
            U = mean + sigma * Y
            inside = np.clip(U, 0.0, 1.0)
            X = problem.xl + inside * span
            F = problem.evaluate(X)
            best.record(t, X, F)
            if callback:
                callback(t, X, F)
            order = np.argsort(F + ((U - inside) ** 2).sum(axis=1), kind="stable")[:mu]
            y_w = w @ Y[order]
            mean = mean + sigma * y_w
            ps = (1 - cs) * ps + np.sqrt(cs * (2 - cs) * mueff) * (B @ ((B.T @ y_w) / D))
            hsig = float(
                np.linalg.norm(ps) / np.sqrt(1 - (1 - cs) ** (2 * (t + 1))) / chi_n < 1.4 + 2 / (d + 1)
            )
            pc = (1 - cc) * pc + hsig * np.sqrt(cc * (2 - cc) * mueff) * y_w
            Yo = Y[order]
            C = (
                (1 - c1 - cmu) * C
                + c1 * (np.outer(pc, pc) + (1 - hsig) * cc * (2 - cc) * C)
                + cmu * (Yo.T * w) @ Yo
            )
            sigma *= float(np.exp((cs / damps) * (np.linalg.norm(ps) / chi_n - 1)))
            sigma = min(sigma, 1.0)  # never wider than the box
            C = (C + C.T) / 2
            ev, B = np.linalg.eigh(C)
            D = np.sqrt(np.maximum(ev, 1e-20))
        return best.output(lam * (n_iter + 1))
