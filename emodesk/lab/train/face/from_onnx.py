"""A trainable :class:`FaceNet` rebuilt from a face member's exported ONNX graph.

Why: the members' PyTorch checkpoints were never kept — what the project has
is the shipped graph (``FlipAveragedProbs`` of a ``FaceNet``, float32 or
static int8 QDQ). Fine-tuning a member end to end starts from its weights, so
they are read back from the graph:

- each convolution's weight (and bias) is the initializer it reads, or the
  ``DequantizeLinear`` of one (per-channel scale and zero point);
- the exporter folded every block's second batch norm into the convolution
  before it (``conv1`` gained a bias). The rebuilt block keeps ``conv1``
  without bias and gives ``bn2`` statistics measured on ``calibration``
  images with an affine that undoes them, so that in eval mode the network
  computes exactly what the graph did, and in train mode batch statistics
  start where the data put them instead of at an identity;
- the classifier is the first branch's ``Gemm``.

Nodes are matched to modules by the exporter's scope names
(``/net/layers/layers.1/short/Conv``; the mirrored branch's carry ``_1``), so
an int8 graph whose nodes the quantiser reordered reads the same; every shape
is checked, and the two mirror branches must read the same weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from emodesk.errors import ModelError
from emodesk.lab.train.face.net import FaceNet, PreActBlock


class _Tensors:
    """Float values of a graph's constant tensors: initializers, their Identity copies, dequantized ones."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.dq = {n.output[0]: n for n in graph.node if n.op_type == "DequantizeLinear"}
        self.alias = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity"}

    def get(self, name: str) -> np.ndarray:
        while name in self.alias:  # the exporter's Identity copies of a shared weight
            name = self.alias[name]
        if name in self.init:
            return self.init[name].astype(np.float32)
        node = self.dq.get(name)
        if node is None or node.input[0] not in self.init:
            raise ModelError(f"tensor {name!r} is neither an initializer nor a dequantized one")
        has_zp = len(node.input) > 2 and bool(node.input[2])
        if node.input[1] not in self.init or (has_zp and node.input[2] not in self.init):
            raise ModelError(f"tensor {name!r}: its scale or zero point is not a constant")
        q = self.init[node.input[0]].astype(np.float64)
        scale = self.init[node.input[1]].astype(np.float64)
        zp = self.init[node.input[2]].astype(np.float64) if has_zp else np.zeros_like(scale)
        axis = next((int(helper.get_attribute_value(a)) for a in node.attribute if a.name == "axis"), 1)
        if scale.ndim == 1 and scale.size > 1:
            shape = [1] * q.ndim
            shape[axis] = scale.size
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        return ((q - zp) * scale).astype(np.float32)


