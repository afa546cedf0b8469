"""The fusion-weight search: one fusion rule for live and search, paired manifests, optimizers, the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from emodesk.cli.fusion_cmd import main
from emodesk.errors import InputError
from emodesk.evaluation.datasets import Row
from emodesk.evaluation.metrics import compute_metrics
from emodesk.fusion.fuse import fuse, fuse_population
from emodesk.fusion.optimize import FunctionProblem, minimize
from emodesk.fusion.optimize.baselines import CMAES, RandomSearch
from emodesk.fusion.paired import (
    LIVE_MIX,
    PairedRow,
    apply_mix,
    load_paired_manifest,
    make_pairs,
    parse_mix,
    pattern_of,
    write_paired_manifest,
)
from emodesk.fusion.search import (
    FUSION_OPTIMIZERS,
    FusionProblem,
    MemberScores,
    ScoreCache,
    convergence_curve,
    evaluate_fusion,
    fused_probs,
    make_fusion_optimizer,
    optimize_weights,
)
from emodesk.inference.face_detector import FaceDetector
from emodesk.inference.face_scorer import FaceExpressionScorer
from emodesk.lab.studies.fusion_comparison.methods import (
    METHODS,
    SEARCHERS,
    compare_methods,
    fit_stacking,
    summarise,
    without,
)
from emodesk.labels import LABELS
from emodesk.resources import assets_dir

IDS = ("good", "fair", "weak", "noise", "text")
MODS = ("face", "face", "voice", "text", "text")


def synthetic(n: int, seed: int, missing: float = 0.3) -> MemberScores:
    """Five members of falling quality (the 4th pure noise); the last one misses ``missing`` of the rows."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(LABELS), n)
    P = []
    for q in (2.0, 1.2, 0.6, 0.0, 0.8):
        z = rng.normal(size=(n, len(LABELS)))
        z[np.arange(n), y] += q
        e = np.exp(z)
        P.append(e / e.sum(axis=1, keepdims=True))
    P = np.stack(P)
    P[4, rng.random(n) < missing] = np.nan
    return MemberScores(IDS, MODS, tuple(f"{i:064x}" for i in range(5)), P, y.astype(np.int64))


# ---- one fusion rule ----------------------------------------------------------------------------


def test_batched_rule_is_the_live_rule_row_by_row() -> None:
    s = synthetic(60, 0)
    rng = np.random.default_rng(1)
    weight_sets = [
        {m: float(w) for m, w in zip(IDS, rng.random(5), strict=True)},
        {m: rng.random(7) for m in IDS},  # per class
        {"good": 0.0, "fair": 0.0, "weak": 0.0, "noise": 0.0, "text": 1.0},  # text alone, absent on some rows
        {"good": 1.0},  # the others missing from the map weigh 0
        None,
    ]
    from emodesk.fusion.fuse import WEIGHTED_SUM, Rule

    for rule in (WEIGHTED_SUM, Rule.log_linear(rng.normal(size=7))):  # fuse() has a one-row fast path
        for weights in weight_sets:
            batch = fused_probs(s, weights, rule)
            for i in range(len(s.y)):
                probs = {m: s.P[k, i] for k, m in enumerate(IDS) if not np.isnan(s.P[k, i]).any()}
                assert np.allclose(batch[i], fuse(probs, weights, rule)), (rule, weights, i)


def test_zero_weighted_sum_falls_back_to_the_plain_mean_and_no_member_gives_nan() -> None:
    P = np.full((2, 2, 7), np.nan)
    P[0, 0] = np.eye(7)[0]
    P[1, 0] = np.eye(7)[1]
    W = np.zeros((1, 2, 7))
    W[0, 0, 1] = 1.0  # member 0 only weighs class 1, where it put nothing; member 1 weighs nothing
    out = fuse_population(P, W)
    assert np.allclose(out[0, 0], (np.eye(7)[0] + np.eye(7)[1]) / 2)
    one_row = fuse({"a": np.eye(7)[0], "b": np.eye(7)[1]}, {"a": W[0, 0], "b": 0.0})  # fuse()'s own path
    assert np.allclose(one_row, out[0, 0])
    assert np.isnan(out[0, 1]).all()


