"""``emodesk train text --arch ngram``: the TF-IDF n-gram member and its in-graph featurisation.

The ONNX graph must compute exactly the features the fit saw (padded
batches, one-token sentences and unknown n-grams included), the fit must be
the optimum of the objective it states, and the command must run end to end
on the tiny GoEmotions-layout data of ``test_train_text``, alone and
selected on the fusion with a companion member, with a model the app loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_train_text import _argv, make_tiny

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

import onnxruntime as ort  # noqa: E402

from emodesk.cli.train_cmd import main as train_main  # noqa: E402
from emodesk.errors import InputError  # noqa: E402
from emodesk.inference.manifest import ModelManifest  # noqa: E402
from emodesk.inference.utterance_scorers import TextScorer  # noqa: E402
from emodesk.lab.train.text.ngram import (  # noqa: E402
    NgramVocabulary,
    _csr_logits,
    balanced_row_weights,
    build_graph,
    fit_linear,
    ngram_keys,
    top_features,
)
from emodesk.labels import LABELS  # noqa: E402
from emodesk.resources import sha256_file  # noqa: E402


def test_ngram_keys_by_hand() -> None:
    ids = np.array([2, 5, 3])
    assert ngram_keys(ids, 10, 1).tolist() == [2, 5, 3]
    # bigrams: V + a·V + b = 10 + 25, 10 + 53
    assert ngram_keys(ids, 10, 2).tolist() == [2, 5, 3, 35, 63]
    # trigram: V + V² + (a·V + b)·V + c = 110 + 253
    assert ngram_keys(ids, 10, 3).tolist() == [2, 5, 3, 35, 63, 363]
    assert ngram_keys(np.array([7]), 10, 3).tolist() == [7]  # too short for pairs: unigrams only


def _random_vocab(n: int) -> tuple[NgramVocabulary, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 30, rng.integers(2, 14)) for _ in range(400)]  # tokens 30..39 never seen
    return NgramVocabulary.fit(seqs, 40, n, 2), seqs


def _run(model: Any, seqs: list[np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    width = max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), width), np.int64)
    mask = np.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_graph_computes_the_fitted_features(n: int) -> None:
    vocab, seqs = _random_vocab(n)
    rng = np.random.default_rng(1)
    w = rng.normal(size=(len(vocab), 7))
    b = rng.normal(size=7)
    # padded batch with very short sentences and n-grams the vocabulary never kept
    probe = [*seqs[:12], np.array([3]), np.array([3, 4]), np.array([39, 39, 39, 39, 39, 0, 1])]
    ref = _csr_logits(vocab.transform(probe), w, b)
    got = _run(build_graph(vocab, w, b, int8=False), probe)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    one_by_one = np.vstack([_run(build_graph(vocab, w, b, int8=False), [s]) for s in probe[-3:]])
    np.testing.assert_allclose(one_by_one, ref[-3:], atol=1e-4)
    # int8 weights: per class, so each column's error is at most half its step times the feature mass
    q = _run(build_graph(vocab, w, b, int8=True), probe)
    step = np.abs(w).max(axis=0) / 127
    assert np.all(np.abs(q - ref) <= step * np.sqrt(len(vocab)) / 2 + 1e-4)
    assert not np.allclose(q, ref, atol=1e-6)  # it really is quantised


def test_a_sentence_of_unknown_ngrams_scores_the_bias() -> None:
    vocab, _ = _random_vocab(2)
    w = np.ones((len(vocab), 7))
    b = np.arange(7.0)
    got = _run(build_graph(vocab, w, b, int8=False), [np.array([35, 36, 37])])
    np.testing.assert_allclose(got[0], b, atol=1e-6)  # no feature, zero norm: no NaN


def test_fit_is_the_optimum_of_its_objective() -> None:
    vocab, seqs = _random_vocab(2)
    y = np.array([int(s[0]) % 7 for s in seqs])
    rw = balanced_row_weights(y, np.where(np.arange(len(y)) % 2 == 0, 1.0, 3.0))
    csr = vocab.transform(seqs)
    l2 = 1e-3
    w, b = fit_linear(csr, len(vocab), y, rw, l2)
    # the autograd gradient of the stated loss vanishes at the returned weights
    x = torch.as_tensor(np.asarray(_dense(csr, len(vocab))))
    wt = torch.as_tensor(rw / rw.sum())
    wm = torch.tensor(w, requires_grad=True)
    bm = torch.tensor(b, requires_grad=True)
    ce = torch.nn.functional.cross_entropy(x @ wm + bm, torch.as_tensor(y), reduction="none")
    loss = (ce * wt).sum() + l2 * (wm**2).sum()
    loss.backward()
    assert float(wm.grad.abs().max()) < 1e-5 and float(bm.grad.abs().max()) < 1e-5
    # a stronger L2 shrinks the weights
    w2, _ = fit_linear(csr, len(vocab), y, rw, 1e-1)
    assert np.abs(w2).sum() < 0.5 * np.abs(w).sum()


def _dense(csr: tuple[np.ndarray, np.ndarray, np.ndarray], n_cols: int) -> np.ndarray:
    indptr, cols, vals = csr
    out = np.zeros((len(indptr) - 1, n_cols))
    for i in range(len(indptr) - 1):
        out[i, cols[indptr[i] : indptr[i + 1]]] = vals[indptr[i] : indptr[i + 1]]
    return out


def test_top_features_spell_out_the_ngrams() -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    words = ["[PAD]", "oh", "my", "god", "joey"]
    tok = Tokenizer(WordLevel({t: i for i, t in enumerate(words)}, unk_token="[PAD]"))
    vocab = NgramVocabulary(np.array([4, 5 + 1 * 5 + 2, 5 + 25 + (1 * 5 + 2) * 5 + 3]), np.ones(3), 5, 3)
    w = np.zeros((3, 7))
    w[:, LABELS.index("surprise")] = [1.0, 3.0, 2.0]
    top = top_features(vocab, w, tok, k=3)
    assert top["surprise"] == ["oh my", "oh my god", "joey"]


def test_balanced_row_weights_give_every_class_the_same_total() -> None:
    y = np.array([0, 0, 0, 1, 2, 2])
    dw = np.array([1.0, 1.0, 2.0, 1.0, 3.0, 1.0])
    rw = balanced_row_weights(y, dw)
    totals = np.bincount(y, weights=rw)
    np.testing.assert_allclose(totals, totals[0])
    np.testing.assert_allclose(rw.sum(), dw.sum())
    assert rw[2] == pytest.approx(2 * rw[0])  # the data weight still counts within a class


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_tiny(tmp_path_factory.mktemp("text_ngram"))


def _ngram(tiny: dict[str, Path], out: Path, *extra: str) -> int:
    argv = ["text", "--arch", "ngram", "--out", str(out), "--data", str(tiny["data"]), "--quiet"]
    return train_main([*argv, "--ngram-l2", "1e-4,1e-2", "--min-df", "1", *extra])


def test_ngram_member_trains_exports_and_loads_in_the_app(tiny: dict[str, Path]) -> None:
    out = tiny["root"] / "alone" / "text-ngram.onnx"
    rc = _ngram(
        tiny,
        out,
        "--companion",
        "none",
        "--tokenizer",
        str(tiny["encoder"] / "tokenizer.json"),
        "--ngram-weights",
        "goemotions-ekman=1,2",
    )
    assert rc == 0
    man = ModelManifest.load(out.with_suffix(".json"))
    assert man.modality == "text" and list(man.labels) == list(LABELS)
    assert man.sha256 == sha256_file(out)
    doc = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    tr = doc["source"]["training"]
    assert len(tr["grid"]) == 4  # 2 weights × 2 L2
    best = max(tr["grid"], key=lambda g: g["selection_score"])
    assert tr["chosen"]["l2"] == best["l2"] and tr["chosen"]["weights"] == best["weights"]
    assert all(g["val"] == g["val_judged"] for g in tr["grid"])  # no companion: judged alone
    assert "this member alone" in tr["selection"]
    assert doc["source"]["quantization"]["onnx_vs_fit_max_abs_diff"] < 1e-3
    assert doc["source"]["n_features"] > 20
    top = doc["source"]["top_features"]
    assert set(top) == set(LABELS)
    assert {"furious", "livid"} & set(top["angry"][:3]) and {"wow", "unexpected"} & set(top["surprise"][:3])
    assert set(doc["metrics"]) == {"goemotions-test"}
    assert doc["metrics"]["goemotions-test"]["accuracy"] > 0.8  # one cue word per sentence
    scorer = TextScorer.load(man, device="cpu")
    for text, label in [("i am so furious today", "angry"), ("wow this was unexpected", "surprise")]:
        assert LABELS[int(np.argmax(scorer.score(text)))] == label


def test_ngram_member_selects_on_the_fusion_with_its_companion(tiny: dict[str, Path]) -> None:
    comp = tiny["root"] / "models" / "text-tiny.onnx"
    # a barely trained companion, so that the fusion's val scores differ from the member's own
    weak = ["--epochs", "1", "--lr", "1e-7", "--head-lr", "1e-7", "--no-quantize"]
    assert train_main([*_argv(tiny, comp, tiny["root"] / "ck"), *weak]) == 0
    out = tiny["root"] / "fused" / "text-ngram.onnx"
    assert _ngram(tiny, out, "--companion", str(comp)) == 0
    doc = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    tr = doc["source"]["training"]
    assert tr["companion"]["sha256"] == sha256_file(comp)
    assert "equal-weight fusion with text-tiny" in tr["selection"]
    assert any(g["val"] != g["val_judged"] for g in tr["grid"])
    tok = json.loads(out.with_name("text-ngram.tokenizer.json").read_text(encoding="utf-8"))
    assert (
        tok["model"]["vocab"]
        == json.loads(comp.with_name("text-tiny.tokenizer.json").read_text())["model"]["vocab"]
    )  # the companion's tokenizer by default


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ngram", "4"], "--ngram must be 1, 2 or 3"),
        (["--resume"], "drop --resume"),
        (["--companion", "none"], "needs --tokenizer"),
        (["--companion", "nope.onnx"], "--companion nope.onnx"),
        (["--tokenizer", "missing.json", "--companion", "none"], "--tokenizer missing.json"),
        (["--ngram-l2", "x"], "--ngram-l2"),
    ],
)
def test_ngram_refusals(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert _ngram(tiny, tmp_path / "t.onnx", *extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "t.onnx").exists()


def test_ngram_weights_name_their_option(tiny: dict[str, Path], tmp_path: Path) -> None:
    from emodesk.lab.train.text.head import parse_weight_grid

    with pytest.raises(InputError, match="--ngram-weights names 'meld'"):
        parse_weight_grid("meld=2", ["goemotions-ekman"], option="--ngram-weights")
