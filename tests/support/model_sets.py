"""Test helper: a copy of the shipped model set, to break on purpose."""

from __future__ import annotations

import shutil
from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[2] / "models"


def copy_shipped_models(folder: Path) -> Path:
    """``folder / "models"``: every shipped model file; point ``EMODESK_MODELS`` at it."""
    out = folder / "models"
    shutil.copytree(SHIPPED, out)
    return out
