"""A member's label prior (`postprocessing.label_bias`): applied to its probabilities, or refused."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from emodesk.errors import ModelError
from emodesk.inference.manifest import ManifestDraft, ModelManifest
from emodesk.inference.runtime import OnnxModel
from emodesk.inference.utterance_scorers import VoiceScorer, label_bias
from emodesk.labels import LABELS


def _flat_voice_model(folder: Path, post: dict[str, object]) -> OnnxModel:
    """logits = 0 · mean(waveform): every label equally likely before the prior."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["waveform"], ["mean"], axes=[1], keepdims=1),
            helper.make_node("MatMul", ["mean", "w"], ["logits"]),
        ],
        "flat_voice",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, [1, "S"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 7])],
        [numpy_helper.from_array(np.zeros((1, 7), np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "voice-flat.onnx"
    onnx.save(model, str(path))
    ManifestDraft(
        id="voice-flat",
        modality="voice",
        inputs=[{"name": "waveform", "shape": [1, "S"], "dtype": "float32"}],
        labels=list(LABELS),
        preprocessing={"input": "waveform", "output": "logits"},
        postprocessing=post,
    ).write(path)
    return OnnxModel(ModelManifest.load(path.with_suffix(".json")), device="cpu")


def test_the_prior_multiplies_the_probabilities_and_renormalises(tmp_path: Path) -> None:
    audio = np.zeros(1600, np.float32)
    plain = VoiceScorer(_flat_voice_model(tmp_path, {})).score(audio)
    assert np.allclose(plain, 1 / 7)
    (tmp_path / "b").mkdir()
    biased = VoiceScorer(_flat_voice_model(tmp_path / "b", {"label_bias": {"neutral": math.log(3)}})).score(
        audio
    )
    n = LABELS.index("neutral")
    assert biased[n] == pytest.approx(3 / 9) and np.allclose(np.delete(biased, n), 1 / 9)
    assert biased.sum() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("bias", "message"),
    [
        ({"calm": 1.0}, "not one of"),
        ({"neutral": "a lot"}, "not a number"),
        (["neutral"], "must map"),
        ({"neutral": float("nan")}, "outside"),
        ({"neutral": 1000}, "outside"),
    ],
)
def test_a_malformed_prior_is_refused(bias: object, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        label_bias(SimpleNamespace(id="m", postprocessing={"label_bias": bias}))  # type: ignore[arg-type]


def test_no_prior_is_none() -> None:
    assert label_bias(SimpleNamespace(id="m", postprocessing={})) is None  # type: ignore[arg-type]
    assert label_bias(SimpleNamespace(id="m", postprocessing={"label_bias": {}})) is None  # type: ignore[arg-type]
