"""Tables and the generated page of ``fusion benchmark-ao``: what the numbers of
:mod:`emodesk.lab.aquila_benchmark.run` say against the issue's targets.
"""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import numpy as np

from emodesk.lab.aquila_benchmark.run import DE_POPSIZE, DIM, EXTERNAL, POP_SIZE, de_maxiter
from emodesk.machine import cpu_name

Summary = dict[str, dict[str, dict[str, Any]]]


def no_worse(ours: float, theirs: float) -> bool:
    """docs/formats.md: our median ≤ 1.5 × theirs, or within 1e-6 of it."""
    return ours <= 1.5 * theirs or abs(ours - theirs) <= 1e-6


def machine_description() -> str:
    cpu = cpu_name()
    versions = [f"Python {platform.python_version()}", f"numpy {np.__version__}"]
    for pkg in ("scipy", "mealpy"):
        try:
            versions.append(f"{pkg} {__import__(pkg).__version__}")
        except ImportError:
            versions.append(f"{pkg} not installed")
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}; " + ", ".join(
        versions
    )


def _fmt(x: float) -> str:
    return "0" if x == 0 else f"{x:.3g}"


def table_rows(summary: Summary) -> tuple[list[str], list[list[str]]]:
    """Header and rows: per function, each optimizer's median fitness [IQR] and median time."""
    opts: list[str] = []
    for by_opt in summary.values():
        opts += [o for o in by_opt if o not in opts]
    order = {
        o: i
        for i, o in enumerate(["emodesk", *sorted(o for o in opts if o.startswith("emodesk-")), *EXTERNAL])
    }
    opts.sort(key=lambda o: order.get(o, 99))
    header = ["function"]
    for o in opts:
        header += [f"{o} median [IQR]", f"{o} s"]
    compare = "mealpy" in opts
    ours = [o for o in opts if o.startswith("emodesk")]
    if compare:
        header += [f"{o} vs mealpy" for o in ours]
    rows = []
    for function, by_opt in summary.items():
        row = [function]
        for o in opts:
            e = by_opt.get(o)
            if e is None:
                row += ["–", "–"]
                continue
            q25, q75 = e["iqr_fitness"]
            row += [f"{_fmt(e['median_fitness'])} [{_fmt(q25)}, {_fmt(q75)}]", f"{e['median_seconds']:.3g}"]
        if compare:
            m = by_opt.get("mealpy")
            for o in ours:
                e = by_opt.get(o)
                if e is None or m is None:
                    row.append("–")
                    continue
                verdict = "no worse" if no_worse(e["median_fitness"], m["median_fitness"]) else "WORSE"
                row.append(f"{verdict}, {m['median_seconds'] / max(e['median_seconds'], 1e-12):.0f}× faster")
        rows.append(row)
    return header, rows


def format_text_table(summary: Summary) -> str:
    header, rows = table_rows(summary)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def format_markdown_table(summary: Summary) -> str:
    header, rows = table_rows(summary)
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def target_summary(summary: Summary) -> list[str]:
    """One line per emodesk optimizer: where it meets the issue's two targets against mealpy."""
    lines = []
    ours = sorted({o for by in summary.values() for o in by if o.startswith("emodesk")}, key=len)
    for o in ours:
        worse, slow, n = [], [], 0
        for function, by in summary.items():
            if o not in by or "mealpy" not in by:
                continue
            n += 1
            e, m = by[o], by["mealpy"]
            if not no_worse(e["median_fitness"], m["median_fitness"]):
                worse.append(function)
            if m["median_seconds"] < 10 * e["median_seconds"]:
                slow.append(function)
        if n:
            lines.append(
                f"- `{o}`: median fitness no worse than mealpy's on {n - len(worse)}/{n} functions"
                + (f" (worse on {', '.join(worse)})" if worse else "")
                + f"; ≥ 10× faster on {n - len(slow)}/{n}"
                + (f" (not on {', '.join(slow)})" if slow else "")
                + "."
            )
    return lines


def evaluations_line(summary: Summary) -> str:
    counts: dict[str, set[int]] = {}
    for by_opt in summary.values():
        for opt, e in by_opt.items():
            counts.setdefault(opt, set()).add(int(e["evaluations"]))
    return "; ".join(f"{o} {', '.join(f'{n:,}' for n in sorted(c))}" for o, c in counts.items())


def markdown_report(summary: Summary, *, command: str, seeds: int, iterations: int) -> str:
    """The generated benchmark page: command, machine, settings, table and target verdicts."""
    evals = POP_SIZE * (iterations + 1)
    parts = [
        "# Aquila Optimizer benchmark",
        "",
        "Generated by `emodesk fusion benchmark-ao`; do not edit by hand (see docs/aquila.md for the",
        "discussion). Regenerate with:",
        "",
        "```",
        command,
        "```",
        "",
        "(run under `nice -n 10` on the shared machine; with `--cache`, runs already in "
        "that file are reused, so an interrupted benchmark resumes.)",
        "",
        f"- Machine: {machine_description()}.",
        f"- Date: {time.strftime('%Y-%m-%d')}.",
        f"- Settings: {DIM} dimensions, {POP_SIZE} agents × {iterations} iterations + the initial population "
        f"= {evals:,} evaluations; seeds 0..{seeds - 1}; mealpy `OriginalAO(epoch={iterations}, "
        f"pop_size={POP_SIZE})`; scipy `differential_evolution(popsize={DE_POPSIZE}, "
        f"maxiter={de_maxiter(iterations)}, polish=False, tol=0, atol=0)`.",
        "- Cells: median final fitness [25th, 75th percentile] over the seeds, and median wall seconds per "
        "run (objective included; each optimizer calls the same vectorised numpy function, mealpy and DE "
        "one row at a time). \"No worse\" is docs/formats.md's rule: our median ≤ 1.5 × mealpy's, or within "
        '1e-6 of it; "× faster" is mealpy\'s median time over ours.',
        f"- Evaluations per run (the largest over seeds; mealpy's counted at the objective, DE's `nfev`): "
        f"{evaluations_line(summary)}.",
        "- `NAME_shifted` moves the optimum to `np.random.default_rng(2021 + i).uniform(-0.8*b, 0.8*b, 30)` "
        "for the i-th function, keeping its minimum value (0).",
        "",
        format_markdown_table(summary),
        "",
        "Targets (issue 4): median fitness no worse than mealpy's, and median time ≥ 10× lower, on every "
        "function, plain and shifted.",
        "",
        *target_summary(summary),
        "",
    ]
    return "\n".join(parts)
