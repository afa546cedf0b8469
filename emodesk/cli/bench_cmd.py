"""``emodesk bench SOURCE [--audio FILE] --json OUT``: measure the real pipeline (docs/formats.md,
"Benchmark JSON").

Exit status: 0 measured (budgets missed or not: the report says which), 1 the
measurement failed, 2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emodesk.cli.common import DOWNLOAD_ASR_HELP, Parser, UsageError, allow_asr_download, guarded, lab_module
from emodesk.errors import EmodeskError, InputError


def _parser() -> Parser:
    p = Parser(
        prog="emodesk bench",
        description="Replay SOURCE through the real pipeline and models, headless: once paced in real time "
        "(latency, CPU, memory, start-up), once unpaced (face throughput), and the fer-style baseline "
        "pipeline in its own environment (speed ratio). Prints the budgets table; --json writes the "
        "report of docs/formats.md.",
    )
    p.add_argument(
        "source", metavar="SOURCE", help="a video file or demo (a camera works for the paced pass)"
    )
    p.add_argument("--audio", metavar="FILE", help="a separate audio file for the speech path")
    p.add_argument("--json", required=True, metavar="OUT", help="where to write the report")
    p.add_argument(
        "--markdown", metavar="OUT.md", help="also write the performance page (docs/performance.md)"
    )
    p.add_argument("--seconds", type=float, default=60.0, help="length of the paced pass (default 60)")
    p.add_argument("--frames", type=int, default=600, help="frames of the unpaced pass (default 600)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--asr-model", metavar="NAME|DIR", help="faster-whisper model (default: bundled tiny.en)")
    p.add_argument("--download-asr", action="store_true", help=DOWNLOAD_ASR_HELP)
    p.add_argument("--no-baseline", action="store_true", help="skip the fer-style baseline")
    p.add_argument(
        "--every-member-every-frame",
        action="store_true",
        help="score every face member on every frame (the schedule off): what the schedule saves",
    )
    p.add_argument(
        "--detect-every-frame",
        action="store_true",
        help="run the face detector on every frame (by default a detection's boxes serve the next 40 ms)",
    )
    p.add_argument(
        "--devices",
        metavar="cpu,cuda",
        help="also time every stage at batch 1 and, where it has a batched call, 8 (and a frame of ten "
        "faces) on each of these devices, in this invocation (a GPU machine: --devices cpu,cuda)",
    )
    p.add_argument(
        "--stages-only",
        action="store_true",
        help="with --devices: only the stage timings (no paced or unpaced pass, no baseline, no Qt); "
        "--markdown then writes the GPU page (docs/performance-gpu.md)",
    )
    p.add_argument("--baseline-env", metavar="DIR", help="the baseline's environment (created on first use)")
    p.add_argument(
        "--load",
        action="store_true",
        help="generate heavy load (six busy loops and a process compressing 2 GB through a file, 512 MB "
        "held) and measure only the paced pass under it: the speech path's backlog, what it shed and its "
        "transcript latency (no unpaced pass, no baseline)",
    )
    p.add_argument(
        "--load-busy",
        type=int,
        default=6,
        metavar="N",
        help="with --load: how many busy-loop processes (default 6)",
    )
    p.add_argument(
        "--load-warmup",
        type=float,
        default=180.0,
        metavar="S",
        help="with --load: wait until the 1-minute load average reaches 8 before measuring, at most "
        "this many seconds (default 180)",
    )
    return p


def _log(msg: str) -> None:
    print(f"emodesk: {msg}", file=sys.stderr, flush=True)


def run(argv: Sequence[str]) -> int:
    started = time.monotonic()  # startup_s and first_frame_s count from here
    args = _parser().parse_args(argv)
    from emodesk.machine import require_device

    require_device(args.device)
    allow_asr_download(args.download_asr)
    from emodesk.bench import report as rep
    from emodesk.bench.run import fusion_timing, machine_info, unpaced_pass
    from emodesk.capture.sources import demo_clip_path, parse_camera
    from emodesk.pipeline.face_path import REUSE_BOXES_S

    if args.seconds <= 0 or args.frames < 1:
        raise UsageError("--seconds must be positive and --frames at least 1")
    out = Path(args.json)
    if not out.parent.is_dir():
        raise UsageError(f"--json {args.json}: folder {out.parent} does not exist")
    md = Path(args.markdown) if args.markdown else None
    if md is not None and not md.parent.is_dir():
        raise UsageError(f"--markdown {args.markdown}: folder {md.parent} does not exist")
    camera = parse_camera(args.source) is not None
    video = None if camera else (demo_clip_path() if args.source == "demo" else Path(args.source))
    if video is not None and not video.is_file():
        raise InputError(f"input file {video} does not exist")
    if args.audio and not Path(args.audio).is_file():
        raise InputError(f"--audio {args.audio}: no such file")

    rotate = not args.every_member_every_frame
    reuse = 0.0 if args.detect_every_frame else None
    devices = _devices(args.devices)
    if args.stages_only:
        if not devices:
            raise UsageError("--stages-only needs --devices (cpu, cuda or cpu,cuda)")
        if args.load:
            raise UsageError("--stages-only and --load measure different things: pick one")
        return _stages_only(args, argv, out, md, video if video is not None else demo_clip_path(), devices)
    if args.load:
        return _under_load(args, argv, out, rotate, reuse)
    _log(f"paced pass: {args.seconds:.0f} s of {args.source} in real time, every model loaded")
    paced = _paced(args, rotate, reuse, started=started)
    _log(f"unpaced pass: {args.frames} frames through the face path")
    unpaced = unpaced_pass(
        args.source, frames=args.frames, device=args.device, log=_log, rotate=rotate, reuse_boxes_s=reuse
    )
    baseline: dict[str, object] = {"pipeline": "fer 25.10.3 defaults: OpenCV 4 Haar cascade + mini-Xception"}
    if args.no_baseline:
        baseline["error"] = "skipped (--no-baseline)"
    elif video is None:
        baseline["error"] = "not run: the baseline replays a video file, not a camera"
    else:
        from emodesk.inference.registry import find_model
        from emodesk.resources import baseline_models_dir

        try:
            runner = lab_module("baseline.runner", "the fer-style baseline")
            model = find_model("face-fer-minixception", [baseline_models_dir()]).model_path
            _log(f"baseline: {args.frames} frames through the fer-style pipeline")
            baseline.update(
                runner.run_baseline(
                    video,
                    model,
                    args.frames,
                    env=Path(args.baseline_env) if args.baseline_env else None,
                    log=_log,
                )
            )
        except EmodeskError as e:  # BaselineUnavailable is one
            baseline["error"] = str(e)
            _log(f"baseline unavailable: {e}")
    stages = _stages(video if video is not None else demo_clip_path(), devices) if devices else {}
    command = _command(argv)
    settings = {"source": args.source, "audio": args.audio, "seconds": args.seconds, "frames": args.frames}
    settings["device"] = args.device
    settings["face_member_schedule"] = (
        "every member every frame" if not rotate else "cheapest every frame, others by turns"
    )
    settings["face_detector_schedule"] = (
        "every frame"
        if args.detect_every_frame
        else f"boxes reused for {REUSE_BOXES_S * 1000:.0f} ms of media time"
    )
    settings["command"] = command
    _log("fusion: timing the active rule on 2,000 rows")
    report = rep.build_report(paced, unpaced, baseline, machine_info(), settings, fusion_timing())
    if stages:
        report["stages"] = stages
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if md is not None:
        md.write_text(rep.markdown(report, command=command), encoding="utf-8")
    print(rep.text_table(report))
    failed = list(paced.get("failed", []))
    if video is not None and unpaced.get("fps") is None:
        failed.append(f"face path: {unpaced.get('why', 'no frame was scored')}")
    return _exit_status(failed)


def _exit_status(failed: Sequence[str]) -> int:
    """1 with one line on stderr when something failed while measuring (the report is written), else 0."""
    if failed:
        print(f"emodesk bench: measured with failures (report written): {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _command(argv: Sequence[str]) -> str:
    """The command line a report and its page name, to regenerate them."""
    return "emodesk bench " + " ".join(shlex.quote(a) for a in argv)


def _devices(spec: str | None) -> list[str]:
    devices = [d.strip() for d in (spec or "").split(",") if d.strip()]
    for dev in devices:
        if dev not in ("cpu", "cuda"):
            raise UsageError(f"--devices: {dev!r} is not cpu or cuda")
    return devices


def _stages(clip: Path, devices: Sequence[str]) -> dict[str, Any]:
    """``stage_timings`` on each device, the GPU's name and the CPU/CUDA agreement."""
    from emodesk.bench.run import agreement, stage_timings
    from emodesk.machine import gpu_name

    stages: dict[str, Any] = {}
    for dev in devices:
        _log(f"stage timings on {dev}")
        stages[dev] = stage_timings(clip, device=dev, log=_log)  # type: ignore[arg-type]
    stages["gpu"] = gpu_name()
    stages["agreement"] = agreement(stages)
    return stages


