"""The peer baseline's own environment: created on first use, then reused.

One environment holds one OpenCV, and the Haar cascades the ``fer`` library
detects with exist only in OpenCV 4 wheels, so the baseline runs
:mod:`emodesk.lab.baseline.fer_pipeline` in a separate virtual environment with
``opencv-python-headless`` 4 and the same ONNX Runtime as emodesk, as a
subprocess of ``emodesk bench``. Creating it needs PyPI once (about a minute);
without network the bench reports the baseline as unavailable and says why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emodesk.errors import EmodeskError

OPENCV4 = "opencv-python-headless==4.14.0.94"
SCRIPT = Path(__file__).with_name("fer_pipeline.py")


class BaselineUnavailable(EmodeskError):
    """The baseline environment could not be created or run (reason in the message)."""


def default_env_dir() -> Path:
    from emodesk.resources import user_data_dir

    return user_data_dir() / "bench-baseline-env"


def env_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _requirements() -> list[str]:
    import numpy
    import onnxruntime

    return [OPENCV4, f"onnxruntime=={onnxruntime.__version__}", f"numpy=={numpy.__version__}"]


def ensure_env(env: Path, log: Callable[[str], None] | None = None) -> Path:
    """The environment's python, creating the environment (venv + pip install) if needed."""
    if getattr(sys, "frozen", False):
        raise BaselineUnavailable(
            "the baseline needs a Python to create its environment with; run emodesk bench from a "
            "source install (pip install -e .)"
        )
    py = env_python(env)
    marker = env / "emodesk-baseline.json"
    want = _requirements()
    try:
        if py.is_file() and json.loads(marker.read_text(encoding="utf-8")).get("requirements") == want:
            return py
    except (OSError, ValueError):
        pass
    if log:
        log(f"creating the baseline environment in {env} ({', '.join(want)}); needs PyPI once")
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(env)], check=True, capture_output=True)
        subprocess.run(
            [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *want],
            check=True,
            capture_output=True,
            text=True,
            timeout=900,
        )
    except subprocess.CalledProcessError as e:
        tail = (e.stderr or e.stdout or "").strip().splitlines()[-1:] if isinstance(e.stderr, str) else []
        raise BaselineUnavailable(
            f"could not create the baseline environment in {env}: {' '.join(tail) or e}"
        ) from None
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BaselineUnavailable(f"could not create the baseline environment in {env}: {e}") from None
    marker.write_text(json.dumps({"requirements": want}), encoding="utf-8")
    return py


def run_baseline(
    video: Path,
    model: Path,
    frames: int,
    *,
    env: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Unpaced fps of the fer-style pipeline over ``video`` (looped to ``frames`` frames)."""
    py = ensure_env(env or default_env_dir(), log)
    try:
        proc = subprocess.run(
            [str(py), str(SCRIPT), str(video), str(model), "--frames", str(frames)],
            capture_output=True,
            text=True,
            timeout=1800,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BaselineUnavailable(f"baseline run failed: {e}") from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("{")]
    if not lines:
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise BaselineUnavailable(f"baseline run failed (exit {proc.returncode}): {err}")
    out: dict[str, Any] = json.loads(lines[-1])
    if "error" in out:
        raise BaselineUnavailable(f"baseline run failed: {out['error']}")
    return out
