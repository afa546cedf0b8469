"""Small frozen dataclasses: the only things that cross threads.

Times named ``t``, ``t0``, ``t1`` are *media* seconds on the source's clock;
``wall`` fields are ``time.monotonic()`` stamps, used only to measure latency.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from emodesk.labels import N_LABELS

Kind = Literal["face", "voice", "text"]


def _check_probs(p: np.ndarray, what: str) -> None:
    if p.shape != (N_LABELS,):
        raise ValueError(f"{what} probs must have shape ({N_LABELS},), got {p.shape}")


@dataclass(frozen=True)
class Frame:
    """One video frame, BGR uint8 ``(H, W, 3)``."""

    t: float
    image: np.ndarray
    index: int
    wall: float = 0.0

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.image.shape[1]), int(self.image.shape[0])


@dataclass(frozen=True)
class AudioChunk:
    """Mono float32 samples in [-1, 1] at ``sample_rate``; ``t0`` is the first sample's time."""

    t0: float
    samples: np.ndarray
    sample_rate: int = 16000
    wall: float = 0.0

    @property
    def t1(self) -> float:
        return self.t0 + len(self.samples) / self.sample_rate

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


Box = tuple[float, float, float, float]
"""``(x, y, w, h)`` in source pixels."""


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes."""
    ax1, ay1, aw, ah = a
    bx1, by1, bw, bh = b
    ix = max(0.0, min(ax1 + aw, bx1 + bw) - max(ax1, bx1))
    iy = max(0.0, min(ay1 + ah, by1 + bh) - max(ay1, by1))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class FaceBox:
    """A detected face: ``box`` is ``(x, y, w, h)`` in source pixels."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray | None = None

    @property
    def area(self) -> float:
        return max(0.0, self.box[2]) * max(0.0, self.box[3])


@dataclass(frozen=True)
class ModalityScores:
    """One member's probabilities over the canonical labels, in canonical order."""

    kind: Kind
    model: str
    t: float
    probs: np.ndarray
    track: int | None = None
    box: tuple[float, float, float, float] | None = None
    t0: float | None = None
    t1: float | None = None
    wall: float = 0.0
    trusted: bool = True
    """False for a text score of a transcript the recogniser doubts: recorded, never fused."""
    reason: str = ""
    context: tuple[float, ...] = ()
    """A text score: the ``t0`` of each earlier transcript the member read as context, most recent first."""

    def __post_init__(self) -> None:
        _check_probs(self.probs, f"{self.kind} score of {self.model}")


@dataclass(frozen=True)
class FaceFrameResult:
    """Everything the face path found in one frame."""

    t: float
    index: int
    frame_size: tuple[int, int]
    faces: tuple[ModalityScores, ...]
    wall_captured: float = 0.0
    wall_done: float = 0.0
    smoothed: tuple[np.ndarray, ...] = ()  # per entry of ``faces``: per-track smoothed probs
    fresh: tuple[bool, ...] = ()  # per entry of ``faces``: scored on this frame (else carried forward)

    def scored(self) -> tuple[ModalityScores, ...]:
        """The entries scored on this frame (the score records); carried-forward ones left out."""
        if not self.fresh:
            return self.faces
        return tuple(s for s, f in zip(self.faces, self.fresh, strict=True) if f)


@dataclass(frozen=True)
class Utterance:
    """A stretch of speech cut by the VAD; ``final`` is False while it is still growing."""

    t0: float
    t1: float
    audio: np.ndarray
    final: bool = True
    sample_rate: int = 16000
    wall_end: float = 0.0


@dataclass(frozen=True)
class Transcript:
    t0: float
    t1: float
    text: str
    partial: bool = False
    wall: float = 0.0
    trusted: bool = True
    """False when the recogniser doubts its own text (``speech.asr.judge``): no text score of it
    reaches the fusion."""
    reason: str = ""
    """Why it is not trusted ("" when it is)."""
    asr: Mapping[str, Any] | None = None
    """The decoder's signals behind the verdict (``AsrSignals.as_record``), for the records."""


@dataclass(frozen=True)
class FusedScores:
    t: float
    probs: np.ndarray
    members: tuple[str, ...]
    track: int | None = None
    weights: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_probs(self.probs, "fused")

    @property
    def label_index(self) -> int:
        return int(np.argmax(self.probs))


SlotState = Literal["ok", "missing", "error"]


@dataclass(frozen=True)
class SlotStatus:
    """What the status bar says about one slot (face detector, face, voice, text, asr, vad)."""

    slot: str
    state: SlotState
    message: str
    models: tuple[str, ...] = ()
    provider: str = ""
    failed: tuple[str, ...] = ()
    """Members of a working slot that could not load (their errors): the slot runs without them."""

    @property
    def ok(self) -> bool:
        return self.state == "ok"
