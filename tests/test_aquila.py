"""The Aquila Optimizer: finds optima, is reproducible, keeps its budget and bounds, is greedy per agent."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emodesk.fusion.optimize import (
    OPTIMIZERS,
    AquilaOptimizer,
    FunctionProblem,
    Problem,
    levy_flight,
    make_optimizer,
    minimize,
)
from emodesk.fusion.optimize.aquila import AquilaParams, aquila_candidates, mantegna_sigma, spiral_y_minus_x
from emodesk.lab.aquila_benchmark.functions import FUNCTION_NAMES, get_function, shift_point

ALL = sorted(OPTIMIZERS)


def sphere_at(center: np.ndarray) -> FunctionProblem:
    c = np.asarray(center, dtype=np.float64)
    return FunctionProblem(lambda X: np.sum((X - c) ** 2, axis=1), c.size, -10.0, 10.0)


class Recorder(Problem):
    """Wraps a problem: checks every evaluated row is inside the bounds and records each call."""

    def __init__(self, inner: Problem) -> None:
        super().__init__(inner.n_var, inner.xl, inner.xu)
        self.inner = inner
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def _evaluate(self, X: np.ndarray) -> np.ndarray:
        assert np.all(X >= self.xl) and np.all(X <= self.xu), "evaluated outside the bounds"
        f = self.inner.evaluate(X)
        self.calls.append((X.copy(), f.copy()))
        return f


@pytest.mark.parametrize("name", ALL)
def test_finds_the_origin_optimum_of_sphere(name):
    res = minimize(sphere_at(np.zeros(5)), make_optimizer(name, pop_size=20), n_iter=300, seed=1)
    assert res.f < 1e-3
    assert np.max(np.abs(res.x)) < 0.05


def test_faithful_ao_finds_a_shifted_optimum_in_two_dimensions():
    center = np.array([3.3, -6.1])
    fs = [minimize(sphere_at(center), AquilaOptimizer(pop_size=20), n_iter=300, seed=s).f for s in range(5)]
    assert max(fs) < 1e-2


def test_the_variant_removes_the_origin_bias_the_faithful_ao_shows():
    """Off the origin in 10 D the faithful AO stalls far away; emodesk-levy-ls converges."""
    center = np.linspace(-6, 7, 10)
    faithful = minimize(sphere_at(center), AquilaOptimizer(pop_size=20), n_iter=200, seed=0).f
    variant = minimize(
        sphere_at(center), make_optimizer("emodesk-levy-ls", pop_size=20), n_iter=200, seed=0
    ).f
    assert variant < 1e-2
    assert faithful > 100 * variant


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_result_other_seed_other_result(name):
    fn = get_function("rastrigin_shifted", 6)
    problem = FunctionProblem(fn, 6, -fn.bound, fn.bound)
    a = minimize(problem, make_optimizer(name, pop_size=12), n_iter=40, seed=7)
    b = minimize(problem, make_optimizer(name, pop_size=12), n_iter=40, seed=7)
    c = minimize(problem, make_optimizer(name, pop_size=12), n_iter=40, seed=8)
    assert a.f == b.f and np.array_equal(a.x, b.x) and np.array_equal(a.history, b.history)
    assert not np.array_equal(a.history, c.history)
    assert a.seed == 7 and a.optimizer == name and a.params["pop_size"] == 12


@pytest.mark.parametrize("name", ALL)
def test_budget_bounds_and_one_vectorised_call_per_iteration(name):
    # A linear objective pulls every agent into the corner at the lower bounds, so
    # unclipped candidates would leave the box in every strategy.
    base = FunctionProblem(lambda X: X.sum(axis=1), 8, np.arange(8) - 5.0, np.arange(8) + 1.0)
    problem = Recorder(base)
    pop, T = 16, 60
    res = minimize(problem, make_optimizer(name, pop_size=pop), n_iter=T, seed=3)
    assert res.n_evals == pop * (T + 1)
    assert len(problem.calls) == T + 1  # the initial population, then one call per iteration
    assert all(X.shape == (pop, 8) for X, _ in problem.calls)
    assert len(res.history) == T + 1 and np.all(np.diff(res.history) <= 0)
    assert np.all(res.x >= base.xl) and np.all(res.x <= base.xu)


def test_reference_budget_is_25050_evaluations():
    fn = get_function("sphere")
    res = minimize(FunctionProblem(fn, 30, -100, 100), AquilaOptimizer(), n_iter=500, seed=0)
    assert res.n_evals == 25_050


@pytest.mark.parametrize("name", ALL)
def test_each_agent_keeps_its_own_candidate_only_if_better(name):
    problem = Recorder(sphere_at(np.full(6, 2.5)))
    seen: list[np.ndarray] = []
    minimize(
        problem,
        make_optimizer(name, pop_size=10),
        n_iter=30,
        seed=5,
        callback=lambda t, X, F: seen.append(F.copy()),
    )
    strict = name == "emodesk"  # the faithful AO keeps ties out; the variant lets agents drift across them
    for t in range(1, len(seen)):
        before, cand_f, after = seen[t - 1], problem.calls[t][1], seen[t]
        assert np.all(after <= before), "an agent got worse"
        assert np.array_equal(after, np.minimum(before, cand_f)), "an agent took someone else's candidate"
        if strict:
            moved = after != before
            assert np.all(cand_f[moved] < before[moved])


def test_x1_is_the_papers_equation_3():
    """With every agent at p (so XM = Xbest = p), Eq. 3 gives p·(2 − t/T − rand): a multiple of p."""
    p = np.array([1.0, -2.0, 3.0, 0.5])
    X = np.tile(p, (400, 1))
    t, T = 10, 100
    cand, strategy = aquila_candidates(
        X,
        p,
        p,
        t,
        T,
        np.full(4, -9.0),
        np.full(4, 9.0),
        np.random.default_rng(0),
        AquilaParams(),
        spiral_y_minus_x(4),
    )
    assert set(np.unique(strategy)) == {1, 2}
    scale = cand[strategy == 1] / p
    assert np.allclose(scale, scale[:, :1])  # a multiple of p
    assert scale.min() > 1 - t / T and scale.max() < 2 - t / T  # factor 2 − t/T − rand, rand in (0, 1)


def test_exploitation_starts_after_two_thirds_of_the_iterations():
    X = np.random.default_rng(0).random((200, 3))
    args = (
        X,
        X[0],
        X.mean(0),
        0,
        90,
        np.zeros(3),
        np.ones(3),
        np.random.default_rng(1),
        AquilaParams(),
        spiral_y_minus_x(3),
    )
    for t, expected in ((1, {1, 2}), (60, {1, 2}), (61, {3, 4}), (90, {3, 4})):
        _, strategy = aquila_candidates(*args[:3], t, *args[4:])
        assert set(np.unique(strategy)) == expected, t


def test_spiral_uses_the_papers_constants():
    d1 = np.arange(1, 31)
    r = 10 + 0.00565 * d1
    theta = -0.005 * d1 + 3 * np.pi / 2
    assert np.allclose(spiral_y_minus_x(30), r * np.cos(theta) - r * np.sin(theta))


def test_levy_flight_has_the_mantegna_scale_and_a_heavy_tail():
    beta = 1.5
    sigma = (math.gamma(2.5) * math.sin(math.pi * 0.75) / (math.gamma(1.25) * 1.5 * 2**0.25)) ** (1 / beta)
    assert mantegna_sigma() == pytest.approx(sigma) == pytest.approx(0.6966, abs=1e-4)
    steps = levy_flight(np.random.default_rng(0), 400_000)
    # Scale: median |L| = 0.01·σ·m, where P(|u| ≤ m·|v|^(2/3)) = 1/2 for u, v ~ N(0, 1).
    v = np.linspace(1e-6, 9, 20_001)
    phi = np.exp(-v * v / 2) * np.sqrt(2 / np.pi)  # density of |v|

    def cdf(m: float) -> float:
        erf = np.vectorize(math.erf)(m * v ** (2 / 3) / math.sqrt(2))
        return float(np.trapezoid(erf * phi, v))

    lo, hi = 0.1, 10.0
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < 0.5 else (lo, mid)
    assert np.median(np.abs(steps)) == pytest.approx(0.01 * sigma * lo, rel=0.02)
    assert abs(np.mean(steps > 0) - 0.5) < 0.005  # symmetric
    # Tail: P(|L| > x) ~ x^-1.5, so ten times further is about 10^-1.5 ≈ 0.032 as likely;
    # a Gaussian of the same median would have no samples out there at all.
    a = np.abs(steps) / (0.01 * sigma)
    ratio = np.mean(a > 200) / np.mean(a > 20)
    assert 0.02 < ratio < 0.05
    assert np.mean(a > 20) > 1e-3


def test_problem_says_what_it_expected():
    with pytest.raises(ValueError, match=r"variable 1 has xl=3.0 >= xu=2.0"):
        Problem(2, [0.0, 3.0], [1.0, 2.0])
    problem = sphere_at(np.zeros(3))
    with pytest.raises(ValueError, match=r"shape \(_, 3\), but got shape \(4, 2\)"):
        problem.evaluate(np.zeros((4, 2)))
    bad = FunctionProblem(lambda X: np.zeros(len(X) + 1), 2, -1, 1)
    with pytest.raises(ValueError, match=r"must return shape \(5,\)"):
        bad.evaluate(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="n_iter"):
        minimize(problem, AquilaOptimizer(), n_iter=0)
    with pytest.raises(KeyError, match="emodesk-levy-ls"):
        make_optimizer("nope")


def test_nan_fitness_never_wins():
    problem = FunctionProblem(lambda X: np.where(X[:, 0] > 0, np.nan, np.sum(X * X, axis=1)), 2, -5, 5)
    res = minimize(problem, AquilaOptimizer(pop_size=10), n_iter=50, seed=0)
    assert np.isfinite(res.f) and res.x[0] <= 0


def test_a_scalar_objective_works_too():
    problem = FunctionProblem(lambda x: float(np.sum((x - 1) ** 2)), 3, -5, 5, vectorized=False)
    assert minimize(problem, AquilaOptimizer(pop_size=10), n_iter=100, seed=0).f < 0.5


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_benchmark_functions_have_their_minimum_where_stated(name):
    for fn in (get_function(name), get_function(f"{name}_shifted")):
        f_opt = fn(fn.x_opt[None, :])[0]
        assert f_opt == pytest.approx(fn.f_opt, abs=1e-12)
        rng = np.random.default_rng(0)
        near = fn.x_opt + rng.normal(0, 0.05 * fn.bound, (64, fn.dim))
        assert np.all(fn(near) >= f_opt)
    i = FUNCTION_NAMES.index(name)
    shifted = get_function(f"{name}_shifted")
    b = shifted.bound
    assert np.array_equal(shifted.x_opt, np.random.default_rng(2021 + i).uniform(-0.8 * b, 0.8 * b, 30))
    assert np.array_equal(shift_point(i, b), shifted.x_opt)


def test_the_benchmark_cache_key_covers_the_optimizers_code() -> None:
    """A change to emodesk's optimizer code must redo its cached benchmark runs."""
    from emodesk.lab.aquila_benchmark.run import _OPTIMIZE_DIR

    names = {p.name for p in _OPTIMIZE_DIR.glob("*.py")}
    assert {"aquila.py", "aquila_levy_ls.py"} <= names, names
