"""Reference optimizers for the fusion comparison, in the same ``minimize`` shape as AO.

Each spends ``pop_size * (n_iter + 1)`` evaluations like :class:`AquilaOptimizer`
(differential evolution: as close as scipy's population rule allows; the
evaluations it really spent are counted and reported), so "AO vs the rest" compares equal budgets.

- :class:`ParticleSwarm`: global-best PSO with Clerc–Kennedy constriction
  (w = 0.7298, c1 = c2 = 1.49618), velocities clamped to the box width.
- :class:`RandomSearch`: uniform samples in the box; the floor any optimizer must beat.
- :class:`DifferentialEvolution`: scipy's ``differential_evolution`` (a dev
  dependency), vectorised, deferred updating, no polishing.
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


class RandomSearch:
    name = "random"

    def __init__(self, pop_size: int = 50) -> None:
        self.pop_size = int(pop_size)

    def params(self) -> dict[str, Any]:
        return {"pop_size": self.pop_size}

    def run(
        self, problem: Problem, n_iter: int, rng: np.random.Generator, callback: Callback | None = None
    ) -> RunOutput:
        best_x, best_f = np.empty(problem.n_var), np.inf
        history = np.empty(n_iter + 1)
        for t in range(n_iter + 1):
            X = init_population(problem, self.pop_size, rng)
            F = problem.evaluate(X)
            i = int(np.argmin(F))
            if F[i] < best_f:
                best_x, best_f = X[i].copy(), float(F[i])
            history[t] = best_f
            if callback:
                callback(t, X, F)
        return RunOutput(best_x, best_f, self.pop_size * (n_iter + 1), history)


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
        # scipy's population is popsize × n_var agents: pick popsize so it matches ours (at least 5 agents)
        popsize = max(1, round(self.pop_size / problem.n_var))
        history: list[float] = []
        evals = [0]

        def f(xT: np.ndarray) -> np.ndarray:
            out = problem.evaluate(np.atleast_2d(xT.T))
            evals[0] += len(out)
            history.append(float(out.min()) if not history else min(history[-1], float(out.min())))
            return out

        res = differential_evolution(
            f,
            list(zip(problem.xl, problem.xu, strict=True)),
            popsize=popsize,
            maxiter=n_iter,
            polish=False,
            tol=0,
            atol=0,
            seed=rng,
            vectorized=True,
            updating="deferred",
        )
        return RunOutput(np.asarray(res.x, dtype=np.float64), float(res.fun), evals[0], np.asarray(history))
