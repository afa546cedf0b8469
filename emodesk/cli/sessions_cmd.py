"""``emodesk record`` and ``emodesk sessions list|check|repair|export`` (docs/formats.md, "Command-line").

Exit status: 0 success (``check``: the session is sound), 1 the work failed
(``check``: problems found; ``record``: the recording stopped on an error),
2 bad usage or unreadable input.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from emodesk.cli.common import DOWNLOAD_ASR_HELP, Parser, UsageError, allow_asr_download, guarded, lab_module
from emodesk.errors import InputError


def default_parent() -> Path:
    from emodesk.resources import sessions_dir

    return sessions_dir()


def _record_parser() -> Parser:
    p = Parser(
        prog="emodesk record",
        description="Record a labeled session headless (every model running, as in the window) and print "
        "the new session folder's path.",
    )
    p.add_argument("source", metavar="SOURCE", help="a video/audio file, camera[:N] or demo")
    p.add_argument("--out", metavar="PARENT", help="where the session folder is created (default: user data)")
    p.add_argument(
        "--duration", type=float, metavar="S", help="stop after S media seconds (default: the end)"
    )
    p.add_argument("--label", help="the label from the start (canonical label or alias)")
    p.add_argument("--audio", metavar="FILE", help="a separate audio file")
    p.add_argument(
        "--mic",
        metavar="N|NAME",
        help="the microphone: with a camera, or a video file's picture with live sound",
    )
    p.add_argument("--privacy", choices=("full", "face-crops"), default="full", help="face crops only")
    p.add_argument("--notes", default="", help="free-text notes stored in session.json")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--asr-model", metavar="NAME|DIR")
    p.add_argument("--download-asr", action="store_true", help=DOWNLOAD_ASR_HELP)
    return p


def cmd_record(argv: Sequence[str]) -> int:
    args = _record_parser().parse_args(argv)
    from emodesk.labels import canonical_label
    from emodesk.machine import require_device
    from emodesk.workers.record import record_headless

    require_device(args.device)
    allow_asr_download(args.download_asr)

    if args.duration is not None and args.duration <= 0:
        raise UsageError("--duration must be positive")
    if args.audio is None:
        from emodesk.capture.sources import require_named_microphone
        from emodesk.errors import DeviceError

        try:  # refused before anything is recorded, like the window (exit 2)
            require_named_microphone(args.mic)
        except DeviceError as e:
            raise UsageError(str(e)) from e
    label = canonical_label(args.label) if args.label else None
    parent = Path(args.out) if args.out else default_parent()
    path = record_headless(
        args.source,
        parent,
        duration=args.duration,
        label=label,
        audio=args.audio,
        mic=args.mic,
        privacy=args.privacy,
        notes=args.notes,
        device=args.device,
        asr_model=args.asr_model,
        on_started=lambda p: print(f"emodesk: recording to {p}", file=sys.stderr, flush=True),
    )
    print(path)
    return 0


def _fmt_report(rep: object) -> str:
    from emodesk.recording.session import SessionReport

    assert isinstance(rep, SessionReport)
    i = rep.info
    dur = f"{i['duration_s']:.1f} s" if i.get("duration_s") is not None else "?"
    return (
        f"{i.get('id', rep.path.name)}  {i.get('state')}  {dur}  {i.get('frames', 0)} frames  "
        f"{i.get('audio_s', 0):.1f} s audio  {i.get('scores', 0)} records  {i.get('labels', 0)} label changes"
    )


def cmd_sessions(argv: Sequence[str]) -> int:
    p = Parser(prog="emodesk sessions", description="List, check, repair and export recorded sessions.")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    ls = sub.add_parser("list", help="the sessions under PARENT (default: the user data folder)")
    ls.add_argument("parent", nargs="?")
    ck = sub.add_parser("check", help="exit 0 if the session is sound, 1 with its problems otherwise")
    ck.add_argument("path")
    rp = sub.add_parser("repair", help="make a killed or interrupted session readable again")
    rp.add_argument("path")
    lb = sub.add_parser("label", help="set or correct the label of a time span after recording")
    lb.add_argument("path")
    lb.add_argument("label", help="a canonical label or alias, or none to clear")
    lb.add_argument("--from", dest="t0", type=float, required=True, metavar="S", help="media seconds")
    lb.add_argument(
        "--to", dest="t1", required=True, metavar="S|end", help="media seconds, or end: to the session's end"
    )
    ex = sub.add_parser("export", help="unimodal and paired manifests of the labeled parts")
    ex.add_argument("path")
    ex.add_argument("--out", required=True, metavar="DIR")
    ex.add_argument("--face-every", type=float, default=0.5, metavar="S", help="face crop interval (0.5 s)")
    args = p.parse_args(argv)
    from emodesk.recording.session import check_session, list_sessions, repair_session

    if args.cmd == "list":
        parent = Path(args.parent) if args.parent else default_parent()
        if not parent.is_dir():
            print(f"no sessions: {parent} does not exist")
            return 0
        reps = list_sessions(parent)
        for r in reps:
            flag = "" if r.ok else f"  ! {len(r.problems)} problem(s): emodesk sessions check {r.path}"
            print(_fmt_report(r) + flag)
        print(f"{len(reps)} session(s) in {parent}")
        return 0
    path = Path(args.path)
    if not path.is_dir():
        raise InputError(f"{path} is not a session folder")
    if args.cmd == "check":
        rep = check_session(path)
        print(_fmt_report(rep))
        for prob in rep.problems:
            print(f"  problem: {prob}")
        if rep.problems:
            print(f"  fix: emodesk sessions repair {path}")
        return 0 if rep.ok else 1
    if args.cmd == "repair":
        rep = repair_session(path)
        for line in rep.repairs or ["nothing to repair"]:
            print(f"  {line}")
        print(_fmt_report(rep))
        for prob in rep.problems:
            print(f"  still: {prob}")
        return 0 if rep.ok else 1
    if args.cmd == "label":
        from emodesk.recording.session import relabel

        lab = None if args.label.strip().lower() in ("none", "-", "") else args.label
        if args.t1.strip().lower() == "end":
            t1 = None
        else:
            try:
                t1 = float(args.t1)
            except ValueError:
                raise UsageError(f"--to {args.t1}: give media seconds or end") from None
        changes = relabel(path, args.t0, t1, lab)
        end_text = "the end" if t1 is None else f"{t1:g} s"
        print(f"{path.name}: {lab or 'no label'} on {args.t0:g} s – {end_text}; {len(changes)} label changes")
        return 0
    from emodesk.recording.export import export_session

    out = Path(args.out)
    s = export_session(path, out, face_every=args.face_every)
    print(f"{out}: {s.faces} face crops, {s.utterances} utterances, {s.paired} paired rows")
    return 0


def cmd_retrain(argv: Sequence[str]) -> int:
    p = Parser(
        prog="emodesk retrain",
        description="Adapt the model set to your labeled sessions and install it only if it is better. "
        "Each session sits on one side of a fixed split, kept across runs and seeds: on the adapt "
        "sessions the voice members' heads are re-fitted and the face and text members get a new output "
        "layer; on the fusion sessions, which the adapted members never saw, the fusion weights are "
        "searched (Aquila Optimizer); on the held-out sessions the active set and the new one are "
        "compared, never on a session that trained the active set. The new set is installed only if its "
        "fused macro-F1 is higher beyond the bootstrap noise. Exit status: 0 installed, 3 evaluated but "
        "not installed, 1 failure (too little data included), 2 bad usage. --rollback restores the "
        "previous set.",
    )
    p.add_argument("--sessions", nargs="+", metavar="DIR", help="sessions, or folders of sessions")
    p.add_argument(
        "--base-data", metavar="DIR", help="mix a RAVDESS-layout folder into the voice fine-tuning"
    )
    p.add_argument("--optimizer", default="ao", choices=("ao", "ao-levy-ls", "de", "pso", "random"))
    p.add_argument(
        "--seed", type=int, default=0, help="the optimizer's and the bootstrap's (never the split's)"
    )
    p.add_argument("--min-rows", type=int, default=20, help="labeled utterances needed (default 20)")
    p.add_argument("--rollback", action="store_true", help="make the previous model set active again")
    p.add_argument("--no-fine-tune", action="store_true", help="re-optimise the fusion weights only")
    args = p.parse_args(argv)
    rt = lab_module("retrain.retrain", "retraining")
    retrain, rollback = rt.retrain, rt.rollback

    if args.rollback:
        now = rollback()
        print(f"active model set: {now}")
        return 0
    if not args.sessions:
        raise UsageError("emodesk retrain needs --sessions DIR... (or --rollback)")
    r = retrain(
        args.sessions,
        optimizer=args.optimizer,
        seed=args.seed,
        min_rows=args.min_rows,
        base_data=Path(args.base_data) if args.base_data else None,
        fine_tune=not args.no_fine_tune,
        log=lambda m: print(f"emodesk: {m}", file=sys.stderr, flush=True),
    )
    for side, name in (("adapt", "adapt"), ("fusion", "fusion"), ("held_out", "held out")):
        print(f"{name}: {', '.join(r.sessions[side]) or 'none'} ({r.rows[side]} utterances)")
    if r.left_out:
        print(f"left out of the verdict (they trained the active set): {', '.join(r.left_out)}")
    if r.coverage is not None:
        print(r.coverage.table())
        for w in r.coverage.warnings:
            print(f"warning: {w}")
    print(f"fusion weights: {r.fusion_rule}")
    print(f"{'held-out macro-F1':24s} {'active':>8s} {'new':>8s}")
    for k in r.old:
        print(f"{k:24s} {r.old[k]:8.3f} {r.new.get(k, float('nan')):8.3f}")
    if r.per_class:
        print(f"{'held-out fused F1':24s} {'active':>8s} {'new':>8s}")
        for label, f1 in r.per_class["active"].items():
            print(f"  {label:22s} {f1:8.3f} {r.per_class['new'][label]:8.3f}")
    if r.diff_ci95:
        print(f"fused gain 95% interval: [{r.diff_ci95[0]:+.3f}, {r.diff_ci95[1]:+.3f}]")
    print(r.fine_tuned)
    print(r.reason)
    return 0 if r.installed else rt.EXIT_NOT_INSTALLED


def main(argv: Sequence[str] | None, cmd: str) -> int:
    run = {"record": cmd_record, "sessions": cmd_sessions, "retrain": cmd_retrain}[cmd]
    return guarded(run, list(sys.argv[1:] if argv is None else argv), cmd)
