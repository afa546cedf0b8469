"""Shared test media, generated on the fly from the committed public-domain face and espeak-ng."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from emodesk.imaging import read_image

REPO = Path(__file__).resolve().parents[2]
FACE_PNG = REPO / "assets" / "face_astronaut.png"
DEMO_CLIP = REPO / "assets" / "demo.mp4"


def face_image() -> np.ndarray:
    img = read_image(FACE_PNG, gray=False)
    assert img is not None, f"{FACE_PNG} missing"
    return img


def need_espeak() -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt install espeak-ng)")


def speech_video(
    path: Path,
    sentences: list[str],
    *,
    faces: int = 1,
    gap_s: float = 1.2,
    lead_s: float = 0.8,
    tail_s: float = 1.0,
) -> tuple[Path, list[tuple[float, float]]]:
    """A 640×480 video with ``faces`` moving faces and the sentences spoken in its audio track.

    Returns the path and the (start, end) seconds of each sentence.
    """
    from emodesk.capture.synthesis import face_video_frames, speak, write_video_with_audio

    need_espeak()
    sr = 16000
    parts = [np.zeros(int(lead_s * sr), np.float32)]
    spans = []
    t = lead_s
    for s in sentences:
        x = speak(s, sample_rate=sr, words_per_minute=140, word_gap_ms=80)  # tiny.en mishears faster espeak
        spans.append((t, t + len(x) / sr))
        parts += [x, np.zeros(int(gap_s * sr), np.float32)]
        t += len(x) / sr + gap_s
    parts.append(np.zeros(int(tail_s * sr), np.float32))
    audio = np.concatenate(parts)
    n = int(len(audio) / sr * 30)
    frames = face_video_frames(face_image(), n_frames=n, faces=faces)
    write_video_with_audio(path, frames, 30.0, audio, sr)
    return path, spans
