"""Would log-mel and loudness statistics help the voice member? Actor-group CV on RAVDESS 01–20 only.

A study for the model-zoo issue, not a shipped model: it compares the voice
member's features (pooled tiny.en encoder states, from the training cache
``emodesk train voice`` writes) with the same features plus the utterance's
log-mel mean/std (80 + 80) and voiced-loudness statistics (5), using the
training code's own actor-group cross-validation (:func:`select_by_cv`).
The test actors 21–24 are never read.

    python -m emodesk.lab.studies.voice_features.study [--cache build/voice/ckpt/features-tiny.en.npz]
        [--epochs 200] [--prior-weights 5,10,20]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from emodesk.lab.paths import REPO

ROOT = REPO

from emodesk.evaluation.datasets import load_split  # noqa: E402
from emodesk.evaluation.evaluate import read_audio_16k  # noqa: E402
from emodesk.lab.train.voice.train import Split, select_by_cv  # noqa: E402
from emodesk.resources import datasets_dir  # noqa: E402


def mel_loudness_stats(audio: np.ndarray) -> np.ndarray:
    """Log-mel mean/std over the voiced frames (within 35 dB of the loudest) and loudness statistics."""
    from faster_whisper.feature_extractor import FeatureExtractor

    mel = FeatureExtractor()(audio)  # (80, frames), 100 frames a second
    rms = np.sqrt(np.convolve(audio * audio, np.ones(400) / 400, mode="valid")[::160] + 1e-10)
    db = 20 * np.log10(rms + 1e-5)
    voiced = db > db.max() - 35
    n = min(mel.shape[1], len(voiced))
    mv = mel[:, :n][:, voiced[:n]] if voiced[:n].any() else mel
    dv = db[voiced]
    extra = [dv.mean(), dv.std(), np.percentile(dv, 10), np.percentile(dv, 90), voiced.mean()]
    return np.concatenate([mv.mean(axis=1), mv.std(axis=1), extra]).astype(np.float32)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="RAVDESS folder (default: the shared datasets)")
    p.add_argument("--cache", type=Path, default=ROOT / "build/voice/ckpt/features-tiny.en.npz")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--prior-weights", default="5,10,20")
    args = p.parse_args()
    data = args.data or datasets_dir() / "speech" / "ravdess"
    rows = load_split(data, "train") + load_split(data, "val")  # actors 01–20; never the test actors
    with np.load(args.cache) as z:
        cache = dict(zip((str(q) for q in z["paths"]), z["features"], strict=True))
    missing = [r.x for r in rows if r.x not in cache]
    if missing:
        print(f"{len(missing)} clips are not in {args.cache}: run emodesk train voice first", file=sys.stderr)
        return 1
    x = np.stack([cache[r.x] for r in rows])
    extra = np.stack([mel_loudness_stats(read_audio_16k(r.x)) for r in rows])
    y = np.array([r.label for r in rows])
    g = np.array([r.group for r in rows])
    cv = argparse.Namespace(
        cv_folds=6,
        epochs=args.epochs,
        prior_weights=args.prior_weights,
        weight_decay=1e-2,
        lr=1e-3,
        views=8,
        seed=0,
        quiet=True,
    )
    for name, feats in (("encoder", x), ("encoder + log-mel/loudness stats", np.concatenate([x, extra], 1))):
        best, _ = select_by_cv(Split(feats, y, g), cv)
        print(
            f"{name}: CV accuracy {best['cv_accuracy']:.4f}, UAR {best['cv_uar']:.4f} "
            f"(prior weight {best['prior_weight']:g}, {best['epochs']} epochs)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
