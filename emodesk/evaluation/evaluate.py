"""Scoring labeled rows with one model and measuring it: the core of ``emodesk eval``.

Pure functions over :class:`~emodesk.evaluation.datasets.Row` lists, so the
command, the tests and a notebook all get the same numbers. Rows are scored
the way the app scores live input: face crops through
:class:`FaceExpressionScorer` (optionally after the face detector, keeping the
largest face), audio decoded to 16 kHz mono like ``AudioFileSource``, text
through the model's own tokenizer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from emodesk import imaging
from emodesk.errors import InputError, ModelError
from emodesk.evaluation.datasets import Row, earlier_in_group
from emodesk.evaluation.metrics import compute_metrics
from emodesk.inference.face_detector import FaceDetector
from emodesk.inference.manifest import ModelManifest
from emodesk.inference.members import FaceMember, TextMember, VoiceMember, load_member
from emodesk.labels import N_LABELS
from emodesk.machine import Device
from emodesk.types import FaceBox

Modality = Literal["face", "voice", "text"]
MODALITIES: tuple[Modality, ...] = ("face", "voice", "text")
Scorer = FaceMember | VoiceMember | TextMember
Progress = Callable[[int], None]
"""Called with the number of rows done so far (the caller decides how often to show it)."""

FACE_BATCH = 64
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class ModelEvaluation:
    """One model's scores over the rows and its metrics (docs/formats.md "Metrics JSON").

    ``probs`` has a row per input row, canonical order; rows where no face was
    found (``--detect``) are NaN and left out of ``metrics``.
    """

    model_id: str
    sha256: str
    provider: str
    probs: np.ndarray
    metrics: dict[str, Any]
    seconds_per_item: float
    no_face: int


def read_audio_16k(path: str | Path) -> np.ndarray:
    """The first audio track of ``path`` as 16 kHz mono float32, resampled by PyAV like the app."""
    import av

    chunks: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise InputError(f"{path} has no audio track")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(stream):
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    except (av.error.FFmpegError, OSError) as e:
        raise InputError(f"cannot read audio from {path}: {e}") from None
    if not chunks or sum(len(c) for c in chunks) == 0:
        raise InputError(f"{path} holds no audio samples")
    return np.concatenate(chunks).astype(np.float32, copy=False)


def load_scorer(manifest: ModelManifest, *, device: Device = "auto") -> Scorer:
    """The member ``manifest`` describes, loaded for a batch job (:func:`load_member`);
    :class:`ModelError` when it cannot load."""
    return load_member(manifest, device=device, batch=True)


def find_largest_faces(
    rows: Sequence[Row], detector: FaceDetector, *, progress: Progress | None = None
) -> list[FaceBox | None]:
    """The largest detected face of each row's image, or None where the detector found none."""
    out: list[FaceBox | None] = []
    for i, row in enumerate(rows):
        img = imaging.read_image(row.x)
        bgr = imaging.gray_to_bgr(img)
        faces = detector.detect(bgr)  # largest first
        out.append(faces[0] if faces else None)
        if progress is not None:
            progress(i + 1)
    return out


def _score_faces(
    rows: Sequence[Row],
    scorer: FaceMember,
    boxes: Sequence[FaceBox | None] | None,
    progress: Progress | None,
) -> np.ndarray:
    probs = np.full((len(rows), N_LABELS), np.nan, np.float32)
    for start in range(0, len(rows), FACE_BATCH):
        idx: list[int] = []
        crops: list[np.ndarray] = []
        for i in range(start, min(start + FACE_BATCH, len(rows))):
            img = imaging.read_image(rows[i].x)
            if boxes is not None:
                box = boxes[i]
                if box is None:
                    continue  # no face: stays NaN, counted as a miss
                img = scorer.crop(img, box)
            idx.append(i)
            crops.append(img)
        if crops:
            probs[idx] = scorer.score_crops(crops)
        if progress is not None:
            progress(min(start + FACE_BATCH, len(rows)))
    return probs


