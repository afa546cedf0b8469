"""``emodesk eval face|voice|text``: score a labeled manifest or dataset folder and report metrics.

Exit status: 0 success, 1 the work failed (no model installed, a model would
not load), 2 bad usage or unreadable input (one line on stderr, no traceback).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

import numpy as np

from emodesk.cli.common import Parser, UsageError, fail, guarded
from emodesk.errors import EmodeskError, InputError, ModelError
from emodesk.inference.lock import refresh_if_locked
from emodesk.readers import read_json

if TYPE_CHECKING:
    from emodesk.inference.manifest import ModelManifest

PROGRESS_EVERY_S = 5.0
_DATASET_MODALITY = {
    "fer2013": "face",
    "ravdess": "voice",
    "goemotions": "text",
    "meld": "text",
    "dair-ai": "text",
    "tess": "voice",
    "urdu": "voice",
    "ferplus": "face",
}


class _Parser(Parser):
    """Names the subcommand without the ``emodesk`` prefix (``eval face: …``)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog.removeprefix('emodesk ')}: {message}")


def _parser() -> _Parser:
    p = _Parser(
        prog="emodesk eval",
        description="Score labeled data with the installed models of one modality (or --model) and "
        "report accuracy (with bootstrap 95 % CI), UAR, macro-F1, weighted-F1, per-class recall and the "
        "confusion matrix. A dataset folder of ../shared/datasets gives its test split.",
    )
    p.add_argument("modality", choices=("face", "voice", "text"), help="which models, and what the rows hold")
    p.add_argument(
        "--manifest",
        required=True,
        metavar="FILE.csv|DATASET_DIR",
        help="CSV path,label (face crops, audio) or text,label; or a dataset folder (its test split)",
    )
    p.add_argument(
        "--model",
        metavar="PATH.onnx",
        help="one model (its PATH.json beside it); default: all installed models of the modality",
    )
    p.add_argument(
        "--json",
        metavar="OUT",
        help="write {model id: metrics JSON + model, sha256, source, seconds_per_item}",
    )
    p.add_argument("--save-scores", metavar="OUT.npz", help="write y_true, x and probs__<model id> (n, 7)")
    p.add_argument(
        "--png",
        metavar="OUT.png",
        help="a confusion-matrix picture (OUT-<model id>.png when several models are evaluated)",
    )
    p.add_argument("--label-map", metavar="a=b,...", help="map extra label names onto canonical ones")
    p.add_argument("--ignore-unknown", action="store_true", help="skip rows whose label is unknown")
    p.add_argument(
        "--detect",
        action="store_true",
        help="face: run the face detector first and score the "
        "largest face; images with no face are counted (no_face) and left out of the metrics",
    )
    p.add_argument(
        "--no-zoom",
        action="store_true",
        help="with --detect: no zoomed second look where the whole image shows no face "
        "(the detector as it was before it had one)",
    )
    p.add_argument(
        "--pooled",
        action="store_true",
        help="voice: score every row as one session, in a seeded order (default: one session per "
        "speaker, the manifest's group or speaker column, as the app runs one per recording)",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where models run (auto: CUDA when usable, else CPU)",
    )
    p.add_argument(
        "--record",
        metavar="NAME",
        help="store the metrics in each evaluated model's manifest under metrics[NAME] "
        "(the model card's numbers; refused with --limit)",
    )
    p.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="score only N rows, spread evenly over the list "
        "(a quick check that still covers every class of a class-sorted dataset)",
    )
    return p


class _Progress:
    """A row counter on stderr every few seconds, so a long run shows it is alive."""

    def __init__(self, what: str, total: int) -> None:
        self.what = what
        self.total = total
        self.last = time.monotonic()

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY_S and done < self.total:
            self.last = now
            print(f"emodesk: {self.what}: {done}/{self.total} rows", file=sys.stderr, flush=True)


def _check_out(flag: str, value: str | None) -> None:
    """Fail before the long work, not after it, when an output folder is missing."""
    if value is not None and not Path(value).resolve().parent.is_dir():
        raise UsageError(f"{flag} {value}: folder {Path(value).resolve().parent} does not exist")


