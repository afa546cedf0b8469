"""The eight classic test functions of the AO benchmark, vectorised, and their shifted versions.

Each takes ``X`` of shape ``(n, d)`` and returns ``(n,)``. Bounds are the
standard ones (Yao et al. 1999, as in the AO paper's F1–F13). The shifted
version of the i-th function moves its optimum to
``np.random.default_rng(2021 + i).uniform(-0.8*b, 0.8*b, d)`` (docs/formats.md)
and keeps its minimum value: ``f_shifted(x) = f(x − o + x*)`` with ``x*`` the
unshifted minimiser (0, or 1 for Rosenbrock).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Objective = Callable[[np.ndarray], np.ndarray]


def sphere(X: np.ndarray) -> np.ndarray:
    return np.sum(X * X, axis=1)


def schwefel_2_22(X: np.ndarray) -> np.ndarray:
    a = np.abs(X)
    return np.sum(a, axis=1) + np.prod(a, axis=1)


def rosenbrock(X: np.ndarray) -> np.ndarray:
    x0, x1 = X[:, :-1], X[:, 1:]
    return np.sum(100.0 * (x1 - x0 * x0) ** 2 + (x0 - 1.0) ** 2, axis=1)


def step(X: np.ndarray) -> np.ndarray:
    return np.sum(np.floor(X + 0.5) ** 2, axis=1)


def quartic(X: np.ndarray) -> np.ndarray:
    """Quartic without the noise term: ``Σ i·x_i⁴``."""
    i = np.arange(1, X.shape[1] + 1, dtype=np.float64)
    return np.sum(i * X**4, axis=1)


def rastrigin(X: np.ndarray) -> np.ndarray:
    return np.sum(X * X - 10.0 * np.cos(2 * np.pi * X) + 10.0, axis=1)


def ackley(X: np.ndarray) -> np.ndarray:
    d = X.shape[1]
    a = -20.0 * np.exp(-0.2 * np.sqrt(np.sum(X * X, axis=1) / d))
    return a - np.exp(np.sum(np.cos(2 * np.pi * X), axis=1) / d) + 20.0 + np.e


def griewank(X: np.ndarray) -> np.ndarray:
    i = np.sqrt(np.arange(1, X.shape[1] + 1, dtype=np.float64))
    return np.sum(X * X, axis=1) / 4000.0 - np.prod(np.cos(X / i), axis=1) + 1.0


@dataclass(frozen=True)
class BenchmarkFunction:
    """A test function on ``[-bound, bound]^dim`` with its minimiser and minimum value."""

    name: str
    func: Objective
    bound: float
    dim: int
    x_opt: np.ndarray
    f_opt: float = 0.0

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return self.func(X)

    @property
    def shifted(self) -> bool:
        return self.name.endswith("_shifted")


# name, function, bound, the unshifted minimiser's value in every coordinate
_TABLE: tuple[tuple[str, Objective, float, float], ...] = (
    ("sphere", sphere, 100.0, 0.0),
    ("schwefel_2_22", schwefel_2_22, 10.0, 0.0),
    ("rosenbrock", rosenbrock, 30.0, 1.0),
    ("step", step, 100.0, 0.0),
    ("quartic", quartic, 1.28, 0.0),
    ("rastrigin", rastrigin, 5.12, 0.0),
    ("ackley", ackley, 32.0, 0.0),
    ("griewank", griewank, 600.0, 0.0),
)
FUNCTION_NAMES: tuple[str, ...] = tuple(row[0] for row in _TABLE)


def shift_point(index: int, bound: float, dim: int = 30) -> np.ndarray:
    """The shifted optimum of the ``index``-th function (0-based, docs/formats.md order)."""
    return np.random.default_rng(2021 + index).uniform(-0.8 * bound, 0.8 * bound, dim)


def _shifted(func: Objective, offset: np.ndarray) -> Objective:
    def f(X: np.ndarray) -> np.ndarray:
        return func(X - offset)

    f.__name__ = f"{getattr(func, '__name__', 'f')}_shifted"
    return f


def get_function(name: str, dim: int = 30) -> BenchmarkFunction:
    """``sphere`` … ``griewank``, or ``<name>_shifted``; ``KeyError`` names the choices."""
    base = name.removesuffix("_shifted")
    for i, (fname, func, bound, xs) in enumerate(_TABLE):
        if fname != base:
            continue
        x_star = np.full(dim, xs)
        if name == base:
            return BenchmarkFunction(name, func, bound, dim, x_star)
        o = shift_point(i, bound, dim)
        return BenchmarkFunction(name, _shifted(func, o - x_star), bound, dim, o)
    raise KeyError(f"unknown function {name!r}; choose from {', '.join(FUNCTION_NAMES)} (or NAME_shifted)")
