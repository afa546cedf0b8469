"""Which whisper *base* encoder blocks carry emotion? Each block (and a few pairs) selected and
judged on validation only, with the training code's own rule.

    python -m emodesk.lab.studies.voice_base.compare --cache build/voice/features-base-b1-6.npz \
        [--json emodesk/lab/studies/voice_base/results.json]

The cache is the one ``emodesk train voice --data …/ravdess --asr-model base --encoder-blocks
1,2,3,4,5,6 --augment 2`` writes: every RAVDESS clip and 2 augmented copies of each training clip
(1 of each val clip), pooled (mean, std) over the states after all six blocks side by side. A
block's features are its slices of that vector. For every block set the head is selected (prior
weight, epochs) by the mean UAR over RAVDESS actors 19–20 clean and augmented — the rule of
``emodesk train voice`` — and scored on the same sets; test actors 21–24, the office simulation
and URDU are never read here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

D = 512  # whisper base's width
N_BLOCKS = 6
SETS = ("1", "2", "3", "4", "5", "6", "2+3", "3+4", "4+5", "2+3+4")


def columns(blocks: list[int]) -> np.ndarray:
    """The mean and std columns of ``blocks`` (1-based) in the pooled all-block vector."""
    mean = [np.arange(D * (b - 1), D * b) for b in blocks]
    std = [N_BLOCKS * D + m for m in mean]
    return np.concatenate(mean + std)


def main(argv: list[str] | None = None) -> int:
    from emodesk.lab.studies.voice_corpora.compare import select_and_score, study_features, study_settings
    from emodesk.lab.train.voice import train as vt
    from emodesk.resources import datasets_dir

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--data", type=Path, default=None, help="the shared datasets folder")
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--json", type=Path)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    speech = (a.data or datasets_dir()) / "speech"
    corpora = vt.load_corpora([speech / "ravdess"], None, a.seed)
    args = study_settings(a.seed)
    train_items, val_items, feats = study_features(corpora, "base", a.cache, tuple(range(1, N_BLOCKS + 1)))
    width = len(next(iter(feats.values())))
    if width != 2 * N_BLOCKS * D:
        raise SystemExit(f"{a.cache}: {width} features, expected {2 * N_BLOCKS * D} (6 base blocks)")
    out: dict[str, Any] = {"cache": str(a.cache), "blocks": {}}
    for spec in a.sets.split(","):
        cols = columns([int(b) for b in spec.split("+")])

        def split(items: list[vt.Item], cols: np.ndarray = cols) -> vt.Split:
            return vt.to_split(items, np.stack([feats[it.key][cols] for it in items]))

        vals = {n: split(items) for n, items in val_items.items()}
        res = out["blocks"][spec] = select_and_score(split(train_items), vals, args)
        per = res["per_set"]
        print(
            f"base blocks {spec:7s} mean val UAR {res['val_uar_mean']:.4f}  "
            + "  ".join(f"{n} {r['uar']:.3f}" for n, r in per.items()),
            file=sys.stderr,
            flush=True,
        )
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
