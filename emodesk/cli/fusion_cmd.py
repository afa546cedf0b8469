"""``emodesk fusion SUBCOMMAND``: pair, optimize, eval, and the optimizer benchmark.

- ``pair``: pseudo-paired manifests from unimodal data (docs/formats.md, "Manifests (data)");
- ``optimize``: the fusion-weight search with AO (or another optimizer) on a
  paired validation manifest, written as ``fusion.json``;
- ``eval``: fused, equal-weight, per-member and per-modality metrics on a
  paired manifest;
- ``equal``: ``fusion.json`` with equal weights per modality (no data needed);
- ``benchmark-ao``: AO against mealpy and differential evolution.

Exit status: 0 success, 1 the work failed, 2 bad usage or unreadable input
(one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from emodesk.cli.common import Parser, UsageError, fail, guarded, lab_module
from emodesk.errors import InputError

SUBCOMMANDS = ("pair", "optimize", "eval", "equal", "benchmark-ao")


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def cmd_benchmark_ao(argv: Sequence[str]) -> int:
    """The benchmark is lab code (:mod:`emodesk.lab.aquila_benchmark.cli`), reached only from here."""
    return int(lab_module("aquila_benchmark.cli", "the Aquila benchmark").run(argv))


def _label_args(p: Parser) -> None:
    p.add_argument(
        "--label-map", metavar="A=B,…", help="rename labels before checking them (e.g. love=happy)"
    )
    p.add_argument("--ignore-unknown", action="store_true", help="skip rows whose label is not one of ours")


def _out_file(flag: str, value: str) -> Path:
    p = Path(value)
    if not p.parent.is_dir():
        raise UsageError(f"{flag} {value}: folder {p.parent} does not exist")
    return p


def _pair_parser() -> Parser:
    p = Parser(
        prog="emodesk fusion pair",
        description=(
            "Build a pseudo-paired manifest (face_path,audio_path,text,label) from unimodal data: "
            "per label present in every input, N rows, each modality drawn from its own pool of "
            "that label (seeded; without replacement, then again). Each input is a manifest CSV "
            "or a dataset folder (its --split)."
        ),
    )
    p.add_argument("--face", metavar="CSV|DIR", help="face crops: path,label CSV or a FER-2013-layout folder")
    p.add_argument("--voice", metavar="CSV|DIR", help="utterances: path,label CSV or a RAVDESS-layout folder")
    p.add_argument("--text", metavar="CSV|DIR", help="sentences: text,label CSV or a text dataset folder")
    p.add_argument(
        "--split", choices=("train", "val", "test"), default="test", help="split of dataset folders"
    )
    p.add_argument("--per-label", type=int, metavar="N", help="rows per label (default: smallest pool)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument(
        "--mix",
        default="all",
        metavar="all|live|PATTERN=F,…",
        help="presence patterns of the rows: 'all' (every row has every input; the default), 'live' "
        "(the assumed live proportions of docs/formats.md) or e.g. face+voice+text=0.6,face+voice=0.4",
    )
    p.add_argument("--out", required=True, metavar="PAIRED.csv", help="the paired manifest to write")
    _label_args(p)
    return p


def cmd_pair(argv: Sequence[str]) -> int:
    args = _pair_parser().parse_args(argv)
    from emodesk.evaluation.datasets import parse_label_map
    from emodesk.fusion.paired import (
        apply_mix,
        load_unimodal,
        make_pairs,
        parse_mix,
        pattern_of,
        write_paired_manifest,
    )
    from emodesk.labels import LABELS

    mix = parse_mix(args.mix)  # a bad mix is a usage error before any data is read
    given = {m: getattr(args, m) for m in ("face", "voice", "text") if getattr(args, m)}
    if len(given) < 2:
        raise UsageError("fusion pair needs at least two of --face, --voice, --text")
    out = _out_file("--out", args.out)
    lm = parse_label_map(args.label_map)
    inputs = {
        m: load_unimodal(src, m, split=args.split, label_map=lm, ignore_unknown=args.ignore_unknown)
        for m, src in given.items()
    }
    rows = make_pairs(inputs, per_label=args.per_label, seed=args.seed)
    if args.mix != "all":
        rows = apply_mix(rows, mix, seed=args.seed)
    write_paired_manifest(rows, out)
    counts = {LABELS[y]: sum(r.label == y for r in rows) for y in sorted({r.label for r in rows})}
    pools = ", ".join(f"{m} {len(r)}" for m, r in inputs.items())
    print(f"{out}: {len(rows)} rows ({', '.join(f'{k} {v}' for k, v in counts.items())}) from {pools}")
    if args.mix != "all":
        patterns: dict[str, int] = {}
        for r in rows:
            patterns[pattern_of(r)] = patterns.get(pattern_of(r), 0) + 1
        print(
            "presence: " + ", ".join(f"{k} {v}" for k, v in sorted(patterns.items(), key=lambda kv: -kv[1]))
        )
    return 0


def _member_args(p: Parser) -> None:
    p.add_argument("--manifest", required=True, metavar="PAIRED.csv", help="paired manifest")
    p.add_argument(
        "--members", type=_csv, metavar="ID,ID", help="ensemble members (default: every installed member)"
    )
    p.add_argument(
        "--cache",
        metavar="FILE.npz",
        help="member score cache (default: <user data>/emodesk/cache/fusion-scores.npz; 'none' disables)",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where members run")
    _label_args(p)


def _scores(args: argparse.Namespace) -> tuple[object, list[object]]:
    """Member scores of the paired manifest's rows (the models run only for inputs not cached)."""
    from emodesk.evaluation.datasets import parse_label_map
    from emodesk.fusion.paired import load_paired_manifest
    from emodesk.fusion.search import ScoreCache, score_paired
    from emodesk.inference.members import MEMBER_MODALITIES
    from emodesk.inference.registry import installed_manifests
    from emodesk.resources import user_data_dir

    rows = load_paired_manifest(
        args.manifest, label_map=parse_label_map(args.label_map), ignore_unknown=args.ignore_unknown
    )
    installed = {m.id: m for m in installed_manifests().values() if m.modality in MEMBER_MODALITIES}
    ids = sorted(installed) if args.members is None else args.members
    if unknown := [m for m in ids if m not in installed]:
        raise UsageError(f"--members: {unknown} not installed; installed members: {sorted(installed)}")
    cache_path = (
        None if args.cache == "none" else Path(args.cache or user_data_dir() / "cache" / "fusion-scores.npz")
    )
    scores = score_paired(
        rows,
        [installed[m] for m in ids],
        cache=ScoreCache(cache_path),
        device=args.device,
        log=lambda msg: print(f"emodesk: {msg}", file=sys.stderr, flush=True),
    )
    return scores, list(rows)