@pytest.mark.parametrize("nll_weight", [0.0, 0.1])
def test_the_search_objective_is_the_metric_of_the_live_fusion(nll_weight: float) -> None:
    s = synthetic(300, 2)
    for per_class in (False, True):
        problem = FusionProblem(s, per_class=per_class, penalty=0.0, nll_weight=nll_weight)
        X = np.random.default_rng(3).random((6, problem.n_var))
        f = problem.evaluate(X)
        for x, fx in zip(X, f, strict=True):
            live = np.stack(
                [
                    fuse(
                        {m: s.P[k, i] for k, m in enumerate(IDS) if not np.isnan(s.P[k, i]).any()},
                        problem.weight_dict(x),
                    )
                    for i in range(len(s.y))
                ]
            )
            nll = -np.log(np.maximum(live[np.arange(len(s.y)), s.y], 1e-12)).mean()
            expected = 1 - compute_metrics(s.y, live, bootstrap=0)["macro_f1"] + nll_weight * nll
            # fusion.json's weights are rounded to 6 places: the smooth NLL term moves by ~1e-8
            assert fx == pytest.approx(expected, abs=1e-9 if nll_weight == 0 else 1e-6)


def test_the_log_linear_search_scores_exactly_what_its_fusion_json_fuses(tmp_path: Path) -> None:
    from emodesk.fusion.config import parse_fusion_json, write_fusion_json
    from emodesk.fusion.search import fusion_document

    s = synthetic(300, 2)
    for per_class in (False, True):
        problem = FusionProblem(s, per_class=per_class, penalty=0.0, rule="log-linear")
        assert problem.n_var == problem.n_weights + len(LABELS)
        assert problem.xu[0] == 3.0 and problem.xl[-1] == -3.0
        res, weights = optimize_weights(problem, optimizer="ao", agents=8, iterations=5, seed=0)
        out = tmp_path / f"fusion-{per_class}.json"
        doc = fusion_document(problem, res, weights, optimizer="ao", manifest=None, rows=300)
        write_fusion_json(out, doc)
        cfg = parse_fusion_json(out, dict(zip(IDS, s.sha256, strict=True)))
        assert cfg.rule.name == "log-linear" and cfg.rule == problem.rule_of(res.x)
        live = np.stack(
            [
                cfg.fuse({m: s.P[k, i] for k, m in enumerate(IDS) if not np.isnan(s.P[k, i]).any()})
                for i in range(len(s.y))
            ]
        )
        assert np.allclose(live, problem.fused(res.x[None])[0], atol=1e-5)  # stored to 6 decimals
        assert np.allclose(live, fused_probs(s, cfg.weights, cfg.rule))


def test_log_linear_weights_and_biases_beat_the_weighted_sum_where_a_class_is_under_called() -> None:
    s = synthetic(600, 7)
    P = s.P.copy()
    P[:, :, 0] *= 0.25  # every member under-calls "angry": only a class bias can put it back
    P /= P.sum(axis=2, keepdims=True)
    s = MemberScores(s.ids, s.modalities, s.sha256, P, s.y)
    best = {}
    for rule in ("weighted-sum", "log-linear"):
        problem = FusionProblem(s, penalty=0.0, rule=rule)
        res, _ = optimize_weights(problem, optimizer="ao-levy-ls", agents=20, iterations=40, seed=0)
        best[rule] = float(problem.metric(res.x[None])[0])
        if rule == "log-linear":
            assert problem.rule_of(res.x).bias[0] > 0.3, problem.rule_of(res.x)
    assert best["log-linear"] > best["weighted-sum"] + 0.02, best


