"""The member kinds: what a face, voice or text member is, and the one registry that loads them.

Every place that needs a member of some modality — the live pipeline
(:mod:`emodesk.pipeline.models`), ``emodesk eval`` (:mod:`emodesk.evaluation.evaluate`),
the fusion commands and ``emodesk train`` — asks :data:`MEMBER_KINDS` (or
:func:`load_member`), never a chain of ``if modality == …``. Each kind's interface is a
:class:`~typing.Protocol`, so the pipeline drives real members and the tests' fakes the
same way, and nothing probes a member with ``getattr``. Adding a kind touches this table
and one new scorer file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from emodesk.errors import ModelError
from emodesk.inference.manifest import ModelManifest
from emodesk.machine import Device

if TYPE_CHECKING:
    from emodesk.inference.runtime import OnnxModel


class MemberModel(Protocol):
    """What every member has: its id and its ONNX model (manifest, provider)."""

    model: OnnxModel

    @property
    def id(self) -> str: ...


class FaceMember(MemberModel, Protocol):
    """Scores the faces of a frame (one row of canonical-order probabilities per box), or crops it
    cut itself: each member has its own crop size and colour."""

    def score(self, image_bgr: np.ndarray, boxes: Sequence[Any]) -> np.ndarray: ...

    def crop(self, image_bgr: np.ndarray, box: Any, *, resize: bool = True) -> np.ndarray: ...

    def score_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray: ...


class VoiceMember(MemberModel, Protocol):
    """Scores one utterance (16 kHz mono float32), alone or from the ASR's encoder pass over it."""

    @property
    def reads_mel(self) -> bool:
        """True if it reuses the log-mel window of the ASR's encoder pass (``EncodedAudio.mel``)."""
        ...

    def accepts(self, transcriber: Any) -> bool:
        """True if ``transcriber``'s encoder output is this member's input, so it can share the pass."""
        ...

    def prepare(self) -> None:
        """Load what it needs to score alone (its own encoder), in the calling thread; ModelError if not."""
        ...

    def reset_session(self) -> None:
        """A new speaker or recording: forget running statistics."""
        ...

    def score(self, audio: np.ndarray, *, encoded: Any = None) -> np.ndarray: ...


class TextMember(MemberModel, Protocol):
    """Scores one transcript line."""

    def score(self, text: str, context: Sequence[str] = ()) -> np.ndarray:
        """``context``: earlier utterances of the same stream, most recent first; a member reads
        at most ``getattr(member, "context", 0)`` of them."""
        ...

    def score_many(self, texts: Sequence[str], contexts: Sequence[Sequence[str]] | None = None) -> np.ndarray:
        """``(len(texts), 7)``: several transcripts in one call (``emodesk bench``'s batched row)."""
        ...


Member = FaceMember | VoiceMember | TextMember


def _batch_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _load_face(manifest: ModelManifest, device: Device, batch: bool) -> FaceMember:
    from emodesk.inference.face_scorer import FaceExpressionScorer
    from emodesk.inference.runtime import OnnxModel

    # face members score big batches in a batch job: their session gets several threads there
    threads = _batch_threads() if batch else 1
    return FaceExpressionScorer(OnnxModel(manifest, device=device, intra_op_threads=threads))


def _load_voice(manifest: ModelManifest, device: Device, batch: bool) -> VoiceMember:
    from emodesk.inference.utterance_scorers import VoiceScorer

    voice = VoiceScorer.load(manifest, device=device)
    if batch:  # no live ASR to share a pass with: its own encoder now, so a wrong one fails first
        voice.prepare()
    return voice


def _load_text(manifest: ModelManifest, device: Device, batch: bool) -> TextMember:
    from emodesk.inference.utterance_scorers import TextScorer

    return TextScorer.load(manifest, device=device)


@dataclass(frozen=True)
class MemberKind:
    """One modality's members: how one loads (``batch``: for a batch job, see :func:`load_member`),
    and the lab module that trains one (``emodesk train <modality>``, reached through
    :func:`emodesk.cli.common.lab_module`)."""

    modality: str
    load: Callable[[ModelManifest, Device, bool], Any]
    trainer: str


#: every member kind, in the order read-outs list them
MEMBER_KINDS: dict[str, MemberKind] = {
    "face": MemberKind("face", _load_face, "train.face.train"),
    "voice": MemberKind("voice", _load_voice, "train.voice.train"),
    "text": MemberKind("text", _load_text, "train.text.train"),
}
MEMBER_MODALITIES = tuple(MEMBER_KINDS)


def member_kind(modality: str) -> MemberKind:
    try:
        return MEMBER_KINDS[modality]
    except KeyError:
        raise ModelError(
            f"{modality!r} is not a member modality; members are {', '.join(MEMBER_MODALITIES)}"
        ) from None


def load_member(
    manifest: ModelManifest, *, device: Device = "auto", batch: bool = False
) -> FaceMember | VoiceMember | TextMember:
    """The member ``manifest`` describes, loaded in the calling thread (ModelError if it cannot be).

    ``batch``: for a batch job with no live ASR to share an encoder pass with (``emodesk eval``):
    the session gets its kind's batch threads, and a voice member loads its own encoder now, so a
    wrong or missing one fails before any row is scored. Live members keep one thread per session.
    """
    member: FaceMember | VoiceMember | TextMember = member_kind(manifest.modality).load(
        manifest, device, batch
    )
    return member
