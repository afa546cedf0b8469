import numpy as np
import pytest

from emodesk.capture.resample import StreamingResampler, resample


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000, 96000])
def test_tone_survives_resampling_in_phase(rate):
    t = np.arange(rate * 2) / rate
    y = resample(np.sin(2 * np.pi * 440 * t), rate, 16000)
    assert len(y) == 32000
    ref = np.sin(2 * np.pi * 440 * np.arange(len(y)) / 16000)
    assert np.abs(y[300:-300] - ref[300:-300]).max() < 1e-3


@pytest.mark.parametrize("rate", [44100, 48000])
def test_chunked_equals_whole(rate):
    x = np.random.default_rng(0).standard_normal(rate).astype(np.float32)
    r = StreamingResampler(rate)
    chunked = np.concatenate([r.process(x[i : i + 441]) for i in range(0, len(x), 441)])
    whole = StreamingResampler(rate).process(x)
    n = min(len(chunked), len(whole))
    assert n > 15000
    assert np.abs(chunked[:n] - whole[:n]).max() < 1e-4


def test_content_above_8khz_is_removed():
    t = np.arange(48000) / 48000
    y = resample(np.sin(2 * np.pi * 11000 * t), 48000)
    assert np.sqrt(np.mean(y[500:-500] ** 2)) < 0.01  # would alias to 5 kHz otherwise
