"""A text member that reads the stream's earlier utterances (issue 20): the manifest asks for it, the
scorer builds ``[CLS] current [SEP] previous [SEP] …`` with token types, the utterance path hands it
the earlier trusted transcripts within a pause, ``eval`` the earlier rows of the same dialogue, and the
score records say which context was read. A member without context works as before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from emodesk.errors import ModelError
from emodesk.evaluation.datasets import Row
from emodesk.evaluation.evaluate import score_rows
from emodesk.inference.manifest import ModelManifest
from emodesk.inference.utterance_scorers import CONTEXT_GAP_S, TextScorer
from emodesk.pipeline.utterance_path import UtterancePipeline
from emodesk.records import score_record
from emodesk.speech.processor import SpeechEvent
from emodesk.types import Transcript, Utterance

REPO = Path(__file__).resolve().parents[1]
TOKENIZER = REPO / "models" / "text-minilm.tokenizer.json"
VOCAB = 30522


def context_model(folder: Path, *, context: int = 2, with_types: bool = True, max_length: int = 128) -> Path:
    """A tiny ONNX text model: logits = Σ_current E[id] + ½ Σ_context E[id] (types 1) over the tokens
    the attention mask keeps, so the context visibly moves the scores and the current utterance's
    tokens are told apart by type."""
    rng = np.random.default_rng(0)
    E = helper.make_tensor("E", TensorProto.FLOAT, [VOCAB, 7], rng.normal(0, 0.1, (VOCAB, 7)).ravel())
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
    ]
    nodes = [helper.make_node("Gather", ["E", "input_ids"], ["emb"], axis=0)]
    if with_types:
        inputs.append(
            helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["batch", "sequence"])
        )
        nodes += [
            helper.make_node("Cast", ["token_type_ids"], ["tf"], to=TensorProto.FLOAT),
            helper.make_node(
                "Constant", [], ["one"], value=helper.make_tensor("c1", TensorProto.FLOAT, [], [1.0])
            ),
            helper.make_node(
                "Constant", [], ["half"], value=helper.make_tensor("c2", TensorProto.FLOAT, [], [0.5])
            ),
            helper.make_node("Mul", ["tf", "half"], ["tw"]),
            helper.make_node("Sub", ["one", "tw"], ["w"]),  # 1 on the current utterance, ½ on context
            helper.make_node(
                "Constant", [], ["ax"], value=helper.make_tensor("c3", TensorProto.INT64, [1], [2])
            ),
            helper.make_node("Unsqueeze", ["w", "ax"], ["w3"]),
            helper.make_node("Mul", ["emb", "w3"], ["weighted"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["emb"], ["weighted"]))
    nodes += [  # padding (attention mask 0) adds nothing, as in a real encoder's pooling
        helper.make_node("Cast", ["attention_mask"], ["mf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mf", "axes2"], ["m3"]),
        helper.make_node("Mul", ["weighted", "m3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axes"], ["logits"], keepdims=0),
    ]
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    axes2 = helper.make_tensor("axes2", TensorProto.INT64, [1], [2])
    graph = helper.make_graph(
        nodes,
        "ctx",
        inputs,
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 7])],
        initializer=[E, axes, axes2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "text-ctx.onnx")
    shutil.copy(TOKENIZER, folder / "text-ctx.tokenizer.json")
    import hashlib

    manifest = {
        "id": "text-ctx",
        "modality": "text",
        "file": "text-ctx.onnx",
        "sha256": hashlib.sha256((folder / "text-ctx.onnx").read_bytes()).hexdigest(),
        "inputs": [{"name": i.name, "shape": ["batch", "sequence"], "dtype": "int64"} for i in inputs],
        "outputs": [{"name": "logits", "shape": ["batch", 7], "dtype": "float32"}],
        "labels": ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"],
        "preprocessing": {
            "tokenizer": "text-ctx.tokenizer.json",
            "max_length": max_length,
            "output": "logits",
            "context": context,
            "max_current": 16,
        },
    }
    path = folder / "text-ctx.json"
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return path


def expected(scorer: TextScorer, text: str, context: list[str]) -> np.ndarray:
    ids, types = scorer.encode(text, context)
    feeds = {
        "input_ids": np.asarray([ids], np.int64),
        "attention_mask": np.ones((1, len(ids)), np.int64),
        "token_type_ids": np.asarray([types], np.int64),
    }
    return scorer._finish(scorer.model.run(feeds)[0])


@pytest.fixture
def scorer(tmp_path: Path) -> TextScorer:
    return TextScorer.load(ModelManifest.load(context_model(tmp_path)), device="cpu")


def test_the_scorer_lays_out_current_then_context_with_token_types(scorer: TextScorer) -> None:
    plain, plain_types = scorer.encode("i am so happy")
    ids, types = scorer.encode("i am so happy", ["what now", "never mind", "ignored third"])
    assert ids[: len(plain)] == plain and set(plain_types) == {0}
    sep = plain[-1]
    what_now = scorer.tokenizer.encode("what now").ids[1:]
    assert ids[len(plain) : len(plain) + len(what_now)] == what_now and what_now[-1] == sep
    assert types == [0] * len(plain) + [1] * (len(ids) - len(plain))
    assert ids.count(sep) == 3  # the current utterance and the two context utterances the manifest allows
    long, long_types = scorer.encode(" ".join(["word"] * 50), ["what now"])
    assert long_types.index(1) == 16 and long[15] == sep  # the current utterance cut to max_current


def test_context_moves_the_scores_and_no_context_is_the_plain_sentence(scorer: TextScorer) -> None:
    alone = scorer.score("i am so happy")
    assert np.allclose(alone, scorer.score("i am so happy", []))
    with_context = scorer.score("i am so happy", ["you failed the exam"])
    assert not np.allclose(alone, with_context)
    assert np.allclose(with_context, expected(scorer, "i am so happy", ["you failed the exam"]))


def test_a_batch_scores_each_row_as_it_scores_alone(scorer: TextScorer) -> None:
    texts = ["i am so happy", "no", "this is so frustrating nothing works at all", "oh wow"]
    contexts = [["you won"], [], ["what did you do", "nothing", "a third, not read"], ["look"]]
    alone = np.stack([scorer.score(t, c) for t, c in zip(texts, contexts, strict=True)])
    batch = scorer.score_many(texts, contexts)
    assert batch.shape == (4, 7) and np.allclose(batch, alone, atol=1e-6)
    assert np.allclose(scorer.score_many(texts), np.stack([scorer.score(t) for t in texts]), atol=1e-6)
    assert scorer.score_many([]).shape == (0, 7)
    with pytest.raises(ValueError, match="4 texts but 1 contexts"):
        scorer.score_many(texts, [[]])


def test_the_whole_input_stays_within_max_length(tmp_path: Path) -> None:
    s = TextScorer.load(ModelManifest.load(context_model(tmp_path, max_length=24)), device="cpu")
    ids, types = s.encode("short one", [" ".join(["word"] * 40), "older"])
    assert len(ids) == 24 and ids[-1] == ids[types.index(1) - 1]  # cut, still closed by [SEP]


def test_a_context_model_without_token_types_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="token_type_ids"):
        TextScorer.load(ModelManifest.load(context_model(tmp_path, with_types=False)), device="cpu")


class Recorder:
    """A text member that records the context it was given."""

    id = "text-rec"
    context = 2

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def score(self, text: str, context: list[str] | tuple[str, ...] = ()) -> np.ndarray:
        self.seen.append(list(context))
        return np.full(7, 1 / 7, np.float32)


class NoContext:
    id = "text-plain"

    def score(self, text: str) -> np.ndarray:  # an older member: no context parameter at all
        return np.full(7, 1 / 7, np.float32)


class Speech:
    transcriber = None
    encode_finals = False


def event(t0: float, t1: float, text: str, *, trusted: bool = True) -> SpeechEvent:
    return SpeechEvent(
        Utterance(t0, t1, np.zeros(160, np.float32)),
        Transcript(t0, t1, text, trusted=trusted, reason="" if trusted else "unsure"),
    )


def test_the_utterance_path_gives_earlier_trusted_transcripts_within_a_pause() -> None:
    rec, plain = Recorder(), NoContext()
    path = UtterancePipeline(Speech(), (), (rec, plain))  # type: ignore[arg-type]
    out = path._score(
        [
            event(0.0, 1.0, "first"),
            event(1.5, 2.0, "doubted", trusted=False),  # scored, never context
            event(2.5, 3.0, "second"),
            event(3.5, 4.0, "third"),
            event(4.0 + CONTEXT_GAP_S + 1, 40.0, "after a long pause"),
            event(40.5, 41.0, "again"),
        ]
    )
    assert rec.seen == [[], ["first"], ["first"], ["second", "first"], [], ["after a long pause"]]
    by_model = [s for s in out.scores if s.model == "text-rec"]
    assert [s.context for s in by_model] == [(), (0.0,), (0.0,), (2.5, 0.0), (), (35.0,)]
    assert all(s.context == () for s in out.scores if s.model == "text-plain")
    assert score_record(by_model[3])["context"] == [2.5, 0.0]
    assert "context" not in score_record(by_model[0])


def test_eval_gives_a_context_member_the_earlier_rows_of_the_same_dialogue() -> None:
    rec = Recorder()
    rec.model = type("M", (), {"manifest": type("Mf", (), {"modality": "text"})()})()  # type: ignore[attr-defined]
    rows = [Row("a", 0, "d1"), Row("x", 1, "d2"), Row("b", 2, "d1"), Row("c", 3, "d1"), Row("solo", 4, "")]
    probs = score_rows("text", rows, rec)  # type: ignore[arg-type]
    assert probs.shape == (5, 7)
    assert rec.seen == [[], [], ["a"], ["b", "a"], []]


def test_the_record_names_only_the_context_that_fitted(tmp_path: Path) -> None:
    s = TextScorer.load(ModelManifest.load(context_model(tmp_path, max_length=20)), device="cpu")
    path = UtterancePipeline(Speech(), (), (s,))  # type: ignore[arg-type]
    long = " ".join(["word"] * 30)
    out = path._score([event(0.0, 1.0, "older"), event(1.5, 2.0, long), event(2.5, 3.0, "now then")])
    # "now then" reads the long utterance (cut to fit) and has no room left for "older"
    assert [sc.context for sc in out.scores] == [(), (0.0,), (1.5,)]
    ids, types = s.encode("now then", [long, "older"])
    assert len(ids) == 20 and types.count(1) == 20 - len(s.tokenizer.encode("now then").ids)


def test_eval_refuses_a_row_sample_for_a_member_that_reads_context(tmp_path: Path, capsys) -> None:
    from emodesk.cli.eval_cmd import main

    context_model(tmp_path / "m")
    rows = tmp_path / "rows.csv"
    rows.write_text("text,label\nhello,happy\n", encoding="utf-8")
    code = main(
        ["text", "--model", str(tmp_path / "m" / "text-ctx.onnx"), "--manifest", str(rows), "--limit", "1"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "text-ctx reads the earlier utterances" in err and "Traceback" not in err


def test_pseudo_pairs_carry_the_dialogue_before_a_text_and_round_trip(tmp_path: Path) -> None:
    from emodesk.errors import InputError
    from emodesk.fusion.paired import apply_mix, load_paired_manifest, make_pairs, write_paired_manifest

    said = ["hi", "you broke it", "i did not", "you did", "fine", "whatever"]
    text = [Row(t, i % 2 * 3, "dialogue1") for i, t in enumerate(said)]  # angry, happy, angry, …
    text.append(Row("alone", 0))  # no dialogue: no context
    faces = [Row(str(tmp_path / f"f{i}.png"), y) for i, y in enumerate([0, 3] * 4)]
    for r in faces:
        Path(r.x).write_bytes(b"x")
    rows = make_pairs({"face": faces, "text": text}, per_label=4, seed=1)
    by_text = {r.text: r.text_context for r in rows}
    assert by_text["hi"] == () and by_text["alone"] == ()
    assert by_text["i did not"] == ("you broke it", "hi")
    assert by_text["whatever"] == ("fine", "you did", "i did not", "you broke it")  # at most 4
    out = write_paired_manifest(rows, tmp_path / "paired.csv")
    assert out.read_text(encoding="utf-8").splitlines()[0] == "face_path,audio_path,text,label,text_context"
    assert load_paired_manifest(out) == rows
    blanked = apply_mix(rows, {"face": 1.0})
    assert all(r.text is None and r.text_context == () for r in blanked)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        'face_path,audio_path,text,label,text_context\n,,hi,happy,"{""a"": 1}"\n', encoding="utf-8"
    )
    with pytest.raises(InputError, match="text_context must be a JSON list of strings"):
        load_paired_manifest(bad)


def test_fusion_scores_a_context_member_with_each_rows_context(tmp_path: Path) -> None:
    from emodesk.fusion.paired import PairedRow
    from emodesk.fusion.search import ScoreCache, score_paired

    man = ModelManifest.load(context_model(tmp_path / "m"))
    scorer = TextScorer.load(man, device="cpu")
    rows = [
        PairedRow(None, None, "i am so happy", 3),
        PairedRow(None, None, "i am so happy", 3, ("you failed the exam",)),
        PairedRow(None, None, "i am so happy", 3, ("you failed the exam", "hello", "a third it never reads")),
    ]
    cache = ScoreCache(tmp_path / "cache.npz")
    P = score_paired(rows, [man], cache=cache).P[0]
    assert np.allclose(P[0], scorer.score("i am so happy"))
    assert np.allclose(P[1], expected(scorer, "i am so happy", ["you failed the exam"]))
    assert not np.allclose(P[0], P[1])
    assert np.allclose(P[2], expected(scorer, "i am so happy", ["you failed the exam", "hello"]))
    # cached per (text, the context the member reads): a second pass scores nothing and agrees
    logs: list[str] = []
    again = score_paired(rows, [man], cache=ScoreCache(tmp_path / "cache.npz"), log=logs.append).P[0]
    assert logs == [] and np.allclose(again, P)
