"""Re-quantise the int8 weights of a shipped static-QDQ member to 7 bits, so every x86 CPU scores it alike.

ONNX Runtime runs a QDQ convolution as uint8 activations × int8 weights. On
x86 CPUs with VNNI the products are summed in 32 bits; on CPUs without it
(AVX2 only: most laptops before 2021) ``vpmaddubsw`` first adds pairs of
products into 16 bits, which saturate once |w| is large, so the same model
scores differently there. With weights in [-64, 64] a pair sums to at most
2·255·64 = 32,640 < 32,767: no saturation. ``emodesk/lab/studies/cpu_agreement/compare.py``
measures it under an emulated Haswell CPU: for the 8-bit face-resnet-m,
probabilities up to 0.27 apart and 23 of 400 FER-2013 test predictions
changed; for the 7-bit one, none.

``emodesk train face`` now exports 7-bit weights (``reduce_range``). For a
member whose float model is gone, this halves the int8 weights instead
(``emodesk.lab.train.common.weights_to_7bit``):

    python -m emodesk.lab.convert.weights_7bit models/face-resnet-m.onnx

It rewrites the model and its manifest (sha256, ``source.quantization``) in
place, after checking the validation accuracy against the rule the member was
exported under (int8 kept when it loses ≤ 0.5 points against float32). Then
re-record the test metrics (``emodesk eval face … --record fer2013-test``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

MAX_DROP = 0.005


def val_accuracy(model_path: Path, manifest: dict[str, Any]) -> float:
    from emodesk.evaluation.datasets import load_rows
    from emodesk.evaluation.evaluate import evaluate_model, load_scorer
    from emodesk.inference.manifest import ModelManifest
    from emodesk.resources import datasets_dir, sha256_file

    with tempfile.TemporaryDirectory() as td:
        d = Path(td)
        (d / model_path.name).write_bytes(model_path.read_bytes())
        doc = {**manifest, "sha256": sha256_file(d / model_path.name), "file": model_path.name}
        (d / model_path.with_suffix(".json").name).write_text(json.dumps(doc), encoding="utf-8")
        man = ModelManifest.load(d / model_path.with_suffix(".json").name)
        rows = load_rows(datasets_dir() / "faces" / "fer2013", column="path", split="val")
        ev = evaluate_model("face", rows, load_scorer(man, device="cpu"), bootstrap=0)
    return float(ev.metrics["accuracy"])


def main() -> int:
    import onnx

    from emodesk.inference.manifest import ManifestDraft
    from emodesk.lab.train.common import weights_to_7bit, write_manifest

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="a shipped static-int8 face member (X.onnx, X.json beside)")
    args = ap.parse_args()
    man_path = args.model.with_suffix(".json")
    doc: dict[str, Any] = json.loads(man_path.read_text(encoding="utf-8"))
    quant = doc.get("source", {}).get("quantization", {})
    if quant.get("kept") != "int8":
        print(f"{args.model}: not a static-int8 member (source.quantization.kept)", file=sys.stderr)
        return 2
    model = onnx.load(str(args.model))
    try:
        n = weights_to_7bit(model)
    except ValueError as e:
        print(f"{args.model}: {e}", file=sys.stderr)
        return 2
    onnx.checker.check_model(model)
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td) / args.model.name
        onnx.save(model, str(tmp))
        before = val_accuracy(args.model, doc)
        after = val_accuracy(tmp, doc)
        fp32 = float(quant["val_accuracy_float32"])
        print(f"val accuracy: float32 {fp32:.4f}, int8 {before:.4f} (this CPU), 7-bit {after:.4f}")
        if fp32 - after > MAX_DROP:
            print(f"7-bit loses {fp32 - after:.4f} against float32 (> {MAX_DROP}); model left as it was")
            return 1
        args.model.write_bytes(tmp.read_bytes())
    quant.update(
        {
            "weights_7bit": {
                "why": "int8 × uint8 sums saturate on x86 CPUs without VNNI (vpmaddubsw), so the 8-bit "
                "weights scored differently there; 7-bit weights cannot saturate and score alike on every "
                "CPU (emodesk/lab/convert/weights_7bit.py)",
                "how": "int8 weights halved (round(q/2), scale ×2) and int32 biases halved (scale ×2) from "
                "the 8-bit export, whose float model was not kept",
                "layers": n,
                "val_accuracy_int8_8bit_this_cpu": before,
                "val_accuracy_7bit": after,
                "command": f"python -m emodesk.lab.convert.weights_7bit {args.model.as_posix()}",
            },
            "val_accuracy_int8": after,
            "rule": str(quant.get("rule", "")).replace("int8 (static QDQ", "int8 (static QDQ, 7-bit weights")
            if "7-bit" not in str(quant.get("rule", ""))
            else quant["rule"],
        }
    )
    write_manifest(args.model, ManifestDraft.from_dict(doc))
    print(f"{args.model}: {n} weight tensors now 7-bit; manifest updated (re-record its test metrics next)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
