"""``emodesk table`` and ``emodesk report``: the results of ``analyze`` runs and recorded sessions
as tidy tables and as an HTML report with pictures (docs/formats.md, "Tables" and "Reports")."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from emodesk.cli.common import Parser, guarded
from emodesk.errors import EmodeskError

SOURCES_HELP = (
    "a run folder (analyze SOURCE... --out DIR), an analyze .jsonl, a recorded session, "
    "or a folder of sessions"
)


def _table(argv: Sequence[str]) -> int:
    from emodesk.results.inputs import find_results
    from emodesk.results.tables import FORMATS, write_tables

    p = Parser(
        prog="emodesk table",
        description="Tidy tables of results: faces, utterances, timeline (one row per media second) and "
        "inputs, each with the input's id as a column. Load one with pandas.read_csv / read_parquet.",
    )
    p.add_argument("sources", nargs="+", metavar="RUN_DIR|JSONL|SESSION", help=SOURCES_HELP)
    p.add_argument(
        "--out", required=True, metavar="DIR", help="folder for faces, utterances, timeline, inputs"
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="csv",
        help="csv (default, needs nothing) or parquet (needs pyarrow: pip install 'emodesk[tables]')",
    )
    args = p.parse_args(argv)
    inputs = find_results(args.sources)
    paths, counts = write_tables(inputs, Path(args.out), args.format)
    failed = sum(1 for i in inputs if not i.has_records)
    print(
        f"{len(inputs)} inputs ({failed} without records: failed) → "
        + ", ".join(f"{p.name} ({counts[p.stem]} rows)" for p in paths)
    )
    return 0


def table_main(argv: Sequence[str]) -> int:
    return guarded(_table, argv, "table")


def _report(argv: Sequence[str]) -> int:
    from emodesk.results.inputs import find_results

    p = Parser(
        prog="emodesk report",
        description="An HTML report with pictures: each input's timeline of fused and per-modality "
        "probabilities, its transcript with each utterance's emotions, the share of time per emotion, "
        "and for a labelled session the fused read-out against the labels; for several inputs an "
        "overview with a row per input and the aggregate. The page loads nothing from anywhere.",
    )
    p.add_argument("sources", nargs="+", metavar="RUN_DIR|JSONL|SESSION", help=SOURCES_HELP)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for index.html and its PNGs")
    p.add_argument("--title", help="the overview's title (several inputs)")
    args = p.parse_args(argv)
    inputs = find_results(args.sources)
    try:
        from emodesk.ui.render.report import write_report  # Qt: only this command draws
    except ImportError as e:
        raise EmodeskError(
            f"the report's pictures are drawn with Qt (PySide6), which failed to load: {e}"
        ) from None

    index = write_report(inputs, Path(args.out), title=args.title)
    print(f"{len(inputs)} input{'s' if len(inputs) != 1 else ''} → {index}")
    return 0


def report_main(argv: Sequence[str]) -> int:
    return guarded(_report, argv, "report")


if __name__ == "__main__":
    sys.exit(table_main(sys.argv[1:]))
