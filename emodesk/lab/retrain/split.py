"""Which side of a retrain each recorded session is on, decided once and kept.

Three sides, all by session (never by frame or utterance):

- ``adapt``: the members' output layers and voice heads are fitted on these;
- ``fusion``: the fusion weights are searched (Aquila Optimizer) on these, which
  the adapted members never saw;
- ``held_out``: the verdict — the active set against the new one — is scored here.

A session keeps its side for good: the assignment lives in
``<user models root>/split.json`` and every model set's ``fusion.json`` records
the sessions of each side, so a later retrain (any ``--seed``) holds out the
same sessions, and a comparison can check that it never scores a set on
sessions that trained it. A session seen for the first time goes to the side
furthest below its share (held out 30%, fusion 30% of the rest, the remainder
adapt); several new at once are taken in the order of a hash of their ids, so
the result depends on the sessions, not on a seed or the folder order.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

from emodesk.errors import InputError

SIDES = ("adapt", "fusion", "held_out")
TRAINING_SIDES = ("adapt", "fusion")
SPLIT_FILE = "split.json"
HOLDOUT = 0.3
FUSION = 0.3  # of the sessions that are not held out


def session_key(path: Path) -> str:
    """A session's id (``session.json`` ``id``; its folder name when that is missing)."""
    try:
        doc = json.loads((path / "session.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return path.name
    sid = doc.get("id") if isinstance(doc, dict) else None
    return str(sid) if isinstance(sid, str) and sid else path.name


def _rank(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def targets(holdout: float = HOLDOUT, fusion: float = FUSION) -> dict[str, float]:
    if not (0 < holdout < 1 and 0 < fusion < 1):
        raise InputError(f"holdout and fusion shares must lie in (0, 1), got {holdout}, {fusion}")
    return {"adapt": (1 - holdout) * (1 - fusion), "fusion": (1 - holdout) * fusion, "held_out": holdout}


def assign(
    keys: Iterable[str],
    known: Mapping[str, str] | None = None,
    *,
    holdout: float = HOLDOUT,
    fusion: float = FUSION,
) -> dict[str, str]:
    """``{session: side}`` for ``keys``: the ``known`` sides kept, each new session where its side is
    most below target (ties: adapt, then held_out, then fusion — the first session trains)."""
    share = targets(holdout, fusion)
    known = dict(known or {})
    keys = list(dict.fromkeys(keys))
    out = {k: known[k] for k in keys if known.get(k) in SIDES}
    everyone = {**{k: v for k, v in known.items() if v in SIDES}, **out}  # the collection so far
    prefer = ("adapt", "held_out", "fusion")
    for k in sorted((k for k in keys if k not in out), key=_rank):
        counts = Counter(everyone.values())
        n = len(everyone) + 1
        side = max(prefer, key=lambda s: (round(share[s] * n - counts[s], 9), -prefer.index(s)))
        out[k] = everyone[k] = side
    return out


def split_path(root: Path) -> Path:
    return root / SPLIT_FILE


def load_split(root: Path) -> dict[str, str]:
    """The recorded sides ({} when none yet); a damaged file is an error, never silently redrawn."""
    path = split_path(root)
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        sides = doc["sessions"]
        if not isinstance(sides, dict) or any(v not in SIDES for v in sides.values()):
            raise ValueError("bad sides")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(
            f"{path} is damaged ({e}); it records which sessions are held out. Restore it from a "
            "backup, or delete it to draw a new split (then compare no set with the sessions that trained it)"
        ) from None
    return {str(k): str(v) for k, v in sides.items()}


def save_split(
    root: Path, sides: Mapping[str, str], *, holdout: float = HOLDOUT, fusion: float = FUSION
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = split_path(root)
    doc = {
        "version": 1,
        "rule": f"by session; held out {holdout:g}, fusion {fusion:g} of the rest, adapt the remainder; "
        "a session keeps its side",
        "sessions": dict(sorted(sides.items())),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def by_side(sides: Mapping[str, str]) -> dict[str, list[str]]:
    return {s: sorted(k for k, v in sides.items() if v == s) for s in SIDES}
