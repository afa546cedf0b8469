"""Test helper: a small whisper-encoder voice member (head ONNX + manifest) written to disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from emodesk.inference.manifest import ModelManifest
from emodesk.labels import LABELS
from emodesk.resources import sha256_file


def write_voice_head(
    path: Path, sha: str, asr: str = "tiny.en", dim: int = 8, preprocessing: dict[str, Any] | None = None
) -> ModelManifest:
    """A random linear-softmax voice head over ``dim`` pooled features and its manifest
    (``whisper_encoder`` input unless ``preprocessing`` overrides keys)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(1).normal(size=(dim, len(LABELS))).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w"], ["z"]), helper.make_node("Softmax", ["z"], ["probs"])],
        "head",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", dim])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", len(LABELS)])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    manifest = {
        "id": path.stem,
        "modality": "voice",
        "file": path.name,
        "sha256": sha256_file(path),
        "inputs": [{"name": "features", "shape": ["N", dim], "dtype": "float32"}],
        "labels": list(LABELS),
        "preprocessing": {
            "input": "whisper_encoder",
            "pooling": "mean_std",
            "normalization": {
                "kind": "running_session",
                "prior_mean": [0.0] * dim,
                "prior_std": [1.0] * dim,
                "prior_weight": 2.0,
            },
            "output": "probs",
            **(preprocessing or {}),
        },
        "requires": {"asr_model": asr, "encoder_sha256": sha},
    }
    path.with_suffix(".json").write_text(json.dumps(manifest), encoding="utf-8")
    return ModelManifest.load(path.with_suffix(".json"))


def write_waveform_voice_model(
    folder: Path,
    w: np.ndarray,
    *,
    model_id: str,
    labels: list[str],
    postprocessing: dict[str, Any] | None = None,
) -> Path:
    """A ``waveform`` voice member: logits = mean(waveform) · ``w`` (``(1, 7)``), and its manifest."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from emodesk.inference.manifest import ManifestDraft

    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["waveform"], ["mean"], axes=[1], keepdims=1),
            helper.make_node("MatMul", ["mean", "w"], ["logits"]),
        ],
        "waveform_voice",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, [1, "S"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 7])],
        [numpy_helper.from_array(np.asarray(w, np.float32).reshape(1, 7), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = folder / f"{model_id}.onnx"
    onnx.save(model, str(path))
    ManifestDraft(
        id=model_id,
        modality="voice",
        inputs=[{"name": "waveform", "shape": [1, "S"], "dtype": "float32"}],
        labels=list(labels),
        preprocessing={"input": "waveform", "output": "logits"},
        postprocessing=postprocessing,
    ).write(path)
    return path
