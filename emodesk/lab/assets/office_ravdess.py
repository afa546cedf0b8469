"""Build "RAVDESS-office": the RAVDESS test actors as a laptop in an office would hear them.

A second voice corpus is not available offline, so this builds the nearest
honest stand-in for "a microphone in an office is not a recording studio":
each test clip (actors 21–24 only; never used for training or selection) is

1. convolved with a synthetic room impulse response (exponentially decaying
   noise, RT60 drawn in 0.3–0.6 s, 5 ms pre-delay, direct path kept);
2. band-limited like a laptop microphone (2nd-order high-pass at 150 Hz,
   low-pass at 6 kHz);
3. mixed with office noise at an SNR drawn in 5–20 dB: pink noise plus
   "babble" — four clips of *training* actors summed, so the noise is speech
   but never the test speaker;
4. gain-shifted by −12…+6 dB (a microphone level nobody set), then clipped to
   [−1, 1].

Seeded: the same command writes the same files. Output: FLAC files and
``test.csv`` (``path,label,group``; group = the actor, one live session each)
for ``emodesk eval voice --manifest OUT/test.csv``.

    python -m emodesk.lab.assets.office_ravdess [--data DIR] [--out build/ravdess-office]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from emodesk.evaluation.datasets import load_split
from emodesk.evaluation.evaluate import read_audio_16k
from emodesk.lab.paths import REPO
from emodesk.labels import LABELS

SR = 16000


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, 1 / SR)
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    x = np.fft.irfft(spec, n)
    return x / (np.std(x) + 1e-12)


def room_response(rng: np.random.Generator) -> np.ndarray:
    rt60 = rng.uniform(0.3, 0.6)
    n = int(rt60 * SR)
    t = np.arange(n) / SR
    tail = rng.normal(size=n) * np.exp(-6.9 * t / rt60)  # −60 dB at rt60
    h = np.zeros(n + int(0.005 * SR))
    h[0] = 1.0
    h[int(0.005 * SR) :] += 0.5 * tail / np.sqrt(np.sum(tail**2))
    return h


def laptop_mic(x: np.ndarray) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    sos = np.vstack(
        [butter(2, 150, "highpass", fs=SR, output="sos"), butter(4, 6000, "lowpass", fs=SR, output="sos")]
    )
    return sosfilt(sos, x)


def degrade(clean: np.ndarray, babble: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    x = np.convolve(clean, room_response(rng))[: len(clean)]
    x = laptop_mic(x)
    noise = pink_noise(len(x), rng)
    b = np.zeros(len(x))
    for clip in babble:
        start = rng.integers(0, max(1, len(clip) - len(x))) if len(clip) > len(x) else 0
        seg = clip[start : start + len(x)]
        b[: len(seg)] += seg
    b /= np.std(b) + 1e-12
    n = laptop_mic(0.5 * noise + b)
    snr_db = rng.uniform(5, 20)
    p_sig, p_noise = np.mean(x**2), np.mean(n**2) + 1e-12
    x = x + n * np.sqrt(p_sig / (p_noise * 10 ** (snr_db / 10)))
    x *= 10 ** (rng.uniform(-12, 6) / 20) * 0.3 / (np.max(np.abs(x)) + 1e-12)
    return np.clip(x, -1, 1).astype(np.float32)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "speech" / "ravdess")
    ap.add_argument("--out", type=Path, default=REPO / "build" / "ravdess-office")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import soundfile as sf

    rng = np.random.default_rng(args.seed)
    test = load_split(args.data, "test")
    train = load_split(args.data, "train")
    pool = [train[i] for i in rng.choice(len(train), size=40, replace=False)]
    babble_src = [read_audio_16k(r.x).astype(np.float64) for r in pool]
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "test.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "group"])
        for r in test:
            clean = read_audio_16k(r.x).astype(np.float64)
            babble = [babble_src[i] for i in rng.choice(len(babble_src), size=4, replace=False)]
            out = args.out / Path(r.x).with_suffix(".flac").name
            sf.write(out, degrade(clean, babble, rng), SR)
            w.writerow([out.name, LABELS[r.label], r.group])
    print(f"wrote {len(test)} clips and {args.out / 'test.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
