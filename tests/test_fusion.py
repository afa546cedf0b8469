import json

import numpy as np
import pytest

from emodesk.errors import ConfigError
from emodesk.fusion import FusionConfig, FusionState, fuse, load_fusion_config
from emodesk.fusion.config import parse_fusion_json
from emodesk.labels import LABELS
from emodesk.types import FaceFrameResult, ModalityScores

A = np.array([0.7, 0.0, 0.0, 0.1, 0.2, 0.0, 0.0])
B = np.array([0.0, 0.0, 0.0, 0.8, 0.2, 0.0, 0.0])


def test_scalar_weights_are_a_weighted_mean():
    p = fuse({"a": A, "b": B}, {"a": 3.0, "b": 1.0})
    assert np.allclose(p, (3 * A + B) / 4)
    assert np.isclose(p.sum(), 1.0)


def test_per_class_weights_renormalise():
    w = np.ones(7)
    w[0] = 0.0
    p = fuse({"a": A, "b": B}, {"a": w, "b": 1.0})
    q = w * A + B
    assert np.allclose(p, q / q.sum())


def test_all_zero_weights_mean_equal_weights_per_member():
    assert np.allclose(fuse({"a": A, "b": B}, {"a": 0.0, "b": 0.0}), (A + B) / 2)
    assert np.allclose(fuse({"a": A, "b": B}), (A + B) / 2)
    # a member absent from the weights weighs 0
    assert np.allclose(fuse({"a": A, "b": B}, {"a": 1.0}), A)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="shape"):
        fuse({"a": np.ones(6) / 6})
    with pytest.raises(ValueError):
        fuse({})


def _write(tmp_path, d):
    p = tmp_path / "fusion.json"
    p.write_text(json.dumps(d))
    return p


def _cfg(weights, members=None):
    return {
        "version": 1,
        "classes": list(LABELS),
        "members": members or [{"id": k, "sha256": "aa", "modality": "face"} for k in weights],
        "weights": weights,
    }


def test_fusion_json_drops_uninstalled_members_and_sha_mismatch(tmp_path):
    p = _write(tmp_path, _cfg({"a": 2.0, "b": 1.0, "c": [1.0] * 7}))
    cfg = parse_fusion_json(p, {"a": "aa", "c": "bb"})
    assert cfg.members == ("a",)
    assert set(cfg.dropped) == {"b", "c"}
    assert any("not installed" in w for w in cfg.warnings)
    assert any("sha256" in w for w in cfg.warnings)


@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        json.dumps({**_cfg({"a": 1.0}), "version": 3}),  # newer than this emodesk
        json.dumps({**_cfg({"a": 1.0}), "version": 2}),  # version 2 without its rule
        json.dumps({**_cfg({"a": 1.0}), "version": 2, "rule": {"name": "max"}}),
        json.dumps({**_cfg({"a": 1.0}), "version": 2, "rule": {"name": "log-linear", "bias": [0.0] * 6}}),
        json.dumps(
            {**_cfg({"a": 1.0}), "version": 2, "rule": {"name": "log-linear", "bias": [0] * 7, "epsilon": 0}}
        ),
        json.dumps([1, 2]),
        json.dumps({"members": []}),
        json.dumps(_cfg({"a": -1.0})),
        json.dumps(_cfg({"a": [1.0, 2.0]})),
        json.dumps({**_cfg({"a": 1.0}), "classes": ["happy", "sad"]}),
    ],
)
def test_malformed_fusion_json_is_refused_and_falls_back(tmp_path, bad):
    p = tmp_path / "fusion.json"
    p.write_text(bad)
    with pytest.raises(ConfigError):
        parse_fusion_json(p, {"a": "aa"})
    cfg = load_fusion_config(p, {"a": "aa", "v": "vv"}, {"a": "face", "v": "voice"})
    assert cfg.weights == {"a": 1.0, "v": 1.0}
    assert cfg.warnings and "equal weights" in cfg.warnings[0]


def test_no_fusion_json_means_equal_weights_over_installed():
    cfg = load_fusion_config(None, {"f": "x", "t": "y"}, {"f": "face", "t": "text"})
    assert cfg.weights == {"f": 1.0, "t": 1.0}


def _face(t, boxes_probs, model="f"):
    faces = tuple(
        ModalityScores(kind="face", model=model, t=t, probs=p, track=i + 1, box=b)
        for i, (b, p) in enumerate(boxes_probs)
    )
    return FaceFrameResult(t=t, index=0, frame_size=(640, 480), faces=faces)


def test_freshness_in_media_time():
    st = FusionState(FusionConfig.equal(["f", "v"]))
    st.update_face(_face(1.0, [((0, 0, 10, 10), A)]))
    st.update_score(ModalityScores(kind="voice", model="v", t=2.0, probs=B, t0=1.0, t1=2.0))
    f = st.fused(2.0)
    assert f is not None and f.members == ("f", "v") and f.track == 1
    assert np.allclose(f.probs, (A + B) / 2)
    f = st.fused(2.5)  # face is 1.5 s old: stale
    assert f is not None and f.members == ("v",)
    assert st.fused(12.5) is None  # voice ended 10.5 s ago