def _stats(bn: torch.nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    if bn.running_mean is None or bn.running_var is None:
        raise ModelError("a batch norm without running statistics")
    return bn.running_mean, bn.running_var


def module_name(node: onnx.NodeProto) -> tuple[str, bool] | None:
    """``("layers.1.short", mirrored)`` from the exporter's scope name ``/net/layers/layers.1/short/Conv``.

    The mirrored branch's scopes carry ``_1`` (``stem_1``, ``layers.0_1``, ``fc_1``); ``None`` for a
    node outside ``net``.
    """
    parts = node.name.strip("/").split("/")
    if len(parts) < 3 or parts[0] not in ("net", "net_1"):
        return None
    mirrored = parts[0] == "net_1"
    names: list[str] = []
    for part in parts[1:-1]:
        if part.endswith("_1"):
            mirrored, part = True, part[:-2]
        if names and part.startswith(names[-1] + "."):
            names[-1] = part
        else:
            names.append(part)
    return ".".join(names), mirrored


def _nodes(graph: onnx.GraphProto, op: str) -> tuple[dict[str, onnx.NodeProto], dict[str, onnx.NodeProto]]:
    """Nodes of type ``op`` by module name: (the plain branch, the mirrored branch)."""
    plain: dict[str, onnx.NodeProto] = {}
    mirror: dict[str, onnx.NodeProto] = {}
    for n in graph.node:
        if n.op_type != op or (named := module_name(n)) is None:
            continue
        name, mirrored = named
        side = mirror if mirrored else plain
        if name in side:
            raise ModelError(f"two {op} nodes for module {name!r}")
        side[name] = n
    return plain, mirror


def infer_arch(
    convs: dict[str, onnx.NodeProto], tensors: _Tensors
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Widths and blocks per stage from the blocks' second convolutions (``layers.K.conv2``)."""
    widths: list[int] = []
    blocks: list[int] = []
    k = 0
    while f"layers.{k}.conv2" in convs:
        width = int(tensors.get(convs[f"layers.{k}.conv2"].input[1]).shape[0])
        if widths and width == widths[-1] and f"layers.{k}.short" not in convs:
            blocks[-1] += 1
        else:
            widths.append(width)
            blocks.append(1)
        k += 1
    if not widths:
        raise ModelError("no residual blocks (layers.K.conv2) in the graph: not a face ResNet member")
    return tuple(widths), tuple(blocks)


def _check_mirror(plain: dict[str, onnx.NodeProto], mirror: dict[str, onnx.NodeProto], t: _Tensors) -> None:
    """Both branches read the same weights (biases may differ by an int8 graph's per-branch scales)."""
    if plain.keys() != mirror.keys():
        raise ModelError("the graph's two mirror branches have different convolutions")
    for name, a in plain.items():
        b = mirror[name]
        wa, wb = t.get(a.input[1]), t.get(b.input[1])
        if not np.array_equal(wa, wb):
            raise ModelError(f"the mirror branches read different weights for {name}")
        if len(a.input) != len(b.input) or (
            len(a.input) > 2 and not np.allclose(t.get(a.input[2]), t.get(b.input[2]), rtol=0.02, atol=1e-3)
        ):
            raise ModelError(f"the mirror branches read different biases for {name}")


def _folded_blocks(convs: dict[str, onnx.NodeProto]) -> list[str]:
    return [
        name.rsplit(".", 1)[0]
        for name, node in convs.items()
        if name.endswith(".conv1") and len(node.input) > 2
    ]


def rebuild(path: Path, calibration: np.ndarray | None = None, *, dropout: float = 0.2) -> FaceNet:
    """The :class:`FaceNet` inside ``path``, with ``bn2`` calibrated on ``calibration``.

    ``calibration``: (N, 1, 48, 48) float32 inputs in [-1, 1] (a few thousand
    training faces). Without it every ``bn2`` is an identity plus the folded
    bias: eval mode is still exact, train mode starts from wrong statistics.
    """
    try:
        graph = onnx.load(str(path)).graph
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError, OSError: one clear message
        raise ModelError(f"{path} is not a readable ONNX graph: {e}") from None
    tensors = _Tensors(graph)
    convs, mirrored = _nodes(graph, "Conv")
    _check_mirror(convs, mirrored, tensors)
    bns, _ = _nodes(graph, "BatchNormalization")
    gemms, _ = _nodes(graph, "Gemm")
    if "fc" not in gemms:
        raise ModelError(f"{path}: no classifier Gemm (net/fc): not a face ResNet member")
    widths, blocks = infer_arch(convs, tensors)
    gemm = gemms["fc"]
    attrs = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
    plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
    if len(gemm.input) < 3 or not plain:
        raise ModelError(f"{path}: the classifier Gemm is not a plain linear layer with a bias")
    fc_w = tensors.get(gemm.input[1])
    trans_b = int(attrs.get("transB", 0))
    fc_w = fc_w if trans_b else fc_w.T
    net = FaceNet(widths, blocks, n_classes=int(fc_w.shape[0]), dropout=dropout)
    expected = {n for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)}
    if set(convs) != expected:
        raise ModelError(f"{path}: convolutions {sorted(set(convs) ^ expected)} do not fit FaceNet")
    folded: list[tuple[PreActBlock, np.ndarray]] = []
    with torch.no_grad():
        for name, node in convs.items():
            conv = net.get_submodule(name)
            if not isinstance(conv, torch.nn.Conv2d):
                raise ModelError(f"{path}: {name} is not a convolution in FaceNet")
            w = tensors.get(node.input[1])
            if tuple(w.shape) != tuple(conv.weight.shape):
                raise ModelError(f"{path}: {name} weight {w.shape} where {tuple(conv.weight.shape)} fits")
            conv.weight.copy_(torch.from_numpy(w))
            if len(node.input) > 2:
                if not name.endswith(".conv1"):
                    raise ModelError(f"{path}: a bias on {name}, where only a folded conv1 has one")
                block = net.get_submodule(name.rsplit(".", 1)[0])
                if not isinstance(block, PreActBlock):
                    raise ModelError(f"{path}: {name} is not in a residual block")
                folded.append((block, tensors.get(node.input[2])))
        norms = {n: m for n, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
        for name, node in bns.items():
            bn = norms.pop(name, None)
            if bn is None:
                raise ModelError(f"{path}: batch norm {name} does not fit FaceNet")
            scale, bias, mean, var = (tensors.get(n) for n in node.input[1:5])
            bn.eps = next(
                (float(helper.get_attribute_value(a)) for a in node.attribute if a.name == "epsilon"), 1e-5
            )
            bn.weight.copy_(torch.from_numpy(scale))
            bn.bias.copy_(torch.from_numpy(bias))
            run_mean, run_var = _stats(bn)
            run_mean.copy_(torch.from_numpy(mean))
            run_var.copy_(torch.from_numpy(var))
        if set(norms) != {f"{blk_name}.bn2" for blk_name in _folded_blocks(convs)}:
            raise ModelError(f"{path}: batch norms {sorted(norms)} are neither in the graph nor folded")
        for block, b in folded:  # identity plus the folded bias until calibrated
            bn2 = block.bn2
            bn2.weight.fill_(1.0)
            bn2.bias.copy_(torch.from_numpy(b))
            run_mean, run_var = _stats(bn2)
            run_mean.zero_()
            run_var.fill_(1.0 - bn2.eps)
        net.fc.weight.copy_(torch.from_numpy(fc_w))
        net.fc.bias.copy_(torch.from_numpy(tensors.get(gemm.input[2])))
    if calibration is not None and folded:
        calibrate_bn2(net, [blk for blk, _ in folded], calibration)
    return net.eval()


@torch.no_grad()
def calibrate_bn2(net: FaceNet, blocks: Sequence[PreActBlock], x: np.ndarray, batch: int = 512) -> None:
    """Give each block's ``bn2`` the statistics of its input, keeping eval-mode outputs unchanged."""
    sums: dict[int, tuple[torch.Tensor, torch.Tensor, int]] = {}
    hooks = []
    for i, blk in enumerate(blocks):

        def hook(_m: torch.nn.Module, _inp: object, out: torch.Tensor, i: int = i) -> None:
            s, s2, n = sums.get(i, (torch.zeros(out.shape[1]), torch.zeros(out.shape[1]), 0))
            o = out.double().transpose(0, 1).reshape(out.shape[1], -1)
            sums[i] = (s + o.sum(1), s2 + (o * o).sum(1), n + o.shape[1])

        hooks.append(blk.conv1.register_forward_hook(hook))
    net.eval()
    try:
        for j in range(0, len(x), batch):
            net(torch.as_tensor(x[j : j + batch]))
    finally:
        for h in hooks:
            h.remove()
    for i, blk in enumerate(blocks):
        s, s2, n = sums[i]
        mean = s / n
        var = (s2 / n - mean * mean).clamp_min(1e-8)
        bn2 = blk.bn2
        std = torch.sqrt(var + bn2.eps)
        bn2.bias.copy_((bn2.bias.double() + mean).float())
        bn2.weight.copy_(std.float())
        run_mean, run_var = _stats(bn2)
        run_mean.copy_(mean.float())
        run_var.copy_(var.float())