def test_penalty_is_zero_at_equal_weights_and_grows_away_from_them() -> None:
    problem = FusionProblem(synthetic(200, 4), penalty=0.5)
    d = problem.distance_from_equal(
        np.array([[1, 1, 1, 1, 1], [2, 2, 2, 2, 2], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0.0]])
    )
    assert d[0] == pytest.approx(0) and d[1] == pytest.approx(0)
    assert d[2] == pytest.approx(0.8) and 0 < d[3] < d[2]
    zero = problem.evaluate(np.zeros((1, 5)))  # all-zero weights are equal weights, like the live rule
    assert zero[0] == pytest.approx(problem.evaluate(np.ones((1, 5)))[0])


# ---- optimizers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ao", "ao-levy-ls", "de", "pso", "random", "cmaes"])
def test_each_optimizer_beats_equal_weights_on_validation_and_stays_in_bounds(name: str) -> None:
    pytest.importorskip("scipy") if name == "de" else None
    s = synthetic(500, 5)
    problem = FusionProblem(s, penalty=0.0)
    res, weights = optimize_weights(problem, optimizer=name, agents=20, iterations=30, seed=0)
    equal = problem.evaluate(np.ones((1, 5)))[0]
    assert res.f < equal - 0.01, (name, res.f, equal)
    assert 0 <= res.x.min() and res.x.max() <= 1
    assert sum(weights.values()) == pytest.approx(1, abs=1e-5)  # type: ignore[arg-type]
    assert weights["noise"] < weights["good"]  # type: ignore[operator]
    assert res.n_evals == 20 * 31, res.n_evals  # equal budgets: every optimizer spends the same
    curve = convergence_curve(res)
    assert [c["evaluations"] for c in curve] == [20 * (t + 1) for t in range(31)]
    best = [c["best"] for c in curve]
    assert best == sorted(best, reverse=True) and best[-1] == pytest.approx(res.f)


@pytest.mark.parametrize("name", ["ao", "ao-levy-ls", "de", "pso", "random", "cmaes"])
def test_every_optimizer_reports_each_iteration_and_a_flat_objective_still_spends_the_budget(
    name: str,
) -> None:
    """``fusion optimize`` prints its progress from the callback; differential evolution used to stop
    early on a flat objective ("converged") and never called it."""
    pytest.importorskip("scipy") if name == "de" else None
    flat = FunctionProblem(lambda X: np.zeros(len(X)), n_var=3, xl=np.zeros(3), xu=np.ones(3))
    seen: list[int] = []
    res = minimize(
        flat, make_fusion_optimizer(name, 10), n_iter=7, seed=0, callback=lambda t, X, F: seen.append(t)
    )
    assert res.n_evals == 10 * 8 and len(res.history) == 8
    assert seen[-1] == 7 and seen == sorted(seen) and len(seen) >= 7, seen


def test_every_optimizer_keeps_the_budget_on_more_variables_than_agents() -> None:
    """A per-class log-linear search has 42 variables; differential evolution used to take scipy's
    popsize x n_var agents there and spend more evaluations than the others."""
    pytest.importorskip("scipy")
    problem = FusionProblem(synthetic(200, 3), rule="log-linear", per_class=True)
    assert problem.n_var == 5 * 7 + 7
    for name in FUSION_OPTIMIZERS:
        res, _ = optimize_weights(problem, optimizer=name, agents=10, iterations=8, seed=1)
        assert res.n_evals == 10 * 9 and len(res.history) == 9, name
        assert np.all(problem.xl <= res.x) and np.all(res.x <= problem.xu), name


