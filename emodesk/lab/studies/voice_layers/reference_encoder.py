"""An independent torch whisper encoder built from a CTranslate2 ``model.bin`` (every layer's output).

The tests' reference for :mod:`emodesk.speech.whisper_layers` (whose ONNX graph is
built by hand in :mod:`emodesk.lab.train.voice.whisper_graph`) and the layer study's encoder
(``emodesk/lab/studies/voice_layers/study.py``). Its final output is checked against CTranslate2's
own encoder in ``tests/test_whisper_layers.py``.

model.bin variable → module:

    encoder/conv1/{weight (d, 80, 3), bias}      → conv1  (stride 1, padding 1) + GELU (erf)
    encoder/conv2/{weight (d, d, 3), bias}       → conv2  (stride 2, padding 1) + GELU (erf)
    encoder/position_encodings/encodings (1500,d)→ pos; added to the first T/2 frames (sliced)
    encoder/layer_i/self_attention/layer_norm/{gamma,beta}  → blocks[i].ln1 (pre-LN, eps 1e-5)
    encoder/layer_i/self_attention/linear_0/{weight (3d,d), bias} → blocks[i].qkv (q, k, v stacked)
    encoder/layer_i/self_attention/linear_1/{weight, bias}  → blocks[i].out
    encoder/layer_i/ffn/layer_norm/{gamma,beta}             → blocks[i].ln2
    encoder/layer_i/ffn/linear_0/{weight (4d,d), bias}      → blocks[i].fc1, GELU (erf)
    encoder/layer_i/ffn/linear_1/{weight (d,4d), bias}      → blocks[i].fc2
    encoder/layer_norm/{gamma,beta}              → ln_post (the final layer norm)
    encoder/num_heads ()                         → heads (attention scale 1/sqrt(d/heads))

An int8 folder (emodesk.speech.ct2_int8) stores ``…/weight`` as int8 with ``…/weight_scale``
(per output row); they are de-quantized here as weight / scale. ``int8_rule=True`` applies
CTranslate2's rule (per row: scale 127 / max|w|, round half to even) to float linear weights,
written out here again rather than taken from emodesk, so the comparison is independent.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from emodesk.speech.ct2_int8 import read_model_bin


def int8_round_trip(w: np.ndarray) -> np.ndarray:
    rows = w.reshape(w.shape[0], -1).astype(np.float32)
    scale = (np.float32(127) / np.abs(rows).max(axis=1)).astype(np.float32)
    return (np.rint(rows * scale[:, None]).astype(np.float32) / scale[:, None]).reshape(w.shape)


def load_encoder_variables(model_bin: Path, *, int8_rule: bool = False) -> dict[str, np.ndarray]:
    """float32 arrays of every ``encoder/…`` variable (int8 weights de-quantized)."""
    _, _, _, variables, _ = read_model_bin(Path(model_bin))
    raw = {}
    for v in variables:
        if not v.name.startswith("encoder/"):
            continue
        a = np.frombuffer(v.data, dtype=np.dtype(v.dtype).newbyteorder("<")).reshape(v.shape)
        raw[v.name] = a
    out = {}
    for name, a in raw.items():
        if name.endswith("_scale"):
            continue
        if a.dtype == np.int8 and name + "_scale" in raw:
            scale = raw[name + "_scale"].astype(np.float32)
            a = a.astype(np.float32) / scale.reshape((-1,) + (1,) * (a.ndim - 1))
        elif int8_rule and name.endswith("/weight") and "conv" not in name and a.ndim == 2:
            a = int8_round_trip(a.astype(np.float32))
        out[name] = np.array(a, dtype=np.float32) if name != "encoder/num_heads" else np.array(a)
    return out


class Block(torch.nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = torch.nn.LayerNorm(d, eps=1e-5)
        self.qkv = torch.nn.Linear(d, 3 * d)
        self.out = torch.nn.Linear(d, d)
        self.ln2 = torch.nn.LayerNorm(d, eps=1e-5)
        self.fc1 = torch.nn.Linear(d, 4 * d)
        self.fc2 = torch.nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, T, d)
        b, t, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q = q.view(b, t, h, d // h).transpose(1, 2)
        k = k.view(b, t, h, d // h).transpose(1, 2)
        v = v.view(b, t, h, d // h).transpose(1, 2)
        att = torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(d // h), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.out(y)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class WhisperEncoder(torch.nn.Module):
    """Input log-mel (B, 80, T), T even; returns the list of layer outputs, each (B, T/2, d):
    [conv+pos, block 1, …, block L, final layer norm]."""

    def __init__(self, d: int, heads: int, n_layers: int, n_mels: int = 80, n_pos: int = 1500) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv1d(n_mels, d, 3, padding=1)
        self.conv2 = torch.nn.Conv1d(d, d, 3, stride=2, padding=1)
        self.register_buffer("pos", torch.zeros(n_pos, d))
        self.blocks = torch.nn.ModuleList(Block(d, heads) for _ in range(n_layers))
        self.ln_post = torch.nn.LayerNorm(d, eps=1e-5)

    def forward(self, mel: torch.Tensor) -> list[torch.Tensor]:
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        pos: torch.Tensor = self.pos  # type: ignore[assignment]  # a registered buffer
        x = x + pos[: x.shape[1]]
        outs = [x]
        for blk in self.blocks:
            x = blk(x)
            outs.append(x)
        outs.append(self.ln_post(x))
        return outs

    @classmethod
    def from_model_bin(cls, model_bin: Path, *, int8_rule: bool = False) -> WhisperEncoder:
        v = load_encoder_variables(model_bin, int8_rule=int8_rule)
        d = v["encoder/conv1/weight"].shape[0]
        heads = int(v["encoder/num_heads"])
        n_layers = 1 + max(int(m.group(1)) for k in v if (m := re.match(r"encoder/layer_(\d+)/", k)))
        n_pos = v["encoder/position_encodings/encodings"].shape[0]
        n_mels = v["encoder/conv1/weight"].shape[1]
        enc = cls(d, heads, n_layers, n_mels, n_pos)
        t = lambda name: torch.from_numpy(v[name].copy())  # noqa: E731
        sd = {
            "conv1.weight": t("encoder/conv1/weight"),
            "conv1.bias": t("encoder/conv1/bias"),
            "conv2.weight": t("encoder/conv2/weight"),
            "conv2.bias": t("encoder/conv2/bias"),
            "pos": t("encoder/position_encodings/encodings"),
            "ln_post.weight": t("encoder/layer_norm/gamma"),
            "ln_post.bias": t("encoder/layer_norm/beta"),
        }
        # written out independently of emodesk.speech.whisper_layers: this module is the oracle
        # the graph is checked against, and it is itself checked against CTranslate2's encoder
        parts = {
            "ln1": "self_attention/layer_norm",
            "qkv": "self_attention/linear_0",
            "out": "self_attention/linear_1",
            "ln2": "ffn/layer_norm",
            "fc1": "ffn/linear_0",
            "fc2": "ffn/linear_1",
        }
        for i in range(n_layers):
            for ours, theirs in parts.items():
                w, b = ("gamma", "beta") if ours.startswith("ln") else ("weight", "bias")
                sd[f"blocks.{i}.{ours}.weight"] = t(f"encoder/layer_{i}/{theirs}/{w}")
                sd[f"blocks.{i}.{ours}.bias"] = t(f"encoder/layer_{i}/{theirs}/{b}")
        enc.load_state_dict(sd, strict=True)
        return enc.eval()
