"""The canonical label order, aliases, and remapping of model outputs.

Every probability vector stored or exchanged by emodesk uses ``LABELS`` order
(docs/formats.md, "Labels").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from emodesk.errors import LabelError

LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
N_LABELS = len(LABELS)

ALIASES: Mapping[str, str] = {
    "anger": "angry",
    "disgusted": "disgust",
    "fearful": "fear",
    "happiness": "happy",
    "joy": "happy",
    "calm": "neutral",
    "sadness": "sad",
    "surprised": "surprise",
}


def canonical_label(name: str, extra: Mapping[str, str] | None = None) -> str:
    """Return the canonical spelling of ``name`` or raise :class:`LabelError`.

    ``extra`` is a user-given map (``--label-map a=b``) consulted first.
    """
    key = name.strip().lower()
    if extra and key in extra:
        key = extra[key].strip().lower()
    key = ALIASES.get(key, key)
    if key not in LABELS:
        raise LabelError(
            f"unknown label {name!r}: expected one of {', '.join(LABELS)} "
            f"(or aliases {', '.join(sorted(ALIASES))}); use --label-map or --ignore-unknown"
        )
    return key


def reorder_indices(model_labels: Sequence[str]) -> np.ndarray:
    """Indices that turn a model's output order into canonical order.

    ``probs_canonical = probs_model[..., reorder_indices(model_labels)]``.
    """
    names = [canonical_label(x) for x in model_labels]
    if sorted(names) != sorted(LABELS):
        raise LabelError(f"model labels {list(model_labels)} must be a permutation of {list(LABELS)}")
    return np.array([names.index(lab) for lab in LABELS], dtype=np.intp)


def probs_dict(p: np.ndarray) -> dict[str, float]:
    """A canonical-order probability vector as ``{label: p}`` for JSON records."""
    if p.shape != (N_LABELS,):
        raise ValueError(f"probability vector must have shape ({N_LABELS},), got {p.shape}")
    return {lab: round(float(v), 6) for lab, v in zip(LABELS, p, strict=True)}


def probs_vector(probs: object) -> np.ndarray | None:
    """A record's ``{label: p}`` as a canonical-order vector; None when it is not one (a label
    missing, a value that is not a finite number): what every reader of records skips."""
    if not isinstance(probs, Mapping):
        return None
    try:
        v = np.array([float(probs[lab]) for lab in LABELS])
    except (KeyError, TypeError, ValueError):
        return None
    return v if np.all(np.isfinite(v)) else None


#: each label's colour wherever the app draws it (window, pictures, reports)
LABEL_COLORS: dict[str, str] = {
    "angry": "#d64541",
    "disgust": "#7a9a01",
    "fear": "#8e44ad",
    "happy": "#f1c40f",
    "neutral": "#95a5a6",
    "sad": "#3477db",
    "surprise": "#e67e22",
}
