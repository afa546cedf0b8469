"""Does a member score alike on another CPU? Save its scores here, rerun under an emulated CPU, compare.

ONNX Runtime picks its int8 kernels by CPU: on x86 without VNNI (AVX2 only)
uint8 × int8 sums saturate, so a quantised member can score differently
there (``emodesk/lab/convert/weights_7bit.py``). ``qemu-x86_64 -cpu Haswell`` (Debian
package ``qemu-user``) runs the same venv as an AVX2 machine, slowly:

    python -m emodesk.lab.studies.cpu_agreement.compare models/face-resnet-m.onnx --out build/agree-native.npz
    qemu-x86_64 -cpu Haswell .venv/bin/python -m emodesk.lab.studies.cpu_agreement.compare \\
        models/face-resnet-m.onnx \\
        --out build/agree-haswell.npz --against build/agree-native.npz        # ~3 min for 400 faces

The rows are a seeded sample of the member's test split (FER-2013 for face,
MELD dev for text), scored the way ``emodesk eval`` scores them. For the
8-bit face-resnet-m of commit c5444eb (``git show c5444eb:models/face-resnet-m.onnx``
and its ``.json``): probabilities up to 0.27 apart and 23 of 400 predictions
changed; for the shipped 7-bit one: bit-identical.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from emodesk.evaluation.datasets import load_rows
from emodesk.evaluation.evaluate import evaluate_model, load_scorer
from emodesk.inference.manifest import ModelManifest
from emodesk.resources import datasets_dir

TEST_DATA = {"face": ("faces/fer2013", "path"), "text": ("text/meld", "text")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="a face or text member (X.onnx, X.json beside)")
    ap.add_argument("--out", type=Path, required=True, help="where this CPU's scores go (.npz)")
    ap.add_argument("--against", type=Path, help="scores saved on another CPU, to compare with")
    ap.add_argument("--rows", type=int, default=400, help="sample size (default 400)")
    args = ap.parse_args()
    man = ModelManifest.load(args.model.with_suffix(".json"))
    if man.modality not in TEST_DATA:
        print(f"{args.model}: a {man.modality} model; this checks face and text members", file=sys.stderr)
        return 2
    folder, column = TEST_DATA[man.modality]
    rows = load_rows(datasets_dir() / folder, column=column, split="test")  # type: ignore[arg-type]
    pick = np.sort(np.random.default_rng(0).permutation(len(rows))[: args.rows])
    rows = [rows[i] for i in pick]
    ev = evaluate_model(man.modality, rows, load_scorer(man, device="cpu"), bootstrap=0)  # type: ignore[arg-type]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, probs=ev.probs, rows=pick, sha256=man.sha256)
    print(f"{man.id}: {len(rows)} rows, accuracy {ev.metrics['accuracy']:.4f}; scores in {args.out}")
    if args.against is not None:
        other = np.load(args.against)
        if str(other["sha256"]) != man.sha256 or not np.array_equal(other["rows"], pick):
            print(f"{args.against}: another model or other rows", file=sys.stderr)
            return 2
        diff = np.abs(ev.probs - other["probs"])
        changed = int((ev.probs.argmax(1) != other["probs"].argmax(1)).sum())
        print(f"max |difference| {diff.max():.4g}; predictions changed: {changed} of {len(rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
