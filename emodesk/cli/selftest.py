"""``emodesk --self-test``: every model loads and one frame and one utterance go through.

The bundle's smoke test runs this offscreen, so it must exercise what a broken
bundle would miss: the ONNX models, the VAD asset, the whisper model, Qt's
platform plugins, and the demo clip.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

import numpy as np

from emodesk.errors import EmodeskError, InputError
from emodesk.machine import Device
from emodesk.types import SlotStatus


def _frame_with_face() -> np.ndarray:
    from emodesk.imaging import read_image
    from emodesk.resources import assets_dir

    try:
        face = read_image(assets_dir() / "face_astronaut.png", gray=False)
    except InputError as e:
        raise EmodeskError(
            f"asset {assets_dir() / 'face_astronaut.png'} is missing or unreadable: {e}"
        ) from None
    frame = np.full((480, 640, 3), 120, np.uint8)
    frame[112:368, 192:448] = face
    return frame


def _first_utterance_audio() -> np.ndarray:
    from emodesk.capture.files import AudioFileSource
    from emodesk.capture.sources import demo_clip_path

    src = AudioFileSource(demo_clip_path(), chunk_s=0.5)
    src.open()
    try:
        parts = []
        while (c := src.read()) is not None and c.t1 <= 4.3:
            parts.append(c.samples)
    finally:
        src.close()
    return np.concatenate(parts)


#: a known answer every face and text member must give: the test face smiles, the sentence is glad
EXPECTED = "happy"
HAPPY_SENTENCE = "I am so happy to see you today."


def known_answer(model_id: str, probs: np.ndarray, what: str) -> None:
    """``EmodeskError`` unless ``probs`` (canonical order) puts :data:`EXPECTED` on top: a member
    whose labels or tokenizer were swapped or corrupted still outputs a distribution, but the
    wrong one."""
    from emodesk.labels import LABELS

    top = LABELS[int(np.argmax(probs))]
    if top != EXPECTED:
        raise EmodeskError(
            f"{model_id} reads {what} as {top} ({float(np.max(probs)):.2f}), not {EXPECTED}: "
            "its labels, tokenizer or weights are not the ones it was measured with"
        )


def refused(statuses: list[SlotStatus]) -> None:
    """``EmodeskError`` naming every member a working slot had to leave out."""
    failed = [f for s in statuses for f in s.failed]
    if failed:
        raise EmodeskError("refused: " + "; ".join(failed))


def self_test(*, asr_model: str | None = None, device: Device = "auto") -> int:
    """Print one line per check; return 0 only if every check passed."""
    failures = 0

    def check(name: str, fn: Callable[[], str]) -> None:
        nonlocal failures
        t0 = time.monotonic()
        try:
            detail = fn()
        except (EmodeskError, OSError, ImportError, ValueError, RuntimeError) as e:
            failures += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        else:
            print(f"ok   {name}: {detail} ({time.monotonic() - t0:.2f} s)", flush=True)

    from emodesk.pipeline.models import (
        check_model_set,
        load_face_pipeline,
        load_speech_processor,
        load_utterance_scorers,
    )
    from emodesk.types import AudioChunk, Frame

    def models() -> str:
        problems = check_model_set()
        if problems:
            raise EmodeskError("; ".join(problems))
        from emodesk.inference.registry import installed_manifests

        return ", ".join(sorted(installed_manifests()))

    def lock() -> str:
        from emodesk.inference.lock import LOCK_FILE, verify_folder
        from emodesk.resources import model_search_dirs, shipped_models_dir

        checked, notes, problems = 0, [], []
        for d in model_search_dirs():
            if not d.is_dir():
                continue
            if not (d / LOCK_FILE).exists() and d != shipped_models_dir():
                notes.append(f"{d} has no {LOCK_FILE} (made before locks; its files are not checked)")
                continue
            found = verify_folder(d)
            problems += found
            checked += not found
        if problems:
            raise EmodeskError("; ".join(problems))
        return f"{checked} model set(s) match their lock" + (f"; {'; '.join(notes)}" if notes else "")

    def face() -> str:
        pipe, statuses = load_face_pipeline(device=device, rotate=False)  # every member on the frame
        if pipe is None:
            raise EmodeskError("; ".join(s.message for s in statuses if not s.ok))
        refused(statuses)
        res = pipe.process(Frame(t=0.0, image=_frame_with_face(), index=0))
        if not res.faces:
            raise EmodeskError("the face detector found no face in the test frame")
        for f in res.faces:
            known_answer(f.model, f.probs, "the smiling test face")
        return "; ".join(s.message for s in statuses) + f"; {len(res.faces)} face score(s), each {EXPECTED}"

    def speech() -> str:
        proc, statuses = load_speech_processor(asr_model=asr_model, device=device, partial_interval_s=None)
        if proc is None:
            raise EmodeskError("; ".join(s.message for s in statuses if not s.ok))
        audio = _first_utterance_audio()
        events = proc.insert(AudioChunk(t0=0.0, samples=audio)) + proc.finish()
        texts = [e.transcript.text for e in events if not e.transcript.partial and e.transcript.text]
        if not texts:
            raise EmodeskError("the speech path produced no transcript for the test utterance")
        return "; ".join(s.message for s in statuses) + f"; heard {texts[0]!r}"

    def members() -> str:
        voice, text, statuses = load_utterance_scorers(device=device)
        bad = [s.message for s in statuses if s.state == "error"]
        if bad:
            raise EmodeskError("; ".join(bad))
        refused(statuses)
        # every member scores the test utterance (a voice member that runs its own encoder
        # pass loads it here: the ASR's weights, found and verified as live)
        audio = _first_utterance_audio()
        scored = [(v.id, v.score(audio)) for v in voice]
        said = [(t.id, t.score(HAPPY_SENTENCE)) for t in text]
        for model_id, p in scored + said:
            if not (np.isclose(p.sum(), 1.0, atol=1e-3) and np.all(p >= 0)):
                raise EmodeskError(f"{model_id} probabilities are not a distribution: {p}")
        for model_id, p in said:
            known_answer(model_id, p, repr(HAPPY_SENTENCE))
        scored += said
        return "; ".join(f"{s.slot}: {s.message}" for s in statuses) + f"; {len(scored)} member(s) scored"

    def fusion() -> str:
        from emodesk.fusion.config import load_active_fusion

        cfg = load_active_fusion()
        if cfg.path is None:  # the shipped set carries one: a missing or unreadable file is a fault
            raise EmodeskError("no fusion.json loaded: " + ("; ".join(cfg.warnings) or "none found"))
        if cfg.dropped:  # members it names that are not installed: the fusion is not the measured one
            raise EmodeskError(f"{cfg.path}: " + "; ".join(cfg.warnings))
        notes = f" ({'; '.join(cfg.warnings)})" if cfg.warnings else ""
        return f"{cfg.path}: members {', '.join(cfg.members) or 'none'}{notes}"

    def qt() -> str:
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        from emodesk.ui.app import self_test_window

        return self_test_window()

    check("models", models)
    check("lock", lock)
    check("face path", face)
    check("speech path", speech)
    check("voice/text members", members)
    check("fusion", fusion)
    check("window", qt)
    print("self-test " + ("passed" if failures == 0 else f"FAILED ({failures} check(s))"), flush=True)
    sys.stdout.flush()
    return 0 if failures == 0 else 1
