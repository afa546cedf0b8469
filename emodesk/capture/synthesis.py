"""Synthesise test/demo media from redistributable material.

Why: emodesk needs face video and speech audio for tests and the demo, but
recordings of real people are not freely redistributable.  Everything here is
generated from public-domain images and ``espeak-ng`` speech, so the results
can be committed and regenerated bit-for-bit on any machine with the same tools.

Only numpy, av (PyAV) and subprocess are used at run time (soundfile is
imported lazily by :func:`write_wav`); the mask, blur and placement that used
OpenCV are done in NumPy so the app bundle need not carry it.
"""

from __future__ import annotations

import math
import shutil
import struct
import subprocess
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np

from emodesk.capture.resample import resample

__all__ = [
    "face_video_frames",
    "speak",
    "write_video_with_audio",
    "write_wav",
]

Color = tuple[int, int, int]

#: Top and bottom colours (BGR) of the default vertical gradient background.
DEFAULT_BACKGROUND: tuple[Color, Color] = ((92, 78, 64), (168, 160, 150))


# --------------------------------------------------------------------------
# Speech
# --------------------------------------------------------------------------


def speak(
    text: str,
    *,
    sample_rate: int = 16000,
    voice: str = "en-us",
    words_per_minute: int = 150,
    word_gap_ms: int = 0,
) -> np.ndarray:
    """Render ``text`` with espeak-ng; mono float32 in [-1, 1] at ``sample_rate``.

    Why espeak-ng: it is deterministic, offline and its output is free to
    redistribute, so synthetic speech can stand in for recorded voices.
    """
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise FileNotFoundError("espeak-ng binary not found; install it with `apt install espeak-ng`")
    proc = subprocess.run(
        [
            exe,
            "--stdout",
            "-v",
            voice,
            "-s",
            str(int(words_per_minute)),
            "-g",
            str(max(0, int(word_gap_ms)) // 10),
            "--",
            text,
        ],
        check=True,
        capture_output=True,
    )
    audio, src_rate = _decode_wav_bytes(proc.stdout)
    if src_rate != sample_rate:
        audio = resample(audio, src_rate, sample_rate)
    return np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False)


