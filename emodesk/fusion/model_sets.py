"""Model sets in the user data folder: install, list, switch, roll back, prune.

``<user data>/emodesk/models/`` holds one folder per set made by ``emodesk
retrain`` (named by its UTC creation time, ``YYYYmmdd-HHMMSS-ffffff``), each a
complete set with its ``fusion.json`` and ``emodesk.lock``; ``active`` names
the one the app loads (none: the shipped set), ``history.json`` the sets that
were active before, newest last (``rollback`` goes back one). Nothing here
needs the ``train`` extra: an installed app lists and switches sets.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emodesk.errors import InputError, ModelError
from emodesk.inference.lock import LOCK_FILE, verify_folder, write_lock

log = logging.getLogger(__name__)

SHIPPED = "shipped"
VERSION_RE = re.compile(r"^\d{8}-\d{6}-\d{6}$")


def models_root() -> Path:
    from emodesk.resources import user_models_root

    return user_models_root()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def history() -> list[str]:
    try:
        h = json.loads((models_root() / "history.json").read_text(encoding="utf-8"))
        return [str(v) for v in h] if isinstance(h, list) else []
    except (OSError, ValueError):
        return []


def _set_history(h: Sequence[str]) -> None:
    _write_atomic(models_root() / "history.json", json.dumps(list(h)) + "\n")


def active_version() -> str:
    from emodesk.resources import active_models_dir

    d = active_models_dir()
    return d.name if d is not None else SHIPPED


def _activate(version: str) -> None:
    root = models_root()
    root.mkdir(parents=True, exist_ok=True)
    if version == SHIPPED:
        (root / "active").unlink(missing_ok=True)
    else:
        _write_atomic(root / "active", version + "\n")


@dataclass
class ModelSet:
    version: str
    path: Path | None  # None: the shipped set
    active: bool
    created: str = ""
    sessions: dict[str, list[str]] = field(default_factory=dict)
    verdict: dict[str, Any] = field(default_factory=dict)
    adapted: list[str] = field(default_factory=list)
    problem: str | None = None  # an unreadable fusion.json or a lock mismatch

    def summary(self) -> str:
        mark = "*" if self.active else " "
        if self.path is None:
            return f"{mark} {SHIPPED:24s} the models that came with emodesk"
        parts = [self.created or "?"]
        if self.sessions:
            parts.append(
                "sessions "
                + ", ".join(f"{k} {len(v)}" for k, v in self.sessions.items() if isinstance(v, list))
            )
        f1 = self.verdict.get("held_out_macro_f1", {}) if isinstance(self.verdict, dict) else {}
        if isinstance(f1, dict) and "new" in f1 and "active" in f1:
            ci = self.verdict.get("gain_ci95")
            parts.append(
                f"held-out fused macro-F1 {f1['new'].get('fused', float('nan')):.3f} "
                f"(then active {f1['active'].get('fused', float('nan')):.3f}"
                + (
                    f", gain 95% CI [{ci[0]:+.3f}, {ci[1]:+.3f}]"
                    if isinstance(ci, list) and len(ci) == 2
                    else ""
                )
                + ")"
            )
        if self.adapted:
            parts.append(f"adapted: {', '.join(self.adapted)}")
        if self.problem:
            parts.append(f"PROBLEM: {self.problem}")
        return f"{mark} {self.version:24s} " + "; ".join(parts)


def _describe(path: Path, active: bool) -> ModelSet:
    s = ModelSet(path.name, path, active)
    try:
        doc = json.loads((path / "fusion.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        s.problem = f"fusion.json unreadable ({e})"
        doc = {}
    if isinstance(doc, dict):
        s.created = str(doc.get("created", ""))
        data = doc.get("data") if isinstance(doc.get("data"), dict) else {}
        sessions = data.get("sessions") if isinstance(data, dict) else None
        s.sessions = sessions if isinstance(sessions, dict) else {}
        verdict = doc.get("verdict")
        s.verdict = verdict if isinstance(verdict, dict) else {}
    for m in sorted(path.glob("*.json")):
        if m.name in ("fusion.json",) or m.name.endswith(".tokenizer.json"):
            continue
        try:
            src = json.loads(m.read_text(encoding="utf-8")).get("source", {})
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(src, dict) and "fine_tuned" in src:
            s.adapted.append(m.stem)
    if s.problem is None and (path / LOCK_FILE).exists():
        problems = verify_folder(path)
        if problems:
            s.problem = f"fails its lock: {problems[0]}"
    return s


def list_sets() -> list[ModelSet]:
    """Every set, oldest first, then the shipped one; ``active`` marks the one the app loads."""
    root = models_root()
    current = active_version()
    found = (
        sorted(d for d in root.iterdir() if d.is_dir() and VERSION_RE.match(d.name)) if root.is_dir() else []
    )
    return [*(_describe(d, d.name == current) for d in found), ModelSet(SHIPPED, None, current == SHIPPED)]


def install_set(fusion_doc: dict[str, Any], files: Sequence[Path] = ()) -> str:
    """A new set = the active one (if any) + ``files`` (re-fitted members) + this ``fusion.json``;
    make it active and note the previous one in the history."""
    from emodesk.fusion.config import write_fusion_json
    from emodesk.resources import active_models_dir

    root = models_root()
    root.mkdir(parents=True, exist_ok=True)
    version = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    new = root / version
    current = active_models_dir()
    if current is not None:
        if (current / LOCK_FILE).exists() and (problems := verify_folder(current)):
            raise ModelError(
                f"the active model set {current} fails its lock, so it is not copied into a new set: "
                + "; ".join(problems[:3])
            )
        if not (current / LOCK_FILE).exists():
            log.warning("the active model set %s has no %s: copied as it is and locked", current, LOCK_FILE)
        shutil.copytree(current, new)
    else:
        new.mkdir()
    for f in files:
        shutil.copy2(f, new / f.name)
    write_fusion_json(new / "fusion.json", fusion_doc)
    write_lock(new)
    previous = current.name if current is not None else SHIPPED
    _set_history([*history(), previous])
    _activate(version)
    return version


def use_set(version: str) -> str:
    """Make ``version`` (or ``shipped``) the active set; the one it replaces goes on the history."""
    if version != SHIPPED:
        path = models_root() / version
        if not VERSION_RE.match(version) or not path.is_dir():
            names = [s.version for s in list_sets()]
            raise InputError(f"no model set {version!r}; there are: {', '.join(names)}")
        if (path / LOCK_FILE).exists() and (problems := verify_folder(path)):
            raise ModelError(f"model set {version} fails its lock, so it is not used: {problems[0]}")
    current = active_version()
    if current == version:
        return version
    _set_history([*history(), current])
    _activate(version)
    return version


def rollback() -> str:
    """Make the previous model set active again (``shipped`` = no user set); returns what is active now.

    The set rolled back from stays on disk (``models sets`` lists it, ``models use`` brings it back,
    ``models prune`` removes it)."""
    hist = history()
    if not hist:
        raise InputError("nothing to roll back to: no earlier model set was recorded")
    previous = hist.pop()
    if previous != SHIPPED and not (models_root() / previous).is_dir():
        raise InputError(
            f"the previous model set {previous} is gone from {models_root()}; `emodesk models use`"
        )
    _activate(previous)
    _set_history(hist)
    return previous


def prune(keep: int = 1, *, dry_run: bool = False) -> list[str]:
    """Delete inactive sets but the ``keep`` newest of them; returns the versions removed (or that
    would be). The history forgets them."""
    if keep < 0:
        raise InputError(f"--keep must be 0 or more, got {keep}")
    inactive = [s for s in list_sets() if s.path is not None and not s.active]
    doomed = inactive[: max(0, len(inactive) - keep)]
    if dry_run:
        return [s.version for s in doomed]
    for s in doomed:
        assert s.path is not None
        shutil.rmtree(s.path)
    gone = {s.version for s in doomed}
    if gone:
        _set_history([v for v in history() if v not in gone])
    return sorted(gone)
