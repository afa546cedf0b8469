"""``emodesk analyze`` over many inputs: a folder of ``ID.jsonl`` plus ``runs.jsonl`` (the
one-input form is in :mod:`emodesk.cli.main`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from emodesk import private
from emodesk.errors import InputError


class _Bars:
    """Two tqdm bars on stderr, over the inputs and over the current input's media seconds;
    nothing when stderr is not a terminal (a log gets one line per input instead)."""

    def __init__(self, total: int) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.tty = sys.stderr.isatty()
        self.files = tqdm(total=total, unit="input", desc="inputs", position=0, disable=not self.tty)
        self.media: Any = None

    def start(self, inp: Any, media_s: float | None) -> None:
        self.media = self._tqdm(
            total=round(media_s, 1) if media_s else None,
            unit="s",
            desc=inp.id[:30],
            position=1,
            leave=False,
            disable=not self.tty,
            bar_format="{desc}: {n:.1f}/{total_fmt} s media [{elapsed}<{remaining}]",
        )

    def advance(self, t: float) -> None:
        if self.media is not None and t > self.media.n:
            self.media.update(round(t - self.media.n, 3))

    def end(self, entry: dict[str, Any]) -> None:
        if self.media is not None:
            self.media.close()
            self.media = None
        self.files.update(1)
        line = f"{entry['id']}: {entry['status']}"
        if entry.get("status") in ("ok", "degraded"):
            line += f", {entry.get('media_s', 0):.1f} s media in {entry.get('wall_s', 0):.1f} s"
        if entry.get("error"):
            line += f" ({entry['error']})"
        if entry.get("status") == "skipped":
            line += " (done before: --resume)"
        self.files.write(f"emodesk: {line}", file=sys.stderr)

    def close(self) -> None:
        self.files.close()


def analyze_many(args: argparse.Namespace) -> int:
    from emodesk.batch.inputs import expand_inputs
    from emodesk.batch.local import run_batch

    out = Path(args.out)
    try:
        inputs = expand_inputs(args.source)
    except InputError as e:
        print(f"emodesk: {e}", file=sys.stderr)
        return 2
    bars = _Bars(len(inputs))
    started = time.monotonic()
    if args.engine == "ray":
        from emodesk.batch.ray_engine import run_batch_ray

        engine: Any = partial(run_batch_ray, address=args.address, workers=args.workers)
    else:
        engine = run_batch
    try:
        result = engine(
            inputs, out, device=args.device, asr_model=args.asr_model, resume=args.resume, progress=bars
        )
    except InputError as e:  # a runs.jsonl that is not one, a Ray that cannot start: nothing could start
        bars.close()
        print(f"emodesk: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        bars.close()
        print(
            f"emodesk: interrupted; finished inputs are in {out / 'runs.jsonl'}, the one running is "
            "ID.jsonl.partial (rerun with --resume)",
            file=sys.stderr,
        )
        raise
    bars.close()
    wall = time.monotonic() - started  # the whole run: model loading and (Ray) start-up included
    n = {s: result.count(s) for s in ("ok", "degraded", "failed", "skipped")}
    media = sum(float(e.get("media_s") or 0.0) for e in result.entries if e["status"] in ("ok", "degraded"))
    ran = n["ok"] + n["degraded"]
    print(
        f"{len(inputs)} inputs: {n['ok']} ok, {n['degraded']} degraded, {n['failed']} failed, "
        f"{n['skipped']} skipped (done before) → {out} (runs.jsonl); {media:.1f} s of media in {wall:.1f} s "
        f"({media / wall:.2f} media s/s, {ran / wall * 3600:.0f} inputs/h)"
    )
    if args.json:
        report = {
            "inputs": len(inputs),
            "counts": n,
            "out": str(out),
            "engine": args.engine,
            "workers": args.workers,
            "wall_s": round(wall, 3),
            "media_s": round(media, 3),
            "media_s_per_s": round(media / wall, 3),
            "inputs_per_hour": round(ran / wall * 3600, 1),
            "runs": result.entries,
        }
        try:
            private.write_text(args.json, json.dumps(report, indent=2) + "\n")
        except InputError as e:
            print(f"emodesk: {e}", file=sys.stderr)
            return 2
    return result.exit_status
