"""``emodesk train text --refit-head``: a new linear head on an exported member's frozen encoder.

Runs on the tiny member that ``test_train_text``'s helpers train, on its
fp32 and int8 graphs both: the encoder must come out byte for
byte, the written head must be the one selected on val, and a re-fit of the
re-fit must give the same head.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_train_text import _argv, make_tiny

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from emodesk.cli.train_cmd import main as train_main  # noqa: E402
from emodesk.errors import InputError  # noqa: E402
from emodesk.inference.manifest import ModelManifest  # noqa: E402
from emodesk.inference.utterance_scorers import TextScorer  # noqa: E402
from emodesk.lab.train.text.head import (  # noqa: E402
    find_head,
    fit_head,
    parse_weight_grid,
    with_pooled_output,
)
from emodesk.labels import LABELS  # noqa: E402
from emodesk.resources import sha256_file  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_tiny(tmp_path_factory.mktemp("text_head"))


@pytest.fixture(scope="module")
def trained(tiny: dict[str, Path]) -> dict[str, Path]:
    """The tiny fine-tuned member of ``test_train_text`` (int8 or fp32 by its rule; both graphs kept)."""
    out = tiny["root"] / "models" / "text-tiny.onnx"
    assert train_main(_argv(tiny, out, tiny["root"] / "ck")) == 0
    return {"out": out, "ckpt": tiny["root"] / "ck"}


def _refit(tiny: dict[str, Path], src: Path, out: Path, *extra: str) -> int:
    argv = ["text", "--refit-head", str(src), "--out", str(out), "--data", str(tiny["data"]), "--quiet"]
    return train_main([*argv, "--refit-l2", "0.001,0.1", *extra])


def _initializers(path: Path) -> dict[str, bytes]:
    return {t.name: t.SerializeToString() for t in onnx.load(str(path)).graph.initializer}


def _pooled(path: Path, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    m = onnx.load(str(path))
    head = find_head(m, "logits")
    sess = ort.InferenceSession(
        with_pooled_output(m, head).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in sess.get_outputs()]
    return sess.run(None, {"input_ids": ids, "attention_mask": mask})[names.index(head.pooled)]


@pytest.fixture(scope="module")
def refitted(tiny: dict[str, Path], trained: dict[str, Path]) -> dict[str, Path]:
    root = tiny["root"] / "refit"
    out = root / "text-refit.onnx"
    assert _refit(tiny, trained["out"], out, "--refit-weights", "goemotions-ekman=1,3") == 0
    return {"src": trained["out"], "out": out, "int8": trained["ckpt"] / "text-tiny.int8.onnx"}


def test_refit_keeps_the_encoder_and_records_the_selection(refitted: dict[str, Path]) -> None:
    src, out = refitted["src"], refitted["out"]
    before, after = _initializers(src), _initializers(out)
    head = {n for n in before if n.startswith("head.")}
    assert head and not head & set(after)  # the old head's weights are gone …
    assert {n: b for n, b in before.items() if n not in head} == {
        n: b for n, b in after.items() if not n.startswith("head/refit/")
    }  # … and every encoder weight is there unchanged
    raw = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    r = raw["source"]["head_refit"]
    assert r["base_model"]["sha256"] == sha256_file(src)
    assert len(r["grid"]) == 4  # 2 weights × 2 strengths
    best = max(r["grid"], key=lambda g: g["selection_score"])
    assert (r["chosen"]["weights"], r["chosen"]["l2"]) == (best["weights"], best["l2"])
    assert best["selection_score"] == pytest.approx(
        np.mean([v["macro_f1"] for v in best["val"].values()])
    )  # default --select macro_f1:mean
    assert r["onnx_vs_fit_max_abs_diff"] < 1e-4
    assert raw["sha256"] == sha256_file(out) and raw["id"] == "text-refit"
    assert raw["metrics"]["goemotions-test"]["n"] == 42
    assert raw["source"]["command"]  # sys.argv of the run (pytest here)
    man = ModelManifest.load(out.with_suffix(".json"))
    assert man.companion_paths[0].name == "text-refit.tokenizer.json" and man.companion_paths[0].is_file()
    p = TextScorer.load(man, device="cpu").score("i am so furious today")
    assert LABELS[int(np.argmax(p))] == "angry", p.round(3)


def test_refit_of_the_refit_gives_the_same_head(tiny: dict[str, Path], refitted: dict[str, Path]) -> None:
    out2 = tiny["root"] / "refit2" / "text-refit.onnx"
    assert _refit(tiny, refitted["out"], out2, "--refit-weights", "goemotions-ekman=1,3") == 0
    a, b = _initializers(refitted["out"]), _initializers(out2)
    assert a.keys() == b.keys()
    for name in ("head/refit/W_T", "head/refit/b"):
        wa = onnx.numpy_helper.to_array(onnx.TensorProto.FromString(a[name]))
        wb = onnx.numpy_helper.to_array(onnx.TensorProto.FromString(b[name]))
        np.testing.assert_allclose(wa, wb, atol=1e-6)
    base = json.loads(out2.with_suffix(".json").read_text(encoding="utf-8"))["source"]["head_refit"][
        "base_model"
    ]
    assert base["sha256"] == sha256_file(refitted["src"])  # still names the fine-tuned export


def test_refit_of_an_int8_graph_keeps_its_quantized_encoder(
    tiny: dict[str, Path], refitted: dict[str, Path]
) -> None:
    int8 = refitted["int8"]
    if not int8.is_file():
        pytest.skip("the tiny run wrote no int8 graph")
    src = tiny["root"] / "int8src" / "text-q.onnx"
    src.parent.mkdir()
    src.write_bytes(int8.read_bytes())
    raw = json.loads(refitted["src"].with_suffix(".json").read_text(encoding="utf-8"))
    raw.update({"id": "text-q", "file": src.name, "sha256": sha256_file(src)})
    raw["preprocessing"]["tokenizer"] = "text-q.tokenizer.json"
    src.with_suffix(".json").write_text(json.dumps(raw), encoding="utf-8")
    (src.parent / "text-q.tokenizer.json").write_bytes(
        (refitted["src"].parent / "text-tiny.tokenizer.json").read_bytes()
    )
    m = onnx.load(str(src))
    assert any(n.op_type == "MatMulInteger" for n in m.graph.node[find_head(m, "logits").head_nodes[0] :])
    out = tiny["root"] / "int8out" / "text-q.onnx"
    assert _refit(tiny, src, out) == 0
    ids = np.array([[2, 5, 6, 7, 3, 0]], np.int64)
    mask = np.array([[1, 1, 1, 1, 1, 0]], np.int64)
    np.testing.assert_array_equal(_pooled(src, ids, mask), _pooled(out, ids, mask))
    assert not any(n.op_type == "MatMulInteger" for n in onnx.load(str(out)).graph.node[-2:])


def test_refit_refusals(
    tiny: dict[str, Path], refitted: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root = tiny["root"] / "refusals"
    impossible = ["--floor", "goemotions-ekman=1.1"]
    assert _refit(tiny, refitted["src"], root / "a" / "x.onnx", *impossible) == 1
    assert "no setting met the floors" in capsys.readouterr().err
    assert not (root / "a" / "x.onnx").exists()
    assert _refit(tiny, refitted["src"], root / "b" / "x.onnx", "--refit-weights", "meld=2") == 2
    assert "not among --data" in capsys.readouterr().err
    assert _refit(tiny, root / "missing.onnx", root / "c" / "x.onnx") == 2
    assert "needs the model and its manifest" in capsys.readouterr().err
    assert _refit(tiny, refitted["src"], root / "d" / "x.onnx", "--refit-l2", "lots") == 2


def test_find_head_needs_mean_pooling() -> None:
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["logits"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 7])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 7])],
    )
    with pytest.raises(InputError, match="no mean pooling"):
        find_head(helper.make_model(g), "logits")


def test_fit_head_folds_the_standardisation_and_shrinks_with_l2() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(7), 30)
    x = rng.normal(size=(len(y), 5)) * [1, 10, 100, 0.1, 1] + [0, 50, -300, 2, 0]
    x[:, 0] += y  # one informative feature, on its own scale
    w_raw, b_raw = fit_head(x, y, np.ones(len(y)), 1e-4)
    acc = float(np.mean(np.argmax(x @ w_raw.T + b_raw, axis=1) == y))
    assert acc > 0.5  # chance is 1/7: the folded layer works on raw features
    strong, _ = fit_head(x, y, np.ones(len(y)), 10.0)
    assert np.abs(strong).sum() < np.abs(w_raw).sum()
    assert parse_weight_grid("a=1,2;b=3", ["a", "b"]) == [{"a": 1.0, "b": 3.0}, {"a": 2.0, "b": 3.0}]
    assert parse_weight_grid(None, ["a"]) == [{}]  # one setting: every dataset weighs 1
    with pytest.raises(InputError):
        parse_weight_grid("a=0", ["a"])


def test_refit_replaces_a_session_adaptation_layer(tiny: dict[str, Path], trained: dict[str, Path]) -> None:
    """``emodesk retrain`` appends a layer after the logits; a re-fit's head replaces it, and the
    manifest stops describing a layer that is gone."""
    from emodesk.lab.retrain.adapt import write_adapted_member

    member = ModelManifest.load(trained["out"].with_suffix(".json"))
    a, c = np.eye(7) * 1.5, np.linspace(-0.3, 0.3, 7)
    adapted = write_adapted_member(member, a, c, tiny["root"] / "adapted", fitted={"rows": 3})
    m = onnx.load(str(adapted.model_path))
    head = find_head(m, "logits")
    assert any(
        "adapt" in m.graph.node[i].name or "adapt" in m.graph.node[i].output[0] for i in head.head_nodes
    )
    out = tiny["root"] / "adapted-refit" / "text-tiny.onnx"
    assert _refit(tiny, adapted.model_path, out) == 0
    src = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))["source"]
    assert "fine_tuned" not in src
    assert src["head_refit"]["replaced_session_adaptation"]["rows"] == 3
    assert not any("adapt" in t.name for t in onnx.load(str(out)).graph.initializer)
