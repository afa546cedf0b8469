"""Static-int8 members score alike on every x86 CPU: their weights fit 7 bits.

With 8-bit weights, ONNX Runtime's uint8 × int8 kernels saturate on CPUs
without VNNI (``vpmaddubsw`` sums pairs in 16 bits), so a member scored
differently there (``emodesk/lab/convert/weights_7bit.py`` has the measurement).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

import onnxruntime as ort  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from emodesk.lab.train.common import export_onnx, quantize_static_int8, weights_to_7bit  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _int8_weights(model: Any) -> dict[str, np.ndarray]:
    inits = {t.name: t for t in model.graph.initializer}
    out = {}
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            a = numpy_helper.to_array(inits[n.input[0]])
            if a.dtype == np.int8:
                out[n.input[0]] = a
    return out


def test_every_shipped_static_int8_member_has_7bit_weights() -> None:
    checked = 0
    for path in sorted((ROOT / "models").glob("*.onnx")):
        w = _int8_weights(onnx.load(str(path), load_external_data=False))
        if w:
            checked += 1
            worst = max(int(np.abs(a.astype(np.int16)).max()) for a in w.values())
            assert worst <= 64, f"{path.name}: int8 weights up to {worst}; they saturate on CPUs without VNNI"
    assert checked >= 1  # face-resnet-m-ferplus is static int8 (its refitted head is float)


class _Net(torch.nn.Module):
    """Two convolutions sharing one weight (as the mirror branch does), with biases."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(4, 8, 3, padding=1)
        self.head = torch.nn.Linear(8, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.conv(x))
        b = torch.relu(self.conv(torch.flip(x, dims=[3])))
        return self.head((a + b).mean(dim=(2, 3)))


def _export(tmp: Path) -> tuple[Path, list[dict[str, np.ndarray]]]:
    fp32 = tmp / "net.onnx"
    x = torch.randn(2, 4, 12, 12)
    export_onnx(
        _Net(), [x], fp32, input_names=["input"], output_names=["out"], dynamic_axes={"input": {0: "N"}}
    )
    rng = np.random.default_rng(0)
    calib = [{"input": rng.normal(size=(8, 4, 12, 12)).astype(np.float32)} for _ in range(4)]
    return fp32, calib


def _run(path: Path, x: np.ndarray, *, optimise: bool = True) -> np.ndarray:
    o = ort.SessionOptions()
    if not optimise:
        o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def test_training_export_quantises_weights_to_7_bits(tmp_path: Path) -> None:
    fp32, calib = _export(tmp_path)
    int8 = tmp_path / "int8.onnx"
    quantize_static_int8(fp32, int8, calib)
    w = _int8_weights(onnx.load(str(int8)))
    assert w and max(int(np.abs(a.astype(np.int16)).max()) for a in w.values()) <= 64


def _fused_convs(path: Path) -> int:
    """How many convolutions ONNX Runtime runs as fused int8 kernels (QLinearConv)."""
    o = ort.SessionOptions()
    o.optimized_model_filepath = str(path.with_suffix(".opt.onnx"))
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
    return sum(n.op_type == "QLinearConv" for n in onnx.load(o.optimized_model_filepath).graph.node)


def test_7bit_conversion_keeps_the_fused_kernels_and_the_scores(tmp_path: Path) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    fp32, calib = _export(tmp_path)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    eight = tmp_path / "8bit.onnx"  # the way face-resnet-m was exported before
    quantize_static(
        str(fp32),
        str(eight),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    model = onnx.load(str(eight))
    assert max(int(np.abs(a.astype(np.int16)).max()) for a in _int8_weights(model).values()) > 64
    n = weights_to_7bit(model)
    assert n == 2  # the shared conv weight once, the head once
    seven = tmp_path / "7bit.onnx"
    onnx.save(model, str(seven))
    w = _int8_weights(model)
    assert max(int(np.abs(a.astype(np.int16)).max()) for a in w.values()) <= 64

    # both convolutions still run as fused int8 kernels: a bias scale that no longer equalled
    # input scale × weight scale would leave them float
    assert _fused_convs(eight) == _fused_convs(seven) == 2
    with pytest.raises(ValueError, match="already 7-bit"):
        weights_to_7bit(onnx.load(str(seven)))

    x = np.random.default_rng(1).normal(size=(5, 4, 12, 12)).astype(np.float32)
    ref = _run(fp32, x)
    got7 = _run(seven, x)
    # the fused kernels agree with the graph's own QDQ arithmetic
    np.testing.assert_allclose(got7, _run(seven, x, optimise=False), atol=0.05)
    # and one bit less does not wreck the scores
    assert np.abs(got7 - ref).max() < 0.25 * np.abs(ref).max()
    assert _run(seven, x).argmax(1).tolist() == ref.argmax(1).tolist()
