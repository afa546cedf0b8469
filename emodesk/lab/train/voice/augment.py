"""Training augmentation toward a real room and device, disjoint from the office simulation the
voice members are tested with (:mod:`emodesk.lab.assets.office_ravdess`).

A person at a desk is heard through a room and a device, not a studio microphone. Each
augmented view of a clip passes it through a simulated room, adds noise, band-limits it like a
device and changes its level. None of these is drawn the way the office test set is, so the
test set stays an honest measurement of conditions the member never trained on:

=========  ==========================================  =============================================
           office test simulation                      training augmentation (here)
=========  ==========================================  =============================================
room       one-band exponential-noise tail right       shoebox rooms 2.5–9 × 2.5–7 × 2.3–3.5 m: early
           after the direct path, RT60 0.3–0.6 s       reflections by image sources (pyroomacoustics),
                                                       a four-band diffuse tail (highs die sooner) at
                                                       the level the critical distance gives; RT60
                                                       0.15–1.0 s, talker 0.4–3 m away
noise      pink noise + 4-talker babble, 5–20 dB SNR   white, brown, blue or violet noise, mains hum
                                                       with harmonics, or a fan's band noise; no pink,
                                                       no speech; 0–30 dB SNR
device     laptop: high-pass 150 Hz, low-pass 6 kHz    phone 300–3,400 Hz (+ 8-bit μ-law), headset
                                                       80–7,500 Hz, webcam 200–5,000 Hz with a
                                                       resonance, or none
level      −12..+6 dB around a 0.3 peak                −20..+10 dB around a 0.3 peak, clipped at ±1
seeds      ``default_rng(0)``                          ``SeedSequence(AUG_ENTROPY, spawn_key=…)`` per
                                                       clip and view
=========  ==========================================  =============================================

Deterministic: the same clip key and view give the same audio (:func:`view_rng`).
Needs the ``train`` extra (pyroomacoustics, scipy).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SR = 16000
#: the entropy of every augmentation seed: a number the office simulation (seed 0) never uses
AUG_ENTROPY = 0x5EED_A06E_7A71
NOISE_KINDS = ("white", "brown", "blue", "violet", "hum", "fan")
DEVICES = ("none", "phone", "headset", "webcam")
SNR_DB = (0.0, 30.0)
GAIN_DB = (-20.0, 10.0)
RT60_S = (0.15, 1.0)
#: the per-clip SNR and level jitter inside a session's condition (dB)
JITTER_DB = 3.0


def view_rng(clip_key: str, view: int) -> np.random.Generator:
    """The generator of one augmented view: a function of the clip (its path) and the view number."""
    digest = int.from_bytes(hashlib.sha256(clip_key.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng(np.random.SeedSequence(AUG_ENTROPY, spawn_key=(digest, view)))


def _colored_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Noise whose power spectrum goes as f^exponent (0 white, −2 brown, 1 blue, 2 violet)."""
    spec = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, 1 / SR)
    f[0] = f[1] if n > 2 else 1.0
    spec *= f ** (exponent / 2)
    spec[0] = 0
    x = np.fft.irfft(spec, n)
    return x / (np.std(x) + 1e-12)


def _hum(n: int, rng: np.random.Generator) -> np.ndarray:
    mains = float(rng.choice([50.0, 60.0])) * rng.uniform(0.995, 1.005)
    t = np.arange(n) / SR
    x = sum(
        rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 2 * np.pi))
        for k in range(1, 6)
    )
    x = np.asarray(x) + 0.05 * rng.normal(size=n)
    return x / (np.std(x) + 1e-12)


