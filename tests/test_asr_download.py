"""``--asr-model NAME``: a model that is not installed is fetched only when the user asks by name."""

from __future__ import annotations

import pytest


def test_a_named_asr_model_is_fetched_only_when_the_user_allows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--asr-model NAME`` for a model that is not installed: refused, naming ``--download-asr``;
    with the flag, faster-whisper may go to the network."""
    import faster_whisper.utils

    from emodesk.cli.common import allow_asr_download
    from emodesk.errors import ModelError
    from emodesk.speech import asr

    asked: list[bool] = []

    def fake(name: str, local_files_only: bool = False, **_: object) -> str:
        asked.append(local_files_only)
        if local_files_only:
            raise FileNotFoundError("not in the cache")  # what huggingface_hub raises offline
        return "/fetched"

    monkeypatch.setattr(faster_whisper.utils, "download_model", fake)
    allow_asr_download(False)
    with pytest.raises(ModelError, match="--download-asr"):
        asr._fetch("small.en")
    allow_asr_download(True)
    try:
        assert asr._fetch("small.en") == "/fetched"
    finally:
        allow_asr_download(False)
    assert asked == [True, False]


def test_device_cuda_asks_ctranslate2_only_for_runs_that_transcribe(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctranslate2
    import onnxruntime

    from emodesk.errors import InputError
    from emodesk.machine import require_device

    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 0)
    require_device("cuda", speech=False)  # face and text: ONNX Runtime's CUDA is enough
    with pytest.raises(InputError, match="CTranslate2"):
        require_device("cuda")
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(InputError, match="ONNX Runtime has no CUDA provider"):
        require_device("cuda", speech=False)
    require_device("auto")
    require_device("cpu")
