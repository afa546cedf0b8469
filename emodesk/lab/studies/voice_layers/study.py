"""Which whisper encoder layer is best for the voice member? Actor-group CV on RAVDESS 01–20 only.

A study, not a shipped model. CTranslate2 returns only the encoder's final output, so the
encoder is re-run in torch from the same ``model.bin`` (:mod:`.reference_encoder`)
and every layer output is pooled (mean + std) over exactly the frames the voice member pools
(``EncodedAudio.frames()``: the first ceil(n_samples / 320) encoder frames). Layer 0 is
conv + position encodings, 1..L the transformer blocks, ``final`` the final layer norm (what
CTranslate2 returns). Input modes:

* ``app``  – the window ``Transcriber.encode`` runs (utterance + 2 s, at least 10 s,
             zero-padded log-mel): what the shipped member's features come from;
* ``full`` – the 30 s window (3000 mel frames), as plain faster-whisper runs;
* ``utt``  – the utterance's own mel only (2 · n_frames mel frames), position
             encodings sliced to its length.

Scoring is the training code's own :func:`emodesk.lab.train.voice.train.select_by_cv` with the
defaults of ``emodesk/lab/studies/voice_features/study.py``. The test actors 21–24 are never read.

    python -m emodesk.lab.studies.voice_layers.study verify
    python -m emodesk.lab.studies.voice_layers.study extract --mode app   # then utt, full
    python -m emodesk.lab.studies.voice_layers.study cv --modes app,utt,full
    (--model-dir DIR --tag NAME for another CTranslate2 whisper folder, e.g. base)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emodesk.lab.paths import REPO

ROOT = REPO

from emodesk.evaluation.datasets import Row, load_split  # noqa: E402
from emodesk.evaluation.evaluate import read_audio_16k  # noqa: E402
from emodesk.inference.voice_features import pool_frames  # noqa: E402
from emodesk.lab.studies.voice_layers.reference_encoder import WhisperEncoder  # noqa: E402
from emodesk.lab.train.voice.train import Split, select_by_cv  # noqa: E402
from emodesk.resources import datasets_dir  # noqa: E402

OUT = ROOT / "build" / "voice_layers"
HOP = 160
FULL = 3000


def app_window(n_samples: int, min_context_s: float = 10.0) -> int:
    """``Transcriber._context_frames`` (emodesk/speech/asr.py)."""
    seconds = max(n_samples / 16000 + 2.0, min_context_s)
    frames = int(np.ceil(seconds * 16000 / HOP))
    frames += frames % 2
    return min(frames, FULL)


def n_valid(n_samples: int, window: int) -> int:
    """``EncodedAudio.n_valid``: the encoder frames the member pools."""
    return max(1, min(window // 2, -(-n_samples // (2 * HOP))))


def mel_input(fe: Any, audio: np.ndarray, mode: str) -> tuple[np.ndarray, int]:
    """(80, T) log-mel input for ``mode`` and the number of output frames to pool."""
    n = audio.shape[0]
    if mode == "app":
        frames = app_window(n)
    elif mode == "full":
        frames = FULL
    elif mode == "utt":
        frames = 2 * n_valid(n, app_window(n))
    else:
        raise ValueError(mode)
    f = fe(audio)[:, :frames]
    if f.shape[1] < frames:  # the zero padding asr.py applies
        f = np.pad(f, ((0, 0), (0, frames - f.shape[1])))
    return np.ascontiguousarray(f, dtype=np.float32), n_valid(n, frames)


def model_dir(args: argparse.Namespace) -> Path:
    if args.model_dir:
        return Path(args.model_dir)
    from emodesk.speech.asr import bundled_asr_model

    return bundled_asr_model()


def rows_01_20(data: Path) -> list[Row]:
    return load_split(data, "train") + load_split(data, "val")  # actors 01–20; never the test actors


def cmd_verify(args: argparse.Namespace) -> int:
    import ctranslate2
    from faster_whisper.feature_extractor import FeatureExtractor

    folder = model_dir(args)
    enc = WhisperEncoder.from_model_bin(folder / "model.bin")
    rows = rows_01_20(args.data)
    fe = FeatureExtractor()
    report: dict[str, str | float] = {"model_dir": str(folder)}
    for path in (rows[0].x, rows[len(rows) // 2].x):
        audio = read_audio_16k(path)
        for mode in ("full", "app", "utt"):
            mel, _ = mel_input(fe, audio, mode)
            with torch.no_grad():
                ours = enc(torch.from_numpy(mel)[None])[-1].numpy()
            for ct in ("float32", "int8"):
                m = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type=ct, intra_threads=1)
                ref = np.asarray(m.encode(ctranslate2.StorageView.from_array(mel[None])), dtype=np.float32)
                d = float(np.abs(ref - ours).max())
                report[f"{Path(path).name} {mode} ({mel.shape[1]} mel frames) vs ct2 {ct}"] = d
                print(
                    f"{Path(path).name} {mode:4s} T={mel.shape[1]:4d} vs CTranslate2 {ct:7s}: "
                    f"max abs diff {d:.3g} (max |x| {np.abs(ref).max():.3g})"
                )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"verify-{args.tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


def cache_path(tag: str, mode: str) -> Path:
    return OUT / f"layers-{tag}-{mode}.npz"


def cmd_extract(args: argparse.Namespace) -> int:
    from faster_whisper.feature_extractor import FeatureExtractor

    folder = model_dir(args)
    enc = WhisperEncoder.from_model_bin(folder / "model.bin")
    fe = FeatureExtractor(feature_size=enc.conv1.in_channels)
    rows = rows_01_20(args.data)
    if args.limit:
        rows = rows[: args.limit]
    cache = cache_path(args.tag, args.mode)
    done: dict[str, np.ndarray] = {}
    if cache.is_file():
        with np.load(cache) as z:
            done = dict(zip((str(p) for p in z["paths"]), z["features"], strict=True))
    todo = [r.x for r in rows if r.x not in done]
    times: list[float] = []

    def save() -> None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                paths=np.array(list(done), dtype=str),
                features=np.stack(list(done.values())),
                model_dir=str(folder),
                mode=args.mode,
            )
        os.replace(tmp, cache)

    t_all = time.monotonic()
    for i, path in enumerate(todo):
        audio = read_audio_16k(path)
        mel, nv = mel_input(fe, audio, args.mode)
        t0 = time.perf_counter()
        with torch.no_grad():
            outs = enc(torch.from_numpy(mel)[None])
        times.append(time.perf_counter() - t0)
        done[path] = np.stack([pool_frames(o[0, :nv].numpy()) for o in outs])  # (L+2, 2d) float64
        if (i + 1) % 100 == 0:
            save()
            print(
                f"{args.mode}: {i + 1}/{len(todo)} clips, encoder {np.mean(times) * 1000:.0f} ms/clip "
                f"({time.monotonic() - t_all:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    if todo:
        save()
        t = np.array(times)
        stats = {
            "mode": args.mode,
            "tag": args.tag,
            "clips": len(t),
            "encoder_ms_mean": 1000 * t.mean(),
            "encoder_ms_median": 1000 * float(np.median(t)),
            "threads": torch.get_num_threads(),
        }
        (OUT / f"timing-{args.tag}-{args.mode}.json").write_text(json.dumps(stats, indent=2) + "\n")
        print(stats, file=sys.stderr)
    return 0


CV = argparse.Namespace(
    cv_folds=6, epochs=200, prior_weights="5,10,20", weight_decay=1e-2, lr=1e-3, views=8, seed=0, quiet=True
)


def layer_names(n: int) -> list[str]:
    return ["conv+pos"] + [f"block {i}" for i in range(1, n - 1)] + ["final LN"]


def cmd_cv(args: argparse.Namespace) -> int:
    rows = rows_01_20(args.data)
    y = np.array([r.label for r in rows])
    g = np.array([r.group for r in rows])
    CV.epochs = args.epochs
    CV.prior_weights = args.prior_weights
    results_file = OUT / f"cv-{args.tag}.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}

    def run(name: str, x: np.ndarray) -> dict:
        if name in results and not args.redo:
            r = results[name]
        else:
            t0 = time.monotonic()
            best, _ = select_by_cv(Split(x, y, g), CV)
            r = {
                "cv_accuracy": best["cv_accuracy"],
                "cv_uar": best["cv_uar"],
                "prior_weight": best["prior_weight"],
                "epochs": best["epochs"],
                "folds": best["folds"],
                "dims": int(x.shape[1]),
                "seconds": round(time.monotonic() - t0, 1),
            }
            results[name] = r
            results_file.write_text(json.dumps(results, indent=2) + "\n")
        print(
            f"{name:40s} acc {r['cv_accuracy']:.4f}  UAR {r['cv_uar']:.4f}  (pw {r['prior_weight']:g}, "
            f"{r['epochs']} ep, {r['dims']} dims)",
            flush=True,
        )
        return r

    if args.shipped_cache and Path(args.shipped_cache).is_file():
        with np.load(args.shipped_cache) as z:
            c = dict(zip((str(p) for p in z["paths"]), z["features"], strict=True))
        if all(r.x in c for r in rows):
            run("shipped cache (CTranslate2 int8, app window, final)", np.stack([c[r.x] for r in rows]))
    feats: dict[str, np.ndarray] = {}
    for mode in args.modes.split(","):
        cache = cache_path(args.tag, mode)
        if not cache.is_file():
            print(f"no cache for mode {mode}; run extract first", file=sys.stderr)
            continue
        with np.load(cache) as z:
            c = dict(zip((str(p) for p in z["paths"]), z["features"], strict=True))
        if not all(r.x in c for r in rows):
            print(f"mode {mode}: cache incomplete, skipped", file=sys.stderr)
            continue
        f = np.stack([c[r.x] for r in rows])  # (n, L+2, 2d)
        feats[mode] = f
        names = layer_names(f.shape[1])
        order = [int(v) % f.shape[1] for v in args.layers.split(",")] if args.layers else range(f.shape[1])
        for li in order:
            run(f"{args.tag} {mode} {li} {names[li]}", f[:, li])
    specs = list(args.concat)
    if "auto" in specs:  # the two best single layers so far (any mode of this tag)
        single = sorted(
            (
                (r["cv_accuracy"], r["cv_uar"], k)
                for k, r in results.items()
                if k.startswith(args.tag + " ") and " concat " not in k
            ),
            reverse=True,
        )[:2]
        auto = "+".join(f"{k.split()[1]}:{k.split()[2]}" for _, _, k in single)
        specs = [auto if sp == "auto" else sp for sp in specs]
    for spec in specs:
        parts = [p.split(":") for p in spec.split("+")]
        if all(m in feats for m, _ in parts):
            x = np.concatenate([feats[m][:, int(li)] for m, li in parts], axis=1)
            run(f"{args.tag} concat {spec}", x)
    return 0


def main() -> int:
    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="RAVDESS folder (default: the shared datasets)")
    p.add_argument("--model-dir", help="CTranslate2 whisper folder (default: the bundled tiny.en)")
    p.add_argument("--tag", default="tiny.en")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("verify")
    e = sub.add_parser("extract")
    e.add_argument("--mode", choices=("app", "full", "utt"), required=True)
    e.add_argument("--limit", type=int)
    c = sub.add_parser("cv")
    c.add_argument("--modes", default="app,utt,full")
    c.add_argument("--epochs", type=int, default=200)
    c.add_argument("--prior-weights", default="5,10,20")
    c.add_argument(
        "--concat",
        action="append",
        default=[],
        help="MODE:LAYER+MODE:LAYER, e.g. utt:2+utt:3; 'auto' = the two best single layers",
    )
    c.add_argument("--shipped-cache", default=str(ROOT / "build/voice/ckpt/features-tiny.en.npz"))
    c.add_argument("--redo", action="store_true")
    c.add_argument("--layers", help="layer indices to score, in this order (default all; -1 = final)")
    args = p.parse_args()
    args.data = args.data or datasets_dir() / "speech" / "ravdess"
    return {"verify": cmd_verify, "extract": cmd_extract, "cv": cmd_cv}[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