def test_largest_face_speaks_for_the_frame():
    st = FusionState(FusionConfig.equal(["f"]))
    st.update_face(_face(0.0, [((0, 0, 10, 10), A), ((50, 50, 100, 100), B)]))
    f = st.fused(0.1)
    assert f is not None and f.track == 2 and np.allclose(f.probs, B)


def test_non_members_are_not_fused():
    st = FusionState(FusionConfig({"f": 1.0}))
    st.update_score(ModalityScores(kind="text", model="t", t=1, probs=B, t0=0, t1=1))
    assert st.fused(1.0) is None


def test_shipped_fusion_json_matches_the_shipped_models():
    from pathlib import Path

    from emodesk.inference.registry import installed_manifests

    models = Path(__file__).resolve().parent.parent / "models"
    manifests = installed_manifests([models]).values()
    installed = {m.id: m.sha256 for m in manifests}
    cfg = parse_fusion_json(models / "fusion.json", installed)
    # a re-exported member needs `emodesk fusion equal` or `fusion optimize`
    assert not cfg.dropped, cfg.warnings
    # every shipped member has a weight (the fer baseline lives in assets/baseline, not here)
    assert set(cfg.members) == {m.id for m in manifests if m.modality in ("face", "voice", "text")}


def test_a_doubted_transcript_s_words_are_never_fused():
    """An untrusted text score (and the trusted one before it) stays out; the voice still fuses."""
    st = FusionState(FusionConfig.equal(["t", "v"]))
    st.update_score(ModalityScores(kind="text", model="t", t=1.0, probs=A, t0=0.0, t1=1.0))
    f = st.fused(1.0)
    assert f is not None and f.members == ("t",)
    st.update_score(
        ModalityScores(kind="text", model="t", t=3.0, probs=B, t0=2.0, t1=3.0, trusted=False, reason="x")
    )
    st.update_score(ModalityScores(kind="voice", model="v", t=3.0, probs=B, t0=2.0, t1=3.0))
    f = st.fused(3.0)
    assert f is not None and f.members == ("v",) and np.allclose(f.probs, B)


# ---- the log-linear rule (fusion.json version 2) ---------------------------------------------------


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def test_log_linear_is_a_weighted_product_with_a_class_bias():
    from emodesk.fusion.fuse import Rule

    bias = np.array([0.5, 0, 0, -0.5, 0, 0.2, 0])
    rule = Rule.log_linear(bias, 1e-4)
    p = fuse({"a": A, "b": B}, {"a": 2.0, "b": 0.5}, rule)
    want = _softmax(2.0 * np.log(A + 1e-4) + 0.5 * np.log(B + 1e-4) + bias)
    assert np.allclose(p, want) and np.isclose(p.sum(), 1.0)
    # a product favours the class both members allow (neutral), where the weighted sum follows the
    # heavier member's favourite (angry)
    assert LABELS[int(np.argmax(p))] == "neutral"
    assert LABELS[int(np.argmax(fuse({"a": A, "b": B}, {"a": 2.0, "b": 0.5})))] == "angry"
    # an absent member adds nothing; all-zero weights are one weight per member, the bias kept
    assert np.allclose(fuse({"a": A}, {"a": 2.0, "b": 0.5}, rule), _softmax(2.0 * np.log(A + 1e-4) + bias))
    both = _softmax(np.log(A + 1e-4) + np.log(B + 1e-4) + bias)
    assert np.allclose(fuse({"a": A, "b": B}, {"a": 0.0, "b": 0.0}, rule), both)
    with pytest.raises(ValueError, match="bias"):
        Rule.log_linear([0.0] * 6)
    with pytest.raises(ValueError, match="no class bias"):
        Rule("weighted-sum", (1.0,) * 7)


def test_version_2_round_trips_its_rule_and_version_1_reads_as_a_weighted_sum(tmp_path):
    from emodesk.fusion.config import fusion_json_document, write_fusion_json
    from emodesk.fusion.fuse import WEIGHTED_SUM, Rule

    rule = Rule.log_linear([0.1, -0.2, 0.3, 0, 0, 0, -1.5])
    doc = fusion_json_document(
        [("a", "aa", "face"), ("b", "bb", "voice")],
        {"a": 1.7, "b": [0.5] * 7},
        optimizer={"name": "ao"},
        objective={"name": "x"},
        data={"rows": 0},
        rule=rule,
    )
    assert doc["version"] == 2 and doc["rule"]["name"] == "log-linear"
    p = tmp_path / "fusion.json"
    write_fusion_json(p, doc)
    cfg = parse_fusion_json(p, {"a": "aa", "b": "bb"})
    assert cfg.rule == rule
    assert np.allclose(cfg.fuse({"a": A, "b": B}), fuse({"a": A, "b": B}, {"a": 1.7, "b": 0.5}, rule))
    st = FusionState(cfg)  # the live window and analyze fuse through the config's rule
    st.update_score(ModalityScores(kind="voice", model="b", t=1.0, probs=B, t0=0.0, t1=1.0))
    f = st.fused(1.0)
    assert f is not None and np.allclose(f.probs, fuse({"b": B}, {"b": 0.5}, rule))
    old = parse_fusion_json(_write(tmp_path, _cfg({"a": 2.0, "b": 1.0})), {"a": "aa", "b": "aa"})
    assert old.rule == WEIGHTED_SUM and np.allclose(old.fuse({"a": A, "b": B}), (2 * A + B) / 3)
