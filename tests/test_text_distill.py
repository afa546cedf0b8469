"""``emodesk train text --context N --soft-labels NPZ`` (issue 20): a MiniLM-layout member that reads the
dialogue's previous utterances and learns from a teacher's logits, end to end on the tiny random BERT
of :mod:`test_train_text` — the context encoding shared with the app, the distillation loss, the soft
labels' digest check, the export with ``token_type_ids`` and the manifest that names the teacher."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_train_text import CUES, FILLER, _argv, make_tiny

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from emodesk.cli.train_cmd import main as train_main  # noqa: E402
from emodesk.evaluation.datasets import load_split  # noqa: E402
from emodesk.evaluation.evaluate import score_rows  # noqa: E402
from emodesk.inference.manifest import ModelManifest  # noqa: E402
from emodesk.inference.utterance_scorers import TextScorer, encode_with_context  # noqa: E402
from emodesk.lab.train.text.data import ContextSpec, load_text_splits, texts_sha256  # noqa: E402
from emodesk.lab.train.text.finetune import EmotionClassifier, distillation_loss  # noqa: E402
from emodesk.lab.train.text.minilm import load_encoder, load_tokenizer  # noqa: E402
from emodesk.labels import LABELS  # noqa: E402

MELD_NAMES = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]


def _write_meld(d: Path, dialogues: int = 140) -> None:
    """Two-utterance dialogues: a cue sentence, then a reply of filler words only that carries the
    same label — readable only with the previous utterance as context."""
    rng = random.Random(1)
    d.mkdir(parents=True)
    for name, n in (("train_sent_emo.csv", dialogues), ("dev_sent_emo.csv", 42)):
        with open(d / name, "w", encoding="utf-8", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["Sr No.", "Utterance", "Emotion", "Dialogue_ID"])
            w.writeheader()
            for i in range(n):
                y = i % 7
                cue = " ".join([*rng.sample(FILLER, 2), rng.choice(CUES[y])])
                reply = " ".join(rng.sample(FILLER, 3))
                for text in (cue, reply):
                    w.writerow({"Sr No.": 0, "Utterance": text, "Emotion": MELD_NAMES[y], "Dialogue_ID": i})


def _write_soft(path: Path, data: list[Path], make: Any) -> Path:
    """Soft labels for each folder's train split as the teacher's ``score`` writes them."""
    arrays, splits = {}, {}
    for d in data:
        rows = load_split(d, "train")  # type: ignore[arg-type]
        arrays[f"{d.name}-train"] = np.asarray([make(r) for r in rows], np.float16)
        splits[f"{d.name}-train"] = {"rows": len(rows), "texts_sha256": texts_sha256([r.x for r in rows])}
    np.savez_compressed(path, **arrays)
    meta = {
        "teacher": "a test teacher",
        "teacher_state_sha256": "0" * 64,
        "command": "test",
        "splits": splits,
    }
    path.with_suffix(".json").write_text(json.dumps(meta), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    t = make_tiny(tmp_path_factory.mktemp("text_distill"))
    _write_meld(t["root"] / "meld")
    t["meld"] = t["root"] / "meld"
    return t


def _args(tiny: dict[str, Path], name: str, *extra: str) -> tuple[list[str], Path]:
    out = tiny["root"] / name / "text-tiny.onnx"
    argv = _argv(tiny, out, tiny["root"] / name / "ck", "--no-quantize", *extra)
    i = argv.index("--data")
    argv[i + 1 : i + 2] = [str(tiny["data"]), str(tiny["meld"])]
    return argv, out


def _meld_reply_accuracy(manifest: Path) -> float:
    """Accuracy on the MELD test replies (the filler-only second utterances), scored as eval scores."""
    m = ModelManifest.load(manifest)
    scorer = TextScorer.load(m, device="cpu")
    rows = load_split(manifest.parent.parent / "meld", "test")  # type: ignore[arg-type]
    probs = score_rows("text", rows, scorer)
    y = np.array([r.label for r in rows])
    return float((probs.argmax(1) == y)[1::2].mean())


@pytest.fixture(scope="module")
def distilled(tiny: dict[str, Path]) -> dict[str, Any]:
    """A context member distilled from a teacher whose logits are the true label (+ noise)."""
    rng = np.random.default_rng(0)
    soft = _write_soft(
        tiny["root"] / "soft_labels.npz",
        [tiny["data"], tiny["meld"]],
        lambda r: np.eye(7)[r.label] * 4 + rng.normal(0, 0.3, 7),
    )
    argv, out = _args(tiny, "ctx", "--context", "1", "--soft-labels", str(soft), "--epochs", "6")
    assert train_main(argv) == 0
    return {"out": out, "soft": soft}


def test_context_member_is_exported_with_token_types_and_reads_context_in_the_app(
    tiny: dict[str, Path], distilled: dict[str, Any]
) -> None:
    import onnxruntime as ort

    out: Path = distilled["out"]
    m = ModelManifest.load(out.with_suffix(".json"))
    assert m.preprocessing["context"] == 1 and m.preprocessing["max_current"] == 16
    inputs = [i.name for i in ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).get_inputs()]
    assert inputs == ["input_ids", "attention_mask", "token_type_ids"]
    src = m.source
    assert "previous utterances" in src["architecture"]
    assert "KL(teacher‖student)" in src["training"]["loss"]
    d = src["distillation"]
    assert d["teacher"] == "a test teacher" and d["kd_weight"] == 0.5 and d["kd_temperature"] == 2.0
    assert d["soft_labels"] == "soft_labels.npz" and len(d["soft_labels_sha256"]) == 64
    assert "all-mpnet-base-v2" in m.license
    assert 0 < src["seconds_per_sentence_cpu1_with_context"] < 1
    # the replies say nothing alone; with the previous utterance the member reads them
    scorer = TextScorer.load(m, device="cpu")
    assert scorer.context == 1
    assert _meld_reply_accuracy(out.with_suffix(".json")) >= 0.8
    # the manifest's MELD test metrics are what eval (the app's scorer, rows with context) gives
    rows = load_split(tiny["meld"], "test")  # type: ignore[arg-type]
    acc = float((score_rows("text", rows, scorer).argmax(1) == np.array([r.label for r in rows])).mean())
    assert acc == pytest.approx(m.metrics["meld-dev"]["accuracy"], abs=1e-9)


def test_the_trainer_encodes_rows_as_the_app_does(tiny: dict[str, Path]) -> None:
    tok = load_tokenizer(tiny["encoder"], 128)
    spec = ContextSpec(2, 6, 12)
    (s,) = load_text_splits([tiny["meld"]], "test", tok, limit=None, seed=0, context=spec)
    rows = load_split(tiny["meld"], "test")  # type: ignore[arg-type]
    assert s.contexts is not None and s.types is not None
    assert s.contexts[0] == [] and s.contexts[1] == [rows[0].x] and s.contexts[2] == []
    for i in range(6):
        ids, types, _ = encode_with_context(
            tok, rows[i].x, s.contexts[i], n_context=2, max_current=6, max_length=12
        )
        assert s.ids[i].tolist() == ids and s.types[i].tolist() == types
    assert max(len(x) for x in s.ids) <= 12
    assert all(int((t == 0).sum()) <= 6 for t in s.types)  # the current utterance cut to max_current
    # a subset keeps each row's own context (taken from the whole split first)
    (sub,) = load_text_splits([tiny["meld"]], "test", tok, limit=10, seed=0, context=spec)
    for i, text in enumerate(sub.texts):
        j = s.texts.index(text) if s.texts.count(text) == 1 else None
        if j is not None:
            assert sub.contexts is not None and sub.contexts[i] == s.contexts[j]


def test_pooling_ignores_the_context_tokens_own_states(tiny: dict[str, Path]) -> None:
    """With types, the mean runs over the current utterance only: context changes the output only
    through attention, so an encoder without attention effect (0 layers) is blind to it."""
    enc = load_encoder(tiny["encoder"])
    enc.encoder.layer = torch.nn.ModuleList()  # no layers: states are the embeddings alone
    model = EmotionClassifier(enc).eval()
    tok = load_tokenizer(tiny["encoder"], 128)
    a, ta, _ = encode_with_context(tok, "i am", ["furious"], n_context=1, max_current=16, max_length=32)
    b, tb, _ = encode_with_context(tok, "i am", ["wow"], n_context=1, max_current=16, max_length=32)
    with torch.no_grad():
        pa = model(torch.tensor([a]), torch.ones(1, len(a), dtype=torch.long), torch.tensor([ta]))
        pb = model(torch.tensor([b]), torch.ones(1, len(b), dtype=torch.long), torch.tensor([tb]))
    torch.testing.assert_close(pa, pb)


def test_distillation_loss() -> None:
    torch.manual_seed(0)
    s = torch.randn(5, 7, requires_grad=True)
    y = torch.randint(0, 7, (5,))
    w = torch.ones(7)
    ce = torch.nn.functional.cross_entropy(s, y)
    assert torch.allclose(distillation_loss(s, y, None, weight=w, kd_weight=0.5, temperature=2.0), ce)
    # the soft term is 0 when the student already says what the teacher says
    same = distillation_loss(s, y, s.detach(), weight=w, kd_weight=1.0, temperature=2.0)
    assert abs(float(same.detach())) < 1e-6
    # and otherwise T²·KL, pulling the student towards the teacher
    t = torch.randn(5, 7) * 3
    loss = distillation_loss(s, y, t, weight=w, kd_weight=1.0, temperature=2.0)
    p_t = torch.softmax(t / 2, 1)
    kl = (p_t * (torch.log(p_t) - torch.log_softmax(s / 2, 1))).sum(1).mean() * 4
    assert torch.allclose(loss, kl, atol=1e-5)
    loss.backward()
    assert s.grad is not None
    step = s.detach() - 0.5 * s.grad
    after = distillation_loss(step, y, t, weight=w, kd_weight=1.0, temperature=2.0)
    assert float(after) < float(loss.detach())
    # rows without a teacher (a folder left out of --kd-data) weigh their class-weighted CE alone
    cw = torch.rand(7) + 0.5
    x = s.detach()
    none = torch.zeros(5, dtype=torch.bool)
    got = distillation_loss(x, y, t, weight=cw, kd_weight=0.7, temperature=2.0, has_teacher=none)
    assert torch.allclose(got, torch.nn.functional.cross_entropy(x, y, weight=cw))
    half = torch.tensor([True, True, False, False, False])
    got = distillation_loss(x, y, t, weight=cw, kd_weight=0.7, temperature=2.0, has_teacher=half)
    nll = torch.nn.functional.cross_entropy(x, y, reduction="none")
    a = 0.7 * half.float()
    kl_rows = (p_t * (torch.log(p_t) - torch.log_softmax(x / 2, 1))).sum(1)
    want = ((1 - a) * cw[y] * nll).sum() / cw[y].sum() + 4 * (a * kl_rows).sum() / 5
    assert torch.allclose(got, want, atol=1e-5)


def test_soft_labels_steer_the_student(tiny: dict[str, Path]) -> None:
    """kd-weight 1: the labels are ignored, and a teacher that always says 'happy' makes a student
    that says 'happy' — the soft labels are read, aligned and used."""
    soft = _write_soft(tiny["root"] / "happy.npz", [tiny["data"]], lambda r: np.eye(7)[3] * 6)
    argv, out = _args(tiny, "happy", "--soft-labels", str(soft), "--kd-weight", "1")
    argv[argv.index("--data") + 1 : argv.index("--data") + 3] = [str(tiny["data"])]
    assert train_main(argv) == 0
    m = ModelManifest.load(out.with_suffix(".json"))
    conf = np.asarray(m.metrics["goemotions-test"]["confusion"])
    assert conf[:, LABELS.index("happy")].sum() >= 0.9 * conf.sum()


def test_soft_labels_of_other_rows_are_refused(
    tiny: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    soft = _write_soft(tiny["root"] / "other.npz", [tiny["data"]], lambda r: np.zeros(7))
    meta = json.loads(soft.with_suffix(".json").read_text(encoding="utf-8"))
    meta["splits"]["goemotions-ekman-train"]["texts_sha256"] = "f" * 64
    soft.with_suffix(".json").write_text(json.dumps(meta), encoding="utf-8")
    argv, out = _args(tiny, "other", "--soft-labels", str(soft))
    argv[argv.index("--data") + 1 : argv.index("--data") + 3] = [str(tiny["data"])]
    assert train_main(argv) == 2
    assert "scored on other rows" in capsys.readouterr().err
    # a folder the soft labels do not cover is named, not trained without a teacher
    argv, out = _args(
        tiny,
        "other",
        "--soft-labels",
        str(_write_soft(tiny["root"] / "ge.npz", [tiny["data"]], lambda r: np.zeros(7))),
    )
    assert train_main(argv) == 2
    assert "no logits for meld train" in capsys.readouterr().err
    assert not out.exists()
    # unless that folder is left out of the distillation: it then learns from its labels alone
    assert train_main([*argv, "--kd-data", "goemotions-ekman", "--epochs", "1"]) == 0
    d = ModelManifest.load(out.with_suffix(".json")).source["distillation"]
    assert d["kd_data"] == ["goemotions-ekman"]
    assert train_main([*argv, "--kd-data", "nowhere"]) == 2
    assert "--kd-data 'nowhere'" in capsys.readouterr().err
