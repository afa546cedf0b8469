"""The metrics JSON of docs/formats.md, checked on cases small enough to work out by hand."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from emodesk.evaluation import compute_metrics
from emodesk.labels import LABELS

A, D, F, H, N, S, U = range(7)  # angry disgust fear happy neutral sad surprise


def one_hot(pred: list[int]) -> np.ndarray:
    p = np.full((len(pred), 7), 0.01)
    p[np.arange(len(pred)), pred] = 0.94
    return p


def test_hand_computed_case_with_absent_labels() -> None:
    # True labels: angry ×2, disgust ×2, happy ×1 (fear, neutral, sad, surprise absent).
    # One happy row is predicted neutral — an absent label: an error, not a class.
    y = [A, A, D, D, H]
    m = compute_metrics(y, one_hot([A, D, D, D, N]), bootstrap=0)
    assert m["n"] == 5
    assert m["labels"] == ["angry", "disgust", "happy"]
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["per_class_recall"] == pytest.approx({"angry": 0.5, "disgust": 1.0, "happy": 0.0})
    assert m["uar"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    # precision: angry 1/1, disgust 2/3, happy 0 (never predicted)
    f1_angry, f1_disgust = 2 * 1 * 0.5 / 1.5, 2 * (2 / 3) * 1 / (2 / 3 + 1)
    assert m["macro_f1"] == pytest.approx((f1_angry + f1_disgust + 0.0) / 3)
    assert m["weighted_f1"] == pytest.approx((2 * f1_angry + 2 * f1_disgust + 1 * 0.0) / 5)
    conf = np.array(m["confusion"])
    assert conf.shape == (7, 7) and conf.sum() == 5
    assert conf[A, A] == 1 and conf[A, D] == 1 and conf[D, D] == 2 and conf[H, N] == 1
    assert conf[N].sum() == 0  # neutral is no row: no true neutral
    assert "ci95" not in m


def test_prediction_is_argmax_over_all_seven_labels() -> None:
    # The model's best label is surprise (absent from the data): an error, even though
    # among the present labels happy would win.
    p = np.array([[0.0, 0.0, 0.0, 0.4, 0.0, 0.0, 0.6]])
    m = compute_metrics([H], p, bootstrap=0)
    assert m["accuracy"] == 0.0 and m["uar"] == 0.0 and m["macro_f1"] == 0.0
    assert m["labels"] == ["happy"] and m["confusion"][H][U] == 1


def test_perfect_predictions() -> None:
    y = [0, 1, 2, 3, 4, 5, 6, 3, 3]
    m = compute_metrics(y, one_hot(y))
    for k in ("accuracy", "uar", "macro_f1", "weighted_f1"):
        assert m[k] == 1.0
        assert m["ci95"][k] == [1.0, 1.0]
    assert m["labels"] == list(LABELS)


def noisy_case(n: int = 600, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(7, size=n, p=[0.13, 0.02, 0.14, 0.25, 0.17, 0.17, 0.12])
    p = rng.random((n, 7))
    p[np.arange(n), y] += rng.random(n) * 0.9
    return y, p


def test_ci95_brackets_the_point_estimate_and_is_deterministic() -> None:
    y, p = noisy_case()
    m = compute_metrics(y, p)
    for k in ("accuracy", "uar", "macro_f1", "weighted_f1"):
        lo, hi = m["ci95"][k]
        assert lo <= m[k] <= hi, k
        assert 0.0 < hi - lo < 0.2, k
    assert compute_metrics(y, p) == m  # same seed, same result
    other = compute_metrics(y, p, seed=1)
    assert other["ci95"] != m["ci95"]
    assert other["accuracy"] == m["accuracy"]


def test_output_is_plain_json() -> None:
    y, p = noisy_case(50)
    m = compute_metrics(y, p)
    assert json.loads(json.dumps(m)) == m
    assert set(m) == {
        "n",
        "accuracy",
        "uar",
        "macro_f1",
        "weighted_f1",
        "per_class_recall",
        "confusion",
        "labels",
        "ci95",
        "neutral_misread",
    }
    assert set(m["per_class_recall"]) == set(m["labels"])


def test_bootstrap_of_a_full_test_set_is_fast() -> None:
    y, p = noisy_case(7178)
    compute_metrics(y[:100], p[:100])  # warm up
    t0 = time.perf_counter()
    compute_metrics(y, p)
    # ~0.2 s here; a per-resample Python loop would take many seconds.
    assert time.perf_counter() - t0 < 3.0


@pytest.mark.parametrize(
    ("y", "p", "match"),
    [
        ([0, 1], np.zeros((2, 6)), r"shape \(n, 7\)"),
        ([0, 1, 2], np.zeros((2, 7)), "3 rows"),
        ([0, 7], np.zeros((2, 7)), "outside"),
        ([], np.zeros((0, 7)), "0 rows"),
    ],
)
def test_bad_input_is_refused(y: list[int], p: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compute_metrics(y, p)


def test_batch_confusions_match_compute_metrics_row_by_row() -> None:
    from emodesk.evaluation.metrics import batch_confusions, compute_metrics

    rng = np.random.default_rng(5)
    y = rng.integers(0, 7, 300)
    preds = rng.integers(0, 7, (4, 300))
    shared = batch_confusions(y, preds)
    per_row_y = batch_confusions(np.stack([y] * 4), preds)
    for k in range(4):
        want = compute_metrics(y, np.eye(7)[preds[k]], bootstrap=0)["confusion"]
        assert shared[k].tolist() == want == per_row_y[k].tolist()


def test_neutral_misreads_count_calm_rows_read_as_angry_or_aroused() -> None:
    """10 neutral rows: 3 read angry, 1 fear, 1 surprise, 5 neutral; 4 angry rows don't count."""
    y = [N] * 10 + [A] * 4
    m = compute_metrics(y, one_hot([A, A, A, F, U, N, N, N, N, N, A, A, A, N]), bootstrap=0)
    nm = m["neutral_misread"]
    assert nm["n"] == 10 and nm["angry"] == pytest.approx(0.3) and nm["high_arousal"] == pytest.approx(0.5)
    assert nm["high_arousal_labels"] == ["angry", "fear", "surprise"]
    lo, hi = nm["ci95"]["angry"]
    assert lo == pytest.approx(0.1078, abs=1e-4) and hi == pytest.approx(0.6032, abs=1e-4)  # Wilson
    assert "neutral_misread" not in compute_metrics([A, H], one_hot([A, H]), bootstrap=0)
