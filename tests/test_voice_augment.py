"""The voice training augmentation: deterministic, bounded, a real room's decay, and never drawn
like the office simulation the members are tested with."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyroomacoustics")
from emodesk.lab.train.voice import augment as aug

SR = aug.SR


def _speechlike(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """A voiced, syllable-modulated harmonic tone: enough structure for filters and rooms to act on."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.7 * t)
    tone = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / SR) / k for k in range(1, 12))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) ** 2
    return (0.3 * tone * envelope / np.max(np.abs(tone))).astype(np.float32)


def test_a_view_is_a_function_of_the_clip_and_the_view_number() -> None:
    x = _speechlike()
    a, info_a = aug.augment(x, aug.view_rng("Actor_01/a.flac", 0))
    b, info_b = aug.augment(x, aug.view_rng("Actor_01/a.flac", 0))
    c, _ = aug.augment(x, aug.view_rng("Actor_01/a.flac", 1))
    assert np.array_equal(a, b) and info_a == info_b
    assert not np.array_equal(a, c)
    assert a.shape == x.shape and a.dtype == np.float32 and np.all(np.isfinite(a)) and np.abs(a).max() <= 1


def test_views_are_never_drawn_like_the_office_test_set() -> None:
    """The office simulation uses pink noise plus babble, a 150 Hz–6 kHz laptop band and seed 0."""
    x = _speechlike(1.0)
    infos = [aug.augment(x, aug.view_rng(f"clip{i}", v))[1] for i in range(12) for v in range(2)]
    assert {i["noise"] for i in infos} & {"pink", "babble"} == set()
    assert {i["device"] for i in infos} <= {"none", "phone", "headset", "webcam"}  # never the laptop band
    for i in infos:
        assert aug.SNR_DB[0] <= i["snr_db"] <= aug.SNR_DB[1] and aug.RT60_S[0] <= i["rt60_s"] <= aug.RT60_S[1]
        assert 0.3 <= i["distance_m"] <= 3.1
    assert len({i["noise"] for i in infos}) >= 3 and len({i["device"] for i in infos}) >= 3  # they vary
    # seeded apart from the office simulation's default_rng(0)
    office = np.random.default_rng(0).random(4)
    assert not any(np.allclose(aug.view_rng(f"clip{i}", 0).random(4), office) for i in range(12))


def test_the_room_decays_about_as_long_as_asked() -> None:
    """Schroeder backward integration of the impulse response: the −5 to −25 dB slope, extrapolated
    to −60 dB, gives its reverberation time (an image-source room, truncated reflections: ±60%)."""
    for view in range(4):
        rng = aug.view_rng("room", view)
        h, info = aug.room_impulse(rng)
        energy = np.cumsum(h[::-1] ** 2)[::-1]
        edc = 10 * np.log10(energy / energy[0] + 1e-20)
        i5, i25 = np.argmax(edc <= -5), np.argmax(edc <= -25)
        if i25 <= i5:
            continue
        rt60 = 3 * (i25 - i5) / SR
        assert 0.4 * info["rt60_s"] <= rt60 <= 1.6 * info["rt60_s"], (rt60, info)


def test_noise_colours_have_their_slopes() -> None:
    rng = np.random.default_rng(0)
    n = SR * 4
    f = np.fft.rfftfreq(n, 1 / SR)
    low, high = (f > 100) & (f < 400), (f > 3000) & (f < 6000)

    def tilt(x: np.ndarray) -> float:
        p = np.abs(np.fft.rfft(x)) ** 2
        return float(10 * np.log10(p[high].mean() / p[low].mean()))

    assert abs(tilt(aug._colored_noise(n, 0.0, rng))) < 1.5  # white: flat
    assert tilt(aug._colored_noise(n, -2.0, rng)) < -15  # brown: falls
    assert tilt(aug._colored_noise(n, 2.0, rng)) > 15  # violet: rises


def test_a_session_keeps_its_room_and_device_while_the_noise_changes_per_clip() -> None:
    """The clips of one simulated session share a condition; SNR and level jitter stay in range."""
    x = _speechlike(1.0)
    cond = aug.draw_condition(aug.view_rng("session:a", 1))
    a, ia = aug.apply(x, cond, aug.view_rng("clip-a", 1), jitter_db=aug.JITTER_DB)
    b, ib = aug.apply(x, cond, aug.view_rng("clip-b", 1), jitter_db=aug.JITTER_DB)
    same = ("rt60_s", "distance_m", "room_m", "noise", "device")
    assert all(ia[k] == ib[k] for k in same) and not np.array_equal(a, b)
    for info in (ia, ib):
        assert abs(info["snr_db"] - cond.snr_db) <= aug.JITTER_DB + 1e-9
        assert aug.SNR_DB[0] <= info["snr_db"] <= aug.SNR_DB[1]
        assert aug.GAIN_DB[0] <= info["gain_db"] <= aug.GAIN_DB[1]
    other = aug.draw_condition(aug.view_rng("session:b", 1))
    assert other.room != cond.room
