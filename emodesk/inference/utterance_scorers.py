"""Voice and text emotion members: the same ONNX scoring interface as the face path.

Until trained models are installed, these slots stay empty and the app says
"no model installed" — it never shows made-up scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emodesk.errors import ModelError
from emodesk.inference.manifest import ModelManifest
from emodesk.inference.runtime import Device, OnnxModel
from emodesk.labels import reorder_indices


def _softmax_if_needed(x: np.ndarray, already: bool) -> np.ndarray:
    if already:
        p = np.clip(x, 0.0, None)
        s = p.sum()
        return p / s if s > 0 else np.full_like(p, 1.0 / len(p))
    z = x - x.max()
    e = np.exp(z)
    return e / e.sum()


class _OnnxMember:
    modality = ""

    def __init__(self, model: OnnxModel) -> None:
        m = model.manifest
        if m.modality != self.modality:
            raise ModelError(f"model {m.id} has modality {m.modality!r}, expected {self.modality!r}")
        if not m.labels:
            raise ModelError(f"model {m.id}: its manifest names no output labels")
        self.model = model
        self.order = reorder_indices(m.labels)
        self.outputs_probs = str(m.preprocessing.get("output", "probs")) == "probs"

    @property
    def id(self) -> str:
        return self.model.id

    def _finish(self, out: Any) -> np.ndarray:
        raw = np.asarray(out, dtype=np.float64).reshape(-1)
        if raw.shape[0] != len(self.order):
            raise ModelError(f"model {self.id} returned {raw.shape[0]} outputs, expected {len(self.order)}")
        return _softmax_if_needed(raw, self.outputs_probs)[self.order]


class VoiceScorer(_OnnxMember):
    """Scores an utterance's 16 kHz waveform. Preprocessing ``{"input": "waveform"}``."""

    modality = "voice"

    def __init__(self, model: OnnxModel) -> None:
        super().__init__(model)
        kind = model.manifest.preprocessing.get("input", "waveform")
        if kind != "waveform":
            raise ModelError(
                f"voice model {self.id} expects input {kind!r}, which this emodesk version "
                "cannot compute; upgrade emodesk"
            )

    @classmethod
    def load(cls, manifest: ModelManifest, *, device: Device = "auto") -> VoiceScorer:
        return cls(OnnxModel(manifest, device=device))

    def score(self, audio: np.ndarray) -> np.ndarray:
        x = np.asarray(audio, dtype=np.float32).reshape(1, -1)
        out = self.model.run({self.model.input_names[0]: x})[0]
        return self._finish(out)


class TextScorer(_OnnxMember):
    """Scores a transcript. Preprocessing names a ``tokenizer`` JSON file beside the model."""

    modality = "text"

    def __init__(self, model: OnnxModel) -> None:
        super().__init__(model)
        from tokenizers import Tokenizer

        pre = model.manifest.preprocessing
        tok_file = pre.get("tokenizer")
        if not tok_file:
            raise ModelError(f"text model {self.id}: manifest preprocessing lacks 'tokenizer'")
        path = model.manifest.path.parent / str(tok_file)
        try:
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises plain Exception  # noqa: BLE001
            raise ModelError(f"text model {self.id}: cannot load tokenizer {path}: {e}") from None
        self.max_length = int(pre.get("max_length", 128))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)

    @classmethod
    def load(cls, manifest: ModelManifest, *, device: Device = "auto") -> TextScorer:
        return cls(OnnxModel(manifest, device=device))

    def score(self, text: str) -> np.ndarray:
        enc = self.tokenizer.encode(text)
        feeds: dict[str, np.ndarray] = {}
        for name in self.model.input_names:
            if name == "input_ids":
                feeds[name] = np.asarray([enc.ids], dtype=np.int64)
            elif name == "attention_mask":
                feeds[name] = np.asarray([enc.attention_mask], dtype=np.int64)
            elif name == "token_type_ids":
                feeds[name] = np.asarray([enc.type_ids], dtype=np.int64)
            else:
                raise ModelError(f"text model {self.id} has an input {name!r} this version cannot fill")
        return self._finish(self.model.run(feeds)[0])
