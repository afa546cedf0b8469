"""Face members fine-tuned end to end: the network read back from a shipped graph computes what the
graph computes (float and int8), its folded batch norms get the data's statistics without changing
the output, a graph that is not a face ResNet is refused, and the soft-target training step learns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from emodesk.errors import InputError, ModelError  # noqa: E402
from emodesk.lab.train.common import export_onnx, quantize_static_int8  # noqa: E402
from emodesk.lab.train.face import ferplus_finetune  # noqa: E402
from emodesk.lab.train.face.ferplus_finetune import (  # noqa: E402
    check_resumable,
    main,
    soft_cross_entropy,
    train_epoch,
)
from emodesk.lab.train.face.from_onnx import module_name, rebuild  # noqa: E402
from emodesk.lab.train.face.net import FaceNet, FlipAveragedProbs, PreActBlock  # noqa: E402
from emodesk.resources import shipped_models_dir  # noqa: E402


def _random_net(seed: int, blocks: tuple[int, ...] = (1, 2, 1, 1)) -> FaceNet:
    torch.manual_seed(seed)
    net = FaceNet((8, 16, 16, 32), blocks)
    with torch.no_grad():  # batch norms with statistics of their own, not the identity
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _faces(n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, 1, 48, 48), np.float32) * 2 - 1).astype(np.float32)


def _export(net: FaceNet, path: Path) -> Path:
    export_onnx(
        FlipAveragedProbs(net),
        [torch.from_numpy(_faces(4, 0))],
        path,
        input_names=["input"],
        output_names=["probs"],
        dynamic_axes={"input": {0: "N"}, "probs": {0: "N"}},
    )
    return path


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {"input": x})[0]


def _tta(net: FaceNet, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return FlipAveragedProbs(net.eval())(torch.from_numpy(x)).numpy()


def test_a_network_read_back_from_its_float_graph_computes_what_the_graph_computes(tmp_path: Path) -> None:
    net = _random_net(0)
    path = _export(net, tmp_path / "face.onnx")
    x = _faces(16, 1)
    back = rebuild(path, _faces(64, 2))
    assert back.config["widths"] == [8, 16, 16, 32] and back.config["blocks"] == [1, 2, 1, 1]
    np.testing.assert_allclose(_tta(back, x), _run(path, x), atol=1e-5)
    np.testing.assert_allclose(_tta(back, x), _tta(net, x), atol=1e-5)
    # the exporter folded each bn2 into its conv1: the rebuilt bn2 now holds the data's statistics
    for blk in back.layers:
        assert isinstance(blk, PreActBlock)
        assert float(blk.bn2.running_var.min()) > 0 and not torch.allclose(
            blk.bn2.running_mean, torch.zeros_like(blk.bn2.running_mean)
        )


def test_calibrated_batch_norms_hold_the_statistics_of_their_input(tmp_path: Path) -> None:
    path = _export(_random_net(3), tmp_path / "face.onnx")
    calib = _faces(128, 4)
    back = rebuild(path, calib)
    blk = back.layers[0]
    assert isinstance(blk, PreActBlock)
    seen: list[torch.Tensor] = []
    hook = blk.conv1.register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        back(torch.from_numpy(calib))
    hook.remove()
    out = seen[0].transpose(0, 1).reshape(seen[0].shape[1], -1)
    np.testing.assert_allclose(blk.bn2.running_mean.numpy(), out.mean(1).numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(blk.bn2.running_var.numpy(), out.var(1, unbiased=False).numpy(), rtol=1e-3)


def test_an_int8_graph_is_read_back_through_its_dequantized_weights(tmp_path: Path) -> None:
    net = _random_net(5)
    path = _export(net, tmp_path / "face.onnx")
    q = tmp_path / "face.int8.onnx"
    calib = _faces(64, 6)
    quantize_static_int8(path, q, [{"input": calib[i : i + 16]} for i in range(0, 64, 16)])
    assert any(n.op_type == "DequantizeLinear" for n in onnx.load(str(q)).graph.node)
    back = rebuild(q, calib)
    x = _faces(32, 7)
    # weights are the int8 grid's values; only the graph's activation rounding differs
    np.testing.assert_allclose(_tta(back, x), _run(q, x), atol=0.05)
    np.testing.assert_allclose(_tta(back, x), _tta(net, x), atol=0.05)


def test_the_shipped_face_resnets_are_read_back_exactly_enough_to_fine_tune() -> None:
    paths = sorted(shipped_models_dir().glob("face-resnet-*.onnx"))
    assert paths, "no face ResNet members shipped"
    x = _faces(8, 8)
    for path in paths:
        back = rebuild(path)
        got, ref = _tta(back, x), _run(path, x)
        if any(n.op_type == "DequantizeLinear" for n in onnx.load(str(path)).graph.node):
            # int8 activations round in the graph, not in the float rebuild
            assert np.abs(got - ref).max() < 0.15, path.name
            assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.75, path.name
        else:
            np.testing.assert_allclose(got, ref, atol=1e-4, err_msg=path.name)


def test_a_graph_that_is_not_a_face_resnet_is_refused(tmp_path: Path) -> None:
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48 * 48, 7))
    path = tmp_path / "other.onnx"
    export_onnx(
        lin,
        [torch.zeros(1, 1, 48, 48)],
        path,
        input_names=["input"],
        output_names=["probs"],
        dynamic_axes={"input": {0: "N"}, "probs": {0: "N"}},
    )
    with pytest.raises(ModelError, match="not a face ResNet member"):
        rebuild(path)
    (tmp_path / "broken.onnx").write_bytes(b"not a graph")
    with pytest.raises(ModelError, match="not a readable ONNX graph"):
        rebuild(tmp_path / "broken.onnx")


def test_a_resume_with_other_settings_is_refused_naming_what_changed(tmp_path: Path) -> None:
    saved = {"epochs": 12, "lr": 0.02, "init_sha256": "a"}
    check_resumable(saved, dict(saved), tmp_path / "last.pt")
    with pytest.raises(InputError, match=r"epochs 12 -> 20.*init_sha256 'a' -> 'b'"):
        check_resumable(saved, {**saved, "epochs": 20, "init_sha256": "b"}, tmp_path / "last.pt")
    with pytest.raises(InputError, match="other settings"):
        check_resumable({}, saved, tmp_path / "last.pt")  # a checkpoint that recorded none


@pytest.mark.parametrize(
    ("argv", "native", "want"),
    [
        ([], True, True),
        ([], False, False),  # emulated bf16 is several times slower than float32: auto picks float32
        (["--precision", "bf16"], False, True),
        (["--precision", "float32"], True, False),
        (["--no-bf16"], True, False),
    ],
)
def test_precision_auto_uses_bf16_only_where_the_cpu_runs_it(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], native: bool, want: bool
) -> None:
    monkeypatch.setattr(ferplus_finetune, "cpu_has_bf16", lambda: native)
    args = ferplus_finetune.parse_args(["--init", "a.onnx", "--out", "b.onnx", *argv])
    assert ferplus_finetune.use_bf16(args) is want


def test_scope_names_give_the_module_and_the_branch() -> None:
    def node(name: str) -> onnx.NodeProto:
        return onnx.helper.make_node("Conv", ["x", "w"], ["y"], name=name)

    assert module_name(node("/net/layers/layers.1/short/Conv")) == ("layers.1.short", False)
    assert module_name(node("/net/layers/layers.1/short_1/Conv")) == ("layers.1.short", True)
    assert module_name(node("/net/layers/layers.0_1/conv1/Conv")) == ("layers.0.conv1", True)
    assert module_name(node("/net/stem/Conv")) == ("stem", False)
    assert module_name(node("/net_1/fc/Gemm")) == ("fc", True)
    assert module_name(node("/Slice")) is None


def test_soft_cross_entropy_is_cross_entropy_against_the_distribution() -> None:
    logits = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    q = torch.softmax(torch.randn(5, 7, generator=torch.Generator().manual_seed(1)), 1)
    ref = torch.nn.functional.cross_entropy(logits, q)
    assert float(soft_cross_entropy(logits, q)) == pytest.approx(float(ref), rel=1e-6)
    onehot = torch.nn.functional.one_hot(torch.tensor([0, 3, 6, 2, 1]), 7).float()
    assert float(soft_cross_entropy(logits, onehot)) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3, 6, 2, 1]))), rel=1e-6
    )


def test_training_epochs_on_soft_targets_learn_a_separable_rule() -> None:
    """Bright faces are 'happy', dark ones 'sad' (votes 0.9/0.1): a few epochs must learn it."""
    rng = np.random.default_rng(0)
    n = 256
    bright = rng.random(n) < 0.5
    x = np.where(bright[:, None, None], 190, 60) + rng.integers(-30, 30, (n, 48, 48))
    x = np.clip(x, 0, 255).astype(np.uint8)
    q = np.zeros((n, 7), np.float32)
    q[bright, 3], q[bright, 5] = 0.9, 0.1
    q[~bright, 5], q[~bright, 3] = 0.9, 0.1
    torch.manual_seed(0)
    net = FaceNet((8, 8, 16, 16), (1, 1, 1, 1), dropout=0.0)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _s: 1.0)
    gen = torch.Generator().manual_seed(0)
    losses = [
        train_epoch(
            net,
            opt,
            sched,
            torch.from_numpy(x),
            torch.from_numpy(q),
            gen,
            batch_size=64,
            webcam_share=0.5,
            bf16=False,
        )
        for _ in range(4)
    ]
    assert losses[-1] < losses[0]
    with torch.no_grad():
        p = net.eval()(torch.from_numpy(x).float().unsqueeze(1) / 127.5 - 1).argmax(1).numpy()
    assert (p == np.where(bright, 3, 5)).mean() > 0.9


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--webcam", "1.5"], r"--webcam is a share in \[0, 1\]"),
        (["--lr", "0"], "--lr must be above 0"),
    ],
)
def test_bad_options_are_refused_before_any_work(tmp_path: Path, argv: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        main(["--init", str(tmp_path / "none.onnx"), "--out", str(tmp_path / "o.onnx"), *argv])


def test_an_init_that_is_missing_or_not_seven_labels_is_refused(tmp_path: Path) -> None:
    import json

    with pytest.raises(InputError, match="manifest beside it"):
        main(["--init", str(tmp_path / "none.onnx"), "--out", str(tmp_path / "o.onnx")])
    src = sorted(shipped_models_dir().glob("face-resnet-*.onnx"))[0]
    init = tmp_path / "m.onnx"
    init.write_bytes(src.read_bytes())
    doc = json.loads(src.with_suffix(".json").read_text(encoding="utf-8"))
    doc["labels"] = list(reversed(doc["labels"]))
    init.with_suffix(".json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ModelError, match="labels"):
        main(["--init", str(init), "--out", str(tmp_path / "o.onnx")])