def _png_path(png: str, model_id: str, several: bool) -> Path:
    p = Path(png)
    return p.with_name(f"{p.stem}-{model_id}{p.suffix or '.png'}") if several else p


def _model_manifests(modality: str, model: str | None) -> list[ModelManifest]:
    from emodesk.inference.manifest import ModelManifest
    from emodesk.inference.registry import models_of
    from emodesk.resources import model_search_dirs

    if model is None:
        found = sorted(models_of(modality), key=lambda m: m.id)
        if not found:
            dirs = ", ".join(str(d) for d in model_search_dirs())
            raise ModelError(f"no {modality} model is installed (searched {dirs}); pass --model PATH.onnx")
        return found
    onnx = Path(model)
    if not onnx.is_file():
        raise InputError(f"--model {model}: no such file")
    man_path = onnx.with_suffix(".json")
    if not man_path.is_file():
        raise InputError(f"--model {model}: its manifest {man_path} is missing (X.json beside X.onnx)")
    try:
        man = ModelManifest.load(man_path)
    except ModelError as e:
        raise InputError(str(e)) from None
    if man.modality != modality:
        raise UsageError(f"--model {model} is a {man.modality!r} model, not a {modality} model")
    if man.model_path.resolve() != onnx.resolve():
        raise InputError(f"--model {model}: its manifest {man_path.name} names the file {man.file!r}")
    return [man]


def _spread(n_rows: int, limit: int) -> list[int]:
    """``limit`` indices spread evenly over ``range(n_rows)`` (all of them if there are fewer)."""
    if limit >= n_rows:
        return list(range(n_rows))
    return [int(i) for i in np.linspace(0, n_rows, limit, endpoint=False)]


def format_report(m: dict[str, Any], *, title: str) -> str:
    """The printed table for one model's metrics JSON."""
    from emodesk.labels import LABELS

    ci = m.get("ci95", {})

    def line(name: str, key: str) -> str:
        lo_hi = ci.get(key)
        extra = f"  [{lo_hi[0]:.4f}, {lo_hi[1]:.4f}]" if lo_hi else ""
        return f"  {name:<12}{m[key]:.4f}{extra}"

    out = [title]
    if m.get("no_face"):
        out.append(
            f"  no face found in {m['no_face']} images (left out of the metrics; accuracy with them "
            f"counted as errors {m['accuracy_misses_as_errors']:.4f})"
        )
    out += [
        f"  {'n':<12}{m['n']}",
        line("accuracy", "accuracy") + ("  (95 % CI)" if ci else ""),
        line("UAR", "uar"),
        line("macro-F1", "macro_f1"),
        line("weighted-F1", "weighted_f1"),
        "  recall      " + "  ".join(f"{k} {v:.3f}" for k, v in m["per_class_recall"].items()),
    ]
    nm = m.get("neutral_misread")
    if nm:
        lo, hi = nm["ci95"]["angry"]
        out.append(
            f"  neutral rows read as angry {nm['angry']:.3f} [{lo:.3f}, {hi:.3f}], as "
            f"{'/'.join(nm['high_arousal_labels'])} {nm['high_arousal']:.3f} (n = {nm['n']})"
        )
    out += [
        "  confusion (rows true, columns predicted):",
        "  " + " " * 10 + "".join(f"{lab[:8]:>9}" for lab in LABELS),
    ]
    for lab, row in zip(LABELS, m["confusion"], strict=True):
        out.append(f"  {lab:<10}" + "".join(f"{v:>9}" for v in row))
    return "\n".join(out)


def _misses(metrics: dict[str, Any], no_face: int) -> dict[str, Any]:
    """With ``--detect``: the images without a detected face, and the accuracy that counts each of
    them as an error (what a user of the live path gets: a missed face is no reading)."""
    n = int(metrics["n"])
    return {
        "no_face": no_face,
        "accuracy_misses_as_errors": float(metrics["accuracy"]) * n / max(1, n + no_face),
    }