def voice_session_order(rows: Sequence[Row], seed: int = 0) -> list[list[int]]:
    """Row indices per session: one session per ``group`` (a speaker; the whole list if none),
    each in a seeded random order — as a live session meets a speaker's utterances, and never
    sorted by emotion the way RAVDESS file names are."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r.group, []).append(i)
    rng = np.random.default_rng(seed)
    return [[idx[j] for j in rng.permutation(len(idx))] for _, idx in sorted(groups.items())]


def _score_voice(rows: Sequence[Row], scorer: VoiceMember, progress: Progress | None) -> np.ndarray:
    """Each session from a fresh running normalisation, as the live app does per recording."""
    probs = np.empty((len(rows), N_LABELS), np.float32)
    done = 0
    for session in voice_session_order(rows):
        scorer.reset_session()
        for i in session:
            probs[i] = scorer.score(read_audio_16k(rows[i].x))
            done += 1
            if progress is not None:
                progress(done)
    return probs


def score_rows(
    modality: Modality,
    rows: Sequence[Row],
    scorer: Scorer,
    *,
    boxes: Sequence[FaceBox | None] | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Canonical-order probabilities ``(len(rows), 7)`` for the rows of one modality.

    Face rows are face crops unless ``boxes`` (from :func:`find_largest_faces`)
    say where the face is; a None box leaves that row NaN.
    """
    if boxes is not None and (modality != "face" or len(boxes) != len(rows)):
        raise ValueError(f"boxes apply to face rows only, one per row; got {len(boxes)} for {len(rows)}")
    if modality not in _ROW_SCORERS:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    if scorer.model.manifest.modality != modality:
        raise ModelError(f"model {scorer.id} cannot score {modality} rows")
    return _ROW_SCORERS[modality](rows, scorer, boxes, progress)


def _score_text(
    rows: Sequence[Row], scorer: TextMember, _boxes: object, progress: Progress | None
) -> np.ndarray:
    """A member that reads context (``scorer.context`` > 0) gets the earlier rows of the same group
    (a MELD dialogue), most recent first, as a live session gives it the earlier transcripts."""
    probs = np.empty((len(rows), N_LABELS), np.float32)
    n_context = int(getattr(scorer, "context", 0))
    before = earlier_in_group(rows, n_context)
    for i, row in enumerate(rows):
        probs[i] = scorer.score(row.x, before[i]) if before[i] else scorer.score(row.x)
        if progress is not None:
            progress(i + 1)
    return probs


#: how the rows of each member modality are scored (face: crops or detected boxes; voice: by session)
_ROW_SCORERS: dict[str, Callable[..., np.ndarray]] = {
    "face": lambda rows, scorer, boxes, progress: _score_faces(rows, scorer, boxes, progress),
    "voice": lambda rows, scorer, _boxes, progress: _score_voice(rows, scorer, progress),
    "text": _score_text,
}


def evaluate_model(
    modality: Modality,
    rows: Sequence[Row],
    scorer: Scorer,
    *,
    boxes: Sequence[FaceBox | None] | None = None,
    progress: Progress | None = None,
    bootstrap: int = 1000,
) -> ModelEvaluation:
    """Score ``rows`` with ``scorer`` and compute the metrics JSON over the rows that were scored.

    Raises :class:`InputError` if no row could be scored (e.g. no face found anywhere).
    """
    t0 = time.perf_counter()
    probs = score_rows(modality, rows, scorer, boxes=boxes, progress=progress)
    seconds = time.perf_counter() - t0
    scored = ~np.isnan(probs).any(axis=1)
    if not scored.any():
        raise InputError(f"model {scorer.id}: none of the {len(rows)} rows could be scored (no face found)")
    y = np.array([r.label for r in rows], dtype=np.int64)
    metrics = compute_metrics(y[scored], probs[scored], bootstrap=bootstrap)
    man = scorer.model.manifest
    return ModelEvaluation(
        model_id=scorer.id,
        sha256=man.sha256,
        provider=scorer.model.provider,
        probs=probs,
        metrics=metrics,
        seconds_per_item=seconds / max(1, len(rows)),
        no_face=int((~scored).sum()),
    )
