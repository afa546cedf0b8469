"""Utterance features for voice members built on the ASR's whisper encoder.

A voice member of this kind is a small ONNX head; its input is computed here,
the same way at training (``emodesk.lab.train.voice.train``), evaluation and live:

1. the utterance is encoded once by the ASR (``Transcriber.encode``; the live
   app reuses that pass for the transcript), giving 50 frames/s of d-dim
   encoder states over the utterance itself;
2. ``pool_frames``: their mean and standard deviation → a 2·d vector;
3. ``RunningNormalizer``: standardised with the statistics of *this speaker
   and recording so far* (a session), shrunk toward the training set's
   statistics while the session is young. Emotion is a deviation from how a
   person usually sounds, and a microphone in an office shifts every feature;
   both are removed by the session's own mean and spread. At the first
   utterance it is plain global standardisation; after ``prior_weight``
   utterances the session's statistics weigh as much as the prior.

Training simulates sessions of every age (see the training module), so the
head is trained on the inputs it sees live.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from emodesk.errors import ModelError
from emodesk.readers import Fields

POOLINGS = ("mean_std",)
_EPS = 1e-6


def pool_frames(frames: np.ndarray, kind: str = "mean_std") -> np.ndarray:
    """``(n, d)`` encoder frames → ``(2d,)`` float64: mean then standard deviation over time."""
    f = np.asarray(frames, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] == 0:
        raise ValueError(f"pool_frames expects (n ≥ 1, d) frames, got shape {f.shape}")
    if kind != "mean_std":
        raise ValueError(f"unknown pooling {kind!r}; known: {', '.join(POOLINGS)}")
    return np.concatenate([f.mean(axis=0), f.std(axis=0)])


def shrunk_stats(
    prior_mean: np.ndarray,
    prior_std: np.ndarray,
    prior_weight: float,
    n: int | np.ndarray,
    total: np.ndarray,
    total_sq: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of a session's ``n`` vectors (their sum and sum of squares) pooled with a prior.

    The prior counts as ``prior_weight`` pseudo-vectors with the training set's mean and
    variance. Broadcasts: ``n`` may be ``(k, 1)`` with ``total`` ``(k, d)``.
    """
    w = float(prior_weight)
    denom = w + n
    mean = (w * prior_mean + total) / denom
    second = (w * (prior_std**2 + prior_mean**2) + total_sq) / denom
    var = np.maximum(second - mean**2, _EPS)
    return mean, np.sqrt(var)


class RunningNormalizer:
    """Per-session standardisation with a prior; ``reset`` when the speaker or recording changes."""

    def __init__(self, prior_mean: Sequence[float], prior_std: Sequence[float], prior_weight: float) -> None:
        self.prior_mean = np.asarray(prior_mean, dtype=np.float64)
        self.prior_std = np.asarray(prior_std, dtype=np.float64)
        if self.prior_mean.ndim != 1 or self.prior_mean.shape != self.prior_std.shape:
            raise ValueError("prior_mean and prior_std must be 1-D and of the same length")
        if not np.all(np.isfinite(self.prior_mean)) or not np.all(self.prior_std > 0):
            raise ValueError("prior_mean must be finite and prior_std positive")
        if not prior_weight > 0:
            raise ValueError(f"prior_weight must be positive, got {prior_weight}")
        self.prior_weight = float(prior_weight)
        self.reset()

    @property
    def dim(self) -> int:
        return int(self.prior_mean.shape[0])

    def reset(self) -> None:
        self.n = 0
        self._sum = np.zeros_like(self.prior_mean)
        self._sq = np.zeros_like(self.prior_mean)

    def __call__(self, x: np.ndarray, *, update: bool = True) -> np.ndarray:
        """Standardise one pooled vector, first adding it to the session (as training does)."""
        v = np.asarray(x, dtype=np.float64)
        if v.shape != self.prior_mean.shape:
            raise ValueError(f"expected a vector of {self.dim} features, got shape {v.shape}")
        if update:
            self.n += 1
            self._sum += v
            self._sq += v * v
        mean, std = shrunk_stats(
            self.prior_mean, self.prior_std, self.prior_weight, self.n, self._sum, self._sq
        )
        return ((v - mean) / std).astype(np.float32)

    @classmethod
    def from_manifest(cls, pre: Mapping[str, Any], model_id: str) -> RunningNormalizer:
        norm = pre.get("normalization")
        if not isinstance(norm, Mapping) or norm.get("kind") != "running_session":
            raise ModelError(
                f"voice model {model_id}: preprocessing.normalization must be "
                '{"kind": "running_session", "prior_mean": [...], "prior_std": [...], "prior_weight": w}'
            )
        f = Fields(norm, f"voice model {model_id}: preprocessing.normalization", ModelError)
        mean, std = f.numbers("prior_mean", max_len=65536), f.numbers("prior_std", max_len=65536)
        try:
            return cls(mean, std, f.number("prior_weight"))
        except ValueError as e:
            raise ModelError(f"voice model {model_id}: bad normalization in its manifest: {e}") from None