def record_metrics(
    man: ModelManifest, name: str, metrics: dict[str, Any], *, source: Path, argv: Sequence[str]
) -> None:
    """Write ``metrics[name]`` into the model's manifest file, keeping every other field as it is.

    The entry says what it was measured on and with which command, so a model card's number can be
    rerun. Written to a temporary file and renamed, so a crash never leaves half a manifest."""
    d = dict(read_json(man.path, what="model manifest", error=ModelError).data)
    if d.get("sha256") != man.sha256:
        raise ModelError(f"{man.path} changed while it was being evaluated; not recording")
    entry = dict(metrics)
    entry["data"] = source.name if source.is_dir() else str(source)
    entry["command"] = "emodesk eval " + " ".join(argv)
    d.setdefault("metrics", {})[name] = entry
    tmp = man.path.with_name(f".{man.path.name}.tmp")
    tmp.write_text(json.dumps(d, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, man.path)
    refresh_if_locked(man.path.parent, [man.path])
    print(f"metrics recorded in {man.path} as {name!r}\n")


def _modality_fusion(
    modality: str, rows: Sequence[Any], scores: dict[str, np.ndarray], *, several_ids: list[str]
) -> dict[str, Any]:
    """docs/formats.md's ``modality:X`` entry: the equal-weight fusion (``emodesk.fusion.fuse``, the
    live rule) of the members, over the rows every member scored."""
    from emodesk.evaluation.metrics import compute_metrics
    from emodesk.fusion.fuse import fuse

    probs = [scores[f"probs__{m}"] for m in several_ids if f"probs__{m}" in scores]
    ok = np.all([np.all(np.isfinite(p), axis=1) for p in probs], axis=0)
    fused = np.array(
        [fuse({m: p[i] for m, p in zip(several_ids, probs, strict=True)}) for i in np.flatnonzero(ok)]
    )
    y = np.array([r.label for r in rows], np.int64)[ok]
    entry: dict[str, Any] = dict(compute_metrics(y, fused))
    entry.update(members=several_ids, weights="equal", modality=modality)
    return entry


def run(argv: Sequence[str]) -> int:
    """The command itself; errors propagate as exceptions and :func:`main` turns them into exit codes."""
    args = _parser().parse_args(argv)
    from emodesk.machine import require_device

    require_device(args.device, speech=args.modality == "voice")
    from emodesk.evaluation.datasets import dataset_kind, load_rows, parse_label_map
    from emodesk.evaluation.evaluate import Modality, evaluate_model, find_largest_faces, load_scorer

    modality = cast(Modality, args.modality)
    if args.detect and modality != "face":
        raise UsageError("--detect applies to eval face only")
    if args.no_zoom and not args.detect:
        raise UsageError("--no-zoom applies with --detect only")
    if args.pooled and modality != "voice":
        raise UsageError("--pooled applies to eval voice only")
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be at least 1, got {args.limit}")
    if args.record is not None and (args.limit is not None or not args.record.strip()):
        raise UsageError("--record needs a non-empty NAME and the whole test set (no --limit)")
    for flag in ("json", "save_scores", "png"):
        _check_out("--" + flag.replace("_", "-"), getattr(args, flag))
    source = Path(args.manifest)
    if not source.exists():
        raise InputError(f"--manifest {args.manifest}: no such file or folder")
    kind = dataset_kind(source)
    if kind is not None and _DATASET_MODALITY[kind] != modality:
        raise UsageError(
            f"{source} is a {_DATASET_MODALITY[kind]} dataset ({kind}); use eval {_DATASET_MODALITY[kind]}"
        )
    manifests = _model_manifests(modality, args.model)
    if modality == "text" and args.limit is not None:
        reading = [m.id for m in manifests if m.fields("preprocessing").integer("context", 0, lo=0, hi=4)]
        if reading:
            raise UsageError(
                f"--limit takes rows out of their dialogues, and {', '.join(reading)} reads the earlier "
                "utterances of a row's dialogue as context: evaluate the whole test split"
            )
    rows = load_rows(
        source,
        column="text" if modality == "text" else "path",
        split="test",
        label_map=parse_label_map(args.label_map),
        ignore_unknown=args.ignore_unknown,
    )
    if args.limit is not None:
        rows = [rows[i] for i in _spread(len(rows), args.limit)]
    if args.pooled:  # one session: the running normalisation sees every speaker (a seeded order)
        rows = [replace(r, group="") for r in rows]
    what = f"{source} (test split)" if source.is_dir() else str(source)
    print(f"{len(rows)} rows from {what}; {len(manifests)} {modality} model(s)\n")

    boxes = None
    detect_s = 0.0
    if args.detect:
        from emodesk.inference.face_detector import FaceDetector
        from emodesk.inference.face_verifier import installed_verifier
        from emodesk.inference.registry import find_model
        from emodesk.inference.runtime import OnnxModel
        from emodesk.pipeline.models import DEFAULT_DETECTOR

        model = OnnxModel(find_model(DEFAULT_DETECTOR), device=args.device)
        detector = FaceDetector(
            model, zoom_when_empty=not args.no_zoom, verifier=installed_verifier(device=args.device)
        )
        t0 = time.perf_counter()
        boxes = find_largest_faces(rows, detector, progress=_Progress("face detection", len(rows)))
        detect_s = time.perf_counter() - t0
        misses = sum(b is None for b in boxes)
        print(f"no face found in {misses} of {len(rows)} images (left out of the metrics)\n")

    report: dict[str, Any] = {}
    scores: dict[str, np.ndarray] = {}
    failed: list[str] = []
    several = len(manifests) > 1
    for man in manifests:
        try:
            scorer = load_scorer(man, device=args.device)
        except ModelError as e:
            if not several:
                raise
            failed.append(man.id)  # one broken model must not hide the others' results
            print(f"emodesk: {e}", file=sys.stderr)
            continue
        ev = evaluate_model(modality, rows, scorer, boxes=boxes, progress=_Progress(man.id, len(rows)))
        entry: dict[str, Any] = dict(ev.metrics)
        entry.update(
            model=ev.model_id,
            sha256=ev.sha256,
            source=str(source.resolve()),
            seconds_per_item=ev.seconds_per_item,
            provider=ev.provider,
        )
        recorded = dict(ev.metrics)
        if args.detect:
            missed = _misses(ev.metrics, ev.no_face)
            entry.update(missed, detect_seconds_per_item=detect_s / len(rows))
            recorded.update(missed)
        report[ev.model_id] = entry
        if args.record:
            record_metrics(man, args.record, recorded, source=source, argv=argv)
        scores[f"probs__{ev.model_id}"] = ev.probs
        where = ev.provider.replace("ExecutionProvider", "")
        print(
            format_report(entry, title=f"{ev.model_id}  ({ev.seconds_per_item * 1000:.2f} ms/row on {where})")
        )
        print()
        if args.png:
            png = _png_path(args.png, ev.model_id, several)
            title = f"{ev.model_id}  accuracy {ev.metrics['accuracy']:.4f}"
            sub = f"{modality}, n = {ev.metrics['n']}, UAR {ev.metrics['uar']:.4f}, source {source.name}"
            try:
                from emodesk.ui.render.confusion import write_confusion_png  # Qt, only when asked for
            except ImportError as e:
                raise EmodeskError(f"--png draws with Qt (PySide6), which failed to load: {e}") from None

            write_confusion_png(png, ev.metrics["confusion"], title=title, subtitle=sub)
            print(f"confusion matrix → {png}\n")

    if len(scores) > 1:  # the modality as the live fusion sees it: its members, equal weights
        ids = list(report)
        entry = _modality_fusion(modality, rows, scores, several_ids=ids)
        if args.detect:  # one detector pass serves every member
            entry.update(_misses(entry, int(report[ids[-1]]["no_face"])))
        entry["command"] = "emodesk eval " + " ".join(argv)
        report[f"modality:{modality}"] = entry
        print(format_report(entry, title=f"modality:{modality}  (equal-weight fusion of {', '.join(ids)})"))
        print()
    if args.json and report:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.save_scores and scores:
        arrays: dict[str, Any] = {
            "y_true": np.array([r.label for r in rows], np.int64),
            "x": np.array([r.x for r in rows], dtype=str),
            **scores,
        }
        with open(args.save_scores, "wb") as fh:  # a file handle: np.savez would append ".npz"
            np.savez(fh, **arrays)
    if failed:
        return fail(1, f"could not evaluate {', '.join(failed)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return guarded(run, list(sys.argv[1:] if argv is None else argv), "eval")


if __name__ == "__main__":  # python -m emodesk.cli.eval_cmd … (same as emodesk eval …)
    raise SystemExit(main())
