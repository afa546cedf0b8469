"""``emodesk fusion benchmark-ao``: the command line of the Aquila benchmark.

``emodesk fusion`` dispatches here (:func:`emodesk.cli.common.lab_module`); the exit status
convention is the app's (``docs/formats.md``, "Command-line conventions"). Importing this
module loads neither scipy nor mealpy: the comparison optimizers load inside a run.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from emodesk.cli.common import Parser, UsageError
from emodesk.fusion.optimize import OPTIMIZERS
from emodesk.lab.aquila_benchmark import report
from emodesk.lab.aquila_benchmark import run as bm
from emodesk.lab.aquila_benchmark.functions import FUNCTION_NAMES


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parser() -> Parser:
    p = Parser(
        prog="emodesk fusion benchmark-ao",
        description="Compare emodesk's Aquila Optimizer with mealpy's OriginalAO and scipy's differential "
        "evolution at the same evaluation budget (30 D, 50 agents). Prints a table; --json writes the "
        "report of docs/formats.md.",
    )
    p.add_argument(
        "--seeds", type=int, default=10, metavar="N", help="seeds 0..N-1 per function (default 10)"
    )
    p.add_argument("--iterations", type=int, default=500, metavar="T", help="iterations T (default 500)")
    p.add_argument(
        "--functions",
        type=_csv,
        default=list(FUNCTION_NAMES),
        metavar="A,B",
        help=f"functions (default all: {','.join(FUNCTION_NAMES)})",
    )
    p.add_argument(
        "--shifted", action="store_true", help="also run NAME_shifted (optimum moved off the origin)"
    )
    p.add_argument(
        "--variants",
        type=_csv,
        default=["all"],
        metavar="V,…|all|none",
        help="improved emodesk variants to add as emodesk-V (default all)",
    )
    p.add_argument(
        "--optimizers",
        type=_csv,
        metavar="A,B",
        help="comparison optimizers among mealpy,de (default: those installed; naming one that is not "
        "installed is an error)",
    )
    p.add_argument(
        "--cache", metavar="RUNS.jsonl", help="append each finished run here; reuse runs found here"
    )
    p.add_argument(
        "--markdown", metavar="TABLE.md", help="also write the table (with command and machine) here"
    )
    p.add_argument("--json", required=True, metavar="OUT", help="the report (docs/formats.md format)")
    return p


def run(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)

    if args.seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {args.seeds}")
    if args.iterations < 1:
        raise UsageError(f"--iterations must be at least 1, got {args.iterations}")
    functions: list[str] = []
    for name in args.functions:
        if name.removesuffix("_shifted") not in FUNCTION_NAMES:
            raise UsageError(f"unknown function {name!r}; choose from {','.join(FUNCTION_NAMES)}")
        functions.append(name)
    if args.shifted:
        functions += [f"{n}_shifted" for n in args.functions if not n.endswith("_shifted")]
    functions = list(dict.fromkeys(functions))

    known_variants = [k.removeprefix("emodesk-") for k in OPTIMIZERS if k.startswith("emodesk-")]
    if args.variants == ["all"]:
        variants = known_variants
    elif args.variants in ([], ["none"]):
        variants = []
    else:
        variants = [v.removeprefix("emodesk-") for v in args.variants]
        bad = [v for v in variants if v not in known_variants]
        if bad:
            raise UsageError(
                f"unknown variant {bad[0]!r}; choose from {','.join(known_variants) or '(none)'}"
            )
    optimizers = ["emodesk", *(f"emodesk-{v}" for v in variants)]

    if args.optimizers is None:
        for ext in bm.EXTERNAL:
            try:
                bm.require(ext)
            except bm.MissingDependency as e:
                print(f"emodesk: skipping {ext}: {e}", file=sys.stderr)
            else:
                optimizers.append(ext)
    else:
        for ext in args.optimizers:
            if ext not in bm.EXTERNAL:
                raise UsageError(f"unknown comparison optimizer {ext!r}; choose from {','.join(bm.EXTERNAL)}")
            try:
                bm.require(ext)
            except bm.MissingDependency as e:
                raise UsageError(str(e)) from None
            optimizers.append(ext)

    json_path = Path(args.json)
    if not json_path.parent.is_dir():
        raise UsageError(f"--json {args.json}: folder {json_path.parent} does not exist")
    cache = bm.RunCache(Path(args.cache) if args.cache else None)
    records = bm.run_benchmark(
        functions,
        optimizers,
        range(args.seeds),
        args.iterations,
        cache=cache,
        progress=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    summary = bm.summarize(records)
    json_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(report.format_text_table(summary))
    if args.markdown:
        command = "emodesk fusion benchmark-ao " + " ".join(shlex.quote(a) for a in argv)
        Path(args.markdown).write_text(
            report.markdown_report(summary, command=command, seeds=args.seeds, iterations=args.iterations),
            encoding="utf-8",
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m emodesk.lab.aquila_benchmark.cli …``, the same as ``emodesk fusion benchmark-ao …``."""
    from emodesk.cli.common import guarded

    return guarded(run, list(sys.argv[1:] if argv is None else argv), "benchmark-ao")


if __name__ == "__main__":
    raise SystemExit(main())