def _optimize_parser() -> Parser:
    from emodesk.fusion.fuse import RULES
    from emodesk.fusion.search import (
        DEFAULT_AGENTS,
        DEFAULT_ITERATIONS,
        DEFAULT_NLL_WEIGHT,
        DEFAULT_PENALTY,
        DEFAULT_RULE,
        FUSION_OPTIMIZERS,
    )

    p = Parser(
        prog="emodesk fusion optimize",
        description="Search the fusion weights on a paired validation manifest and write fusion.json. "
        "Objective: 1 - macro-F1 (or UAR) of the fused prediction + penalty x distance of the weights from "
        "equal ones (a guard against fitting a small set).",
    )
    _member_args(p)
    p.add_argument("--out", required=True, metavar="fusion.json", help="where to write the weights")
    p.add_argument("--optimizer", choices=tuple(FUSION_OPTIMIZERS), default="ao", help="default: ao (Aquila)")
    p.add_argument(
        "--agents", type=int, default=DEFAULT_AGENTS, help=f"population (default {DEFAULT_AGENTS})"
    )
    p.add_argument(
        "--iterations",
        type=int,
        default=DEFAULT_ITERATIONS,
        help=f"iterations (default {DEFAULT_ITERATIONS})",
    )
    p.add_argument("--seed", type=int, default=0, help="optimizer seed (default 0)")
    p.add_argument("--objective", choices=("macro_f1", "uar"), default="macro_f1")
    p.add_argument(
        "--penalty",
        type=float,
        default=DEFAULT_PENALTY,
        help=f"pull toward equal weights (default {DEFAULT_PENALTY})",
    )
    p.add_argument(
        "--nll-weight",
        type=float,
        default=DEFAULT_NLL_WEIGHT,
        help="weight of the fused probabilities' negative log-likelihood in the objective, a smooth "
        f"tie-breaker for macro-F1 (default {DEFAULT_NLL_WEIGHT}; 0: macro-F1 and the penalty alone)",
    )
    p.add_argument("--per-class", action="store_true", help="one weight per member and class")
    p.add_argument(
        "--rule",
        choices=RULES,
        default=DEFAULT_RULE,
        help=f"the fusion rule searched (docs/formats.md, 'Fusion'; default {DEFAULT_RULE}: weights and "
        "class biases of a weighted product of the members' probabilities)",
    )
    p.add_argument(
        "--curve",
        metavar="CURVE.csv",
        help="write the best-so-far objective after each iteration (iteration,evaluations,best)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def _progress(iterations: int, optimizer: str) -> object:
    """A callback printing the best objective about ten times over the search (on stderr)."""
    import numpy as np

    step = max(1, iterations // 10)
    best = [float("inf")]

    def callback(t: int, X: object, F: object) -> None:
        best[0] = min(best[0], float(np.min(F)))  # type: ignore[call-overload]
        if t % step == 0 or t == iterations:
            print(
                f"emodesk: {optimizer} iteration {t}/{iterations}: best objective {best[0]:.4f}",
                file=sys.stderr,
                flush=True,
            )

    return callback


def _table(report: dict[str, dict[str, object]]) -> str:
    lines = [f"{'':28s} {'n':>6s} {'accuracy':>9s} {'UAR':>7s} {'macro-F1':>9s}"]
    for name, m in report.items():
        lines.append(
            f"{name:28s} {m['n']:6d} {m['accuracy']:9.4f} {m['uar']:7.4f} {m['macro_f1']:9.4f}"  # type: ignore[index]
        )
    return "\n".join(lines)


def cmd_optimize(argv: Sequence[str]) -> int:
    args = _optimize_parser().parse_args(argv)
    from emodesk.fusion.config import write_fusion_json
    from emodesk.fusion.search import (
        FusionProblem,
        convergence_curve,
        evaluate_fusion,
        fusion_document,
        optimize_weights,
        write_curve,
    )

    if args.agents < 2 or args.iterations < 1:
        raise UsageError("--agents must be at least 2 and --iterations at least 1")
    if args.penalty < 0:
        raise UsageError(f"--penalty must be non-negative, got {args.penalty}")
    if not args.nll_weight >= 0:
        raise UsageError(f"--nll-weight must be non-negative, got {args.nll_weight}")
    out = _out_file("--out", args.out)
    curve_out = _out_file("--curve", args.curve) if args.curve else None
    scores, rows = _scores(args)
    problem = FusionProblem(
        scores,  # type: ignore[arg-type]
        objective=args.objective,
        per_class=args.per_class,
        penalty=args.penalty,
        rule=args.rule,
        nll_weight=args.nll_weight,
    )
    res, weights = optimize_weights(
        problem,
        optimizer=args.optimizer,
        agents=args.agents,
        iterations=args.iterations,
        seed=args.seed,
        callback=None if args.quiet else _progress(args.iterations, args.optimizer),  # type: ignore[arg-type]
    )
    if curve_out is not None:
        write_curve(curve_out, convergence_curve(res))
    doc = fusion_document(
        problem, res, weights, optimizer=args.optimizer, manifest=Path(args.manifest), rows=len(rows)
    )
    write_fusion_json(out, doc)
    rule = problem.rule_of(res.x)
    report = evaluate_fusion(scores, weights, rule=rule, bootstrap=0)  # type: ignore[arg-type]
    print(_table({k: report[k] for k in ("fused", "equal_weights")}))
    print(
        f"{args.optimizer}: objective {res.f:.4f} after {res.n_evals} evaluations in {res.seconds:.2f} s "
        f"(seed {args.seed}), rule {rule.name}; weights "
        + ", ".join(f"{m} {w if isinstance(w, float) else '[…]'}" for m, w in weights.items())
        + ("; class biases " + ", ".join(f"{b:+.3f}" for b in rule.bias) if rule.name == "log-linear" else "")
    )
    print(f"wrote {out}" + (f" and {curve_out}" if curve_out is not None else ""))
    return 0


def cmd_equal(argv: Sequence[str]) -> int:
    """``fusion.json`` with equal weights per modality: the baseline, and the fallback without paired
    data (rerun after re-exporting a member: its sha256 is recorded)."""
    p = Parser(
        prog="emodesk fusion equal",
        description="Write fusion.json with equal weights per modality (each modality weighs the same in "
        "total, shared equally by its members) over the members in --models.",
    )
    p.add_argument("--models", metavar="DIR", required=True, help="the model folder (e.g. models)")
    p.add_argument("--out", required=True, metavar="fusion.json", help="where to write the weights")
    args = p.parse_args(argv)
    from emodesk.fusion.config import equal_fusion_document, write_fusion_json
    from emodesk.inference.members import MEMBER_MODALITIES
    from emodesk.inference.registry import installed_manifests

    models = Path(args.models)
    if not models.is_dir():
        raise InputError(f"--models {args.models}: no such folder")
    out = _out_file("--out", args.out)
    members = [
        (m.id, m.sha256, m.modality)
        for m in installed_manifests([models]).values()
        if m.modality in MEMBER_MODALITIES
    ]
    if not members:
        raise InputError(f"--models {args.models}: no face, voice or text member found")
    doc = equal_fusion_document(members)
    write_fusion_json(out, doc)
    print(f"wrote {out}: " + ", ".join(f"{m} {w:.4g}" for m, w in doc["weights"].items()))
    return 0


def _eval_parser() -> Parser:
    p = Parser(
        prog="emodesk fusion eval",
        description=(
            "Metrics of the fused result (weights from --weights, default the active fusion.json), "
            "of equal weights, of each member, and of each modality's members fused equally, on a "
            "paired manifest."
        ),
    )
    _member_args(p)
    p.add_argument("--weights", metavar="fusion.json", help="weights to evaluate (default: the active set's)")
    p.add_argument("--json", metavar="OUT", help="write the report (docs/formats.md, 'fusion eval --json')")
    return p


def cmd_eval(argv: Sequence[str]) -> int:
    args = _eval_parser().parse_args(argv)
    from emodesk.fusion.config import find_fusion_config, parse_fusion_json
    from emodesk.fusion.search import evaluate_fusion
    from emodesk.inference.registry import installed_manifests

    json_out = _out_file("--json", args.json) if args.json else None
    wpath = Path(args.weights) if args.weights else find_fusion_config()
    if wpath is None:
        raise UsageError("no fusion.json is installed; pass --weights FILE")
    if not wpath.is_file():
        raise UsageError(f"--weights {args.weights}: no such file")
    installed = {m.id: m.sha256 for m in installed_manifests().values()}
    cfg = parse_fusion_json(wpath, installed)  # malformed → ConfigError, exit 1
    if args.members is None:
        args.members = sorted(cfg.weights) or None
    scores, _ = _scores(args)
    report = evaluate_fusion(scores, cfg.weights, rule=cfg.rule)  # type: ignore[arg-type]
    print(
        f"weights: {wpath}, rule {cfg.rule.name}"
        + (f" (dropped: {', '.join(cfg.dropped)})" if cfg.dropped else "")
    )
    print(_table(report))
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        text = f"usage: emodesk fusion {{{','.join(SUBCOMMANDS)}}} ... (emodesk fusion SUBCOMMAND --help)"
        if not argv:
            return fail(2, f"fusion needs a subcommand: {', '.join(SUBCOMMANDS)}")
        print(text)
        return 0
    cmd, rest = argv[0], argv[1:]
    handlers = {
        "pair": cmd_pair,
        "optimize": cmd_optimize,
        "eval": cmd_eval,
        "equal": cmd_equal,
        "benchmark-ao": cmd_benchmark_ao,
    }
    if cmd not in handlers:
        return fail(2, f"unknown fusion subcommand {cmd!r}; choose from {', '.join(SUBCOMMANDS)}")
    return guarded(handlers[cmd], rest, cmd)


if __name__ == "__main__":  # python -m emodesk.cli.fusion_cmd … (same as emodesk fusion …)
    raise SystemExit(main())
