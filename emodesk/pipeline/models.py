"""Loading the model set with a status per slot, so one broken model never stops the rest.

Each loader is called in the thread that will use the sessions it creates.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from emodesk.errors import EmodeskError, ModelError
from emodesk.inference.members import FaceMember, TextMember, VoiceMember, load_member
from emodesk.inference.registry import installed_manifests, refused_manifests
from emodesk.inference.runtime import OnnxModel
from emodesk.machine import Device
from emodesk.types import SlotStatus

if TYPE_CHECKING:
    from emodesk.pipeline.face_path import FacePipeline
    from emodesk.speech.processor import SpeechProcessor

log = logging.getLogger(__name__)

DEFAULT_DETECTOR = "face-detector-blazeface-short"


def _provider_short(p: str) -> str:
    return p.replace("ExecutionProvider", "")


def _where(model: OnnxModel) -> str:
    """ "on CUDA", or "on CPU (why not CUDA)" so a silently unused GPU is never silent."""
    where = f"on {_provider_short(model.provider)}"
    if model.provider != "CUDAExecutionProvider" and model.provider_reason != "CPU requested":
        where += f" ({model.provider_reason})"
    return where


def load_face_pipeline(
    *,
    device: Device = "auto",
    detector_id: str = DEFAULT_DETECTOR,
    rotate: bool = True,
    reuse_boxes_s: float | None = None,
) -> tuple[FacePipeline | None, list[SlotStatus]]:
    """Detector + every installed face model; None when the path cannot run.

    ``rotate=False`` scores every member on every frame (``FacePipeline``'s schedule off);
    ``reuse_boxes_s=0`` runs the detector on every frame (None: ``FacePipeline``'s default).
    """
    from emodesk.inference.face_detector import FaceDetector
    from emodesk.inference.face_verifier import installed_verifier
    from emodesk.inference.registry import find_model
    from emodesk.inference.runtime import OnnxModel
    from emodesk.pipeline.face_path import REUSE_BOXES_S, FacePipeline

    if not any(m.modality == "face" for m in installed_manifests().values()):
        # no face member to run: the path is missing, whatever the detector's state
        return None, [SlotStatus("face", "missing", "no model installed")]
    statuses: list[SlotStatus] = []
    try:
        det_model = OnnxModel(find_model(detector_id), device=device)
        verifier = installed_verifier(device=device)
        detector = FaceDetector(det_model, verifier=verifier)
        ids = (detector_id,) if verifier is None else (detector_id, verifier.model.manifest.id)
        checked = "" if verifier is None else f", boxes checked by {verifier.model.manifest.id}"
        statuses.append(
            SlotStatus(
                "face detector",
                "ok",
                f"{detector_id} {_where(det_model)}{checked}",
                ids,
                det_model.provider,
            )
        )
    except EmodeskError as e:
        statuses.append(SlotStatus("face detector", "error", str(e)))
        return None, statuses
    scorers: list[FaceMember] = []
    errors = []
    for m in installed_manifests().values():
        if m.modality != "face":
            continue
        try:
            scorers.append(load_member(m, device=device))  # type: ignore[arg-type]
        except EmodeskError as e:
            errors.append(str(e))
    if not scorers:
        msg = "; ".join(errors) if errors else "no model installed"
        statuses.append(SlotStatus("face", "error" if errors else "missing", msg))
        return None, statuses
    prov = scorers[0].model.provider
    msg = ", ".join(s.model.id for s in scorers) + f" {_where(scorers[0].model)}"
    if errors:
        msg += " (failed: " + "; ".join(errors) + ")"
    statuses.append(
        SlotStatus("face", "ok", msg, tuple(s.model.id for s in scorers), prov, failed=tuple(errors))
    )
    reuse = REUSE_BOXES_S if reuse_boxes_s is None else reuse_boxes_s
    return FacePipeline(detector, scorers, rotate=rotate, reuse_boxes_s=reuse), statuses


def load_utterance_scorers(
    *, device: Device = "auto"
) -> tuple[list[VoiceMember], list[TextMember], list[SlotStatus]]:
    """Every installed voice and text member, with a status per modality."""
    voice: list[VoiceMember] = []
    text: list[TextMember] = []
    statuses: list[SlotStatus] = []
    out: list[VoiceMember] | list[TextMember]
    for modality, out in (("voice", voice), ("text", text)):
        errors = []
        for m in installed_manifests().values():
            if m.modality != modality:
                continue
            try:
                out.append(load_member(m, device=device))  # type: ignore[arg-type]
            except EmodeskError as e:
                errors.append(str(e))
        if out:
            prov = out[0].model.provider
            statuses.append(
                SlotStatus(
                    modality,
                    "ok",
                    ", ".join(s.id for s in out) + f" {_where(out[0].model)}",
                    tuple(s.id for s in out),
                    prov,
                    failed=tuple(errors),
                )
            )
        elif errors:
            statuses.append(SlotStatus(modality, "error", "; ".join(errors)))
        else:
            statuses.append(SlotStatus(modality, "missing", "no model installed"))
    return voice, text, statuses


def load_speech_processor(
    *,
    asr_model: str | None = None,
    device: Device = "auto",
    partial_interval_s: float | None = 1.0,
    cpu_threads: int = 1,
    language: str = "en",
    vad_threshold: float | None = None,
) -> tuple[SpeechProcessor | None, list[SlotStatus]]:
    """Silero VAD + faster-whisper; None with an error status if either fails.

    ``language``: what the recogniser expects (an English-only model accepts only
    ``en``); ``vad_threshold``: Silero's speech probability (default 0.5), its
    end-of-speech threshold 0.15 below, as Silero's own ``get_speech_timestamps``."""
    from emodesk.speech.asr import Transcriber
    from emodesk.speech.processor import SpeechProcessor
    from emodesk.speech.segmenter import SegmenterConfig, UtteranceSegmenter
    from emodesk.speech.vad import SileroVad

    statuses: list[SlotStatus] = []
    try:
        vad = SileroVad()
        statuses.append(
            SlotStatus("vad", "ok", "Silero VAD v6 on CPU", ("silero-vad-v6",), "CPUExecutionProvider")
        )
    except EmodeskError as e:
        return None, [SlotStatus("vad", "error", str(e))]
    try:
        asr = Transcriber(
            asr_model,
            device="cuda" if device == "cuda" else ("cpu" if device == "cpu" else "auto"),
            cpu_threads=cpu_threads,
            language=language,
        )
        asr.warm_up()
        statuses.append(
            SlotStatus(
                "asr",
                "ok",
                asr.reason,
                (asr.model_name,),
                asr.device,
            )
        )
    except EmodeskError as e:
        statuses.append(SlotStatus("asr", "error", str(e)))
        return None, statuses
    cfg = SegmenterConfig(partial_interval_s=partial_interval_s)
    if vad_threshold is not None:
        if not 0.0 < vad_threshold < 1.0:
            raise ValueError(f"vad_threshold must lie in (0, 1), got {vad_threshold}")
        cfg = dataclasses.replace(cfg, threshold=vad_threshold, neg_threshold=max(0.01, vad_threshold - 0.15))
    return SpeechProcessor(UtteranceSegmenter(vad, cfg), asr), statuses


def check_model_set() -> list[str]:
    """Problems with the installed set (for --self-test): unreadable or mismatching files."""
    problems: list[str] = []
    for m in installed_manifests().values():
        try:
            m.verify_file()
        except ModelError as e:
            problems.append(str(e))
    problems += refused_manifests()
    return problems