def _decode_wav_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """Parse a PCM WAV byte string into mono float32 and its sample rate.

    Why hand-rolled: espeak-ng's ``--stdout`` writes a streaming WAV whose
    RIFF/data sizes are placeholders (~2 GiB), which strict readers reject.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("espeak-ng did not produce a RIFF/WAVE stream")
    pos = 12
    channels = rate = bits = fmt_tag = None
    while pos + 8 <= len(data):
        cid, size = struct.unpack("<4sI", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + size]  # clipped to what actually exists
        if cid == b"fmt ":
            fmt_tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
        elif cid == b"data":
            if channels is None or rate is None or bits is None:
                raise ValueError("WAV data chunk before fmt chunk")
            if fmt_tag not in (1, 0xFFFE) or bits != 16:
                raise ValueError(f"unsupported WAV format tag={fmt_tag} bits={bits}")
            n = len(body) // (2 * channels) * channels
            pcm = np.frombuffer(body[: n * 2], dtype="<i2").astype(np.float32) / 32768.0
            pcm = pcm.reshape(-1, channels).mean(axis=1)
            return pcm.astype(np.float32), int(rate)
        pos += 8 + size + (size & 1)
    raise ValueError("WAV stream has no data chunk")


# --------------------------------------------------------------------------
# Video frames
# --------------------------------------------------------------------------


def _background(size: tuple[int, int], background: Color | tuple[Color, Color]) -> np.ndarray:
    """Plain colour or vertical gradient canvas; a gradient gives encoders and
    detectors a realistic, non-degenerate backdrop."""
    w, h = size
    bg = np.asarray(background, dtype=np.float32)
    if bg.shape == (3,):
        return np.broadcast_to(bg.astype(np.uint8), (h, w, 3)).copy()
    if bg.shape != (2, 3):
        raise ValueError("background must be a BGR triple or a pair of them")
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    col = bg[0][None, None, :] * (1.0 - t) + bg[1][None, None, :] * t
    return np.broadcast_to(np.rint(col).astype(np.uint8), (h, w, 3)).copy()


#: OpenCV's fixed kernels (in 256ths) for ksize 3 to 9 when sigma is 0;
#: larger sizes follow its sigma formula below.
_SMALL_GAUSSIANS = {
    3: (64, 128, 64),
    5: (16, 64, 96, 64, 16),
    7: (8, 28, 56, 72, 56, 28, 8),
    9: (4, 13, 30, 51, 60, 51, 30, 13, 4),
}


def _gaussian_kernel(k: int) -> np.ndarray:
    """1-D Gaussian of odd size ``k`` with OpenCV's sigma-0 rule, so the mask
    feathers as it did with ``cv2.GaussianBlur(mask, (k, k), 0)``."""
    if k in _SMALL_GAUSSIANS:
        return np.array(_SMALL_GAUSSIANS[k]) / 256.0
    sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8
    x = np.arange(k) - (k - 1) / 2
    g = np.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def _blur(img: np.ndarray, k: int) -> np.ndarray:
    """Separable Gaussian blur with mirrored borders (OpenCV's BORDER_REFLECT_101)."""
    g = _gaussian_kernel(k)
    rad = k // 2
    h, w = img.shape
    padded = np.pad(img.astype(np.float64), rad, mode="reflect")
    rows = sum(g[i] * padded[:, i : i + w] for i in range(k))
    out = sum(g[i] * rows[i : i + h] for i in range(k))
    return np.asarray(out, dtype=np.float32)


def _feather_mask(h: int, w: int) -> np.ndarray:
    """Rounded-rectangle alpha with soft edges so the pasted photo blends in."""
    r = max(2, min(h, w) // 8)
    inset = max(2, min(h, w) // 40)
    # Pixels within r of the rectangle spanned by the corner-circle centres.
    # Hard-edged, as cv2.circle drew it on a float mask (it ignores LINE_AA
    # there); the blur below does the feathering.
    ys = np.arange(h)[:, None]
    xs = np.arange(w)[None, :]
    dy = np.maximum(np.maximum(inset + r - ys, ys - (h - 1 - inset - r)), 0)
    dx = np.maximum(np.maximum(inset + r - xs, xs - (w - 1 - inset - r)), 0)
    mask = (dx * dx + dy * dy <= r * r).astype(np.float32)
    k = max(3, (min(h, w) // 16) | 1)
    return _blur(mask, k)


def _axis_taps(n_dst: int, n_src: int, scale: float, offset: float) -> tuple[slice, np.ndarray, np.ndarray]:
    """Bilinear taps along one axis for ``dst = src * scale + offset``.

    Returns the span of destination pixels the source touches, and for each
    the first of its two source indices (into a source padded by one zero
    pixel, so edges fade to zero as with BORDER_CONSTANT) and the weight of
    the second.
    """
    src = (np.arange(n_dst) - offset) / scale
    inside = np.flatnonzero((src > -1.0) & (src < n_src))
    if inside.size == 0:
        return slice(0, 0), np.zeros(0, np.intp), np.zeros(0, np.float32)
    lo, hi = int(inside[0]), int(inside[-1]) + 1
    src = src[lo:hi]
    first = np.floor(src)
    return slice(lo, hi), first.astype(np.intp) + 1, (src - first).astype(np.float32)


def _paste(frame: np.ndarray, layers: np.ndarray, scale: float, tx: float, ty: float) -> None:
    """Alpha-blend ``layers`` into ``frame`` at ``dst = src * scale + (tx, ty)``, in place.

    ``frame`` is channel-first BGR float32 ``(3, H, W)``; ``layers`` is
    channel-first BGR + alpha ``(4, h + 2, w + 2)`` with a zero border.
    Why by hand: with no rotation, bilinear interpolation splits into a pass
    over rows and one over columns, and only the face's bounding box is
    touched, which is faster than two full-frame ``cv2.warpAffine`` calls.
    Channel-first keeps the per-row and per-pixel weights broadcasting over
    contiguous memory.
    """
    fh, fw = layers.shape[1] - 2, layers.shape[2] - 2
    rows, ry, wy = _axis_taps(frame.shape[1], fh, scale, ty)
    cols, cx, wx = _axis_taps(frame.shape[2], fw, scale, tx)
    if ry.size == 0 or cx.size == 0:
        return
    # a + (b - a) * w, in place: fewer large temporaries per frame.
    band = layers[:, ry]
    step = layers[:, ry + 1]
    step -= band
    step *= wy[:, None]
    band += step
    patch = np.take(band, cx, axis=2)
    step = np.take(band, cx + 1, axis=2)
    step -= patch
    step *= wx
    patch += step
    region = frame[:, rows, cols]
    step = patch[:3] - region
    step *= patch[3]
    region += step


def face_video_frames(
    face: np.ndarray,
    *,
    n_frames: int,
    size: tuple[int, int] = (640, 480),
    fps: float = 30.0,
    faces: int = 1,
    background: Color | tuple[Color, Color] = DEFAULT_BACKGROUND,
) -> Iterator[np.ndarray]:
    """Yield BGR uint8 frames of ``faces`` face copies drifting and zooming slowly.

    Why: face trackers and per-face emotion smoothing need boxes that move
    smoothly over time; this stands in for a webcam without a real person.
    ``size`` is (width, height).  The second face copy is mirrored so two
    faces are distinguishable.  Motion is deterministic (a function of the
    frame index and ``fps`` only).
    """
    if face.ndim != 3 or face.shape[2] != 3 or face.dtype != np.uint8:
        raise ValueError("face must be a BGR uint8 image of shape (h, w, 3)")
    if faces < 1:
        raise ValueError("faces must be >= 1")
    w, h = int(size[0]), int(size[1])
    canvas = np.ascontiguousarray(_background((w, h), background).transpose(2, 0, 1), dtype=np.float32)
    fh, fw = face.shape[:2]

    # Nominal on-screen face-image height: ~60 % of the frame for one face,
    # shrinking so that several copies side by side still fit.
    # Drift amplitudes keep neighbouring copies from overlapping.
    slot_w = w / faces
    width_frac = 0.82 if faces == 1 else 0.7
    drift_x = 0.12 if faces == 1 else 0.08
    base_h = min(0.6 * h, width_frac * slot_w * fh / fw)
    base_scale = base_h / fh

    # Each copy as one BGR + alpha stack with a zero border, so one
    # interpolation places photo and mask together (see _paste).
    mask = _feather_mask(fh, fw)
    sources = []
    for i in range(faces):
        img = face if i % 2 == 0 else face[:, ::-1]
        layers = np.zeros((4, fh + 2, fw + 2), dtype=np.float32)
        layers[:3, 1:-1, 1:-1] = img.transpose(2, 0, 1)
        layers[3, 1:-1, 1:-1] = mask
        sources.append(layers)

    fps = float(fps)
    frame = np.empty_like(canvas)  # reused: each yield is a fresh uint8 copy
    for n in range(int(n_frames)):
        t = n / fps
        np.copyto(frame, canvas)
        for i, layers in enumerate(sources):
            phase = 1.7 * i
            # Slow drift (periods of ~7-11 s) and a gentle ±6 % zoom.
            zoom = 1.0 + 0.06 * math.sin(2 * math.pi * t / 9.0 + phase)
            scale = base_scale * zoom
            cx = slot_w * (i + 0.5) + drift_x * slot_w * math.sin(2 * math.pi * t / 11.0 + phase)
            cy = 0.5 * h + 0.07 * h * math.sin(2 * math.pi * t / 7.0 + 0.5 + phase)
            _paste(frame, layers, scale, cx - scale * fw / 2.0, cy - scale * fh / 2.0)
        np.rint(frame, out=frame)
        np.clip(frame, 0, 255, out=frame)
        yield frame.transpose(1, 2, 0).astype(np.uint8, order="C")


# --------------------------------------------------------------------------
# Writing files
# --------------------------------------------------------------------------


def _pick_video_codec() -> str:
    """Prefer H.264 (small, universally readable); fall back to MPEG-4 Part 2."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def _fps_fraction(fps: float) -> Fraction:
    """Rational frame rate for the stream (30.0 -> 30/1, 30000/1001 stays exact)."""
    return Fraction(fps).limit_denominator(1001)


def write_video_with_audio(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float,
    audio: np.ndarray | None,
    sample_rate: int = 16000,
) -> None:
    """Write BGR frames (+ optional mono audio) to an MP4 aligned at t=0.

    Why PyAV: cv2.VideoWriter cannot mux audio, and both streams must share
    one timeline so lip/voice/text emotion fusion can be tested for sync.
    Video is H.264 (``libx264``, yuv420p, crf 28) or ``mpeg4`` when the PyAV
    build lacks libx264; audio is AAC mono.  Frame sizes must be even.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = _fps_fraction(fps)
    codec = _pick_video_codec()

    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        # Fixed time bases: the muxer rewrites stream.time_base once the header
        # is written (mp4 uses e.g. 1/15360), so frames must not read it back.
        video_tb = Fraction(1, 1) / rate
        audio_tb = Fraction(1, int(sample_rate))
        vstream = None
        astream = None
        frame_iter = iter(frames)
        first = next(frame_iter, None)
        if first is not None:
            h, w = first.shape[:2]
            if w % 2 or h % 2:
                raise ValueError("frame width and height must be even for yuv420p")
            vstream = cast("av.VideoStream", container.add_stream(codec, rate=rate))
            vstream.width = w
            vstream.height = h
            vstream.pix_fmt = "yuv420p"
            vstream.time_base = video_tb
            vstream.codec_context.time_base = video_tb
            if codec == "libx264":
                vstream.options = {
                    "crf": "28",
                    "preset": "medium",
                    # Single-threaded x264 keeps the bitstream reproducible.
                    "threads": "1",
                    "x264-params": "keyint=60:min-keyint=30:scenecut=0",
                }
            else:
                vstream.bit_rate = 1_000_000
                vstream.gop_size = 60
                vstream.thread_count = 1

        if audio is not None:
            astream = cast("av.AudioStream", container.add_stream("aac", rate=int(sample_rate)))
            astream.layout = "mono"
            astream.bit_rate = 64_000
            astream.time_base = audio_tb

        # Interleave: after each video frame, encode the audio up to its end
        # time, so the muxer never has to buffer one stream far ahead.
        samples = np.zeros(0, dtype=np.float32)
        if astream is not None:
            assert audio is not None
            samples = np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0)
        audio_pos = 0
        block = 1024

        def push_audio(until: int) -> None:
            nonlocal audio_pos
            assert astream is not None
            until = min(until, samples.shape[0])
            while audio_pos < until:
                end = min(audio_pos + block, samples.shape[0])
                chunk = np.ascontiguousarray(samples[audio_pos:end][None, :])
                af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                af.sample_rate = int(sample_rate)
                af.pts = audio_pos
                af.time_base = audio_tb
                for packet in astream.encode(af):
                    container.mux(packet)
                audio_pos = end

        if vstream is not None:
            assert first is not None
            for i, img in enumerate(_chain_first(first, frame_iter)):
                if img.shape != (vstream.height, vstream.width, 3) or img.dtype != np.uint8:
                    raise ValueError(
                        f"frame {i} is {img.shape}/{img.dtype}, "
                        f"expected uint8 ({vstream.height}, {vstream.width}, 3)"
                    )
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
                vf.pts = i
                vf.time_base = video_tb
                for packet in vstream.encode(vf):
                    container.mux(packet)
                if astream is not None:
                    push_audio(math.ceil((i + 1) / rate * int(sample_rate)))
            for packet in vstream.encode(None):
                container.mux(packet)

        if astream is not None:
            push_audio(samples.shape[0])
            for packet in astream.encode(None):
                container.mux(packet)


def _chain_first(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """Re-attach the frame peeked at to learn the stream size."""
    yield first
    yield from rest


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write mono audio as 16-bit PCM WAV; a lossless companion to the MP4."""
    import soundfile as sf  # lazy: only needed when WAVs are written

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    sf.write(str(path), data, int(sample_rate), subtype="PCM_16")