def _stages_only(
    args: argparse.Namespace, argv: Sequence[str], out: Path, md: Path | None, clip: Path, devices: list[str]
) -> int:
    """``--stages-only``: the stage timings on each device, their report and the GPU page."""
    from emodesk.bench import report as rep
    from emodesk.bench.run import machine_info

    stages = _stages(clip, devices)
    command = _command(argv)
    report = rep.stages_report(stages, machine_info(), {"source": args.source, "command": command})
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if md is not None:
        md.write_text(rep.gpu_markdown(report, command=command), encoding="utf-8")
    print(rep.stages_table(report))
    return _exit_status(report["failed"])


LOAD_TARGET = 8.0  # 1-minute load average before the measured pass starts


def _paced(args: argparse.Namespace, rotate: bool, reuse: float | None, **kw: Any) -> dict[str, Any]:
    """The paced pass with the command's options (the plain bench and ``--load`` share it)."""
    from emodesk.workers.measure import paced_pass

    return paced_pass(
        args.source,
        rotate=rotate,
        reuse_boxes_s=reuse,
        audio=args.audio,
        seconds=args.seconds,
        device=args.device,
        asr_model=args.asr_model,
        log=_log,
        **kw,
    )


def _under_load(args: Any, argv: Sequence[str], out: Path, rotate: bool, reuse: float | None) -> int:
    """``--load``: the paced pass while ``emodesk.bench.load`` keeps the machine overloaded."""
    from emodesk.bench import report as rep
    from emodesk.bench.load import GeneratedLoad
    from emodesk.bench.run import machine_info

    if args.load_warmup < 0 or args.load_busy < 0:
        raise UsageError("--load-warmup and --load-busy must be 0 or more")
    with GeneratedLoad(busy=args.load_busy) as load:
        what = load.describe()
        _log(f"load: {what['busy_loops']} busy loops + {what['churn']}")
        _log(f"waiting for the 1-minute load average to reach {LOAD_TARGET:g}")
        reached = load.wait_for(LOAD_TARGET, args.load_warmup)
        _log(f"load average {reached:.1f} after {time.monotonic() - load.started:.0f} s")
        measuring = time.monotonic() - load.started
        _log(f"paced pass under load: {args.seconds:.0f} s of {args.source}")
        paced = _paced(args, rotate, reuse)
        loadavg = load.samples.summary(since_s=measuring)
    command = _command(argv)
    settings = {
        "source": args.source,
        "audio": args.audio,
        "seconds": args.seconds,
        "device": args.device,
        "load_warmup_s": round(measuring, 1),
        "command": command,
    }
    report = rep.load_report(paced, what, loadavg, machine_info(), settings)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(rep.load_table(report))
    return _exit_status(report["failed"])


def main(argv: Sequence[str] | None = None) -> int:
    return guarded(run, list(sys.argv[1:] if argv is None else argv), "bench")
