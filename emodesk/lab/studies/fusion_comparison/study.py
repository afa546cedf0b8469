"""Does AO-tuned fusion pay? Regenerates ``emodesk/lab/studies/fusion_comparison/README.md`` and ``.json``.

For each seed: pseudo-pair the **validation** splits (FER-2013 val, RAVDESS
actors 19–20, MELD's dialogue-level val) and, separately, the **test** splits
(FER-2013 test, RAVDESS actors 21–24, MELD dev) with ``emodesk fusion pair``'s
sampler; fit every fusion method of :mod:`emodesk.lab.studies.fusion_comparison.methods` on the
validation rows at the same evaluation budget; score it on the test rows.
Member scores are cached (``build/fusion/scores.npz``), so only the first run
runs the models. Text is MELD (spoken dialogue, what the live app hears).

    python -m emodesk.lab.studies.fusion_comparison.study   # 10 seeds, ~10 min on 2 cores the first time
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from emodesk.evaluation.datasets import Row
from emodesk.fusion.paired import load_unimodal, make_pairs
from emodesk.fusion.search import (
    DEFAULT_AGENTS,
    DEFAULT_ITERATIONS,
    DEFAULT_PENALTY,
    ScoreCache,
    score_paired,
)
from emodesk.inference.members import MEMBER_MODALITIES
from emodesk.inference.registry import installed_manifests
from emodesk.lab.paths import REPO
from emodesk.lab.studies.fusion_comparison.methods import METHODS, compare_methods, summarise
from emodesk.resources import datasets_dir

SOURCES = {"face": "faces/fer2013", "voice": "speech/ravdess", "text": "text/meld"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=datasets_dir())
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--val-per-label", type=int, default=100)
    ap.add_argument("--test-per-label", type=int, default=200)
    ap.add_argument("--agents", type=int, default=DEFAULT_AGENTS)
    ap.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS)
    ap.add_argument("--penalty", type=float, default=DEFAULT_PENALTY)
    ap.add_argument("--cache", type=Path, default=REPO / "build" / "fusion" / "scores.npz")
    ap.add_argument("--json", type=Path, default=Path(__file__).with_name("results.json"))
    ap.add_argument("--markdown", type=Path, default=Path(__file__).with_name("README.md"))
    ap.add_argument("--render-only", action="store_true", help="rewrite the markdown from the JSON")
    args = ap.parse_args()
    if args.render_only:
        args.markdown.write_text(render(json.loads(args.json.read_text(encoding="utf-8"))), encoding="utf-8")
        return 0

    for src in SOURCES.values():
        if not (args.data / src).is_dir():
            print(f"missing {args.data / src}: this comparison needs ../shared/datasets", file=sys.stderr)
            return 2
    members = sorted(
        (m for m in installed_manifests().values() if m.modality in MEMBER_MODALITIES), key=lambda m: m.id
    )
    split_rows: dict[str, dict[str, list[Row]]] = {
        split: {m: load_unimodal(args.data / src, m, split=split) for m, src in SOURCES.items()}
        for split in ("val", "test")
    }
    cache = ScoreCache(args.cache)
    runs = []
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        val_rows = make_pairs(split_rows["val"], per_label=args.val_per_label, seed=seed)
        test_rows = make_pairs(split_rows["test"], per_label=args.test_per_label, seed=seed)
        val = score_paired(val_rows, members, cache=cache, log=print)
        test = score_paired(test_rows, members, cache=cache, log=print)
        r = compare_methods(
            val, test, seed=seed, agents=args.agents, iterations=args.iterations, penalty=args.penalty
        )
        runs.append(r)
        print(
            f"seed {seed}: "
            + ", ".join(f"{m} {r[m]['test']['macro_f1']:.4f}" for m in METHODS)
            + f"  ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    summary = summarise(runs)
    command = "python -m emodesk.lab.studies.fusion_comparison.study " + " ".join(
        shlex.quote(a) for a in sys.argv[1:]
    )
    doc = {
        "summary": summary,
        "runs": runs,
        "settings": {
            "members": [m.id for m in members],
            "sha256": {m.id: m.sha256 for m in members},
            "val": {m: f"{SOURCES[m]} val" for m in SOURCES},
            "test": {m: f"{SOURCES[m]} test" for m in SOURCES},
            "val_rows": 7 * args.val_per_label,
            "test_rows": 7 * args.test_per_label,
            "seeds": args.seeds,
            "agents": args.agents,
            "iterations": args.iterations,
            "penalty": args.penalty,
            "command": command.strip(),
            "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
        },
    }
    args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    args.markdown.write_text(render(doc), encoding="utf-8")
    print(render(doc))
    return 0


NAMES = {
    "best-single": "best single member (picked on val)",
    "equal-weights": "equal weights (1 per member)",
    "equal-per-modality": "equal weights per modality (shipped before)",
    "ao": "**Aquila Optimizer** (faithful)",
    "ao-levy-ls": "AO + Lévy local search (variant)",
    "de": "differential evolution (scipy)",
    "pso": "particle swarm",
    "random": "random search",
    "ao-per-class": "AO, one weight per member × class",
    "stacking": "stacking: logistic regression on the scores",
}


def render(doc: dict) -> str:
    s, st = doc["summary"], doc["settings"]

    def ms(e: dict) -> str:
        return f"{100 * e['mean']:.1f} ± {100 * e['std']:.1f}"

    lines = [
        "# Does AO-tuned fusion pay?",
        "",
        f"Regenerate: `{st['command']}` (needs `../shared/datasets`; scores cached in `build/fusion/`).",
        "",
        f"Members: {', '.join(f'`{m}`' for m in st['members'])}. Per seed, pseudo-paired rows "
        f"(one face, one utterance, one MELD sentence with the same label; `emodesk fusion pair`'s "
        f"sampler): {st['val_rows']} validation rows from FER-2013 val, RAVDESS actors 19–20 and "
        f"MELD's dialogue-level val split — every method is fitted on these only — and "
        f"{st['test_rows']} test rows from FER-2013 test, RAVDESS actors 21–24 and MELD dev, never "
        f"used for fitting or selection. Optimizers: {st['agents']} agents × {st['iterations']} "
        f"iterations each, objective 1 − macro-F1 + {st['penalty']:g} × distance from equal weights. "
        f"Mean ± standard deviation over {st['seeds']} seeds (pairing and optimizer seed).",
        "",
        "| method | test macro-F1 % | test accuracy % | test UAR % | val macro-F1 % "
        "| evaluations | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, e in s.items():
        lines.append(
            f"| {NAMES.get(m, m)} | {ms(e['macro_f1'])} | {ms(e['accuracy'])} | {ms(e['uar'])} | "
            f"{ms(e['val_macro_f1'])} | {e['evaluations'] or '—'} | {e['seconds']:.2f} |"
        )
    best_single = {r["best-single"]["member"] for r in doc["runs"]}
    lines += [
        "",
        f"Best single member chosen on val: {', '.join(sorted(best_single))}.",
        "",
        "Paired by seed (same pairing, same test rows): AO's test macro-F1 minus each other method's, "
        "in points, mean ± standard deviation, and the seeds where AO is ahead / level / behind.",
        "",
        "| AO minus | difference | ahead / level / behind |",
        "|---|---|---|",
    ]
    ao = np.array([r["ao"]["test"]["macro_f1"] for r in doc["runs"]])
    for m in s:
        if m == "ao":
            continue
        d = 100 * (ao - np.array([r[m]["test"]["macro_f1"] for r in doc["runs"]]))
        sd = d.std(ddof=1) if len(d) > 1 else 0.0
        ahead, level = int((d > 1e-9).sum()), int((np.abs(d) <= 1e-9).sum())
        behind = len(d) - ahead - level
        lines.append(f"| {NAMES.get(m, m)} | {d.mean():+.1f} ± {sd:.1f} | {ahead} / {level} / {behind} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
