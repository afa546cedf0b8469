"""Problems, results and ``minimize``: pymoo's shape (``Problem``, ``Algorithm``,
``minimize(problem, algorithm, seed=…)``) for emodesk's optimizers.

A :class:`Problem` knows its bounds and scores a whole population in one call
(``evaluate(X: (n, d)) -> (n,)``), so an optimizer pays one Python call per
iteration, not one per agent. An optimizer is a small object with parameters
and a ``run`` method; :func:`minimize` hands it an explicit
``np.random.Generator`` so the same seed gives the same result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


class Problem:
    """Minimise ``evaluate(X)`` over the box ``xl <= x <= xu`` in ``n_var`` dimensions.

    Subclasses implement :meth:`_evaluate` on a ``(n, n_var)`` array and
    return ``n`` fitness values; :meth:`evaluate` checks shapes and turns NaN
    into ``+inf`` so a broken candidate can never win a comparison.
    """

    def __init__(self, n_var: int, xl: float | np.ndarray, xu: float | np.ndarray) -> None:
        if int(n_var) < 1:
            raise ValueError(f"n_var must be a positive integer, got {n_var!r}")
        self.n_var = int(n_var)
        self.xl = np.broadcast_to(np.asarray(xl, dtype=np.float64), (self.n_var,)).copy()
        self.xu = np.broadcast_to(np.asarray(xu, dtype=np.float64), (self.n_var,)).copy()
        if not (np.all(np.isfinite(self.xl)) and np.all(np.isfinite(self.xu))):
            raise ValueError("bounds must be finite numbers")
        if np.any(self.xl >= self.xu):
            bad = int(np.argmax(self.xl >= self.xu))
            raise ValueError(
                f"every lower bound must be below its upper bound; variable {bad} has "
                f"xl={float(self.xl[bad])} >= xu={float(self.xu[bad])}"
            )

    def _evaluate(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError("a Problem subclass must implement _evaluate(X) -> (n,)")

    def evaluate(self, X: np.ndarray) -> np.ndarray:
        """Fitness of each row of ``X`` (shape ``(n, n_var)``) as a float array of shape ``(n,)``."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_var:
            raise ValueError(f"X must be a 2D array with shape (_, {self.n_var}), but got shape {X.shape}")
        f = np.asarray(self._evaluate(X), dtype=np.float64).reshape(-1)
        if f.shape != (X.shape[0],):
            raise ValueError(f"evaluate must return shape ({X.shape[0]},), but got shape {f.shape}")
        return np.where(np.isnan(f), np.inf, f)


class FunctionProblem(Problem):
    """A :class:`Problem` around a plain function.

    ``vectorized=True``: ``func`` takes ``(n, d)`` and returns ``(n,)`` (one call
    per population). Otherwise ``func`` takes one ``(d,)`` vector and returns a
    number, and is called once per row.
    """

    def __init__(
        self,
        func: Callable[[np.ndarray], Any],
        n_var: int,
        xl: float | np.ndarray,
        xu: float | np.ndarray,
        *,
        vectorized: bool = True,
    ) -> None:
        super().__init__(n_var, xl, xu)
        self.func = func
        self.vectorized = vectorized

    def _evaluate(self, X: np.ndarray) -> np.ndarray:
        if self.vectorized:
            return np.asarray(self.func(X), dtype=np.float64)
        return np.array([float(self.func(x)) for x in X], dtype=np.float64)


@dataclass(frozen=True)
class Result:
    """What :func:`minimize` found.

    ``history[k]`` is the best fitness after iteration ``k`` (``history[0]``:
    the initial population), so ``len(history) == n_iter + 1``.
    """

    x: np.ndarray
    f: float
    n_evals: int
    n_iter: int
    history: np.ndarray
    optimizer: str
    params: Mapping[str, Any]
    seed: int | None
    seconds: float
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class RunOutput:
    """What an optimizer's ``run`` returns to :func:`minimize`."""

    x: np.ndarray
    f: float
    n_evals: int
    history: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)


Callback = Callable[[int, np.ndarray, np.ndarray], None]
"""``callback(t, X, F)``: the population and its fitness after iteration ``t`` (0: the initial one)."""


class Optimizer(Protocol):
    """An optimizer: a name, its parameters, and one run on a problem with a given generator."""

    name: str

    def params(self) -> dict[str, Any]: ...

    def run(
        self, problem: Problem, n_iter: int, rng: np.random.Generator, callback: Callback | None = None
    ) -> RunOutput: ...


def minimize(
    problem: Problem,
    optimizer: Optimizer,
    *,
    n_iter: int,
    seed: int | np.random.Generator | None = None,
    callback: Callback | None = None,
) -> Result:
    """Run ``optimizer`` on ``problem`` for ``n_iter`` iterations; same seed, same result.

    ``callback(t, X, F)`` sees the population after each iteration (read-only:
    copy what you keep).
    """
    if int(n_iter) < 1:
        raise ValueError(f"n_iter must be a positive integer, got {n_iter!r}")
    if isinstance(seed, np.random.Generator):
        rng, seed_value = seed, None
    else:
        rng, seed_value = np.random.default_rng(seed), (None if seed is None else int(seed))
    t0 = time.perf_counter()
    out = optimizer.run(problem, int(n_iter), rng, callback)
    seconds = time.perf_counter() - t0
    return Result(
        x=out.x,
        f=float(out.f),
        n_evals=int(out.n_evals),
        n_iter=int(n_iter),
        history=out.history,
        optimizer=optimizer.name,
        params=optimizer.params(),
        seed=seed_value,
        seconds=seconds,
        extra=out.extra,
    )
