"""How much does a person's name move a text member's read-out?

A member trained on MELD (the TV series Friends) may have learned its
characters' names as emotion cues. For each name, the member scores four
neutral template sentences; the table gives the total-variation distance
(half the L1 norm) between the name's mean probabilities and the mean over
the control names, and the name's mean probability of *sad*.

    python -m emodesk.lab.studies.text_ngram.name_probe models/text-minilm.onnx build/ngram/text-ngram.onnx
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from emodesk.inference.manifest import ModelManifest
from emodesk.inference.utterance_scorers import TextScorer
from emodesk.labels import LABELS

TEMPLATES = ("{} is here.", "I talked to {} yesterday.", "{}, can you pass the salt?", "Have you seen {}?")
SHOW = ("Joey", "Rachel", "Phoebe", "Ross", "Monica", "Chandler")
CONTROL = ("Mark", "Sarah", "David", "Emma", "Lucas", "Nina")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", type=Path, nargs="+", help="text members (X.onnx, X.json beside)")
    args = ap.parse_args()
    for path in args.models:
        scorer = TextScorer.load(ModelManifest.load(path.with_suffix(".json")), device="cpu")
        mean = {n: np.mean([scorer.score(t.format(n)) for t in TEMPLATES], axis=0) for n in SHOW + CONTROL}
        base = np.mean([mean[n] for n in CONTROL], axis=0)
        print(f"\n{scorer.id}: distance from the control names' mean; P(sad)")
        for group, names in (("show", SHOW), ("control", CONTROL)):
            tv = [float(np.abs(mean[n] - base).sum() / 2) for n in names]
            cells = "  ".join(
                f"{n} {d:.3f}/{mean[n][LABELS.index('sad')]:.3f}" for n, d in zip(names, tv, strict=True)
            )
            print(f"  {group:8s} mean {np.mean(tv):.3f}   {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
