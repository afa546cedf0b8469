"""Build the ONNX graph of the first blocks of a whisper encoder, with its weights as graph inputs.

The graph holds no weights (it is a few kB); :class:`emodesk.speech.whisper_layers.WhisperLayers`
binds them from the ASR's own ``model.bin``. Layout (Radford et al. 2022, whisper's ``AudioEncoder``):

    mel (1, n_mels, T) → Conv1d(k3, p1) → GELU → Conv1d(k3, s2, p1) → GELU → (1, T/2, d)
      + position encodings[:T/2]
    block i (pre-LN): x += W_o · attention(LN₁(x));  x += W₂ · GELU(W₁ · LN₂(x))

GELU is the exact (erf) form, layer norms use ε = 1e-5, attention is scaled
by 1/√(d/heads); the outputs are the residual streams after the requested
blocks (``block_1`` …), before any final layer norm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from emodesk.speech.whisper_layers import EXTERNAL_LOCATION, MEL_INPUT, block_output

OPSET = 17  # LayerNormalization


def build_graph(*, shapes: Mapping[str, tuple[int, ...]], heads: int, blocks: tuple[int, ...]) -> Any:
    """An ``onnx.ModelProto`` taking ``mel``; the weights, named and shaped by ``shapes`` (graph input
    → shape, as :func:`~emodesk.speech.whisper_layers.encoder_weights` returns them), are external
    initializers."""
    from onnx import TensorProto, helper, numpy_helper

    width, n_mels, _ = shapes["conv1_w"]
    if width % heads:
        raise ValueError(f"width {width} is not a multiple of {heads} heads")
    n_blocks = max(blocks)
    dh = width // heads
    nodes: list[Any] = []
    inits: list[Any] = []
    counter = [0]

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    def op(kind: str, inputs: list[str], **attrs: Any) -> str:
        counter[0] += 1
        out = f"{kind.lower()}_{counter[0]}"
        nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    half = const("c_half", np.array(0.5, np.float32))
    one = const("c_one", np.array(1.0, np.float32))
    inv_sqrt2 = const("c_inv_sqrt2", np.array(1 / math.sqrt(2), np.float32))
    scale = const("c_scale", np.array(1 / math.sqrt(dh), np.float32))
    heads_shape = const("c_heads_shape", np.array([0, -1, heads, dh], np.int64))
    merge_shape = const("c_merge_shape", np.array([0, -1, width], np.int64))
    zero = const("c_zero", np.array([0], np.int64))
    one_i = const("c_one_i", np.array([1], np.int64))
    split = const("c_split", np.array([width, width, width], np.int64))

    def gelu(x: str) -> str:
        return op("Mul", [op("Mul", [x, half]), op("Add", [one, op("Erf", [op("Mul", [x, inv_sqrt2])])])])

    def linear(x: str, w: str, b: str) -> str:
        return op("Add", [op("MatMul", [x, w]), b])

    def layer_norm(x: str, g: str, b: str) -> str:
        return op("LayerNormalization", [x, g, b], axis=-1, epsilon=1e-5)

    x = gelu(op("Conv", [MEL_INPUT, "conv1_w", "conv1_b"], pads=[1, 1], strides=[1], kernel_shape=[3]))
    x = gelu(op("Conv", [x, "conv2_w", "conv2_b"], pads=[1, 1], strides=[2], kernel_shape=[3]))
    x = op("Transpose", [x], perm=[0, 2, 1])  # (1, T/2, d)
    n = op("Slice", [op("Shape", [x]), one_i, op("Add", [one_i, one_i])])  # [T/2]
    x = op("Add", [x, op("Slice", ["pos", zero, n, zero])])
    outputs: list[Any] = []
    for i in range(n_blocks):
        p = f"b{i}_"
        qkv = linear(layer_norm(x, p + "ln1_g", p + "ln1_b"), p + "qkv_w", p + "qkv_b")
        counter[0] += 1
        q, k, v = (f"split_{counter[0]}_{j}" for j in "qkv")
        nodes.append(helper.make_node("Split", [qkv, split], [q, k, v], axis=-1))

        def heads_of(t: str, perm: list[int]) -> str:
            return op("Transpose", [op("Reshape", [t, heads_shape])], perm=perm)

        att = op("MatMul", [heads_of(q, [0, 2, 1, 3]), heads_of(k, [0, 2, 3, 1])])
        att = op("Softmax", [op("Mul", [att, scale])], axis=-1)
        y = op("MatMul", [att, heads_of(v, [0, 2, 1, 3])])
        y = op("Reshape", [op("Transpose", [y], perm=[0, 2, 1, 3]), merge_shape])
        x = op("Add", [x, linear(y, p + "out_w", p + "out_b")])
        h = gelu(linear(layer_norm(x, p + "ln2_g", p + "ln2_b"), p + "fc1_w", p + "fc1_b"))
        x = op("Add", [x, linear(h, p + "fc2_w", p + "fc2_b")])
        if i + 1 in blocks:
            name = block_output(i + 1)
            nodes.append(helper.make_node("Identity", [x], [name]))
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, "frames", width]))

    inputs = [helper.make_tensor_value_info(MEL_INPUT, TensorProto.FLOAT, [1, n_mels, "mel_frames"])]
    # weights: initializers whose data lives "elsewhere" (ONNX external data); the runtime hands
    # them over with SessionOptions.add_external_initializers, before graph optimisation, so they
    # are constants to ONNX Runtime (pre-packed MatMuls) although the file holds none of them
    for name, shape in shapes.items():
        t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[int(d) for d in shape])
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", EXTERNAL_LOCATION), ("offset", "0"), ("length", str(4 * math.prod(shape)))):
            e = t.external_data.add()
            e.key, e.value = k, v
        inits.append(t)
    graph = helper.make_graph(nodes, "whisper_encoder_blocks", inputs, outputs, initializer=inits)
    # the module's name when the shipped graph was made: kept, so that graph regenerates byte for byte
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="emodesk.training.whisper_graph"
    )
    model.ir_version = 8
    return model


def write_graph(path: Path, model_bin: Path, blocks: tuple[int, ...]) -> Path:
    """Write the graph for ``blocks`` of ``model_bin``'s encoder to ``path`` (sizes read from the file)."""
    import onnx

    from emodesk.speech.whisper_layers import encoder_weights

    weights, heads = encoder_weights(model_bin, max(blocks))
    shapes = {n: tuple(int(d) for d in w.shape) for n, w in weights.items()}
    model = build_graph(shapes=shapes, heads=heads, blocks=tuple(sorted(blocks)))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(path)
    return path