def test_cmaes_converges_where_random_search_does_not() -> None:
    """The CMA-ES baseline is a working optimizer: on a shifted 10-D sphere and an ill-conditioned
    ellipsoid it gets close to the optimum at a budget where random search stays far away."""
    shift = np.linspace(-2, 3, 10)
    scale = 10.0 ** np.linspace(0, 3, 10)
    sphere = FunctionProblem(lambda X: ((X - shift) ** 2).sum(axis=1), 10, -5, 5)
    ellipsoid = FunctionProblem(lambda X: (scale * (X - shift) ** 2).sum(axis=1), 10, -5, 5)
    for problem in (sphere, ellipsoid):
        cma = minimize(problem, CMAES(20), n_iter=150, seed=0)
        rnd = minimize(problem, RandomSearch(20), n_iter=150, seed=0)
        assert cma.f < 1e-3 < rnd.f, (cma.f, rnd.f)
    corner = FunctionProblem(lambda X: ((X + 7) ** 2).sum(axis=1), 6, -5, 5)  # optimum outside the box
    res = minimize(corner, CMAES(12), n_iter=100, seed=2)
    assert np.allclose(res.x, -5) and res.f == pytest.approx(6 * 4)


def test_same_seed_same_weights_different_seed_different_path() -> None:
    problem = FusionProblem(synthetic(400, 6))
    a = optimize_weights(problem, agents=10, iterations=15, seed=7)
    b = optimize_weights(problem, agents=10, iterations=15, seed=7)
    c = optimize_weights(problem, agents=10, iterations=15, seed=8)
    assert a[1] == b[1] and np.array_equal(a[0].history, b[0].history)
    assert not np.array_equal(a[0].x, c[0].x)


def test_comparison_reports_every_method_on_every_test_set() -> None:
    pytest.importorskip("scipy")
    val, test, test2 = synthetic(350, 7), synthetic(350, 8), synthetic(300, 12, missing=0.6)
    runs = [
        compare_methods(val, {"t": test, "u": test2}, seed=s, agents=10, iterations=10, one_missing_on="t")
        for s in (0, 1)
    ]
    assert set(runs[0]) == set(METHODS)
    assert runs[0]["best-single"]["member"] == "good"
    summary = summarise(runs)
    for m in METHODS:
        for rows in ("val", "t", "u"):
            assert 0 <= summary[m][rows]["macro_f1"]["mean"] <= 1
        assert summary[m]["seeds"] == 2
    for m in SEARCHERS:
        assert len(runs[0][m]["curve"]) == 11 and runs[0][m]["evaluations"] == 110
    # the noise member must not be the best; fitting methods beat equal weights with a noise member inside
    # (at this tiny budget, 110 evaluations: the 42-variable per-class searches need more)
    assert (
        summary["ao-weighted-sum"]["t"]["macro_f1"]["mean"]
        > summary["equal-weights"]["t"]["macro_f1"]["mean"]
    )
    assert summary["stacking"]["t"]["macro_f1"]["mean"] > summary["equal-weights"]["t"]["macro_f1"]["mean"]
    # with the face members taken away, the best member left is the text one; the best single member
    # (a face member) has nothing to score there
    om = runs[0]["ao"]["one_missing"]
    assert set(om) == {"no face", "no voice", "no text"}
    assert om["no face"]["best_member"] == "text" and om["no face"]["rows"] == int(test.present[4].sum())
    assert runs[0]["best-single"]["one_missing"]["no face"]["macro_f1"] is None


def test_without_blanks_one_modality_and_keeps_the_rest() -> None:
    s = synthetic(50, 4)
    w = without(s, "face")
    assert not w.present[:2].any() and np.array_equal(w.present[2:], s.present[2:])  # good, fair: face
    assert np.array_equal(w.P[2:], s.P[2:], equal_nan=True) and np.array_equal(w.y, s.y)


def test_stacking_learns_which_member_to_trust() -> None:
    pytest.importorskip("scipy")
    val, test = synthetic(400, 9), synthetic(400, 10)
    model = fit_stacking(val)
    f1 = compute_metrics(test.y, model.predict(test), bootstrap=0)["macro_f1"]
    noise = compute_metrics(test.y, test.P[3], bootstrap=0)["macro_f1"]
    assert f1 > noise + 0.3


