"""``emodesk`` — launch the app, or run a subcommand.

Exit status: 0 success, 1 the work failed, 2 bad usage or unreadable input
(one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from emodesk import __version__, private
from emodesk.cli.common import DOWNLOAD_ASR_HELP, allow_asr_download
from emodesk.errors import EmodeskError, InputError

SUBCOMMANDS = (
    "run",
    "analyze",
    "devices",
    "models",
    "fusion",
    "eval",
    "train",
    "bench",
    "record",
    "sessions",
    "retrain",
    "table",
    "report",
)


def _fail(code: int, msg: str) -> int:
    print(f"emodesk: {msg}", file=sys.stderr)
    return code


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--audio", metavar="FILE", help="a separate audio file (wav/flac/any PyAV format)")
    p.add_argument("--mic", metavar="N|NAME", help="microphone index or part of its name")
    p.add_argument(
        "--asr-model",
        metavar="NAME|DIR",
        help="faster-whisper model name or folder (default: bundled tiny.en, offline)",
    )
    p.add_argument("--download-asr", action="store_true", help=DOWNLOAD_ASR_HELP)
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where models run (auto: CUDA when usable, else CPU)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log more")


def _app_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="emodesk",
        description="Live emotion from face, voice and words, on your machine. "
        f"Subcommands: {', '.join(SUBCOMMANDS)} (emodesk SUBCOMMAND --help).",
    )
    p.add_argument(
        "source",
        nargs="?",
        metavar="SOURCE",
        help="camera, camera:N, demo, or a video/audio file (default: camera 0, or demo if none)",
    )
    _add_common(p)
    p.add_argument(
        "--self-test",
        action="store_true",
        help="load every model, push one frame and one utterance through, exit 0 if all worked",
    )
    p.add_argument("--quit-after", type=float, metavar="S", help="close the window after S seconds")
    p.add_argument(
        "--screenshot", metavar="PNG", help="with --quit-after: save the window just before closing"
    )
    p.add_argument("--version", action="version", version=f"emodesk {__version__}")
    return p


def _analyze_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="emodesk analyze",
        description="Run the pipeline headless over files and write score records (JSONL), streamed "
        "as they are made. One SOURCE with --out OUT.jsonl writes that file; several, a folder, a glob "
        "or a CSV manifest (a 'path' column, optionally 'id') write one ID.jsonl per input into the "
        "--out folder plus runs.jsonl, the index. Exit status: 0 every input done, 1 any failed or ran "
        "degraded (runs.jsonl says which), 2 nothing could start (bad usage, a missing input, an "
        "unwritable --out).",
    )
    p.add_argument(
        "source",
        nargs="+",
        metavar="SOURCE",
        help="a video or audio file, a recorded session, demo, a folder, a glob ('clips/*.mp4', quoted) "
        "or a CSV manifest",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="OUT",
        help="for one file: the JSONL it writes (any name; an existing folder takes ID.jsonl and "
        "runs.jsonl instead); for several inputs, a folder, a glob or a manifest: the folder",
    )
    p.add_argument("--json", metavar="REPORT", help="a machine-readable summary, with the emotions found")
    p.add_argument(
        "--resume",
        action="store_true",
        help="skip inputs runs.jsonl shows done with the same input bytes and model set (folder --out)",
    )
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: one input after another in this process (no Ray, no sockets); ray: Ray actors, "
        "models loaded once each ('emodesk[scale]'), a private Ray on loopback unless --address",
    )
    p.add_argument("--address", metavar="ADDR", help="with --engine ray: join the Ray cluster at ADDR")
    p.add_argument(
        "--workers", type=int, metavar="N", help="with --engine ray: N workers (default: one per CPU)"
    )
    _add_common(p)
    return p


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes, not the one of its creation."""

    @property  # type: ignore[override]
    def stream(self):  # type: ignore[no-untyped-def]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # type: ignore[no-untyped-def]
        pass


def _setup_logging(verbose: bool) -> None:
    """Warnings (or everything with -v) on stderr; the app's log file takes INFO on its own.
    One such handler per process, however often a command runs in it."""
    root = logging.getLogger()
    for h in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(h)
    handler = _StderrHandler()
    handler.setLevel(logging.INFO if verbose else logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)


