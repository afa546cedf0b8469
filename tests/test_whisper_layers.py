"""The first whisper encoder blocks on the ASR's weights (emodesk.speech.whisper_layers), and the
``whisper_layers`` voice member built on them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emodesk.errors import ModelError
from emodesk.inference.manifest import ModelManifest
from emodesk.inference.runtime import OnnxModel
from emodesk.inference.utterance_scorers import VoiceScorer
from emodesk.inference.voice_features import RunningNormalizer
from emodesk.resources import sha256_file
from emodesk.speech import ct2_int8
from emodesk.speech.asr import bundled_asr_model, context_frames, encoder_sha256, log_mel_window
from emodesk.speech.whisper_layers import WhisperLayers, encoder_weights

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from emodesk.lab.studies.voice_layers.reference_encoder import WhisperEncoder  # noqa: E402
from emodesk.lab.train.voice.whisper_graph import write_graph  # noqa: E402
from tests.support.voice_heads import write_voice_head  # noqa: E402


def _window(audio: np.ndarray, extractor: object) -> np.ndarray:
    """``(1, n_mels, T)``: the window Transcriber.encode feeds its encoder (10 s minimum context)."""
    return log_mel_window(audio, extractor, context_frames(len(audio), 10.0))[None]


def _speech_like(seconds: float = 2.5, seed: int = 0) -> np.ndarray:
    """A voiced, pitch-gliding signal with formant-like harmonics and noise (not silence)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    wave = sum((0.3 / k) * np.sin(k * phase) for k in range(1, 12))
    return (0.3 * wave * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.normal(size=t.size)).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The float16 tiny.en folder and an int8 copy of it (as the bundle carries)."""
    src = bundled_asr_model()
    return src, ct2_int8.quantize_model_folder(
        src, tmp_path_factory.mktemp("asr") / "tiny.en-int8", source_name="test"
    )


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_graph(
        tmp_path_factory.mktemp("g") / "enc.onnx", bundled_asr_model() / "model.bin", (1, 2, 4)
    )


def test_float16_folder_and_int8_copy_give_identical_weights(folders: tuple[Path, Path]) -> None:
    src, int8 = folders
    a, heads = encoder_weights(src / "model.bin", 4)
    b, heads_b = encoder_weights(int8 / "model.bin", 4)
    assert heads == heads_b == 6 and set(a) == set(b)
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    assert encoder_sha256(int8) == encoder_sha256(src)  # the member accepts the bundle's copy


def test_reference_encoder_is_whisper() -> None:
    """The torch reference reproduces CTranslate2's encoder (float32 compute on the float weights)."""
    import ctranslate2

    src = bundled_asr_model()
    ref = WhisperEncoder.from_model_bin(src / "model.bin")
    audio = _speech_like()
    from faster_whisper.feature_extractor import FeatureExtractor

    mel = _window(audio, FeatureExtractor())
    ct = ctranslate2.models.Whisper(str(src), device="cpu", compute_type="float32", intra_threads=1)
    want = np.asarray(ct.encode(ctranslate2.StorageView.from_array(mel)), dtype=np.float32)
    with torch.no_grad():
        got = ref(torch.from_numpy(mel))[-1].numpy()
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 5e-3 * np.abs(want).max()


