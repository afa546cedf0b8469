"""The whisper-encoder voice member: its features, the encoder it insists on, one encoder pass
per utterance in the live pipeline, and ``emodesk train voice`` → ``emodesk eval voice`` end to end."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emodesk.errors import ModelError
from emodesk.inference.runtime import OnnxModel
from emodesk.inference.utterance_scorers import VoiceScorer
from emodesk.inference.voice_features import RunningNormalizer, pool_frames, shrunk_stats
from emodesk.resources import sha256_file
from tests.support.voice_heads import write_voice_head

onnx = pytest.importorskip("onnx")

DIM = 8  # pooled features of 4-dimensional fake encoder states


def test_pool_frames_is_mean_then_std() -> None:
    f = np.array([[1.0, 2.0], [3.0, 6.0]])
    np.testing.assert_allclose(pool_frames(f), [2.0, 4.0, 1.0, 2.0])
    with pytest.raises(ValueError):
        pool_frames(np.zeros((0, 3)))
    with pytest.raises(ValueError):
        pool_frames(f, "max")


def test_running_normalizer_moves_from_the_prior_to_the_session() -> None:
    rng = np.random.default_rng(0)
    prior_mean, prior_std = rng.normal(size=DIM), rng.uniform(0.5, 2, size=DIM)
    norm = RunningNormalizer(prior_mean, prior_std, prior_weight=3)
    speaker = rng.normal(5.0, 0.1, size=(200, DIM))  # far from the prior: another microphone
    outs = np.stack([norm(v) for v in speaker])
    # brute force: pooled moments of 3 prior pseudo-vectors and the session so far
    n = len(speaker)
    mean = (3 * prior_mean + speaker.sum(0)) / (3 + n)
    var = (3 * (prior_std**2 + prior_mean**2) + (speaker**2).sum(0)) / (3 + n) - mean**2
    np.testing.assert_allclose(outs[-1], (speaker[-1] - mean) / np.sqrt(var), rtol=1e-5)
    assert abs(outs[-50:].mean()) < 0.3  # the session's own statistics took over
    assert abs(outs[0].mean()) > 1.0  # the first utterance is judged by the prior alone
    norm.reset()
    np.testing.assert_allclose(norm(speaker[0]), outs[0], rtol=1e-6)
    with pytest.raises(ValueError):
        norm(np.zeros(DIM + 1))
    with pytest.raises(ValueError):
        RunningNormalizer(prior_mean, -prior_std, 3)


def test_shrunk_stats_broadcast_over_sessions() -> None:
    m, s = shrunk_stats(
        np.zeros(2), np.ones(2), 1.0, np.array([[1.0]]), np.array([[2.0, 0.0]]), np.array([[4.0, 0.0]])
    )
    np.testing.assert_allclose(m, [[1.0, 0.0]])
    np.testing.assert_allclose(s, [[np.sqrt(2.5 - 1.0), np.sqrt(0.5)]])


# ------------------------------------------------------------ a tiny member


@dataclass
class FakeEncoded:
    states: np.ndarray

    def frames(self) -> np.ndarray:
        return self.states


class FakeAsr:
    """Transcriber-shaped: counts encoder passes, and whether transcribe reused one."""

    def __init__(self, sha: str) -> None:
        self.encoder_sha256 = sha
        self.encodes = 0
        self.reused = 0

    def encode(self, audio: np.ndarray) -> FakeEncoded:
        self.encodes += 1
        n = max(1, len(audio) // 320)
        return FakeEncoded(np.tile(np.array([audio.mean(), audio.std(), 1.0, 0.0]), (n, 1)))

    def transcribe(self, audio: np.ndarray, *, partial: bool = False, encoded: Any = None) -> str:
        if encoded is None:
            self.encode(audio)
        else:
            self.reused += 1
        return "" if partial else "hello"


def test_member_scores_the_encoder_pass_it_is_given(tmp_path: Path) -> None:
    asr = FakeAsr("a" * 64)
    member = VoiceScorer(OnnxModel(write_voice_head(tmp_path / "v.onnx", asr.encoder_sha256), device="cpu"))
    assert member.accepts(asr) and not member.accepts(FakeAsr("b" * 64))
    audio = np.random.default_rng(0).normal(size=16000).astype(np.float32)
    p1 = member.score(audio, encoded=asr.encode(audio))
    assert p1.shape == (7,) and abs(p1.sum() - 1) < 1e-5
    member.reset_session()
    np.testing.assert_allclose(member.score(audio, encoded=asr.encode(audio)), p1, rtol=1e-6)
    # the session's statistics change the second score of the same audio
    assert not np.allclose(member.score(audio, encoded=asr.encode(audio)), p1)


def test_member_refuses_an_encoder_it_was_not_trained_on(tmp_path: Path) -> None:
    member = VoiceScorer(OnnxModel(write_voice_head(tmp_path / "v.onnx", "0" * 64), device="cpu"))
    with pytest.raises(ModelError, match="disabled"):
        member.prepare()  # the bundled tiny.en's model.bin is not sha 000…


def test_member_with_the_real_encoder_matches_the_shared_pass(tmp_path: Path) -> None:
    from emodesk.speech.asr import Transcriber

    asr = Transcriber(device="cpu")
    member = VoiceScorer(
        OnnxModel(write_voice_head(tmp_path / "v.onnx", asr.encoder_sha256, dim=768), device="cpu")
    )
    member.prepare()
    t = np.arange(16000 * 2) / 16000
    audio = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    own = member.score(audio)
    member.reset_session()
    np.testing.assert_allclose(member.score(audio, encoded=asr.encode(audio)), own, atol=1e-4)


def test_pipeline_runs_the_encoder_once_per_utterance(tmp_path: Path) -> None:
    from emodesk.pipeline.utterance_path import UtterancePipeline
    from emodesk.speech.processor import SpeechProcessor
    from emodesk.types import Utterance

    asr = FakeAsr("c" * 64)
    member = VoiceScorer(OnnxModel(write_voice_head(tmp_path / "v.onnx", asr.encoder_sha256), device="cpu"))

    class Segmenter:
        def __init__(self) -> None:
            self.pending: list[Utterance] = []

        def push(self, chunk: Any) -> list[Utterance]:
            out, self.pending = self.pending, []
            return out

        def flush(self) -> list[Utterance]:
            return self.push(None)

    seg = Segmenter()
    pipe = UtterancePipeline(SpeechProcessor(seg, asr), [member], [])  # type: ignore[arg-type]
    audio = np.random.default_rng(0).normal(size=8000).astype(np.float32)
    seg.pending = [
        Utterance(t0=0.0, t1=0.5, audio=audio, final=False, wall_end=0.0),
        Utterance(t0=0.0, t1=0.5, audio=audio, final=True, wall_end=0.0),
    ]
    out = pipe.finish()
    assert [s.kind for s in out.scores] == ["voice"]
    assert asr.encodes == 1 and asr.reused == 1  # the final: one encoder pass for text and voice


# ------------------------------------------------------ train → eval, end to end

RAVDESS_CODES = {"01": 220.0, "03": 330.0, "04": 150.0, "05": 500.0, "06": 420.0, "07": 180.0, "08": 600.0}


def _write_ravdess(root: Path, actors: list[int]) -> Path:
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    for a in actors:
        d = root / f"Actor_{a:02d}"
        d.mkdir(parents=True)
        for code, hz in RAVDESS_CODES.items():
            f0 = hz * (1 + 0.05 * a / 24)  # each actor's own voice
            wave = 0.2 * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.normal(size=t.size)
            sf.write(d / f"03-01-{code}-01-01-01-{a:02d}.flac", wave.astype(np.float32), 16000)
    return root


def test_train_voice_then_eval_voice(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from emodesk.cli.eval_cmd import main as eval_main
    from emodesk.cli.train_cmd import main as train_main
    from emodesk.speech.asr import Transcriber

    data = _write_ravdess(tmp_path / "ravdess", [1, 2, 19, 21])
    out = tmp_path / "models" / "voice-test.onnx"
    argv = ["voice", "--data", str(data), "--out", str(out), "--device", "cpu", "--quiet", "--epochs", "20"]
    argv += ["--prior-weights", "2,4", "--views", "2", "--cv-folds", "2"]
    assert train_main(argv) == 0
    man = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert man["requires"] == {
        "asr_model": "tiny.en",
        "encoder_sha256": Transcriber(device="cpu").encoder_sha256,
    }
    assert "NON-COMMERCIAL" in man["license"]
    from emodesk.inference.registry import usage_notes

    assert usage_notes([out.parent]) == [
        "voice-test: non-commercial use only: trained on RAVDESS (CC BY-NC-SA 4.0)"
    ]
    assert man["source"]["val_metrics"]["n"] == 7  # actor 19 only: 21 is test
    assert man["source"]["cross_validation"]["fold_actors"] == [[1, 19], [2]]
    assert len(man["source"]["search"]) == 4  # 2 prior weights × checks at epochs 10 and 20
    assert man["source"]["selected"]["epochs"] in (10, 20)
    # a second run reuses the cached encoder features and gives the same model
    cache = next((tmp_path / "models" / ".voice-test.ckpt").glob("features-*.npz"))
    stamp = cache.stat().st_mtime_ns
    out2 = tmp_path / "models" / "voice-again.onnx"
    assert train_main([*argv[:3], "--out", str(out2), "--checkpoint-dir", str(cache.parent), *argv[5:]]) == 0
    assert cache.stat().st_mtime_ns == stamp
    assert sha256_file(out2) == sha256_file(out)

    report = tmp_path / "eval.json"
    rc = eval_main(
        ["voice", "--manifest", str(data), "--model", str(out), "--device", "cpu", "--json", str(report)]
    )
    assert rc == 0
    m = json.loads(report.read_text(encoding="utf-8"))["voice-test"]
    assert (
        eval_main(["voice", "--manifest", str(data), "--model", str(out), "--record", "synthetic-test"]) == 0
    )
    assert m["n"] == 7 and len(m["confusion"]) == 7
    recorded = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))["metrics"]["synthetic-test"]
    assert recorded["accuracy"] == m["accuracy"] and "emodesk eval voice" in recorded["command"]


def test_train_voice_on_encoder_blocks_then_eval(tmp_path: Path) -> None:
    """``--encoder-blocks``: a ``whisper_layers`` member whose weightless graph travels beside it."""
    pytest.importorskip("torch")
    from emodesk.cli.eval_cmd import main as eval_main
    from emodesk.cli.train_cmd import main as train_main
    from emodesk.speech.asr import Transcriber

    data = _write_ravdess(tmp_path / "ravdess", [1, 2, 19, 21])
    out = tmp_path / "models" / "voice-blocks.onnx"
    argv = ["voice", "--data", str(data), "--out", str(out), "--device", "cpu", "--quiet", "--epochs", "20"]
    argv += ["--prior-weights", "2", "--views", "2", "--cv-folds", "2", "--encoder-blocks", "1"]
    assert train_main(argv) == 0
    man = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    pre = man["preprocessing"]
    graph = out.with_name("voice-blocks.encoder.onnx")
    assert pre["input"] == "whisper_layers" and pre["blocks"] == [1]
    assert pre["encoder_graph"] == graph.name and pre["encoder_graph_sha256"] == sha256_file(graph)
    assert graph.stat().st_size < 50_000  # no weights inside
    assert man["requires"]["encoder_sha256"] == Transcriber(device="cpu").encoder_sha256
    assert man["inputs"][0]["shape"] == ["N", 768]
    report = tmp_path / "eval.json"
    rc = eval_main(
        ["voice", "--manifest", str(data), "--model", str(out), "--device", "cpu", "--json", str(report)]
    )
    assert rc == 0
    m = json.loads(report.read_text(encoding="utf-8"))["voice-blocks"]
    assert m["n"] == 7 and abs(sum(m["per_class_recall"].values()) - 7 * m["uar"]) < 1e-9
    assert train_main(["voice", "--data", str(data), "--out", str(out), "--encoder-blocks", "0"]) == 2


TESS_LABELS = {
    "angry": 230.0,
    "disgust": 310.0,
    "fear": 160.0,
    "happy": 480.0,
    "neutral": 410.0,
    "sad": 190.0,
}


def _write_tess(root: Path, words: int = 10) -> Path:
    """A TESS-layout folder: OAF/ and YAF/, SPEAKER_word_emotion.flac, manifest.csv."""
    import soundfile as sf

    rng = np.random.default_rng(1)
    t = np.arange(12000) / 16000
    lines = ["path,label,speaker"]
    for spk, shift in (("OAF", 0.9), ("YAF", 1.1)):
        (root / spk).mkdir(parents=True)
        for w in range(words):
            for label, hz in TESS_LABELS.items():
                wave = 0.2 * np.sin(2 * np.pi * hz * shift * t) + 0.01 * rng.normal(size=t.size)
                name = f"{spk}/{spk}_word{w}_{label}.flac"
                sf.write(root / name, wave.astype(np.float32), 16000)
                lines.append(f"{name},{label},{spk}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_train_voice_on_two_corpora_with_augmentation(tmp_path: Path) -> None:
    """RAVDESS + TESS, augmented copies heard in simulated sessions: selected on every val set,
    the corpora's terms in the manifest, the augmented features cached and reused."""
    pytest.importorskip("torch")
    pytest.importorskip("pyroomacoustics")
    from emodesk.cli.train_cmd import main as train_main
    from emodesk.evaluation.datasets import load_split
    from emodesk.lab.train.voice.train import augmented_items, corpus_weights

    ravdess = _write_ravdess(tmp_path / "ravdess", [1, 2, 19])
    tess = _write_tess(tmp_path / "tess")
    out = tmp_path / "models" / "voice-two.onnx"
    argv = ["voice", "--data", str(ravdess), "--data", str(tess), "--out", str(out), "--device", "cpu"]
    argv += ["--quiet", "--epochs", "20", "--prior-weights", "4", "--views", "2", "--augment", "1"]
    argv += ["--session-size", "5"]
    assert train_main(argv) == 0
    man = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    src = man["source"]
    assert set(src["val_metrics"]) == {"ravdess", "tess", "ravdess+augmented", "tess+augmented"}
    assert src["val_metrics"]["ravdess"]["n"] == 7  # actor 19
    assert "TESS (CC BY-NC-ND 4.0" in man["usage"] and "RAVDESS (CC BY-NC-SA 4.0)" in man["usage"]
    assert "TESS" in man["license"] and "NON-COMMERCIAL" in man["license"]
    assert "cross_validation" not in src and src["settings"]["augment"] == 1
    best = max(src["search"], key=lambda r: (r["val_uar"], r["val_accuracy"]))
    # only the speaker-independent val sets judge: TESS's val words are its training speakers'
    per = best["per_set"]
    assert np.isclose(best["val_uar"], (per["ravdess"]["uar"] + per["ravdess+augmented"]["uar"]) / 2)
    assert (best["prior_weight"], best["epochs"]) == (
        src["selected"]["prior_weight"],
        src["selected"]["epochs"],
    )
    cache = next((tmp_path / "models" / ".voice-two.ckpt").glob("features-*.npz"))
    with np.load(cache) as z:
        keys = [str(k) for k in z["paths"]]
    n_clean = 3 * 7 + 2 * 10 * 6
    assert len(keys) == 2 * n_clean  # every clip once clean and once augmented (train and val)
    assert sum("#aug" in k for k in keys) == n_clean
    stamp = cache.stat().st_mtime_ns
    assert (
        train_main(
            [
                *argv[:7],
                "--out",
                str(tmp_path / "m2" / "v.onnx"),
                "--checkpoint-dir",
                str(cache.parent),
                *argv[9:],
            ]
        )
        == 0
    )
    assert cache.stat().st_mtime_ns == stamp  # nothing encoded again

    # simulated sessions: one speaker's clips cut into sessions of the size asked, per copy
    rows = load_split(tess, "train")
    items = augmented_items(rows, 2, 5, corpus="tess", part="train")
    sessions: dict[str, int] = {}
    for it in items:
        sessions[it.session] = sessions.get(it.session, 0) + 1
    assert len(items) == 2 * len(rows) and max(sessions.values()) == 5
    assert {s.split(":")[1] for s in sessions} == {"OAF", "YAF"}
    assert items == augmented_items(rows, 2, 5, corpus="tess", part="train")  # seeded
    assert all(it.augmented and it.corpus == "tess" for it in items)
    w = corpus_weights(np.array(["a"] * 30 + ["b"] * 10))
    assert np.isclose(w[:30].sum(), w[30:].sum()) and np.isclose(w.sum(), 40)
    # one corpus twice, TESS alone (no speaker-independent val), CV over two corpora: refused
    assert train_main(["voice", "--data", str(tess), "--out", str(out), "--no-export"]) == 2
    assert train_main(["voice", "--data", str(tess), "--data", str(tess), "--out", str(out)]) == 2
    assert (
        train_main(
            ["voice", "--data", str(ravdess), "--data", str(tess), "--cv-folds", "2", "--out", str(out)]
        )
        == 2
    )
