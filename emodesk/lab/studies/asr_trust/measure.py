"""When can a transcript be trusted? The decoder's own signals on speech it should and should not
turn into confident English, and the thresholds of :func:`emodesk.speech.asr.judge` chosen on
validation sets only.

    python -m emodesk.lab.studies.asr_trust.measure signals [--asr-model tiny.en]   # decode (resumable)
    python -m emodesk.lab.studies.asr_trust.measure report  [--json results.json]   # choose, then test

Sets (``../shared/datasets`` for the corpora; the rest is generated here, seeded):

==============  =========================================  ===========================================
                validation (chooses the thresholds)        test (measures them, read once)
==============  =========================================  ===========================================
trustworthy     RAVDESS actors 19–20, TESS val words       RAVDESS actors 21–24, every 6th TESS train
                                                           clip, the demo clip's utterances
untrustworthy   espeak-ng in 8 languages (de fr es it ru   URDU (400 real broadcast clips), espeak-ng
                cmn hi ar), white/brown noise, mains hum,  in 8 other languages (pt nl pl tr ja vi sw
                a fan, synthetic chords                    fi), pink/violet noise, a plucked melody
                                                           with drums
==============  =========================================  ===========================================

A trustworthy clip is *kept* when its transcript is non-empty and trusted (its text score reaches
the fusion); an untrustworthy clip is *fused* when the same holds. The rule: the largest share of
untrustworthy validation clips refused while at least ``--min-keep`` (97%) of the trustworthy
validation clips are kept; among ties, the most kept, then the strictest thresholds (refusing words
is the safe side: a refused transcript only loses a text score).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emodesk.lab.paths import REPO
from emodesk.lab.studies.asr_trust import sentences

SR = 16000
HERE = Path(__file__).resolve().parent
DEFAULT_SIGNALS = REPO / "build" / "asr-trust" / "signals.jsonl"
MEDIA = REPO / "build" / "asr-trust" / "media"


@dataclass(frozen=True)
class Clip:
    set: str  # e.g. "val/trusted/ravdess"
    id: str
    path: Path


def _espeak(lang: str, text: str, variant: str, speed: int, out: Path) -> Path:
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["espeak-ng", "-v", f"{lang}{variant}", "-s", str(speed), "-w", str(out), text],
            check=True,
            capture_output=True,
        )
    return out


def _write(out: Path, audio: np.ndarray) -> Path:
    import soundfile as sf

    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        sf.write(out, np.clip(audio, -1, 1).astype(np.float32), SR)
    return out


def _chords(n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / SR
    root = 110 * 2 ** (rng.integers(0, 12) / 12)
    y = np.zeros(n)
    beat = int(SR * rng.uniform(0.4, 0.8))
    for start in range(0, n, beat):
        chord = root * 2 ** (np.array([0, 4, 7, 12]) / 12) * 2 ** (rng.choice([0, 5, 7, 9]) / 12)
        seg = slice(start, min(n, start + beat))
        env = np.exp(-3 * (t[seg] - t[start]))
        for f in chord:
            y[seg] += sum(np.sin(2 * np.pi * f * k * t[seg]) / k**1.5 for k in range(1, 6)) * env
    return 0.3 * y / (np.max(np.abs(y)) + 1e-12)


def _plucked(n: int, rng: np.random.Generator) -> np.ndarray:
    """Karplus–Strong notes of a pentatonic melody over a noise-burst beat."""
    y = np.zeros(n)
    step = int(SR * rng.uniform(0.2, 0.35))
    scale = 196 * 2 ** (np.array([0, 2, 4, 7, 9, 12]) / 12)
    for start in range(0, n, step):
        period = int(SR / rng.choice(scale))
        buf = rng.uniform(-1, 1, period)
        length = min(n - start, int(SR * 0.6))
        note = np.empty(length)
        for i in range(length):
            note[i] = buf[i % period]
            buf[i % period] = 0.996 * 0.5 * (buf[i % period] + buf[(i + 1) % period])
        y[start : start + length] += note
        if (start // step) % 2 == 0:  # a drum hit
            hit = min(n - start, 1600)
            y[start : start + hit] += rng.normal(size=hit) * np.exp(-np.arange(hit) / 200) * 0.8
    return 0.3 * y / (np.max(np.abs(y)) + 1e-12)


def _noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    from emodesk.lab.assets.office_ravdess import pink_noise
    from emodesk.lab.train.voice import augment

    if kind == "pink":
        x = pink_noise(n, rng)
    elif kind == "chords":
        return _chords(n, rng)
    elif kind == "plucked":
        return _plucked(n, rng)
    else:
        x = augment._NOISES[kind](n, rng)
    return 0.1 * x / (np.sqrt(np.mean(x**2)) + 1e-12)


def clips(data: Path) -> Iterator[Clip]:
    from emodesk.evaluation.datasets import load_split

    speech = data / "speech"
    for r in load_split(speech / "ravdess", "val"):
        yield Clip("val/trusted/ravdess", Path(r.x).name, Path(r.x))
    for r in load_split(speech / "ravdess", "test"):
        yield Clip("test/trusted/ravdess", Path(r.x).name, Path(r.x))
    for r in load_split(speech / "tess", "val"):
        yield Clip("val/trusted/tess", Path(r.x).name, Path(r.x))
    for r in load_split(speech / "tess", "train")[::6]:
        yield Clip("test/trusted/tess", Path(r.x).name, Path(r.x))
    for r in load_split(speech / "urdu", "test"):
        yield Clip("test/untrusted/urdu", Path(r.x).name, Path(r.x))
    for role, table in (("val", sentences.VALIDATION), ("test", sentences.TEST)):
        for lang, lines in table.items():
            for i, text in enumerate(lines):
                for variant, speed in (("", 160), ("+f3", 140)):
                    name = f"{lang}-{i}{variant.replace('+', '-')}.wav"
                    out = MEDIA / "espeak" / name
                    yield Clip(f"{role}/untrusted/espeak", name, _espeak(lang, text, variant, speed, out))
    kinds = {"val": ("white", "brown", "hum", "fan", "chords"), "test": ("pink", "violet", "plucked")}
    for role, names in kinds.items():
        for kind in names:
            for i in range(20):
                rng = np.random.default_rng([0xA5A, zlib.crc32(kind.encode()), i, int(role == "test")])
                n = int(SR * rng.uniform(1.0, 4.0))
                name = f"{role}-{kind}-{i}.wav"
                yield Clip(
                    f"{role}/untrusted/noise", name, _write(MEDIA / "noise" / name, _noise(kind, n, rng))
                )


def demo_utterances() -> list[np.ndarray]:
    """The demo clip cut into utterances by the app's own segmenter."""
    from emodesk.evaluation.evaluate import read_audio_16k
    from emodesk.resources import assets_dir
    from emodesk.speech.segmenter import UtteranceSegmenter
    from emodesk.speech.vad import SileroVad
    from emodesk.types import AudioChunk

    audio = read_audio_16k(assets_dir() / "demo.mp4")
    seg = UtteranceSegmenter(SileroVad())
    utts = []
    for i in range(0, len(audio), 1600):
        utts += seg.push(AudioChunk(i / SR, audio[i : i + 1600]))
    utts += seg.flush()
    return [u.audio for u in utts if u.final]


