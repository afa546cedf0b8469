"""The FER+ head refit: it finds each shipped face member's classifier, swaps it for a refitted one
whose ONNX output equals the numpy head on the graph's own features, and the soft-target fit
recovers a known linear rule; the webcam augmentation keeps images in range and changes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from emodesk.errors import ModelError  # noqa: E402
from emodesk.lab.train.face.ferplus_head import (  # noqa: E402
    _session,
    features,
    find_head,
    fit_softmax,
    head_probs,
    rewrite,
    with_feature_outputs,
)
from emodesk.lab.train.face.webcam import jpeg, webcam  # noqa: E402
from emodesk.resources import shipped_models_dir  # noqa: E402

MODELS = shipped_models_dir()


def _members() -> list[Path]:
    """The shipped face members (by their manifests' modality, not their file names)."""
    import json

    return sorted(
        p
        for p in MODELS.glob("face-*.onnx")
        if json.loads(p.with_suffix(".json").read_text(encoding="utf-8")).get("modality") == "face"
    )


@pytest.mark.parametrize("path", _members(), ids=lambda p: p.stem)
def test_a_member_with_its_head_swapped_outputs_what_the_numpy_head_computes(path: Path) -> None:
    model = onnx.load(str(path))
    head = find_head(model)
    size = model.graph.input[0].type.tensor_type.shape.dim[2].dim_value
    x = torch.rand((6, 1, size, size), generator=torch.Generator().manual_seed(1)) * 2 - 1
    feats = features(_session(with_feature_outputs(model, head.features), 1), head, x)
    assert len(feats) == (2 if head.kind == "gemm" else 1)  # the ResNets average a mirror branch
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.05, (feats[0].shape[1], 7)).astype(np.float32)
    b = rng.normal(0, 0.5, 7).astype(np.float32)
    new = rewrite(model, head, w, b)
    got = _session(new.SerializeToString(), 1).run(None, {model.graph.input[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, head_probs(feats, w, b), atol=1e-5)
    assert got.shape == (6, 7) and np.allclose(got.sum(1), 1, atol=1e-5)
    # every classifier reads the new weights, and every node left feeds the output
    gemms = [n for n in new.graph.node if n.op_type == "Gemm"]
    assert gemms and all(list(n.input[1:]) == ["ferplus_head.weight", "ferplus_head.bias"] for n in gemms)
    feeds = {i for n in new.graph.node for i in n.input} | {o.name for o in new.graph.output}
    assert all(any(o in feeds for o in n.output) for n in new.graph.node)


def test_a_graph_without_a_classifier_it_knows_is_refused() -> None:
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 7])],
    )
    with pytest.raises(ModelError, match="expected a face member"):
        find_head(helper.make_model(g))


def test_the_soft_target_fit_recovers_a_linear_rule() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 10)).astype(np.float32)
    w_true = rng.normal(size=(10, 7)) * 2
    z = x @ w_true
    q = np.exp(z - z.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    w, b = fit_softmax(x, q.astype(np.float32), 1e-6)
    agree = (head_probs([x], w, b).argmax(1) == q.argmax(1)).mean()
    assert agree > 0.97, agree
    # a strong L2 pulls the weights towards zero
    w2, _ = fit_softmax(x, q.astype(np.float32), 1.0)
    assert np.abs(w2).sum() < 0.2 * np.abs(w).sum()


def test_webcam_conditions_stay_in_range_and_change_the_faces() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((64, 1, 48, 48), generator=gen) * 2 - 1
    y = webcam(x, gen)
    assert y.shape == x.shape and float(y.min()) >= -1 and float(y.max()) <= 1
    changed = (y - x).abs().flatten(1).max(1).values > 1e-3
    assert 0.5 < float(changed.float().mean()) <= 1.0  # most images got at least one condition
    # JPEG at quality 100 is nearly lossless, at 10 it is not; the 64×64 size pads to whole blocks
    smooth = torch.nn.functional.avg_pool2d(torch.rand((2, 1, 64, 64), generator=gen) * 2 - 1, 5, 1, 2)
    hi = jpeg(smooth, torch.tensor([100.0, 100.0]))
    lo = jpeg(smooth, torch.tensor([10.0, 10.0]))
    assert float((hi - smooth).abs().mean()) < 0.01 < float((lo - smooth).abs().mean())
    odd = jpeg(torch.zeros((1, 1, 45, 50)), torch.tensor([50.0]))
    assert odd.shape == (1, 1, 45, 50)
