"""Classification metrics in the shape docs/formats.md ("Metrics JSON") fixes.

Averages run over the labels present among the *true* labels; a prediction
of an absent label is simply an error (it lowers the recall of the row's true
class) and never forms a class of its own. Confidence intervals come from a
percentile bootstrap over rows, computed for all resamples at once from one
``bincount`` of (resample, true, predicted) codes, so 1,000 resamples of
7,000 rows take a few tens of milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from emodesk.labels import LABELS, N_LABELS

CI_METRICS = ("accuracy", "uar", "macro_f1", "weighted_f1")
#: the labels a calm speaker or face should rarely be read as: the aroused negative and startled ones
HIGH_AROUSAL = ("angry", "fear", "surprise")


def wilson_interval(k: int, n: int, z: float = 1.96) -> list[float]:
    """The Wilson score 95% interval of a rate ``k / n`` (sound at 0 and at small ``n``)."""
    if n <= 0:
        return [0.0, 1.0]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [float(max(0.0, centre - half)), float(min(1.0, centre + half))]


def neutral_misreads(conf: np.ndarray) -> dict[str, Any] | None:
    """How often a neutral (or calm) row is read as angry, and as any high-arousal label: the
    failure a calm person at a desk sees first. None when no row is neutral."""
    row = conf[LABELS.index("neutral")]
    n = int(row.sum())
    if n == 0:
        return None
    angry = int(row[LABELS.index("angry")])
    high = int(sum(row[LABELS.index(lab)] for lab in HIGH_AROUSAL))
    return {
        "n": n,
        "angry": angry / n,
        "high_arousal": high / n,
        "high_arousal_labels": list(HIGH_AROUSAL),
        "ci95": {"angry": wilson_interval(angry, n), "high_arousal": wilson_interval(high, n)},
    }


def _validate(y_true: Sequence[int] | np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    p = np.asarray(probs)
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or y.size == 0):
        raise ValueError(
            f"y_true must be a 1-D sequence of label indices, got shape {y.shape} dtype {y.dtype}"
        )
    if p.ndim != 2 or p.shape[1] != N_LABELS:
        raise ValueError(f"probs must have shape (n, {N_LABELS}) in canonical order, got {p.shape}")
    if p.shape[0] != y.shape[0]:
        raise ValueError(f"y_true has {y.shape[0]} rows but probs has {p.shape[0]}")
    if y.size == 0:
        raise ValueError("cannot compute metrics on 0 rows")
    if y.min() < 0 or y.max() >= N_LABELS:
        raise ValueError(f"y_true holds indices outside 0..{N_LABELS - 1}: {sorted(set(y.tolist()))}")
    return y.astype(np.int64), p


def confusion_scores(conf: np.ndarray) -> dict[str, np.ndarray]:
    """accuracy, uar, macro_f1, weighted_f1 of confusion matrices ``(..., 7, 7)``.

    Classes with no true rows in a matrix are left out of its averages.
    """
    conf = conf.astype(np.float64)
    diag = np.diagonal(conf, axis1=-2, axis2=-1)
    support = conf.sum(axis=-1)  # true rows per class
    predicted = conf.sum(axis=-2)  # predicted rows per class
    n = support.sum(axis=-1)
    present = support > 0
    n_present = present.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(present, diag / np.where(present, support, 1), 0.0)
        precision = np.where(predicted > 0, diag / np.where(predicted > 0, predicted, 1), 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)
    f1 = np.where(present, f1, 0.0)
    return {
        "accuracy": diag.sum(axis=-1) / n,
        "uar": recall.sum(axis=-1) / n_present,
        "macro_f1": f1.sum(axis=-1) / n_present,
        "weighted_f1": (f1 * support).sum(axis=-1) / n,
        "recall": recall,
        "f1": f1,
    }


def batch_confusions(y_true: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """``(k, 7, 7)`` confusion matrices (rows true) of ``k`` prediction vectors ``preds (k, n)``
    against ``y_true`` (``(n,)`` shared, or ``(k, n)``), from one ``bincount``: a whole
    population of candidates or a set of bootstrap resamples at once (feed the result to
    :func:`confusion_scores`)."""
    preds = np.asarray(preds, dtype=np.int64)
    y = np.broadcast_to(np.asarray(y_true, np.int64), preds.shape)
    k = preds.shape[0]
    cells = N_LABELS * N_LABELS
    codes = (np.arange(k)[:, None] * cells + y * N_LABELS + preds).ravel()
    return np.bincount(codes, minlength=k * cells).reshape(k, N_LABELS, N_LABELS)


def compute_metrics(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The metrics JSON of ``probs`` (``(n, 7)``, canonical order) against ``y_true``.

    ``y_true`` holds canonical label indices. Predictions are the argmax over
    all seven labels. ``ci95`` is the 2.5–97.5 percentile range over
    ``bootstrap`` resamples of the rows drawn with
    ``np.random.default_rng(seed)``; ``bootstrap=0`` leaves it out.
    """
    y, p = _validate(y_true, probs)
    pred = np.argmax(p, axis=1)
    codes = y * N_LABELS + pred
    conf = np.bincount(codes, minlength=N_LABELS * N_LABELS).reshape(N_LABELS, N_LABELS)
    s = confusion_scores(conf)
    present = [i for i in range(N_LABELS) if conf[i].sum() > 0]
    out: dict[str, Any] = {
        "n": int(y.size),
        "accuracy": float(s["accuracy"]),
        "uar": float(s["uar"]),
        "macro_f1": float(s["macro_f1"]),
        "weighted_f1": float(s["weighted_f1"]),
        "per_class_recall": {LABELS[i]: float(s["recall"][i]) for i in present},
        "confusion": conf.astype(int).tolist(),
        "labels": [LABELS[i] for i in present],
    }
    misread = neutral_misreads(conf)
    if misread is not None:
        out["neutral_misread"] = misread
    if bootstrap > 0:
        cells = N_LABELS * N_LABELS
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, y.size, size=(bootstrap, y.size), dtype=np.int32)
        boot_codes = np.take(codes.astype(np.int32), idx)
        boot_codes += (np.arange(bootstrap, dtype=np.int32) * cells)[:, None]
        boot = np.bincount(boot_codes.ravel(), minlength=bootstrap * cells)
        bs = confusion_scores(boot.reshape(bootstrap, N_LABELS, N_LABELS))
        out["ci95"] = {k: [float(v) for v in np.percentile(bs[k], [2.5, 97.5])] for k in CI_METRICS}
    return out
