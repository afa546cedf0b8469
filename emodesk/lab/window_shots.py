"""Render the live window in demo mode on real X screens of three sizes, to PNGs anyone can look at.

    python -m emodesk.lab.window_shots --out build/window-shots [--sizes 1366x768,1024x600,800x500]

For each size: a fresh Xvfb screen, ``emodesk demo`` on it with its settings in
a fresh ``EMODESK_HOME`` (a first start, as a new user sees it), a grab of the
whole screen (``screen-WxH.png``: is the window on it?) and of the window
(``window-WxH.png``) after ``--seconds``, and the window's geometry from
``xwininfo``. ``summary.json`` says, per size, whether the whole window was on
screen; exit 1 if it was not at any size. Needs ``Xvfb`` and ``xwininfo``
(Debian: ``xvfb x11-utils``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SIZES = ((1366, 768), (1024, 600), (800, 500))
GRAB = (
    "import sys\n"
    "from PySide6.QtGui import QGuiApplication\n"
    "app = QGuiApplication(sys.argv[:1])\n"
    "ok = app.primaryScreen().grabWindow(0).save(sys.argv[1])\n"
    "sys.exit(0 if ok else 1)\n"
)


def _free_display() -> int:
    for n in range(90, 140):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    raise SystemExit("window_shots: no free X display number in :90–:139")


def window_geometry(display: str, title: str = "emodesk") -> tuple[int, int, int, int] | None:
    """(x, y, w, h) of the first top-level window whose name starts with ``title``."""
    out = subprocess.run(
        ["xwininfo", "-root", "-children"],
        capture_output=True,
        text=True,
        env={**os.environ, "DISPLAY": display},
    ).stdout
    for line in out.splitlines():
        m = re.search(r'"(?P<name>[^"]*)".*?(?P<w>\d+)x(?P<h>\d+)\+(?P<x>-?\d+)\+(?P<y>-?\d+)', line)
        if m and m["name"].startswith(title):
            return int(m["x"]), int(m["y"]), int(m["w"]), int(m["h"])
    return None


def shoot(size: tuple[int, int], out: Path, seconds: float) -> dict[str, Any]:
    w, h = size
    n = _free_display()
    display = f":{n}"
    xvfb = subprocess.Popen(
        ["Xvfb", display, "-screen", "0", f"{w}x{h}x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if Path(f"/tmp/.X11-unix/X{n}").exists():
                break
            time.sleep(0.05)
        home = Path(tempfile.mkdtemp(prefix="emodesk-shots-"))
        env = {**os.environ, "DISPLAY": display, "EMODESK_HOME": str(home)}
        env.pop("QT_QPA_PLATFORM", None)
        win_png = out / f"window-{w}x{h}.png"
        app = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "emodesk",
                "demo",
                "--quit-after",
                str(seconds + 4),
                "--screenshot",
                str(win_png),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(seconds)
        geom = window_geometry(display)
        screen_png = out / f"screen-{w}x{h}.png"
        grabbed = (
            subprocess.run([sys.executable, "-c", GRAB, str(screen_png)], env=env, timeout=60).returncode == 0
        )
        log, _ = app.communicate(timeout=120)
        shutil.rmtree(home, ignore_errors=True)
    finally:
        xvfb.terminate()
        xvfb.wait(10)
    on_screen = (
        geom is not None
        and geom[0] >= 0
        and geom[1] >= 0
        and geom[0] + geom[2] <= w
        and geom[1] + geom[3] <= h
    )
    return {
        "screen": [w, h],
        "window": list(geom) if geom is not None else None,
        "whole_window_on_screen": on_screen,
        "screen_png": screen_png.name if grabbed else None,
        "window_png": win_png.name if win_png.is_file() else None,
        "exit_status": app.returncode,
        "log_tail": log.strip().splitlines()[-3:],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m emodesk.lab.window_shots", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--out", type=Path, default=Path("build/window-shots"))
    ap.add_argument("--sizes", default=",".join(f"{w}x{h}" for w, h in SIZES), help="WxH,WxH,…")
    ap.add_argument("--seconds", type=float, default=20.0, help="demo seconds before the grab (default 20)")
    args = ap.parse_args(argv)
    missing = [t for t in ("Xvfb", "xwininfo") if shutil.which(t) is None]
    if missing:
        print(
            f"window_shots: {', '.join(missing)} not found (Debian: apt-get install xvfb x11-utils)",
            file=sys.stderr,
        )
        return 2
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",") if s]
    args.out.mkdir(parents=True, exist_ok=True)
    results = [shoot((w, h), args.out, args.seconds) for w, h in sizes]
    (args.out / "summary.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for r in results:
        sw, sh = r["screen"]
        print(f"{sw}x{sh}: window {r['window']} on screen: {r['whole_window_on_screen']}")
    ok = all(r["whole_window_on_screen"] and r["exit_status"] == 0 for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
