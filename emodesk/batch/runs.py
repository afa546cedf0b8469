"""What identifies a batch run's input and models in ``runs.jsonl`` (the index itself is
:mod:`emodesk.results.runs`): the input's bytes (:func:`input_sha256`) and the model set
(:func:`model_set_identity`), which ``--resume`` compares.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from emodesk.resources import sha256_file


def model_set_identity(asr_model: str | None = None, device: str = "auto") -> dict[str, Any]:
    """What decides the records besides the input: each model folder's lock (the sha256 of its
    ``lock.json``, which lists every file of the set) or, for a folder without one, its members'
    sha256; the active ``fusion.json``; the recogniser asked for; the emodesk version (its code
    makes the records too) and where the ONNX models run (``cpu`` or ``cuda``: float results differ
    in their last digits). ``key`` is their digest."""
    from emodesk import __version__
    from emodesk.fusion.config import find_fusion_config
    from emodesk.inference.lock import LOCK_FILE
    from emodesk.inference.registry import installed_manifests
    from emodesk.resources import model_search_dirs

    folders: dict[str, str] = {}
    for d in model_search_dirs():
        lock = d / LOCK_FILE
        folders[d.name] = f"lock:{sha256_file(lock)}" if lock.is_file() else "unlocked"
    members = {m.id: m.sha256 for m in installed_manifests().values()}
    fusion = find_fusion_config()
    doc: dict[str, Any] = {
        "folders": folders,
        "members": dict(sorted(members.items())),
        "fusion_sha256": sha256_file(fusion) if fusion is not None else None,
        "asr_model": asr_model or "default",
        "emodesk": __version__,
        "onnx_device": _onnx_device(device),
    }
    doc["key"] = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    return doc


def _onnx_device(device: str) -> str:
    from emodesk.machine import CUDA, choose_providers

    try:
        return "cuda" if choose_providers(device).providers[0] == CUDA else "cpu"  # type: ignore[arg-type]
    except ImportError:  # no onnxruntime: nothing will run anyway
        return device


def input_sha256(path: Path) -> str:
    """sha256 of a file, or of a recorded session's media files (name and bytes, in name order)."""
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(q for q in path.iterdir() if q.is_file() and q.name in {"video.mp4", "audio.wav"}):
        h.update(f.name.encode() + b"\0" + sha256_file(f).encode())
    return h.hexdigest()
