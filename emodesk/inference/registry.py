"""Finding installed models: the active user set first, then the shipped set."""

from __future__ import annotations

import logging
from pathlib import Path

from emodesk.errors import ModelError
from emodesk.inference.lock import LOCK_FILE
from emodesk.inference.manifest import ModelManifest
from emodesk.resources import model_search_dirs

log = logging.getLogger(__name__)


def _manifest_files(d: Path) -> list[Path]:
    """The JSON files of ``d`` that should be model manifests: not ``fusion.json``, not the set's
    ``lock.json`` and not a model's companion files (``<id>.tokenizer.json``)."""
    return [
        jp
        for jp in sorted(d.glob("*.json"))
        if jp.name not in ("fusion.json", LOCK_FILE) and not jp.name.endswith(".tokenizer.json")
    ]


def installed_manifests(dirs: list[Path] | None = None) -> dict[str, ModelManifest]:
    """Every readable manifest by id; an id in an earlier dir shadows later ones.

    Unreadable manifests are logged and skipped so one broken file cannot hide
    the rest of the set; loading that model by id still reports the error.
    """
    found: dict[str, ModelManifest] = {}
    for d in dirs if dirs is not None else model_search_dirs():
        for jp in _manifest_files(d):
            try:
                m = ModelManifest.load(jp)
            except ModelError as e:
                log.warning("skipping %s", e)
                continue
            found.setdefault(m.id, m)
    return found


def refused_manifests(dirs: list[Path] | None = None) -> list[str]:
    """Why each manifest file of the searched folders that :func:`installed_manifests` skips was
    refused (for ``--self-test``: a member that silently vanished from a set is a fault)."""
    out = []
    for d in dirs if dirs is not None else model_search_dirs():
        for jp in _manifest_files(d):
            try:
                ModelManifest.load(jp)
            except ModelError as e:
                out.append(str(e))
    return out


def usage_notes(dirs: list[Path] | None = None) -> list[str]:
    """One line per installed model whose training data restricts its use (shown in the window)."""
    return [
        f"{m.id}: {m.usage}"
        for m in sorted(installed_manifests(dirs).values(), key=lambda m: m.id)
        if m.usage
    ]


def find_model(model_id: str, dirs: list[Path] | None = None) -> ModelManifest:
    """The manifest of ``model_id``, or a :class:`ModelError` listing what is installed."""
    for d in dirs if dirs is not None else model_search_dirs():
        for jp in _manifest_files(d):
            try:
                m = ModelManifest.load(jp)
            except ModelError:
                if jp.stem == model_id:
                    raise
                continue
            if m.id == model_id:
                return m
    have = sorted(installed_manifests(dirs))
    raise ModelError(f"model {model_id!r} is not installed; installed models: {have or 'none'}")


def models_of(modality: str, dirs: list[Path] | None = None) -> list[ModelManifest]:
    return [m for m in installed_manifests(dirs).values() if m.modality == modality]
