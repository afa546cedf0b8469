"""Re-quantise the int8 weights of a shipped static-QDQ member to 7 bits, so every x86 CPU scores it alike.

ONNX Runtime runs a QDQ convolution as uint8 activations × int8 weights. On
x86 CPUs with VNNI the products are summed in 32 bits; on CPUs without it
(AVX2 only: most laptops before 2021) ``vpmaddubsw`` first adds pairs of
products into 16 bits, which saturate once |w| is large: the same model gives
other scores there. Measured on face-resnet-m with 400 FER-2013 test faces,
this machine (AVX-512 VNNI) against the same ONNX Runtime emulated on a
Haswell CPU (``qemu-x86_64 -cpu Haswell``): probabilities differ by up to
0.27 and 21 predictions change; its manifest's 67.65% test accuracy was
recorded on such a machine, 68.38% here. With weights in [-64, 64] a pair
sums to at most 2·255·64 = 32,640 < 32,767: no saturation, and the emulated
Haswell run is bit-identical to this one. This is ONNX Runtime's
``reduce_range`` (what ``emodesk train face`` now exports).

Here the float model is gone (training checkpoints do not outlive a session),
so the int8 weights are halved: ``q7 = round(q / 2)`` with twice the scale, and
each layer's int32 bias is halved with its scale doubled, which keeps the bias
scale equal to input scale × weight scale, as ONNX Runtime's fused kernels need.
A weight shared by two convolutions (the mirror branch) is converted once.

    python scripts/face_weights_7bit.py models/face-resnet-m.onnx

Rewrites the model and its manifest (sha256, ``source.quantization``) in
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

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MAX_DROP = 0.005


def to_7bit(model: Any) -> int:
    """Halve every int8 weight feeding a Conv/Gemm/MatMul through DequantizeLinear, in place."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}

    def get(name: str) -> np.ndarray:
        return numpy_helper.to_array(inits[name])

    def put(name: str, arr: np.ndarray) -> None:
        inits[name].CopyFrom(numpy_helper.from_array(arr, name))

    weights: set[str] = set()
    biases: set[str] = set()
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        wdq = producer.get(node.input[1])
        if wdq is None or wdq.op_type != "DequantizeLinear" or wdq.input[0] not in inits:
            continue
        q = get(wdq.input[0])
        if q.dtype != np.int8:
            continue
        if wdq.input[0] not in weights:  # shared by the mirror branch: once
            if len(wdq.input) > 2 and get(wdq.input[2]).any():
                raise SystemExit(f"{wdq.name}: asymmetric int8 weights; this converts symmetric ones")
            if np.abs(q.astype(np.int16)).max() <= 64:
                raise SystemExit(f"{wdq.name}: already 7-bit; nothing to do")
            put(wdq.input[0], np.clip(np.round(q.astype(np.float32) / 2), -64, 64).astype(np.int8))
            put(wdq.input[1], (get(wdq.input[1]) * 2).astype(np.float32))
            weights.add(wdq.input[0])
        if len(node.input) > 2 and node.input[2]:
            bdq = producer.get(node.input[2])
            if bdq is None or bdq.op_type != "DequantizeLinear" or bdq.input[0] in biases:
                raise SystemExit(f"{node.name}: its bias is not a DequantizeLinear of its own int32 tensor")
            b = get(bdq.input[0])
            put(bdq.input[0], np.round(b.astype(np.float64) / 2).astype(np.int32))
            put(bdq.input[1], (get(bdq.input[1]) * 2).astype(np.float32))
            biases.add(bdq.input[0])
    return len(weights)


def val_accuracy(model_path: Path, manifest: dict[str, Any]) -> float:
    from emodesk.evaluation.datasets import load_rows
    from emodesk.evaluation.evaluate import evaluate_model, load_scorer
    from emodesk.inference.manifest import ModelManifest, sha256_file
    from emodesk.resources import datasets_dir

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

    from emodesk.training.common import write_manifest

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
    n = to_7bit(model)
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
                "CPU (scripts/face_weights_7bit.py)",
                "how": "int8 weights halved (round(q/2), scale ×2) and int32 biases halved (scale ×2) from "
                "the 8-bit export, whose float model was not kept",
                "layers": n,
                "val_accuracy_int8_8bit_this_cpu": before,
                "val_accuracy_7bit": after,
                "command": f"python scripts/face_weights_7bit.py {args.model.as_posix()}",
            },
            "val_accuracy_int8": after,
            "rule": str(quant.get("rule", "")).replace("int8 (static QDQ", "int8 (static QDQ, 7-bit weights")
            if "7-bit" not in str(quant.get("rule", ""))
            else quant["rule"],
        }
    )
    fields = {k: v for k, v in doc.items() if k not in ("sha256", "inputs", "file")}
    write_manifest(args.model, fields)
    print(f"{args.model}: {n} weight tensors now 7-bit; manifest updated (re-record its test metrics next)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
