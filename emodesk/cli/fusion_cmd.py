"""``emodesk fusion SUBCOMMAND``: the fusion tools (so far ``benchmark-ao``).

Exit status: 0 success, 1 the work failed, 2 bad usage or unreadable input
(one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from emodesk.errors import EmodeskError

SUBCOMMANDS = ("benchmark-ao",)


class UsageError(Exception):
    """Bad arguments: reported on one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (raised, not printed with the usage)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _fail(code: int, msg: str) -> int:
    print(f"emodesk: {msg}", file=sys.stderr)
    return code


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _benchmark_parser() -> _Parser:
    from emodesk.fusion.benchmark_functions import FUNCTION_NAMES

    p = _Parser(
        prog="emodesk fusion benchmark-ao",
        description="Compare emodesk's Aquila Optimizer with mealpy's OriginalAO and scipy's differential "
        "evolution at the same evaluation budget (30 D, 50 agents). Prints a table; --json writes the "
        "report of CONTRACTS.md.",
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
    p.add_argument("--json", required=True, metavar="OUT", help="the report (CONTRACTS.md format)")
    return p


def cmd_benchmark_ao(argv: Sequence[str]) -> int:
    args = _benchmark_parser().parse_args(argv)
    from emodesk.fusion import benchmark as bm
    from emodesk.fusion import benchmark_report as report
    from emodesk.fusion.benchmark_functions import FUNCTION_NAMES
    from emodesk.fusion.optimize import OPTIMIZERS

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
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        text = f"usage: emodesk fusion {{{','.join(SUBCOMMANDS)}}} ... (emodesk fusion SUBCOMMAND --help)"
        if not argv:
            return _fail(2, f"fusion needs a subcommand: {', '.join(SUBCOMMANDS)}")
        print(text)
        return 0
    cmd, rest = argv[0], argv[1:]
    handlers = {"benchmark-ao": cmd_benchmark_ao}
    if cmd not in handlers:
        return _fail(2, f"unknown fusion subcommand {cmd!r}; choose from {', '.join(SUBCOMMANDS)}")
    try:
        return handlers[cmd](rest)
    except UsageError as e:
        return _fail(2, str(e))
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    except EmodeskError as e:
        return _fail(1, str(e))
    except OSError as e:
        return _fail(1, f"{cmd}: {e}")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # python -m emodesk.cli.fusion_cmd … (same as emodesk fusion …)
    raise SystemExit(main())