def test_graph_matches_the_reference_blocks(graph: Path) -> None:
    mb = bundled_asr_model() / "model.bin"
    layers = WhisperLayers(graph, mb, (1, 2, 4), device="cpu")
    ref = WhisperEncoder.from_model_bin(mb, int8_rule=True)
    audio = _speech_like(3.7, seed=1)
    mel = _window(audio, layers._extractor)
    got = layers.states(mel)
    with torch.no_grad():
        outs = ref(torch.from_numpy(mel))
    for block, g in zip((1, 2, 4), got, strict=True):
        want = outs[block][0].numpy()
        assert g.shape == want.shape == (mel.shape[2] // 2, 384)
        assert np.abs(g - want).max() < 1e-3 * np.abs(want).max(), block
    # frames(): the utterance's own frames (50 a second), blocks side by side
    f = layers.frames(audio)
    assert f.shape == (int(np.ceil(len(audio) / 320)), 3 * 384)
    np.testing.assert_array_equal(f[:, 384:768], got[1][: f.shape[0]])
    with pytest.raises(ModelError, match="no output block_1"):  # weights of 4 blocks, no such output
        WhisperLayers(write_graph(graph.with_name("b4.onnx"), mb, (4,)), mb, (1, 4), device="cpu")
    with pytest.raises(ModelError, match="could not load the encoder graph"):  # 4 blocks, weights of 3
        WhisperLayers(graph, mb, (3,), device="cpu")


def test_graph_holds_no_weights(graph: Path) -> None:
    assert graph.stat().st_size < 50_000  # the 8 M parameters come from model.bin


def _layers_member(tmp: Path, sha: str) -> ModelManifest:
    """A ``whisper_layers`` member over block 2: a random head, its graph beside it."""
    tmp.mkdir(parents=True, exist_ok=True)
    enc = write_graph(tmp / "voice-layers.encoder.onnx", bundled_asr_model() / "model.bin", (2,))
    pre = {"input": "whisper_layers", "encoder_graph": enc.name, "blocks": [2]}
    pre["encoder_graph_sha256"] = sha256_file(enc)
    return write_voice_head(tmp / "voice-layers.onnx", sha, dim=2 * 384, preprocessing=pre)


def test_layers_member_scores_and_refuses_what_it_was_not_built_for(tmp_path: Path) -> None:
    sha = encoder_sha256(bundled_asr_model())
    man = _layers_member(tmp_path, sha)
    member = VoiceScorer(OnnxModel(man, device="cpu"))
    assert not member.uses_encoder  # never handed the ASR's final-layer pass
    member.prepare()
    audio = _speech_like()
    p = member.score(audio)
    assert p.shape == (7,) and abs(float(p.sum()) - 1) < 1e-5
    # the features are the block-2 states of the reference encoder, pooled and session-normalised
    member.reset_session()
    x = member.features(audio)
    ref = WhisperEncoder.from_model_bin(bundled_asr_model() / "model.bin", int8_rule=True)
    mel = _window(audio, member._encoder_layers()._extractor)
    with torch.no_grad():
        states = ref(torch.from_numpy(mel))[2][0, : int(np.ceil(len(audio) / 320))].numpy()
    pooled = np.concatenate([states.mean(0), states.std(0)])
    want = RunningNormalizer(np.zeros(pooled.size), np.ones(pooled.size), 2.0)(pooled)
    assert np.abs(x - want).max() < 2e-3 * np.abs(want).max()

    other = VoiceScorer(OnnxModel(_layers_member(tmp_path / "b", "0" * 64), device="cpu"))
    with pytest.raises(ModelError, match="disabled"):
        other.prepare()
    enc = tmp_path / "voice-layers.encoder.onnx"
    enc.write_bytes(enc.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelError, match="does not match the sha256"):
        VoiceScorer(OnnxModel(man, device="cpu"))
    enc.unlink()
    with pytest.raises(ModelError, match="missing"):
        VoiceScorer(OnnxModel(man, device="cpu"))


class _CountingExtractor:
    """Wraps a feature extractor and counts its calls."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.mel_filters, self.calls = inner, inner.mel_filters, 0

    def __call__(self, *a: Any, **k: Any) -> np.ndarray:
        self.calls += 1
        return self.inner(*a, **k)


def test_layers_member_reuses_the_asr_log_mel_window(tmp_path: Path) -> None:
    """In the live pipeline the block-2 member takes the log-mel window the ASR's encoder pass computed
    (same features, no second extraction); a window of another length is not used."""
    from emodesk.pipeline.utterance_path import UtterancePipeline
    from emodesk.speech.asr import Transcriber
    from emodesk.speech.processor import SpeechProcessor
    from emodesk.types import Utterance

    member = VoiceScorer(
        OnnxModel(_layers_member(tmp_path, encoder_sha256(bundled_asr_model())), device="cpu")
    )
    member.prepare()
    assert member.reads_mel
    audio = _speech_like(seed=1)
    own = member.features(audio)
    layers = member._encoder_layers()
    layers._extractor = counting = _CountingExtractor(layers._extractor)

    asr = Transcriber(device="cpu")
    enc = asr.encode(audio)
    assert enc.mel is not None and enc.mel.shape == (80, enc.window_frames)
    member.reset_session()
    np.testing.assert_array_equal(member.features(audio, encoded=enc), own)
    assert counting.calls == 0
    full = Transcriber(device="cpu", min_context_s=None).encode(audio)  # the 30 s window: not ours
    member.reset_session()
    np.testing.assert_array_equal(member.features(audio, encoded=full), own)
    assert counting.calls == 1

    class Segmenter:
        def __init__(self) -> None:
            self.pending = [Utterance(t0=0.0, t1=2.5, audio=audio, final=True, wall_end=0.0)]

        def push(self, chunk: Any) -> list[Utterance]:
            out, self.pending = self.pending, []
            return out

        def flush(self) -> list[Utterance]:
            return self.push(None)

    speech = SpeechProcessor(Segmenter(), asr)  # type: ignore[arg-type]
    member.reset_session()
    pipe = UtterancePipeline(speech, [member], [])
    assert speech.encode_finals  # the pass is made once, for the transcript and the member's window
    out = pipe.finish()
    assert [s.kind for s in out.scores] == ["voice"] and counting.calls == 1
