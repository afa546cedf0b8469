"""Check the speech path on CUDA: device chosen by ``device="auto"``, and time per utterance.

    python -m emodesk.lab.studies.gpu_check.asr [--asr-model DIR] [--json OUT]

Runs the demo clip's audio through VAD + faster-whisper twice (auto → CUDA
float16 when ctranslate2 sees a GPU, then CPU int8) and prints the
transcripts and the ASR seconds per utterance for each.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from emodesk.capture.files import AudioFileSource
from emodesk.capture.sources import demo_clip_path
from emodesk.pipeline.models import load_speech_processor


def run(device: str, asr_model: str | None) -> dict:
    proc, statuses = load_speech_processor(asr_model=asr_model, device=device, partial_interval_s=None)  # type: ignore[arg-type]
    if proc is None:
        raise SystemExit("; ".join(s.message for s in statuses))
    src = AudioFileSource(demo_clip_path(), chunk_s=0.02)
    src.open()
    events = []
    try:
        while (c := src.read()) is not None:
            events += proc.insert(c)
    finally:
        src.close()
    events += proc.finish()
    lat = [e.asr_latency_s * 1000 for e in events if e.final]
    return {
        "asr": next(s.message for s in statuses if s.slot == "asr"),
        "transcripts": [e.transcript.text for e in events if e.final],
        "asr_ms_per_utterance": [round(x, 1) for x in lat],
        "asr_ms_median": round(statistics.median(lat), 1) if lat else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--asr-model")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    report = {"auto": run("auto", args.asr_model), "cpu": run("cpu", args.asr_model)}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