def test_fusion_eval_report_has_the_contract_keys() -> None:
    s = synthetic(200, 11)
    report = evaluate_fusion(s, {"good": 0.7, "text": 0.3}, bootstrap=0)
    assert set(report) == {"fused", "equal_weights", *IDS, "modality:face", "modality:voice", "modality:text"}
    assert report["text"]["n"] == int(s.present[4].sum()) < 200
    assert report["fused"]["n"] == 200 and report["modality:text"]["n"] == int(
        s.present[3:].any(axis=0).sum()
    )


# ---- paired manifests ---------------------------------------------------------------------------


def _rows(prefix: str, counts: dict[str, int]) -> list[Row]:
    return [Row(f"{prefix}-{lab}-{i}", LABELS.index(lab)) for lab, n in counts.items() for i in range(n)]


def test_pairs_cover_the_labels_every_input_has_in_the_requested_numbers() -> None:
    face = _rows("/f", {"happy": 5, "sad": 3, "angry": 2})
    text = _rows("t", {"happy": 4, "sad": 6, "fear": 3})
    rows = make_pairs({"face": face, "text": text}, seed=0)
    assert sorted({LABELS[r.label] for r in rows}) == ["happy", "sad"]  # angry / fear missing from one input
    assert sum(r.label == LABELS.index("happy") for r in rows) == 4  # the smallest pool
    assert all(r.audio is None and r.face and r.text for r in rows)
    sad = [r for r in rows if r.label == LABELS.index("sad")]
    assert len({r.face for r in sad}) == 3  # without replacement up to the pool size
    more = make_pairs({"face": face, "text": text}, per_label=7, seed=0)
    sad7 = [r.face for r in more if r.label == LABELS.index("sad")]
    assert len(sad7) == 7 and len(set(sad7)) == 3 and max(sad7.count(f) for f in set(sad7)) == 3
    assert make_pairs({"face": face, "text": text}, seed=0) == rows
    assert make_pairs({"face": face, "text": text}, seed=1) != rows
    with pytest.raises(InputError, match="at least two"):
        make_pairs({"face": face}, seed=0)


