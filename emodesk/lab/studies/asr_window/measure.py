"""Measure the short-window whisper decoding against the standard 30 s window.

    python -m emodesk.lab.studies.asr_window.measure [--every 12] [--json OUT]

On RAVDESS speech (every N-th clip of ../shared/datasets/speech/ravdess; the
two statements are known from the file names) it transcribes each clip with
``Transcriber(min_context_s=10)`` (the default) and ``min_context_s=None``
(faster-whisper's 30 s window), one CPU thread, and reports word error rate
and milliseconds per clip for both. ``emodesk/speech/asr.py`` quotes its output.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from emodesk.capture.files import AudioFileSource
from emodesk.resources import datasets_dir
from emodesk.speech.asr import Transcriber

STATEMENTS = {"01": "kids are talking by the door", "02": "dogs are sitting by the door"}


def _words(text: str) -> list[str]:
    return "".join(c if c.isalnum() or c.isspace() else " " for c in text.lower()).split()


def _edits(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def _audio(path: Path) -> Any:
    src = AudioFileSource(path, chunk_s=10.0)
    src.open()
    try:
        import numpy as np

        return np.concatenate([c.samples for c in iter(src.read, None)])
    finally:
        src.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--every", type=int, default=12)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    root = datasets_dir() / "speech" / "ravdess"
    clips = sorted(root.glob("Actor_*/*.flac"))[:: args.every]
    if not clips:
        raise SystemExit(f"no RAVDESS clips under {root} (set EMODESK_DATA)")
    audio = [(_audio(p), STATEMENTS[p.stem.split("-")[4]]) for p in clips]
    report: dict[str, dict[str, float]] = {}
    for name, ctx in (("short window (min 10 s)", 10.0), ("30 s window", None)):
        asr = Transcriber(min_context_s=ctx, cpu_threads=1)
        asr.warm_up()
        errs = words = 0
        t0 = time.perf_counter()
        for x, ref in audio:
            r = _words(ref)
            errs += _edits(r, _words(asr.transcribe(x)))
            words += len(r)
        ms = (time.perf_counter() - t0) / len(audio) * 1000
        report[name] = {"clips": len(audio), "wer": round(errs / words, 4), "ms_per_clip": round(ms, 1)}
        print(f"{name:24s} WER {errs / words:.3f}  {ms:.0f} ms/clip over {len(audio)} clips")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
