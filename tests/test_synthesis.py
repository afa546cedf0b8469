"""Tests for emodesk.capture.synthesis: speech, frames, MP4 writing and A/V sync."""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from emodesk.capture import synthesis
from emodesk.capture.synthesis import (
    face_video_frames,
    speak,
    write_video_with_audio,
    write_wav,
)

SR = 16000
FPS = 30.0
ASSETS = Path(__file__).resolve().parents[1] / "assets"


def _need_espeak() -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng binary not installed (apt install espeak-ng)")


def _read_frames(cv2: Any, path: Path) -> tuple[list[np.ndarray], float, int, int, float]:
    """Read an MP4 back with OpenCV: a decoder independent of the PyAV writer."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"cv2 cannot open {path}"
    fps = cap.get(cv2.CAP_PROP_FPS)
    w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames, fps, w, h, count


def _decode_audio(path: Path) -> np.ndarray:
    faster_whisper = pytest.importorskip("faster_whisper")
    return faster_whisper.decode_audio(str(path), sampling_rate=SR)


def _inside_ellipse(cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    ys, xs = np.mgrid[:256, :256]
    return np.asarray(((xs - cx) / ax) ** 2 + ((ys - cy) / ay) ** 2 <= 1.0)


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    path = ASSETS / "face_astronaut.png"
    if path.exists():
        with av.open(str(path)) as container:
            return next(container.decode(video=0)).to_ndarray(format="bgr24")
    # Fallback so these tests don't depend on the committed asset: a
    # cartoon face (skin, two eyes, a smile).
    img = np.full((256, 256, 3), 200, np.uint8)
    img[_inside_ellipse(128, 128, 80, 105)] = (150, 180, 220)
    img[_inside_ellipse(98, 110, 10, 10) | _inside_ellipse(158, 110, 10, 10)] = (40, 40, 40)
    smile = _inside_ellipse(128, 170, 37, 17) & ~_inside_ellipse(128, 170, 33, 13)
    smile[:170] = False
    img[smile] = (60, 60, 160)
    return img


# ---------------------------------------------------------------- resampler


def test_speak_has_energy_and_sensible_duration() -> None:
    _need_espeak()
    audio = speak("I am so happy to see you today.", sample_rate=SR)
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert np.all(np.abs(audio) <= 1.0)
    duration = audio.shape[0] / SR
    assert 1.0 < duration < 5.0
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    assert rms > 0.02
    # Speech energy mostly below 4 kHz; nothing aliased near Nyquist.
    spec = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(audio.shape[0], 1 / SR)
    assert spec[freqs < 4000].sum() > 0.8 * spec.sum()


def test_speak_rate_changes_duration() -> None:
    _need_espeak()
    slow = speak("This is a test sentence.", words_per_minute=110)
    fast = speak("This is a test sentence.", words_per_minute=220)
    assert slow.shape[0] > 1.3 * fast.shape[0]


def test_speak_without_espeak_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synthesis.shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="apt install espeak-ng"):
        speak("hello")


def test_write_wav_roundtrip(tmp_path: Path) -> None:
    sf = pytest.importorskip("soundfile")
    x = (0.5 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR)).astype(np.float32)
    path = tmp_path / "tone.wav"
    write_wav(path, x, SR)
    info = sf.info(str(path))
    assert info.samplerate == SR and info.channels == 1 and info.subtype == "PCM_16"
    y, _ = sf.read(str(path), dtype="float32")
    assert np.max(np.abs(y - x)) < 1e-3


# ---------------------------------------------------------------- frames


def _face_centroid(frame: np.ndarray, background: np.ndarray) -> tuple[float, float, float]:
    diff = np.abs(frame.astype(np.int16) - background.astype(np.int16)).sum(axis=2) > 30
    ys, xs = np.nonzero(diff)
    return float(xs.mean()), float(ys.mean()), float(ys.max() - ys.min())


def test_face_video_frames_shape_and_motion(face: np.ndarray) -> None:
    frames = list(face_video_frames(face, n_frames=90, size=(640, 480), fps=FPS))
    assert len(frames) == 90
    assert all(f.shape == (480, 640, 3) and f.dtype == np.uint8 for f in frames)
    bg = synthesis._background((640, 480), synthesis.DEFAULT_BACKGROUND)
    x0, y0, h0 = _face_centroid(frames[0], bg)
    x1, y1, _h1 = _face_centroid(frames[-1], bg)
    assert 180 <= h0 <= 330, h0  # big enough for a face detector
    assert abs(x1 - x0) + abs(y1 - y0) > 10  # it moves...
    steps = [
        np.hypot(*np.subtract(_face_centroid(a, bg)[:2], _face_centroid(b, bg)[:2]))
        for a, b in zip(frames[:-1:10], frames[1::10], strict=False)
    ]
    assert max(steps) < 8  # ...slowly and smoothly


def test_face_video_frames_two_faces(face: np.ndarray) -> None:
    frame = next(face_video_frames(face, n_frames=1, faces=2))
    bg = synthesis._background((640, 480), synthesis.DEFAULT_BACKGROUND)
    diff = np.abs(frame.astype(np.int16) - bg.astype(np.int16)).sum(axis=2) > 30
    left, right = diff[:, :320], diff[:, 320:]
    assert left.sum() > 0.2 * left.size and right.sum() > 0.2 * right.size
    # Copies do not touch: a background column separates them.
    assert diff[:, 300:340].sum(axis=0).min() == 0


def test_face_video_frames_is_deterministic(face: np.ndarray) -> None:
    a = list(face_video_frames(face, n_frames=5, faces=2))
    b = list(face_video_frames(face, n_frames=5, faces=2))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=False))


# The OpenCV code synthesis used before OpenCV left the app's run-time
# dependencies, kept as the reference the NumPy version must reproduce.


def _opencv_feather_mask(cv2: Any, h: int, w: int) -> np.ndarray:
    mask = np.zeros((h, w), dtype=np.float32)
    r = max(2, min(h, w) // 8)
    inset = max(2, min(h, w) // 40)
    cv2.rectangle(mask, (inset + r, inset), (w - 1 - inset - r, h - 1 - inset), 1.0, -1)
    cv2.rectangle(mask, (inset, inset + r), (w - 1 - inset, h - 1 - inset - r), 1.0, -1)
    for cx, cy in (
        (inset + r, inset + r),
        (w - 1 - inset - r, inset + r),
        (inset + r, h - 1 - inset - r),
        (w - 1 - inset - r, h - 1 - inset - r),
    ):
        cv2.circle(mask, (cx, cy), r, 1.0, -1, lineType=cv2.LINE_AA)
    k = max(3, (min(h, w) // 16) | 1)
    return np.asarray(cv2.GaussianBlur(mask, (k, k), 0))


def _opencv_frames(cv2: Any, face: np.ndarray, n_frames: int, faces: int) -> Iterator[np.ndarray]:
    w, h = 640, 480
    canvas = synthesis._background((w, h), synthesis.DEFAULT_BACKGROUND).astype(np.float32)
    fh, fw = face.shape[:2]
    slot_w = w / faces
    width_frac = 0.82 if faces == 1 else 0.7
    drift_x = 0.12 if faces == 1 else 0.08
    base_scale = min(0.6 * h, width_frac * slot_w * fh / fw) / fh
    mask = _opencv_feather_mask(cv2, fh, fw)
    imgs = [
        np.ascontiguousarray(face if i % 2 == 0 else face[:, ::-1]).astype(np.float32) for i in range(faces)
    ]
    for n in range(n_frames):
        t = n / FPS
        frame = canvas.copy()
        for i, img in enumerate(imgs):
            phase = 1.7 * i
            scale = base_scale * (1.0 + 0.06 * math.sin(2 * math.pi * t / 9.0 + phase))
            cx = slot_w * (i + 0.5) + drift_x * slot_w * math.sin(2 * math.pi * t / 11.0 + phase)
            cy = 0.5 * h + 0.07 * h * math.sin(2 * math.pi * t / 7.0 + 0.5 + phase)
            m = np.array([[scale, 0.0, cx - scale * fw / 2.0], [0.0, scale, cy - scale * fh / 2.0]])
            warped = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            alpha = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            frame = frame * (1.0 - alpha[:, :, None]) + warped * alpha[:, :, None]
        yield np.clip(np.rint(frame), 0, 255).astype(np.uint8)


# Sizes whose blur kernels are OpenCV's fixed 3/5/7/9-tap tables, then its
# sigma formula (17 taps for the 256 px asset).
@pytest.mark.parametrize("size", [(40, 48), (64, 90), (112, 120), (150, 200), (256, 256), (300, 220)])
def test_feather_mask_matches_opencv(size: tuple[int, int]) -> None:
    cv2 = pytest.importorskip("cv2")
    h, w = size
    np.testing.assert_allclose(synthesis._feather_mask(h, w), _opencv_feather_mask(cv2, h, w), atol=1e-6)


@pytest.mark.parametrize("faces", [1, 2])
def test_face_video_frames_match_opencv(face: np.ndarray, faces: int) -> None:
    cv2 = pytest.importorskip("cv2")
    ours = np.stack(list(face_video_frames(face, n_frames=60, faces=faces, fps=FPS))).astype(np.int16)
    ref = np.stack(list(_opencv_frames(cv2, face, n_frames=60, faces=faces))).astype(np.int16)
    diff = np.abs(ours - ref)
    # With OpenCV 5 only float rounding differs (measured: max 1, mean 4e-5).
    # OpenCV 4's warpAffine rounds source positions to 1/32 pixel (INTER_BITS),
    # up to 1/64 px off per axis: at most 2 * 255 / 64 ≈ 8 grey levels at the
    # sharpest edge, plus 1 for rounding (measured with 4.10 on the asset:
    # max 5, mean 0.03).
    max_allowed = 1 if int(cv2.__version__.split(".")[0]) >= 5 else 9
    assert diff.mean() < 0.05, diff.mean()
    assert diff.max() <= max_allowed, diff.max()


# ---------------------------------------------------------------- MP4 writing


def test_written_video_reads_back(tmp_path: Path, face: np.ndarray) -> None:
    cv2 = pytest.importorskip("cv2")
    n_frames = 75
    audio_s = 2.37
    t = np.arange(int(audio_s * SR)) / SR
    audio = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = tmp_path / "clip.mp4"
    write_video_with_audio(path, face_video_frames(face, n_frames=n_frames, fps=FPS), FPS, audio, SR)
    frames, fps, w, h, count = _read_frames(cv2, path)
    assert (w, h) == (640, 480)
    assert fps == pytest.approx(FPS, abs=0.01)
    assert len(frames) == n_frames
    assert count == n_frames
    decoded = _decode_audio(path)
    assert abs(decoded.shape[0] / SR - audio.shape[0] / SR) < 0.1
    # The tone survives AAC: its level matches the input's.
    mid = decoded[SR // 2 : SR * 2]
    assert np.sqrt(np.mean(mid**2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.1)


def test_video_without_audio(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "silent.mp4"
    frames = [np.full((240, 320, 3), i * 8, np.uint8) for i in range(30)]
    write_video_with_audio(path, frames, 15.0, None)
    got, fps, w, h, _ = _read_frames(cv2, path)
    assert (w, h, len(got)) == (320, 240, 30)
    assert fps == pytest.approx(15.0, abs=0.01)


def test_odd_frame_size_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_video_with_audio(tmp_path / "x.mp4", [np.zeros((11, 16, 3), np.uint8)], FPS, None)


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_audio_video_alignment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, codec: str) -> None:
    cv2 = pytest.importorskip("cv2")
    if codec not in av.codecs_available:
        pytest.skip(f"{codec} not in this PyAV build")
    monkeypatch.setattr(synthesis, "_pick_video_codec", lambda: codec)
    flash_t = 2.0
    n_frames = int(4 * FPS)
    flash_idx = round(flash_t * FPS)
    frames = [np.full((480, 640, 3), 30, np.uint8) for _ in range(n_frames)]
    frames[flash_idx][:] = 250
    audio = np.zeros(int(4 * SR), np.float32)
    click = int(flash_t * SR)
    audio[click : click + 32] = 0.9  # short click

    path = tmp_path / "sync.mp4"
    write_video_with_audio(path, frames, FPS, audio, SR)

    got, fps, _, _, _ = _read_frames(cv2, path)
    means = np.array([f.mean() for f in got])
    video_t = int(np.argmax(means)) / fps
    decoded = _decode_audio(path)
    audio_t = int(np.argmax(np.abs(decoded))) / SR
    assert video_t == pytest.approx(flash_t, abs=1e-6)
    assert abs(audio_t - video_t) < 0.05, (audio_t, video_t)


# ---------------------------------------------------------------- committed asset


def test_committed_demo_clip() -> None:
    cv2 = pytest.importorskip("cv2")
    path = ASSETS / "demo.mp4"
    if not path.exists():
        pytest.skip("assets/demo.mp4 not generated (python -m emodesk.lab.assets.demo_clip)")
    assert path.stat().st_size < 1_500_000
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    assert int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 640
    assert int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == 480
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(30.0, abs=0.01)
    n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    cap.release()
    assert 12 * 30 <= n <= 17 * 30
    decoded = _decode_audio(path)
    assert abs(decoded.shape[0] / SR - n / 30.0) < 0.2
    # Speech starts ~1 s in: the lead-in is silent, the rest is not.
    assert np.max(np.abs(decoded[: int(0.8 * SR)])) < 0.02
    assert np.sqrt(np.mean(decoded[SR:] ** 2)) > 0.02