def measure_signals(out: Path, asr_model: str, data: Path) -> None:
    from emodesk.evaluation.evaluate import read_audio_16k
    from emodesk.speech.asr import Transcriber

    done: set[tuple[str, str]] = set()
    if out.is_file():
        for line in out.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            done.add((r["set"], r["id"]))
    asr = Transcriber(asr_model, device="cpu", cpu_threads=1)
    out.parent.mkdir(parents=True, exist_ok=True)
    items: list[tuple[str, str, Any]] = [(c.set, c.id, c.path) for c in clips(data)]
    items += [("test/trusted/demo", f"utt{i}", a) for i, a in enumerate(demo_utterances())]
    todo = [it for it in items if (it[0], it[1]) not in done]
    print(f"{len(items)} clips, {len(todo)} to decode", file=sys.stderr)
    with open(out, "a", encoding="utf-8") as fh:
        for k, (set_, id_, src) in enumerate(todo):
            audio = read_audio_16k(src) if isinstance(src, Path) else src
            tr = asr.transcribe_full(audio)
            sig = tr.signals.as_record() if tr.signals else {}
            if tr.signals is not None:
                sig["looped"] = tr.signals.looped
            fh.write(json.dumps({"set": set_, "id": id_, "text": tr.text, **sig}, ensure_ascii=False) + "\n")
            fh.flush()
            if (k + 1) % 50 == 0:
                print(f"{k + 1}/{len(todo)}", file=sys.stderr)


