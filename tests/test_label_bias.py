"""A member's label prior (`postprocessing.label_bias`): applied to its probabilities, or refused."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from emodesk.errors import ModelError
from emodesk.inference.manifest import ModelManifest
from emodesk.inference.runtime import OnnxModel
from emodesk.inference.utterance_scorers import VoiceScorer, label_bias
from emodesk.labels import LABELS


def _flat_voice_model(folder: Path, post: dict[str, object]) -> OnnxModel:
    """logits = 0 · mean(waveform): every label equally likely before the prior."""
    pytest.importorskip("onnx")
    from tests.support.voice_heads import write_waveform_voice_model

    path = write_waveform_voice_model(
        folder, np.zeros((1, 7)), model_id="voice-flat", labels=list(LABELS), postprocessing=post
    )
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
        ({"neutral": "a lot"}, r"expected a number, got the text 'a lot'"),
        (["neutral"], "must map"),
        ({"neutral": float("nan")}, "expected a number, got the number nan"),
        ({"neutral": 1000}, r"expected a number in \[-10.0, 10.0\], got 1000"),
    ],
)
def test_a_malformed_prior_is_refused(bias: object, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        label_bias(SimpleNamespace(id="m", postprocessing={"label_bias": bias}))  # type: ignore[arg-type]


def test_no_prior_is_none() -> None:
    assert label_bias(SimpleNamespace(id="m", postprocessing={})) is None  # type: ignore[arg-type]
    assert label_bias(SimpleNamespace(id="m", postprocessing={"label_bias": {}})) is None  # type: ignore[arg-type]