def cmd_analyze(argv: Sequence[str]) -> int:
    args = _analyze_parser().parse_args(argv)
    if args.mic is not None:  # accepted once and ignored; a microphone is live, analyze reads files
        return _fail(2, f"--mic {args.mic}: analyze reads files only (the window and `record` take --mic)")
    allow_asr_download(args.download_asr)
    _setup_logging(args.verbose)
    from emodesk.machine import require_device

    out = Path(args.out)
    src = Path(args.source[0])
    single = args.source[0] == "demo" or (src.is_file() and src.suffix.lower() != ".csv")
    session = (src / "session.json").is_file()
    # one file (or session) into one JSONL; a folder, glob, manifest or several: a folder of them
    pattern = any(c in args.source[0] for c in "*?[") and not src.exists()
    one = len(args.source) == 1 and (single or session or not (src.exists() or pattern)) and not out.is_dir()
    one = one and args.engine == "local"  # Ray always writes a folder (the driver writes every output)
    try:
        if any(_is_camera(s) for s in args.source):
            raise InputError("analyze reads files; use a video or audio file as SOURCE")
        if args.json:
            private.check_writable(args.json, what="--json")
        if args.engine != "ray" and (args.address or args.workers):
            raise InputError("--address and --workers go with --engine ray")
        if args.workers is not None and args.workers < 1:
            raise InputError(f"--workers {args.workers}: at least 1")
        if one:
            if args.resume:
                raise InputError("--resume needs a folder --out (runs.jsonl says what is done)")
            private.check_writable(out, what="--out")
        else:
            if args.audio is not None:
                raise InputError("--audio pairs with one SOURCE and an --out OUT.jsonl")
            if out.suffix.lower() == ".jsonl" and not out.is_dir():
                if args.engine == "ray":
                    raise InputError("--engine ray writes a folder of results: --out DIR")
                raise InputError(f"--out {out} takes one input; several inputs write into a folder")
            private.check_writable(out, what="--out", folder=True)
        require_device(args.device)
    except InputError as e:
        return _fail(2, str(e))
    if not one:
        from emodesk.cli.analyze_cmd import analyze_many

        return analyze_many(args)
    return _analyze_one(args, out)


def _is_camera(spec: str) -> bool:
    from emodesk.capture.sources import parse_camera

    try:
        return parse_camera(spec) is not None
    except InputError:  # camera:x
        return True


def _analyze_one(args: argparse.Namespace, out: Path) -> int:
    from emodesk.capture.sources import open_sources
    from emodesk.pipeline.analyze import analyze, partial_path
    from emodesk.results.summary import EmotionTally

    source = args.source[0]
    try:
        sources = open_sources(source, audio=args.audio, paced=False, use_mic=False)
    except InputError as e:
        return _fail(2, str(e))
    if sources.video is None and sources.audio is None:
        return _fail(2, f"{source} has neither video nor audio")
    try:
        tally = EmotionTally()  # as the records are written: /dev/null or a pipe cannot be read back
        summary = analyze(sources, out, device=args.device, asr_model=args.asr_model, observe=tally.add)
    except InputError as e:
        return _fail(2, str(e))
    except EmodeskError as e:
        return _fail(1, str(e))
    except KeyboardInterrupt:
        print(f"emodesk: interrupted; the records so far are in {partial_path(out)}", file=sys.stderr)
        raise
    broken = [s for s in summary.statuses if s.state == "error"]
    for s in summary.statuses:
        if not s.ok:
            print(f"emodesk: {s.slot}: {s.message}", file=sys.stderr)
        for err in s.failed:  # the slot ran without this member: say which and why
            print(f"emodesk: {s.slot}: left out: {err}", file=sys.stderr)
    print(
        f"{summary.frames} frames ({summary.frames_with_faces} with faces, {summary.tracks} tracks, "
        f"{summary.face_fps:.1f} frames/s), {summary.utterances} utterances, "
        f"{summary.records} records → {out}"
    )
    if args.json:
        report = {
            "frames": summary.frames,
            "frames_with_faces": summary.frames_with_faces,
            "tracks": summary.tracks,
            "utterances": summary.utterances,
            "transcript": summary.transcript,
            "records": summary.records,
            "media_seconds": summary.media_seconds,
            "wall_seconds": round(summary.wall_seconds, 3),
            "face_fps": round(summary.face_fps, 2),
            "models": [{"slot": s.slot, "state": s.state, "message": s.message} for s in summary.statuses],
            "emotions": tally.result(summary.media_seconds),
        }
        try:
            private.write_text(args.json, json.dumps(report, indent=2) + "\n")
        except InputError as e:
            return _fail(2, str(e))
    if broken:  # what ran is kept; the run is not a success
        slots = ", ".join(s.slot for s in broken)
        return _fail(1, f"{slots} failed; what the rest produced is in {out}")
    return 0