def test_a_presence_mix_is_dealt_label_by_label_in_its_proportions() -> None:
    inputs = {m: _rows(f"/{m}", {"happy": 20, "sad": 20}) for m in ("face", "voice", "text")}
    rows = make_pairs(inputs, seed=3)
    mixed = apply_mix(rows, LIVE_MIX, seed=3)
    assert [r.label for r in mixed] == [r.label for r in rows]  # same rows, same order
    for y in (LABELS.index("happy"), LABELS.index("sad")):
        got = [pattern_of(r) for r in mixed if r.label == y]
        assert {p: got.count(p) for p in set(got)} == {
            "face+voice+text": 10,
            "face": 4,
            "voice+text": 3,
            "face+voice": 2,
            "voice": 1,
        }
    for before, after in zip(rows, mixed, strict=True):  # a kept input is the row's own
        assert all(after.get(m) in (None, before.get(m)) for m in ("face", "voice", "text"))
    assert apply_mix(rows, LIVE_MIX, seed=3) == mixed and apply_mix(rows, LIVE_MIX, seed=4) != mixed
    odd = apply_mix(rows[:7], {"face+voice+text": 0.5, "face": 0.5}, seed=0)  # largest remainder
    assert sum(pattern_of(r) == "face" for r in odd) in (3, 4, 5)
    two = make_pairs({"face": inputs["face"], "text": inputs["text"]}, seed=0)
    with pytest.raises(InputError, match="needs a modality"):
        apply_mix(two, LIVE_MIX)


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("face=0.5,voice=0.4", "sum to 1"),
        ("face+eyes=1", "joined set of face"),
        ("face+face=1", "joined set of face"),
        ("lively", "expected all or live"),
        ("face=x", "not a number"),
        ("face=-0.5,voice=1.5", "non-negative"),
        ("face+text=0.5,text+face=0.5", "twice"),
    ],
)
def test_a_bad_presence_mix_is_refused(value: str, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        parse_mix(value)


def test_presence_mix_names_and_pattern_order() -> None:
    assert parse_mix("all") == {"face+voice+text": 1.0} and parse_mix("live") == LIVE_MIX
    assert parse_mix("text+face=0.25,voice=0.75") == {"face+text": 0.25, "voice": 0.75}
    assert sum(LIVE_MIX.values()) == pytest.approx(1)


def test_paired_manifest_round_trip_with_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "media").mkdir()
    for name in ("a.png", "b.wav"):
        (tmp_path / "media" / name).write_bytes(b"x")
    a, b = (str((tmp_path / "media" / n).resolve()) for n in ("a.png", "b.wav"))
    rows = [
        PairedRow(a, b, 'she said "hi, there"', 3),
        PairedRow(None, b, None, 5),
        PairedRow(a, None, "x", 0),
    ]
    out = write_paired_manifest(rows, tmp_path / "sub" / "paired.csv")
    text = out.read_text()
    assert "../media/a.png" in text and str(tmp_path) not in text
    assert load_paired_manifest(out) == rows


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("face_path,audio_path,label\na.png,,happy\n", "must have the columns"),
        ("face_path,audio_path,text,label\nmissing.png,,,happy\n", ":2: face_path missing.png not found"),
        (
            "face_path,audio_path,text,label\na.png,,,happy\n,,,sad\n",
            ":3: face_path, audio_path and text are all empty",
        ),
        ("face_path,audio_path,text,label\na.png,,,grumpy\n", ":2: unknown label 'grumpy'"),
        ("face_path,audio_path,text,label\na.png,,,\n", ":2: empty label"),
        ("face_path,audio_path,text,label\na.png,,hi,happy,extra\n", ":2: more fields"),
    ],
)
def test_malformed_paired_rows_are_refused_naming_the_row(tmp_path: Path, body: str, needle: str) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    p = tmp_path / "paired.csv"
    p.write_text(body)
    with pytest.raises(InputError, match=needle.replace("(", r"\(")):
        load_paired_manifest(p)


def test_score_cache_survives_a_reload_and_refuses_garbage(tmp_path: Path) -> None:
    c = ScoreCache(tmp_path / "c.npz")
    c.put("k|x", np.arange(7) / 21)
    c.save()
    assert np.allclose(ScoreCache(tmp_path / "c.npz").get("k|x"), np.arange(7) / 21)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="delete it to rescore"):
        ScoreCache(tmp_path / "bad.npz")


# ---- the commands, with the shipped face and text members ---------------------------------------


@pytest.fixture(scope="module")
def face_crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("paired")
    img = cv2.imread(str(assets_dir() / "face_astronaut.png"))
    box = FaceDetector.load(device="cpu").detect(img)[0]
    crop = FaceExpressionScorer.load(device="cpu").crop(img, box, resize=False)
    for i, v in enumerate([crop, crop[:, ::-1], cv2.convertScaleAbs(crop, alpha=0.6)]):
        cv2.imwrite(str(d / f"face{i}.png"), np.ascontiguousarray(v))
    (d / "faces.csv").write_text("path,label\nface0.png,happy\nface1.png,neutral\nface2.png,sad\n")
    (d / "text.csv").write_text(
        "text,label\nI am so happy for you,happy\nthis is wonderful,joy\nwhatever,neutral\n"
        "I miss her so much,sad\nit is fine,neutral\n"
    )
    return d


MEMBERS = "face-resnet-s-ferplus,text-minilm"


