"""``fusion benchmark-ao``: emodesk's Aquila Optimizer against mealpy's ``OriginalAO`` and
scipy's differential evolution at the same evaluation budget (docs/formats.md).

Every (function, optimizer, seed) run is one :class:`RunRecord`; a
:class:`RunCache` appends each to a JSON-lines file as it finishes, so a killed
benchmark picks up where it stopped. scipy and mealpy are imported lazily, only
here, and a missing one is reported with the ``dev`` extra to install.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emodesk.errors import EmodeskError
from emodesk.fusion import optimize
from emodesk.fusion.optimize import OPTIMIZERS, make_optimizer
from emodesk.fusion.optimize.problem import FunctionProblem, minimize
from emodesk.lab.aquila_benchmark.functions import BenchmarkFunction, get_function

DIM = 30
POP_SIZE = 50
DE_POPSIZE = 5
EXTERNAL = ("mealpy", "de")
_OPTIMIZE_DIR = Path(optimize.__file__).resolve().parent  # the code under benchmark


class MissingDependency(EmodeskError):
    """A comparison optimizer's package (scipy or mealpy) is not installed."""


@dataclass(frozen=True)
class RunRecord:
    """One optimizer run on one function with one seed."""

    function: str
    optimizer: str
    seed: int
    iterations: int
    fitness: float
    seconds: float
    evaluations: int
    code: str  # which implementation ran (see code_fingerprint); part of the cache key

    def key(self) -> tuple[str, str, int, int, str]:
        return (self.function, self.optimizer, self.seed, self.iterations, self.code)


def require(optimizer: str) -> Any:
    """Import what ``optimizer`` needs, or raise :class:`MissingDependency` naming the extra."""
    try:
        if optimizer == "mealpy":
            import mealpy

            return mealpy
        if optimizer == "de":
            import scipy.optimize

            return scipy.optimize
    except ImportError as e:
        pkg = "mealpy" if optimizer == "mealpy" else "scipy"
        raise MissingDependency(
            f"the {optimizer} comparison needs {pkg}, which is not installed: pip install -e '.[dev]'"
        ) from e
    return None


def code_fingerprint(optimizer: str) -> str:
    """A short tag of the implementation behind ``optimizer`` (source hash, or package version)."""
    if optimizer == "mealpy":
        return f"mealpy-{require('mealpy').__version__}"
    if optimizer == "de":
        import scipy

        return f"scipy-{scipy.__version__}"
    if optimizer not in OPTIMIZERS:
        raise KeyError(f"unknown optimizer {optimizer!r}; choose from {', '.join([*OPTIMIZERS, *EXTERNAL])}")
    h = hashlib.sha256()
    for f in sorted(_OPTIMIZE_DIR.glob("*.py")):  # a change to the optimizers' code redoes their runs
        h.update(_code_only(f.read_text(encoding="utf-8")).encode())
    return h.hexdigest()[:12]


