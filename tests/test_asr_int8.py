"""The bundle's int8 tiny.en (emodesk.speech.ct2_int8) computes on the CPU what the float16 original does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emodesk.errors import ModelError
from emodesk.speech import ct2_int8
from emodesk.speech.asr import Transcriber, bundled_asr_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def int8_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ct2_int8.quantize_model_folder(
        bundled_asr_model(), tmp_path_factory.mktemp("asr") / "tiny.en-int8", source_name="test"
    )


def test_model_bin_reader_writer_round_trips_the_file(tmp_path: Path) -> None:
    src = bundled_asr_model() / "model.bin"
    parts = ct2_int8.read_model_bin(src)
    ct2_int8.write_model_bin(tmp_path / "model.bin", *parts)
    assert (tmp_path / "model.bin").read_bytes() == src.read_bytes()


def test_int8_folder_is_half_the_size_and_says_where_it_came_from(int8_folder: Path) -> None:
    src = bundled_asr_model()
    ratio = (int8_folder / "model.bin").stat().st_size / (src / "model.bin").stat().st_size
    assert ratio < 0.55, ratio
    doc = json.loads((int8_folder / ct2_int8.DERIVED_FILE).read_text(encoding="utf-8"))
    assert doc["quantization"] == "int8" and doc["weights_quantized"] > 20
    _, _, _, variables, _ = ct2_int8.read_model_bin(int8_folder / "model.bin")
    dtypes = {v.name: v.dtype for v in variables}
    assert dtypes["encoder/layer_0/ffn/linear_0/weight"] == "int8"
    assert dtypes["encoder/layer_0/ffn/linear_0/weight_scale"] == "float32"
    assert dtypes["encoder/conv1/weight"] in ("float16", "float32")  # CTranslate2 keeps convolutions float
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (int8_folder / name).read_bytes() == (src / name).read_bytes()
    with pytest.raises(ModelError, match="already int8"):
        ct2_int8.quantize_model_folder(int8_folder, int8_folder.parent / "again", source_name="x")


@pytest.mark.timeout(300)
def test_cpu_int8_encoder_is_bit_identical_and_keeps_the_voice_members_encoder(
    int8_folder: Path, tmp_path: Path
) -> None:
    from emodesk.evaluation.evaluate import read_audio_16k

    audio = read_audio_16k(ROOT / "assets" / "demo.mp4")[16000 : 16000 * 3]
    original = Transcriber(device="cpu", compute_type="int8", min_context_s=None)
    rewritten = Transcriber(str(int8_folder), device="cpu", compute_type="int8", min_context_s=None)
    a, b = original.encode(audio).frames(), rewritten.encode(audio).frames()
    assert a.shape == b.shape and a.shape[0] > 50
    assert np.array_equal(a, b)
    assert rewritten.transcribe(audio) == original.transcribe(audio) != ""  # the decoder too
    # the voice members' check: same encoder as the source they were trained on
    assert rewritten.encoder_sha256 == original.encoder_sha256
    # a model.bin that is no longer the one written answers for itself
    tampered = tmp_path / "t"
    tampered.mkdir()
    for f in int8_folder.iterdir():
        (tampered / f.name).write_bytes(f.read_bytes())
    with open(tampered / "model.bin", "r+b") as fh:
        fh.seek(-1, 2)
        fh.write(b"\x01" if fh.read(1) != b"\x01" else b"\x02")
    from emodesk.resources import sha256_file

    own = sha256_file(tampered / "model.bin")
    assert ct2_int8.derived_from(tampered, own) is None
    assert (
        ct2_int8.derived_from(int8_folder, sha256_file(int8_folder / "model.bin")) == original.encoder_sha256
    )