def _verdicts(rows: list[dict[str, Any]], min_lp: float, max_ns: float) -> np.ndarray:
    """True where the text would reach the fusion: non-empty and trusted."""
    from emodesk.speech.asr import AsrSignals, judge

    out = []
    for r in rows:
        if not r["text"].strip():
            out.append(False)
            continue
        s = AsrSignals(
            r["avg_logprob"],
            r["no_speech_prob"],
            r["compression_ratio"],
            r.get("looped", False),
            r.get("language"),
            r.get("language_prob"),
        )
        out.append(judge(r["text"], s, min_logprob=min_lp, max_no_speech=max_ns)[0])
    return np.array(out, bool)


def _rate(v: np.ndarray) -> dict[str, Any]:
    from emodesk.evaluation.metrics import wilson_interval

    k, n = int(v.sum()), len(v)
    return {"k": k, "n": n, "rate": k / n if n else float("nan"), "ci95": wilson_interval(k, n)}


def report(signals: Path, min_keep: float, ties: str = "strictest") -> dict[str, Any]:
    rows = [json.loads(line) for line in signals.read_text(encoding="utf-8").splitlines()]
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["set"], []).append(r)

    def pooled(role: str, kind: str) -> list[dict[str, Any]]:
        return [r for s, rs in by.items() if s.startswith(f"{role}/{kind}/") for r in rs]

    val_t, val_u = pooled("val", "trusted"), pooled("val", "untrusted")
    best: tuple[float, float, float, float] | None = None
    grid = []
    for min_lp in np.round(np.arange(-2.0, -0.19, 0.05), 2):
        for max_ns in np.round(np.arange(0.2, 1.001, 0.05), 2):
            keep = float(_verdicts(val_t, min_lp, max_ns).mean())
            fused = float(_verdicts(val_u, min_lp, max_ns).mean())
            grid.append(
                {"min_logprob": float(min_lp), "max_no_speech": float(max_ns), "keep": keep, "fused": fused}
            )
            if keep >= min_keep:
                # least fused; then most kept; then the strictest (refusing is the safe side)
                sign = -1 if ties == "strictest" else 1
                key = (fused, -keep, sign * min_lp, -sign * max_ns)
                if best is None or key < best:
                    best = key
    if best is None:
        raise SystemExit(f"no threshold keeps {min_keep:.0%} of the trustworthy validation clips")
    sign = -1 if ties == "strictest" else 1
    min_lp, max_ns = sign * best[2], -sign * best[3]
    out: dict[str, Any] = {
        "rule": f"least untrusted validation clips fused while keeping ≥ {min_keep:.0%} of the trusted "
        "ones; ties: most kept, then the " + ties,
        "chosen": {"min_logprob": min_lp, "max_no_speech": max_ns},
        "sets": {},
        "pooled": {},
    }
    for s, rs in sorted(by.items()):
        out["sets"][s] = {
            "chosen": _rate(_verdicts(rs, min_lp, max_ns)),
            "no_rule": _rate(np.array([bool(r["text"].strip()) for r in rs])),
        }
    for role in ("val", "test"):
        for kind in ("trusted", "untrusted"):
            rs = pooled(role, kind)
            out["pooled"][f"{role}/{kind}"] = {
                "chosen": _rate(_verdicts(rs, min_lp, max_ns)),
                "no_rule": _rate(np.array([bool(r["text"].strip()) for r in rs])),
            }
    out["grid"] = grid  # validation only: what the choice saw
    return out


def main(argv: list[str] | None = None) -> int:
    from emodesk.resources import datasets_dir

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=("signals", "report"))
    p.add_argument("--signals", type=Path, default=DEFAULT_SIGNALS)
    p.add_argument("--asr-model", default="tiny.en")
    p.add_argument("--data", type=Path, default=None, help="the shared datasets folder")
    p.add_argument("--min-keep", type=float, default=0.97)
    p.add_argument(
        "--ties",
        choices=("strictest", "loosest"),
        default="strictest",
        help="among thresholds equal on validation, the strictest (the rule) or the loosest (a check)",
    )
    p.add_argument("--json", type=Path, help="write the report here")
    a = p.parse_args(argv)
    if a.step == "signals":
        measure_signals(a.signals, a.asr_model, a.data or datasets_dir())
        return 0
    res = report(a.signals, a.min_keep, a.ties)
    res["asr_model"] = a.asr_model
    res["command"] = "python -m emodesk.lab.studies.asr_trust.measure signals && ... report"
    text = json.dumps(res, indent=1, ensure_ascii=False)
    if a.json:
        a.json.write_text(text + "\n", encoding="utf-8")
    print(json.dumps({"chosen": res["chosen"], "pooled": res["pooled"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