def _code_only(source: str) -> str:
    """The module's syntax tree without docstrings or comments: editing prose keeps cached runs."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def de_maxiter(iterations: int, pop_size: int = POP_SIZE, dim: int = DIM) -> int:
    """DE generations whose budget ``(maxiter + 1)·5·dim`` matches ``pop_size·(iterations + 1)``."""
    return max(1, pop_size * (iterations + 1) // (DE_POPSIZE * dim) - 1)


def _run_emodesk(fn: BenchmarkFunction, name: str, seed: int, iterations: int) -> tuple[float, int, float]:
    t0 = time.perf_counter()
    problem = FunctionProblem(fn.func, fn.dim, -fn.bound, fn.bound)
    res = minimize(problem, make_optimizer(name, pop_size=POP_SIZE), n_iter=iterations, seed=seed)
    return res.f, res.n_evals, time.perf_counter() - t0


def _run_mealpy(fn: BenchmarkFunction, seed: int, iterations: int) -> tuple[float, int, float]:
    require("mealpy")
    from mealpy import FloatVar
    from mealpy.swarm_based.AO import OriginalAO

    calls = 0
    func = fn.func

    def objective(x: np.ndarray) -> float:
        nonlocal calls
        calls += 1
        return float(func(x[None, :])[0])

    t0 = time.perf_counter()
    model = OriginalAO(epoch=iterations, pop_size=POP_SIZE)
    best = model.solve(
        {
            "bounds": FloatVar(lb=(-fn.bound,) * fn.dim, ub=(fn.bound,) * fn.dim),
            "obj_func": objective,
            "minmax": "min",
            "log_to": None,  # mealpy logs every epoch otherwise
        },
        seed=seed,
    )
    return float(best.target.fitness), calls, time.perf_counter() - t0


def _run_de(fn: BenchmarkFunction, seed: int, iterations: int) -> tuple[float, int, float]:
    opt = require("de")
    func = fn.func

    def objective(x: np.ndarray) -> float:
        return float(func(x[None, :])[0])

    t0 = time.perf_counter()
    res = opt.differential_evolution(
        objective,
        [(-fn.bound, fn.bound)] * fn.dim,
        popsize=DE_POPSIZE,
        maxiter=de_maxiter(iterations, dim=fn.dim),
        polish=False,
        tol=0,
        atol=0,
        rng=np.random.default_rng(seed),
    )
    return float(res.fun), int(res.nfev), time.perf_counter() - t0


def run_one(function: str, optimizer: str, seed: int, iterations: int) -> RunRecord:
    """Run ``optimizer`` (``emodesk``, ``emodesk-<variant>``, ``mealpy`` or ``de``) once."""
    fn = get_function(function, DIM)
    if optimizer == "mealpy":
        f, n, s = _run_mealpy(fn, seed, iterations)
    elif optimizer == "de":
        f, n, s = _run_de(fn, seed, iterations)
    else:
        f, n, s = _run_emodesk(fn, optimizer, seed, iterations)
    return RunRecord(function, optimizer, seed, iterations, f, s, n, code_fingerprint(optimizer))


class RunCache:
    """Finished runs, one JSON object per line, appended (and flushed) as each finishes."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.records: dict[tuple[str, str, int, int, str], RunRecord] = {}
        self._newline_first = False
        if path is not None and path.exists():
            text = path.read_text(encoding="utf-8")
            self._newline_first = bool(text) and not text.endswith("\n")
            for line in text.splitlines():
                if not line.strip():
                    continue
                try:
                    rec = RunRecord(**json.loads(line))
                except (ValueError, TypeError):
                    continue  # a line cut short by a killed run: that run is simply redone
                self.records[rec.key()] = rec

    def get(self, function: str, optimizer: str, seed: int, iterations: int, code: str) -> RunRecord | None:
        return self.records.get((function, optimizer, seed, iterations, code))

    def add(self, rec: RunRecord) -> None:
        self.records[rec.key()] = rec
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                if self._newline_first:  # end the line a killed run left unfinished
                    fh.write("\n")
                    self._newline_first = False
                fh.write(json.dumps(asdict(rec)) + "\n")
                fh.flush()
                os.fsync(fh.fileno())


def run_benchmark(
    functions: Sequence[str],
    optimizers: Sequence[str],
    seeds: Iterable[int],
    iterations: int,
    *,
    cache: RunCache | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[RunRecord]:
    """Every (function, seed, optimizer) run, optimizers interleaved per seed so load drifts hit all alike."""
    cache = cache or RunCache(None)
    codes = {o: code_fingerprint(o) for o in optimizers}
    out: list[RunRecord] = []
    seeds = list(seeds)
    for fi, function in enumerate(functions):
        t0, reused = time.perf_counter(), 0
        for seed in seeds:
            for opt in optimizers:
                rec = cache.get(function, opt, seed, iterations, codes[opt])
                if rec is None:
                    rec = run_one(function, opt, seed, iterations)
                    cache.add(rec)
                else:
                    reused += 1
                out.append(rec)
        if progress:
            progress(
                f"{function}: done ({fi + 1}/{len(functions)}, {time.perf_counter() - t0:.1f} s"
                + (f", {reused} runs from the cache)" if reused else ")")
            )
    return out


def summarize(records: Iterable[RunRecord]) -> dict[str, dict[str, dict[str, Any]]]:
    """The ``fusion benchmark-ao --json`` object (docs/formats.md, "`fusion benchmark-ao --json` output")."""
    groups: dict[str, dict[str, list[RunRecord]]] = {}
    for r in records:
        groups.setdefault(r.function, {}).setdefault(r.optimizer, []).append(r)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for function, by_opt in groups.items():
        out[function] = {}
        for opt, recs in by_opt.items():
            f = np.array([r.fitness for r in recs])
            q25, q75 = np.percentile(f, [25, 75])
            out[function][opt] = {
                "median_fitness": float(np.median(f)),
                "median_seconds": float(np.median([r.seconds for r in recs])),
                "iqr_fitness": [float(q25), float(q75)],
                "evaluations": int(max(r.evaluations for r in recs)),
            }
    return out