def cmd_devices(argv: Sequence[str]) -> int:
    argparse.ArgumentParser(prog="emodesk devices", description="List cameras and microphones.").parse_args(
        argv
    )
    from emodesk.capture.microphone import list_microphones
    from emodesk.capture.webcam import list_cameras

    try:
        cams = list_cameras()
    except EmodeskError as e:
        print(f"cameras: none ({e})")
    else:
        print("cameras:" if cams else "cameras: none")
        for i, name in cams:
            print(f"  camera:{i}: {name}")
    try:
        mics = list_microphones()
    except EmodeskError as e:
        print(f"microphones: none ({e})")
    else:
        print("microphones:" if mics else "microphones: none")
        for m in mics:
            print(f"  {m['index']}: {m['name']} ({m['channels']} ch, {m['samplerate']:.0f} Hz)")
    return 0


def cmd_models(argv: Sequence[str]) -> int:
    if argv and argv[0] in ("verify", "lock"):
        from emodesk.cli.common import guarded

        return guarded(lambda a: _models_lock_cmd(argv[0], a), list(argv[1:]), f"models {argv[0]}")
    if argv and argv[0] in ("sets", "use", "prune"):
        from emodesk.cli.common import guarded

        return guarded(lambda a: _model_sets_cmd(argv[0], a), list(argv[1:]), f"models {argv[0]}")
    argparse.ArgumentParser(
        prog="emodesk models",
        description="List installed models. 'emodesk models verify [DIR...]' checks model sets against "
        "their lock (exit 1 on a mismatch); 'emodesk models lock DIR' records a folder's files as they are; "
        "'emodesk models sets' lists the model sets retrain made (the active one starred), "
        "'emodesk models use VERSION|shipped' switches, 'emodesk models prune [--keep N] [--dry-run]' "
        "deletes inactive ones.",
    ).parse_args(argv)
    import shutil
    import textwrap

    from emodesk.inference.registry import installed_manifests
    from emodesk.resources import model_search_dirs

    print("model sets searched:", ", ".join(str(d) for d in model_search_dirs()))
    width = max(60, min(shutil.get_terminal_size((100, 24)).columns, 160))
    indent = " " * 15

    def wrapped(label: str, text: str) -> str:
        return textwrap.fill(
            f"{label}{text}",
            width,
            initial_indent=indent,
            subsequent_indent=indent + " " * len(label),
            break_on_hyphens=False,
            break_long_words=False,
        )

    for m in sorted(installed_manifests().values(), key=lambda m: (m.modality, m.id)):
        accs = []
        for name, met in m.metrics.items():
            value = met.get("accuracy") if isinstance(met, dict) else None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                accs.append(f"{name}: acc {value:.3f}")
        adapted = m.source.get("fine_tuned") if isinstance(m.source, dict) else None
        mark = " (adapted to your sessions by emodesk retrain)" if adapted else ""
        print(f"{m.modality:14s} {m.id}{mark}")
        # the license in full (a model's terms are never cut); the measured accuracies, every one
        print(wrapped("license: ", m.license))
        if accs:
            print(wrapped("measured: ", "; ".join(accs)))
        if m.usage:
            print(wrapped("! ", m.usage))
    return 0


