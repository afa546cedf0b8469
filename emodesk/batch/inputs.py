"""What ``emodesk analyze`` is asked to read: files, folders, globs and CSV manifests, expanded
into inputs with stable ids before any work starts (docs/formats.md, "Batch runs").

- a file: one input (a ``.csv`` file is a manifest instead: a ``path`` column, optionally an
  ``id`` column; relative paths are relative to the manifest's folder);
- a recorded session (a folder with ``session.json``): one input;
- a folder: every media file and recorded session directly in it, sorted;
- a pattern with ``*``, ``?`` or ``[`` (``**`` for any depth): what it matches, sorted;
- ``demo``: the demo clip.

Anything named that does not exist, a pattern that matches nothing, a folder with no media and a
manifest that cannot be read are :class:`InputError` (exit 2: nothing starts). Whether a file that
exists can be decoded is found out when its turn comes (it is recorded as failed, the rest go on).
"""

from __future__ import annotations

import csv
import glob
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from emodesk.capture.files import AUDIO_EXTENSIONS
from emodesk.capture.sources import demo_clip_path
from emodesk.errors import InputError

VIDEO_EXTENSIONS = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts"}
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | AUDIO_EXTENSIONS
_ID_OK = re.compile(r"[^A-Za-z0-9._-]+")
MAX_MANIFEST_ROWS = 1_000_000
RESERVED = {"runs"}  # runs.jsonl is the index


@dataclass(frozen=True)
class BatchInput:
    """One input of a run: ``id`` names its output (``ID.jsonl``) and its ``runs.jsonl`` entries."""

    id: str
    path: Path
    spec: str  # what to hand to ``open_sources`` (a path, or ``demo``)


def _is_media(p: Path) -> bool:
    if p.name.startswith("."):  # hidden files: macOS ._ metadata, editors' temporaries
        return False
    return (p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS) or (p / "session.json").is_file()


def _folder(p: Path) -> list[Path]:
    found = sorted(q for q in p.iterdir() if _is_media(q))
    if not found:
        raise InputError(
            f"{p} holds no video, audio file or recorded session "
            f"(looked for {', '.join(sorted(MEDIA_EXTENSIONS))} and session folders)"
        )
    return found


def _manifest(p: Path) -> list[tuple[Path, str | None]]:
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:  # Excel's "CSV UTF-8" starts with a BOM
            reader = csv.DictReader(f)
            fields = [h.strip() for h in (reader.fieldnames or [])]
            if "path" not in fields:
                header = ",".join(fields) or "empty"
                raise InputError(f"manifest {p}: no 'path' column (its header is {header})")
            rows: list[tuple[Path, str | None]] = []
            for i, row in enumerate(reader, start=2):
                if i > MAX_MANIFEST_ROWS:
                    raise InputError(f"manifest {p}: more than {MAX_MANIFEST_ROWS} rows")
                row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
                if not row.get("path"):
                    raise InputError(f"manifest {p}, line {i}: empty path")
                q = Path(row["path"]).expanduser()
                q = q if q.is_absolute() else p.parent / q
                if not q.exists():
                    raise InputError(f"manifest {p}, line {i}: {q} does not exist")
                rows.append((q, row.get("id") or None))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"manifest {p} cannot be read: {e}") from None
    if not rows:
        raise InputError(f"manifest {p} lists no input")
    return rows


def _clean_id(s: str) -> str:
    out = _ID_OK.sub("_", s).strip("._") or "input"
    return out[:120]


def expand_inputs(specs: Sequence[str]) -> list[BatchInput]:
    """The inputs ``specs`` name, each once (the first mention wins), with unique ids."""
    found: list[tuple[Path, str, str | None]] = []  # (path, spec, id given by a manifest)
    for spec in specs:
        if spec == "demo":
            found.append((demo_clip_path(), "demo", "demo"))
            continue
        p = Path(spec).expanduser()
        if not p.exists() and any(c in spec for c in "*?["):  # "Interview [2024].mp4" is a name
            hits = sorted(Path(h) for h in glob.glob(spec, recursive=True))
            media = [h for h in hits if _is_media(h)]
            if not media:
                raise InputError(f"{spec} matches no video, audio file or recorded session")
            found += [(h, str(h), None) for h in media]
        elif not p.exists():
            raise InputError(f"input {spec} does not exist")
        elif p.is_dir() and not (p / "session.json").is_file():
            found += [(q, str(q), None) for q in _folder(p)]
        elif p.is_file() and p.suffix.lower() == ".csv":
            found += [(q, str(q), given) for q, given in _manifest(p)]
        else:
            found.append((p, str(p), None))
    seen: set[Path] = set()
    unique: list[tuple[Path, str, str | None]] = []
    for path, spec, given in found:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((path, spec, given))

    def base_of(path: Path, given: str | None) -> str:
        return _clean_id(given or (path.stem if path.is_file() else path.name))

    # ids are compared case-blind (Interview.mp4 and interview.wav are one file name on macOS and
    # Windows), and "runs" is the index's own name
    ids: dict[str, int] = {}
    for path, _, given in unique:
        base = base_of(path, given).casefold()
        ids[base] = ids.get(base, 0) + 1
    out: list[BatchInput] = []
    used: set[str] = set()
    for path, spec, given in unique:
        base = base_of(path, given)
        iid = base
        if ids[base.casefold()] > 1 or iid.casefold() in used or iid.casefold() in RESERVED:
            iid = f"{base}-{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]}"
        if iid.casefold() in used:
            raise InputError(f"two inputs would both be written as {iid}.jsonl: {path}")
        used.add(iid.casefold())
        out.append(BatchInput(iid, path, spec))
    return out