def test_pair_optimize_eval_end_to_end(
    face_crops: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = face_crops
    paired = tmp_path / "paired.csv"
    assert (
        main(
            [
                "pair",
                "--face",
                str(d / "faces.csv"),
                "--text",
                str(d / "text.csv"),
                "--per-label",
                "2",
                "--out",
                str(paired),
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(paired.open()))
    assert len(rows) == 6 and {r["label"] for r in rows} == {"happy", "neutral", "sad"}
    assert all(r["face_path"].startswith("../") and r["audio_path"] == "" and r["text"] for r in rows)
    fusion = tmp_path / "fusion.json"
    cache = tmp_path / "scores.npz"
    common = ["--manifest", str(paired), "--members", MEMBERS, "--cache", str(cache)]
    curve = tmp_path / "curve.csv"
    capsys.readouterr()
    assert (
        main(
            [
                "optimize",
                *common,
                "--out",
                str(fusion),
                "--agents",
                "6",
                "--iterations",
                "5",
                "--curve",
                str(curve),
            ]
        )
        == 0
    )
    progress = [line for line in capsys.readouterr().err.splitlines() if "iteration" in line]
    assert progress[0].startswith("emodesk: ao iteration 0/5: best objective ") and "5/5" in progress[-1]
    points = list(csv.DictReader(curve.open()))
    assert [int(c["evaluations"]) for c in points] == [6 * (t + 1) for t in range(6)]
    assert [float(c["best"]) for c in points] == sorted((float(c["best"]) for c in points), reverse=True)
    doc = json.loads(fusion.read_text())
    assert float(points[-1]["best"]) == pytest.approx(doc["objective"]["value"], abs=1e-6)
    assert [m["id"] for m in doc["members"]] == MEMBERS.split(",")
    assert doc["optimizer"]["name"] == "ao" and doc["optimizer"]["evaluations"] == 36
    assert doc["data"]["rows"] == 6 and len(doc["data"]["sha256"]) == 64
    assert doc["version"] == 2 and doc["rule"]["name"] == "log-linear" and len(doc["rule"]["bias"]) == 7
    assert all(0 <= w <= 3 for w in doc["weights"].values())  # log-linear weights are not shares
    assert cache.is_file()
    shares = tmp_path / "shares.json"
    assert (
        main(
            [
                "optimize",
                *common,
                "--out",
                str(shares),
                "--agents",
                "6",
                "--iterations",
                "5",
                "--rule",
                "weighted-sum",
            ]
        )
        == 0
    )
    doc = json.loads(shares.read_text())
    assert doc["rule"] == {"name": "weighted-sum"}
    assert sum(doc["weights"].values()) == pytest.approx(1, abs=1e-5)
    out = tmp_path / "report.json"
    capsys.readouterr()
    assert main(["eval", *common, "--weights", str(fusion), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report) == {"fused", "equal_weights", *MEMBERS.split(","), "modality:face", "modality:text"}
    assert report["fused"]["n"] == 6 and "ci95" in report["fused"]
    assert "scoring" not in capsys.readouterr().err  # the second command reads the cache, runs no model


def test_fusion_commands_refuse_bad_input_with_one_line(
    face_crops: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("face_path,audio_path,text,label\n,,,happy\n")
    assert main(["optimize", "--manifest", str(bad), "--out", str(tmp_path / "f.json")]) == 2
    err = capsys.readouterr().err
    assert "bad.csv:2" in err and len(err.strip().splitlines()) == 1
    assert main(["pair", "--face", str(face_crops / "faces.csv"), "--out", str(tmp_path / "p.csv")]) == 2
    assert "at least two" in capsys.readouterr().err
    two = ["--face", str(face_crops / "faces.csv"), "--text", str(face_crops / "text.csv")]
    assert main(["pair", *two, "--mix", "live", "--out", str(tmp_path / "p.csv")]) == 2
    assert "needs a modality" in capsys.readouterr().err and not (tmp_path / "p.csv").exists()
    assert main(["pair", *two, "--mix", "face=2", "--out", str(tmp_path / "p.csv")]) == 2
    assert "sum to 1" in capsys.readouterr().err
    assert (
        main(["optimize", "--manifest", str(bad), "--members", "nope", "--out", str(tmp_path / "f.json")])
        == 2
    )
    assert main(["eval", "--manifest", str(bad), "--weights", str(tmp_path / "none.json")]) == 2
