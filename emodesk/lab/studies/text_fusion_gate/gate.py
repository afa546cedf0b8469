"""Would a candidate text member improve the fused read-out? Validation rows only.

For the shipped set and for each candidate (an exported text member: ``X.onnx``
with ``X.json`` and its tokenizer beside it), a copy of ``models/`` with the
text member swapped is searched by ``emodesk fusion optimize`` on the paired
**validation** rows, as the shipped ``fusion.json`` was. The fused val
macro-F1 is the gate: a text member that wins its own val metrics but loses
here makes the product's read-out worse. The text member's own macro-F1 on the
same (label-balanced) rows is printed beside it.

    python -m emodesk.lab.studies.text_fusion_gate.gate build/refit_d/text-minilm.onnx … [--json OUT]
    python -m emodesk.lab.studies.text_fusion_gate.gate --add build/ngram/text-ngram.onnx  # beside shipped

Needs ``build/fusion/val.csv`` (README, "Fusion weights"). Test rows are never read.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from emodesk.inference.manifest import ModelManifest
from emodesk.inference.registry import installed_manifests
from emodesk.lab.paths import REPO


def _member_files(m: ModelManifest) -> list[Path]:
    return [m.path, m.model_path, *m.companion_paths]


def _swap(models: Path, candidate: Path | None, into: Path, add: bool = False) -> None:
    """``into``: the members of ``models``, the text ones replaced by ``candidate`` (joined: ``add``)."""
    members = installed_manifests([models]).values()
    for m in members:
        if candidate is None or add or m.modality != "text":
            for f in _member_files(m):
                shutil.copy2(f, into / f.name)
    if candidate is not None:
        for f in _member_files(ModelManifest.load(candidate.with_suffix(".json"))):
            shutil.copy2(f, into / f.name)


def fused_val(
    models: Path, candidate: Path | None, val: Path, optimizer: str, add: bool = False
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="emodesk-gate-") as tmp:
        d = Path(tmp)
        _swap(models, candidate, d, add)
        out = d / "fusion.json"
        cmd = [sys.executable, "-m", "emodesk", "fusion", "optimize", "--manifest", str(val)]
        cmd += ["--optimizer", optimizer, "--out", str(out)]
        env = {**os.environ, "EMODESK_MODELS": str(d)}
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        doc = json.loads(out.read_text(encoding="utf-8"))
        ev = d / "eval.json"  # the same val rows, to see the text member on its own (balanced labels)
        cmd = [sys.executable, "-m", "emodesk", "fusion", "eval", "--manifest", str(val)]
        cmd += ["--weights", str(out), "--json", str(ev)]
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        text = json.loads(ev.read_text(encoding="utf-8"))["modality:text"]
    return {
        "text_member": (f"shipped + {candidate}" if add else str(candidate)) if candidate else "shipped",
        "fused_val_macro_f1": doc["objective"]["macro_f1"],
        "text_val_paired": {k: text[k] for k in ("n", "accuracy", "macro_f1")},
        "weights": doc["weights"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("candidates", type=Path, nargs="*", help="exported text members (X.onnx, X.json beside)")
    ap.add_argument("--models", type=Path, default=REPO / "models")
    ap.add_argument("--val", type=Path, default=REPO / "build" / "fusion" / "val.csv")
    ap.add_argument("--optimizer", default="de", help="as the shipped fusion.json (default de)")
    ap.add_argument("--json", type=Path, help="write the rows here")
    ap.add_argument("--add", action="store_true", help="candidates join the shipped text member(s)")
    args = ap.parse_args()
    if not args.val.is_file():
        print(f"{args.val}: no paired val rows; build them first (README, 'Fusion weights')", file=sys.stderr)
        return 2
    for c in args.candidates:
        if not c.is_file() or not c.with_suffix(".json").is_file():
            print(f"{c}: needs the model and its manifest {c.with_suffix('.json')}", file=sys.stderr)
            return 2
    rows = [fused_val(args.models, c, args.val, args.optimizer, args.add) for c in [None, *args.candidates]]
    for r in rows:
        t = r["text_val_paired"]
        print(f"fused {r['fused_val_macro_f1']:.4f}  text alone {t['macro_f1']:.4f}  {r['text_member']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
