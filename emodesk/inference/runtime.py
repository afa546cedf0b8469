"""ONNX Runtime sessions with explicit providers and thread counts.

The provider is decided per model (:func:`emodesk.machine.choose_providers`): CUDA
when ``onnxruntime-gpu`` is installed and the session really runs on it, else CPU —
and the reason is kept so the window and ``bench`` can show it instead of silently
leaving a GPU unused.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from emodesk.errors import ModelError
from emodesk.inference.manifest import ModelManifest, TensorSpec
from emodesk.machine import CPU, CUDA, Device, choose_providers

log = logging.getLogger(__name__)


class OnnxModel:
    """A verified ONNX model and its session, created in the thread that uses it."""

    def __init__(
        self,
        manifest: ModelManifest,
        *,
        device: Device = "auto",
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
    ) -> None:
        import onnxruntime as ort

        manifest.verify_file()
        self.manifest = manifest
        choice = choose_providers(device)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = inter_op_threads
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(manifest.model_path), sess_options=opts, providers=list(choice.providers)
            )
        except Exception as e:  # onnxruntime raises its own untyped errors  # noqa: BLE001
            raise ModelError(
                f"model {manifest.id}: ONNX Runtime could not load {manifest.model_path}: {e}"
            ) from None
        used = self.session.get_providers()[0]
        self.provider = used
        if CUDA in choice.providers and used != CUDA:
            self.provider_reason = "CUDA provider failed to initialise; see the log (CUDA/cuDNN missing?)"
        else:
            self.provider_reason = choice.reason
        if used == CPU and device == "cuda":
            log.warning("model %s runs on the CPU: %s", manifest.id, self.provider_reason)
        else:
            log.info("model %s runs on %s (%s)", manifest.id, used, self.provider_reason)
        actual = [TensorSpec(i.name, tuple(i.shape), i.type) for i in self.session.get_inputs()]
        manifest.check_inputs(actual)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def id(self) -> str:
        return self.manifest.id

    def require_input_shape(self, want: Sequence[int | None], why: str) -> None:
        """The session's first input must take ``want`` (None: any size) where its size is fixed:
        a manifest that disagrees with its network is refused at load, not at the first frame."""
        got = list(self.session.get_inputs()[0].shape)
        if len(got) != len(want) or any(
            isinstance(g, int) and w is not None and g != w for g, w in zip(got, want, strict=True)
        ):
            shown = ["N" if w is None else w for w in want]
            raise ModelError(
                f"model {self.id}: {why} give inputs of shape {shown}, but "
                f"{self.manifest.model_path.name} takes {got}"
            )

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[Any]:
        return self.session.run(None, dict(feeds))