def _model_sets_cmd(cmd: str, argv: Sequence[str]) -> int:
    from emodesk.fusion import model_sets as ms

    p = argparse.ArgumentParser(prog=f"emodesk models {cmd}")
    if cmd == "use":
        p.add_argument("version", metavar="VERSION|shipped", help="a set `emodesk models sets` lists")
    if cmd == "prune":
        p.add_argument("--keep", type=int, default=1, metavar="N", help="inactive sets to keep, newest (1)")
        p.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    args = p.parse_args(argv)
    if cmd == "sets":
        print(f"model sets in {ms.models_root()} (* active):")
        for s in ms.list_sets():
            print(s.summary())
        return 0
    if cmd == "use":
        print(f"active model set: {ms.use_set(args.version)}")
        return 0
    gone = ms.prune(args.keep, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {len(gone)} model set(s){': ' + ', '.join(gone) if gone else ''}")
    return 0


def _models_lock_cmd(cmd: str, argv: Sequence[str]) -> int:
    from emodesk.inference.lock import verify_folder, write_lock
    from emodesk.resources import model_search_dirs

    p = argparse.ArgumentParser(prog=f"emodesk models {cmd}")
    if cmd == "lock":
        p.add_argument("folder", metavar="DIR", help="a model set folder, after a deliberate change")
    else:
        p.add_argument(
            "folders", nargs="*", metavar="DIR", help="model set folders (default: those searched)"
        )
    args = p.parse_args(argv)
    if cmd == "lock":
        folder = Path(args.folder)
        if not folder.is_dir():
            return _fail(2, f"{folder} is not a folder")
        print(f"wrote {write_lock(folder)}")
        return 0
    folders = [Path(f) for f in args.folders] or [d for d in model_search_dirs() if d.is_dir()]
    bad = 0
    for folder in folders:
        if not folder.is_dir():
            return _fail(2, f"{folder} is not a folder")
        problems = verify_folder(folder)
        print(f"{'ok  ' if not problems else 'FAIL'} {folder}")
        for line in problems:
            print(f"     {line}")
        bad += bool(problems)
    return 1 if bad else 0


def cmd_fusion(argv: Sequence[str]) -> int:
    from emodesk.cli.fusion_cmd import main as fusion_main

    return fusion_main(argv)


def cmd_eval(argv: Sequence[str]) -> int:
    from emodesk.cli.eval_cmd import main as eval_main

    return eval_main(argv)


def cmd_train(argv: Sequence[str]) -> int:
    from emodesk.cli.train_cmd import main as train_main

    return train_main(argv)


def cmd_record(argv: Sequence[str]) -> int:
    from emodesk.cli.sessions_cmd import main as sessions_main

    return sessions_main(argv, "record")


def cmd_sessions(argv: Sequence[str]) -> int:
    from emodesk.cli.sessions_cmd import main as sessions_main

    return sessions_main(argv, "sessions")


def cmd_retrain(argv: Sequence[str]) -> int:
    from emodesk.cli.sessions_cmd import main as sessions_main

    return sessions_main(argv, "retrain")


def cmd_bench(argv: Sequence[str]) -> int:
    from emodesk.cli.bench_cmd import main as bench_main

    return bench_main(argv)


def cmd_table(argv: Sequence[str]) -> int:
    from emodesk.cli.results_cmd import table_main

    return table_main(argv)


def cmd_report(argv: Sequence[str]) -> int:
    from emodesk.cli.results_cmd import report_main

    return report_main(argv)


def cmd_run(argv: Sequence[str]) -> int:
    args = _app_parser().parse_args(argv)
    allow_asr_download(args.download_asr)
    _setup_logging(args.verbose)
    from emodesk.machine import require_device

    try:
        require_device(args.device)
    except InputError as e:
        return _fail(2, str(e))
    if args.self_test:
        from emodesk.cli.selftest import self_test

        return self_test(asr_model=args.asr_model, device=args.device)
    try:
        from emodesk.ui.app import run_app
    except ImportError as e:
        return _fail(1, f"the window needs Qt (PySide6), which failed to load: {e}")
    try:
        return run_app(
            args.source,
            audio=args.audio,
            mic=args.mic,
            asr_model=args.asr_model,
            device=args.device,
            quit_after=args.quit_after,
            screenshot=args.screenshot,
        )
    except InputError as e:
        return _fail(2, str(e))
    except EmodeskError as e:
        return _fail(1, str(e))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        cmd, rest = argv[0], argv[1:]
        try:
            commands = {
                "run": cmd_run,
                "analyze": cmd_analyze,
                "devices": cmd_devices,
                "models": cmd_models,
                "fusion": cmd_fusion,
                "eval": cmd_eval,
                "train": cmd_train,
                "bench": cmd_bench,
                "record": cmd_record,
                "sessions": cmd_sessions,
                "retrain": cmd_retrain,
                "table": cmd_table,
                "report": cmd_report,
            }
            return commands[cmd](rest)
        except KeyboardInterrupt:
            return 130
    try:
        return cmd_run(argv)
    except KeyboardInterrupt:
        return 130
