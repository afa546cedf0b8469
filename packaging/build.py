"""Build the one-folder bundle and report its size: ``python packaging/build.py``.

Runs PyInstaller on ``packaging/emodesk.spec`` with the Python that runs this
script (so build from the project's venv), then prints the build time, the
unpacked size against the issue's budget (450 MB on Linux) and the ten
largest parts. Exit status: 0 built, 1 PyInstaller failed or the bundle is
larger than ``--max-mb``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "packaging" / "emodesk.spec"
NAME = "emodesk"
BUDGET_MB = {"linux": 450}  # the bundle issue's target, unpacked; none set for Windows/macOS


def _files(folder: Path) -> list[tuple[Path, int]]:
    """Every file under ``folder`` with its size (links counted once, as links)."""
    out = []
    for dirpath, _dirs, names in os.walk(folder):
        for n in names:
            p = Path(dirpath) / n
            out.append((p, p.lstat().st_size))
    return out


def size_report(bundle: Path, top: int = 10) -> dict[str, object]:
    """Total size, the ``top`` largest parts and the ``top`` largest files of a bundle folder.

    A *part* is one entry at the top of the bundle's library folder
    (``_internal/``; on macOS ``.app`` bundles the same): a package folder such
    as ``onnxruntime`` or ``PySide6``, or a single library such as
    ``libpython3.11.so.1.0``. ``PySide6`` is split one level further (Qt libraries,
    plugins, bindings), since it is the part a size budget usually fights.
    """
    files = _files(bundle)
    internal = bundle / "_internal"
    base = internal if internal.is_dir() else bundle
    parts: dict[str, int] = defaultdict(int)
    for p, size in files:
        try:
            rel = p.relative_to(base).parts
        except ValueError:  # the executable beside _internal/
            rel = (p.name,)
        key = rel[0]
        if key == "PySide6":
            key = f"PySide6/Qt/{rel[2]}" if len(rel) > 3 and rel[1] == "Qt" else "PySide6 (bindings)"
        parts[key] += size
    total = sum(s for _p, s in files)
    return {
        "bundle": str(bundle),
        "total_bytes": total,
        "files": len(files),
        "top_parts": sorted(parts.items(), key=lambda kv: -kv[1])[:top],
        "top_files": [(str(p.relative_to(bundle)), s) for p, s in sorted(files, key=lambda ps: -ps[1])[:top]],
    }


def _mb(n: int) -> str:
    return f"{n / 1e6:8.1f} MB"


def print_report(report: dict[str, object], seconds: float | None, budget_mb: float | None) -> None:
    total = int(report["total_bytes"])  # type: ignore[call-overload]
    if seconds is not None:
        print(f"build time: {seconds:.0f} s ({seconds / 60:.1f} min)")
    line = f"unpacked size: {total / 1e6:.1f} MB in {report['files']} files ({report['bundle']})"
    if budget_mb is not None:
        over = total / 1e6 - budget_mb
        line += f"; budget {budget_mb:.0f} MB: " + (
            "ok" if over <= 0 else f"OVER by {over:.0f} MB (packaging/README.md, 'Size')"
        )
    print(line)
    print("ten largest parts:")
    for name, size in report["top_parts"]:  # type: ignore[attr-defined]
        print(f"  {_mb(size)}  {name}")
    print("ten largest files:")
    for name, size in report["top_files"]:  # type: ignore[attr-defined]
        print(f"  {_mb(size)}  {name}")


def build(dist: Path, work: Path, *, console: bool | None = None, quiet: bool = False) -> float:
    """Run PyInstaller; return the seconds it took. Raises CalledProcessError on failure."""
    env = dict(os.environ)
    if console is not None:
        env["EMODESK_CONSOLE"] = "1" if console else "0"
    cmd = [
        sys.executable,
        "-m",
        "PyInstaller",
        "--noconfirm",
        "--log-level",
        "WARN",
        "--distpath",
        str(dist),
        "--workpath",
        str(work),
        str(SPEC),
    ]
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL if quiet else None)
    return time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python packaging/build.py", description=__doc__.splitlines()[0])
    p.add_argument(
        "--dist", type=Path, default=ROOT / "dist", help="where dist/emodesk/ goes (default: ./dist)"
    )
    p.add_argument(
        "--work", type=Path, default=ROOT / "build" / "pyinstaller", help="PyInstaller's work folder"
    )
    p.add_argument(
        "--console",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="console executable (default: yes on Linux, windowed on Windows/macOS)",
    )
    p.add_argument("--json", type=Path, metavar="REPORT", help="also write the size report as JSON")
    p.add_argument(
        "--max-mb", type=float, metavar="MB", help="fail (exit 1) when the bundle is larger than this"
    )
    args = p.parse_args(argv)

    try:
        seconds = build(args.dist.resolve(), args.work.resolve(), console=args.console)
    except subprocess.CalledProcessError as e:
        print(f"build.py: PyInstaller failed (exit {e.returncode})", file=sys.stderr)
        return 1
    bundle = args.dist.resolve() / NAME
    report = size_report(bundle)
    budget = BUDGET_MB.get("linux" if sys.platform.startswith("linux") else sys.platform)
    print_report(report, seconds, budget)
    if args.json:
        args.json.write_text(
            json.dumps({**report, "build_seconds": round(seconds, 1), "budget_mb": budget}, indent=2) + "\n",
            encoding="utf-8",
        )
    total = int(report["total_bytes"])  # type: ignore[call-overload]
    if args.max_mb is not None and total > args.max_mb * 1e6:
        print(
            f"build.py: the bundle is {total / 1e6:.1f} MB, over --max-mb {args.max_mb:.0f}", file=sys.stderr
        )
        return 1
    exe = bundle / (NAME + (".exe" if sys.platform == "win32" else ""))
    print(f"built {exe}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
