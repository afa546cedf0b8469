#!/usr/bin/env python
"""A folder of generated video-with-speech files for batch runs (``analyze`` over many inputs, its
engines and its throughput), from material the project may redistribute.

Each clip shows the public-domain astronaut face of ``assets/face_astronaut.png`` (one or two
copies, drifting and zooming: ``capture.synthesis.face_video_frames``) on its own background, and
speaks three to five sentences written here with espeak-ng (GPL-3 program; its output is free to
use) in one of several English voices and speeds. Deterministic for a seed and the tool versions.

    python -m emodesk.lab.assets.batch_corpus --out build/batch-corpus [--n 20] [--seed 0]

Needs the ``espeak-ng`` binary. Nothing here is committed: the script makes the folder again.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from emodesk.capture.synthesis import face_video_frames, speak, write_video_with_audio
from emodesk.imaging import read_image
from emodesk.lab.paths import REPO
from emodesk.resources import assets_dir

SR = 16000
FPS = 15.0
SIZE = (480, 360)
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp")
SENTENCES = (
    "I am so happy to see you today.",
    "This is so frustrating, nothing works.",
    "Oh wow, I did not expect that at all!",
    "I feel so sad and tired now.",
    "Please put the report on my desk before noon.",
    "That smell is disgusting, close the window.",
    "I am scared of what might happen next.",
    "We finished the project and everyone cheered.",
    "The meeting moved to Thursday afternoon.",
    "Why would anyone do something so stupid?",
    "Thank you, this really made my day.",
    "I do not think I can go on like this.",
)
BACKGROUNDS = (
    ((40, 40, 40), (90, 90, 90)),
    ((120, 80, 40), (200, 160, 120)),
    ((30, 60, 30), (90, 140, 90)),
    ((60, 30, 60), (150, 110, 150)),
    ((20, 40, 80), (80, 120, 200)),
)


def make_clip(path: Path, rng: np.random.Generator, face: np.ndarray) -> dict[str, object]:
    voice = str(rng.choice(VOICES))
    wpm = int(rng.integers(130, 170))
    chosen = [str(s) for s in rng.choice(SENTENCES, size=int(rng.integers(3, 6)), replace=False)]
    parts = [np.zeros(int(rng.uniform(0.5, 1.5) * SR), np.float32)]
    for s in chosen:
        x = speak(s, sample_rate=SR, voice=voice, words_per_minute=wpm, word_gap_ms=60)
        peak = max(float(np.max(np.abs(x))), 1e-6)
        parts += [(x * (float(rng.uniform(0.4, 0.9)) / peak)).astype(np.float32)]
        parts.append(np.zeros(int(rng.uniform(0.8, 2.0) * SR), np.float32))
    audio = np.concatenate(parts)
    faces = int(rng.choice([1, 1, 1, 2]))
    bg = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    n = int(len(audio) / SR * FPS)
    frames = face_video_frames(face, n_frames=n, size=SIZE, fps=FPS, faces=faces, background=bg)
    write_video_with_audio(path, frames, FPS, audio, SR)
    return {
        "file": path.name,
        "seconds": round(len(audio) / SR, 2),
        "voice": voice,
        "wpm": wpm,
        "faces": faces,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "build" / "batch-corpus")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    face = read_image(assets_dir() / "face_astronaut.png", gray=False)
    if face is None:
        raise SystemExit("assets/face_astronaut.png is missing")
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    t0 = time.monotonic()
    total = 0.0
    for i in range(args.n):
        info = make_clip(args.out / f"clip{i:02d}.mp4", rng, face)
        total += float(info["seconds"])  # type: ignore[arg-type]
        print(info, flush=True)
    print(f"{args.n} clips, {total:.0f} s of media in {time.monotonic() - t0:.0f} s → {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
