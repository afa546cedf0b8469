"""emodesk's optimizers in the pymoo shape: a :class:`Problem`, an optimizer, :func:`minimize`.

``emodesk`` is the faithful Aquila Optimizer (:mod:`.aquila`), the default
everywhere; improved variants are chosen by name (``OPTIMIZERS``).
"""

from __future__ import annotations

from typing import Any

from emodesk.fusion.optimize.aquila import AquilaOptimizer, levy_flight
from emodesk.fusion.optimize.aquila_levy_ls import AquilaLevySearch
from emodesk.fusion.optimize.problem import FunctionProblem, Optimizer, Problem, Result, minimize

OPTIMIZERS: dict[str, Any] = {
    "emodesk": AquilaOptimizer,
    "emodesk-levy-ls": AquilaLevySearch,
}
DEFAULT_OPTIMIZER = "emodesk"


def make_optimizer(name: str = DEFAULT_OPTIMIZER, **kwargs: Any) -> Optimizer:
    """An optimizer by its benchmark key (``emodesk`` or ``emodesk-<variant>``)."""
    try:
        cls = OPTIMIZERS[name]
    except KeyError:
        raise KeyError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}") from None
    opt: Optimizer = cls(**kwargs)
    return opt


__all__ = [
    "DEFAULT_OPTIMIZER",
    "OPTIMIZERS",
    "AquilaLevySearch",
    "AquilaOptimizer",
    "FunctionProblem",
    "Optimizer",
    "Problem",
    "Result",
    "levy_flight",
    "make_optimizer",
    "minimize",
]