def _fan(n: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    lo = rng.uniform(80, 300)
    sos = butter(2, [lo, lo * rng.uniform(3, 8)], btype="bandpass", fs=SR, output="sos")
    x = sosfilt(sos, rng.normal(size=n))
    return x / (np.std(x) + 1e-12)


_NOISES: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "white": lambda n, rng: _colored_noise(n, 0.0, rng),
    "brown": lambda n, rng: _colored_noise(n, -2.0, rng),
    "blue": lambda n, rng: _colored_noise(n, 1.0, rng),
    "violet": lambda n, rng: _colored_noise(n, 2.0, rng),
    "hum": _hum,
    "fan": _fan,
}


#: the late tail's decay per band, relative to the room's RT60: walls and air absorb highs sooner
_TAIL_BANDS = ((0.0, 500.0, 1.1), (500.0, 2000.0, 1.0), (2000.0, 4000.0, 0.85), (4000.0, 8000.0, 0.65))


def _late_tail(n: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A diffuse late tail of unit energy: band-limited noise decaying to −60 dB at each band's RT60."""
    from scipy.signal import butter, sosfilt

    t = np.arange(n) / SR
    tail = np.zeros(n)
    for lo, hi, factor in _TAIL_BANDS:
        if lo == 0.0:
            sos = butter(4, hi, btype="lowpass", fs=SR, output="sos")
        elif hi >= SR / 2:
            sos = butter(4, lo, btype="highpass", fs=SR, output="sos")
        else:
            sos = butter(4, [lo, hi], btype="bandpass", fs=SR, output="sos")
        tail += sosfilt(sos, rng.normal(size=n)) * np.exp(-6.9 * t / (rt60 * factor))
    return tail / (np.sqrt(np.sum(tail**2)) + 1e-12)


def room_impulse(rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """A shoebox room's impulse response, normalised to a unit peak: the direct path and the early
    reflections by the image-source method (pyroomacoustics, order 3), then a diffuse late tail
    whose level follows the room's critical distance (direct-to-reverberant energy (r_c / r)²,
    r_c = 0.057·√(V / RT60)). Image sources alone, cut at a practical order, die out long before
    the RT60 asked for; pyroomacoustics' ray tracer would not, but it is not seeded: the tail is
    drawn from ``rng`` so a view stays a function of its seed."""
    import pyroomacoustics as pra

    dims = np.array([rng.uniform(2.5, 9.0), rng.uniform(2.5, 7.0), rng.uniform(2.3, 3.5)])
    rt60 = float(rng.uniform(*RT60_S))
    try:
        absorption, _ = pra.inverse_sabine(rt60, dims)
    except ValueError:  # a reverberation time this room cannot have: the most absorbing walls
        absorption = 0.99
    room = pra.ShoeBox(dims, fs=SR, materials=pra.Material(float(absorption)), max_order=3)
    mic = np.array([rng.uniform(0.5, d - 0.5) for d in dims[:2]] + [rng.uniform(0.9, 1.4)])
    for _ in range(100):  # a talker 0.4–3 m away, inside the room
        direction = rng.normal(size=3)
        direction[2] *= 0.2
        src = mic + direction / np.linalg.norm(direction) * rng.uniform(0.4, 3.0)
        if np.all(src > 0.2) and np.all(src < dims - 0.2):
            break
    else:
        src = dims / 2
    room.add_source(src)
    room.add_microphone(mic)
    room.compute_rir()
    early = np.asarray(room.rir[0][0], dtype=np.float64)
    distance = float(np.linalg.norm(src - mic))
    onset = int(np.argmax(np.abs(early)))  # the direct path
    direct_energy = float(np.sum(early[max(0, onset - 40) : onset + 40] ** 2))
    r_c = 0.057 * np.sqrt(float(np.prod(dims)) / rt60)
    n_tail = int(1.2 * rt60 * SR)
    tail = _late_tail(n_tail, rt60, rng) * np.sqrt(direct_energy * (distance / r_c) ** 2)
    start = onset + int(0.005 * SR)  # the diffuse field builds up after the first reflections
    h = np.zeros(max(len(early), start + n_tail))
    h[: len(early)] = early
    h[start : start + n_tail] += tail
    h /= np.max(np.abs(h)) + 1e-12
    return h, {"rt60_s": rt60, "distance_m": distance, "room_m": [float(d) for d in dims]}


def _device(x: np.ndarray, name: str, resonance_hz: float) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    if name == "none":
        return x
    band = {"phone": (300.0, 3400.0), "headset": (80.0, 7500.0), "webcam": (200.0, 5000.0)}[name]
    y = sosfilt(butter(4, band, btype="bandpass", fs=SR, output="sos"), x)
    if name == "webcam":  # a small capsule's resonance
        f0 = resonance_hz
        y = y + 0.6 * sosfilt(butter(2, [f0 / 1.2, f0 * 1.2], btype="bandpass", fs=SR, output="sos"), y)
    if name == "phone":  # 8-bit μ-law, as a narrowband line codes it
        mu = 255.0
        peak = np.max(np.abs(y)) + 1e-12
        c = np.sign(y / peak) * np.log1p(mu * np.abs(y / peak)) / np.log1p(mu)
        c = np.round(c * 127) / 127
        y = np.sign(c) * np.expm1(np.abs(c) * np.log1p(mu)) / mu * peak
    return np.asarray(y)


@dataclass(frozen=True)
class Condition:
    """Where and through what a session is heard: one room, noise kind, device and level.

    A live session keeps its room and microphone, so the training sessions do too: every clip of
    one simulated session shares a condition, and only the noise itself and small SNR and level
    jitters (±:data:`JITTER_DB`) are drawn per clip."""

    impulse: np.ndarray = field(repr=False)
    room: dict[str, Any]
    noise: str
    snr_db: float
    device: str
    resonance_hz: float
    gain_db: float

    def info(self) -> dict[str, Any]:
        return {
            **self.room,
            "noise": self.noise,
            "snr_db": self.snr_db,
            "device": self.device,
            "gain_db": self.gain_db,
        }


def draw_condition(rng: np.random.Generator) -> Condition:
    """A session's room, noise kind, device and level."""
    h, room = room_impulse(rng)
    return Condition(
        impulse=h,
        room=room,
        noise=str(rng.choice(NOISE_KINDS)),
        snr_db=float(rng.uniform(*SNR_DB)),
        device=str(rng.choice(DEVICES)),
        resonance_hz=float(rng.uniform(2000, 4000)),
        gain_db=float(rng.uniform(*GAIN_DB)),
    )


def apply(
    audio: np.ndarray, condition: Condition, rng: np.random.Generator, *, jitter_db: float = 0.0
) -> tuple[np.ndarray, dict[str, Any]]:
    """``audio`` heard in ``condition``; the noise sample (and any SNR and level jitter, uniform in
    ±``jitter_db``, kept inside the ranges) drawn from ``rng``."""
    from scipy.signal import oaconvolve

    x = np.asarray(audio, dtype=np.float64)
    n = len(x)
    y = oaconvolve(x, condition.impulse)[:n]
    snr = float(np.clip(condition.snr_db + rng.uniform(-jitter_db, jitter_db), *SNR_DB))
    noise = _NOISES[condition.noise](n, rng)
    speech_power = np.mean(y**2) + 1e-12
    y = y + noise * np.sqrt(speech_power / 10 ** (snr / 10))
    y = _device(y, condition.device, condition.resonance_hz)
    gain = float(np.clip(condition.gain_db + rng.uniform(-jitter_db, jitter_db), *GAIN_DB))
    y = y * (0.3 / (np.max(np.abs(y)) + 1e-12)) * 10 ** (gain / 20)
    y = np.clip(y, -1.0, 1.0)
    return y.astype(np.float32), {**condition.info(), "snr_db": snr, "gain_db": gain}


def augment(audio: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """One augmented view of ``audio`` (16 kHz mono float32) in a condition of its own, and what was
    done to it."""
    return apply(audio, draw_condition(rng), rng)
