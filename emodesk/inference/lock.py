"""A model set's lock file: the sha256 of every file its members read (docs/formats.md, "Lock").

``lock.json`` sits in a model folder (the shipped ``models/`` and each user set). It lists every
ONNX file, manifest, tokenizer, encoder graph and ``fusion.json`` of that folder. The tools that
write models (:class:`~emodesk.inference.manifest.ManifestDraft`, the fusion writer, retraining)
update it as they write; at load, a file of a locked folder whose bytes differ from its entry,
or that has no entry, is refused with a message naming it. A hand edit (two labels swapped in a
manifest, two token ids in a tokenizer) is refused the same way; ``emodesk models lock DIR``
records a deliberate change.

A member that reads another package's file (the block-2 voice member reads the ASR's
``model.bin``) pins it in its manifest (``requires.encoder_sha256``), which the lock covers.

The lock finds corruption and edits made outside the tools; it is not a signature: whoever can
rewrite the models can rewrite the lock too.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emodesk.errors import EmodeskError, ModelError
from emodesk.readers import Fields, read_json
from emodesk.resources import sha256_file

LOCK_FILE = "lock.json"
LOCK_VERSION = 1
#: files of a model folder that no member reads (never locked, never refused)
UNLOCKED = ("README.md", LOCK_FILE)

_hash_cache: dict[tuple[str, int, int, int], str] = {}
_cache_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    """``path``'s sha256, cached by its inode, size and modification time (manifests are read many
    times a run; a changed file has a new stamp, so it is hashed again)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    with _cache_lock:
        hit = _hash_cache.get(key)
    if hit is not None:
        return hit
    digest = sha256_file(path)
    with _cache_lock:
        _hash_cache[key] = digest
    return digest


def read_lock(folder: Path) -> dict[str, str] | None:
    """File name → sha256 of ``folder``'s lock, or None when the folder has no lock.
    A lock that cannot be read is a :class:`ModelError`: every member of the set is then refused."""
    p = Path(folder) / LOCK_FILE
    if not p.exists():
        return None
    f = read_json(p, what="model set lock", error=ModelError)
    if f.integer("version") != LOCK_VERSION:
        raise ModelError(f"model set lock {p}: version {f.raw('version')} is not {LOCK_VERSION}")
    files = f.obj("files")
    out: dict[str, str] = {}
    for name in files.data:
        entry = Fields(files.raw(name), f"{files.where}: {name[:80]}", ModelError)
        out[name] = entry.text("sha256").lower()
    return out


def check_locked(path: Path, *, error: type[EmodeskError] = ModelError) -> None:
    """Refuse ``path`` when its folder has a lock and its bytes are not the ones the lock lists."""
    path = Path(path)
    try:
        lock = read_lock(path.parent)
    except ModelError as e:  # the caller's error type: fusion.json falls back, a manifest is refused
        raise error(str(e)) from None
    if lock is None:
        return
    want = lock.get(path.name)
    if want is None:
        raise error(
            f"{path} is not in its model set's lock ({path.parent / LOCK_FILE}); a file added by hand is "
            f"not loaded — if you added it on purpose, run: emodesk models lock {path.parent}"
        )
    try:
        got = file_sha256(path)
    except OSError as e:
        raise error(f"{path}: cannot read it to check it against the lock: {e.strerror or e}") from None
    if got != want:
        raise error(
            f"{path} differs from its model set's lock (sha256 {got[:12]}…, the lock says {want[:12]}…): "
            "it was edited or replaced after the set was made; reinstall the set, or if you changed it "
            f"on purpose, run: emodesk models lock {path.parent}"
        )


def lockable_files(folder: Path) -> list[Path]:
    """The files of ``folder`` a lock lists: every regular file but the README and the lock."""
    return sorted(
        p
        for p in Path(folder).iterdir()
        if p.is_file() and p.name not in UNLOCKED and not p.name.startswith(".")
    )


def lock_document(folder: Path, entries: dict[str, str]) -> dict[str, Any]:
    return {
        "version": LOCK_VERSION,
        "kind": "emodesk model set lock",
        "about": "sha256 of every file the members of this set read; refused at load when they differ "
        "(docs/formats.md, 'Lock')",
        "files": {name: {"sha256": sha} for name, sha in sorted(entries.items())},
        "updated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _write(folder: Path, entries: dict[str, str]) -> Path:
    p = Path(folder) / LOCK_FILE
    tmp = p.with_name(f".{LOCK_FILE}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(lock_document(folder, entries), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, p)
    return p


def write_lock(folder: Path) -> Path:
    """(Re)write ``folder``'s lock over every file in it now (``emodesk models lock``)."""
    return _write(folder, {p.name: file_sha256(p) for p in lockable_files(folder)})


def update_lock(folder: Path, paths: Iterable[Path]) -> Path:
    """Add or refresh the entries of ``paths`` (files in ``folder``) in its lock, keeping the rest;
    the tools that write models call this for what they wrote. Entries of files that no longer
    exist are dropped."""
    folder = Path(folder)
    with _exclusive(folder):  # two tools updating one set at once must not lose an entry
        entries = read_lock(folder) or {}  # an unreadable lock is refused, never silently replaced
        entries = {n: s for n, s in entries.items() if (folder / n).is_file()}
        for p in paths:
            p = Path(p)
            if p.parent.resolve() != folder.resolve():
                raise ValueError(f"{p} is not in {folder}")
            entries[p.name] = file_sha256(p)
        return _write(folder, entries)


@contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``folder/.lock.json.flock`` (flock; none on Windows)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(Path(folder) / f".{LOCK_FILE}.flock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def refresh_if_locked(folder: Path, paths: Iterable[Path]) -> None:
    """:func:`update_lock` when ``folder`` has a lock (a tool wrote ``paths`` there on purpose)."""
    if (Path(folder) / LOCK_FILE).exists():
        update_lock(folder, paths)


def verify_folder(folder: Path) -> list[str]:
    """Every problem of ``folder`` against its lock, one line each (empty: all files match)."""
    try:
        lock = read_lock(folder)
    except ModelError as e:
        return [str(e)]
    if lock is None:
        return [f"{folder} has no {LOCK_FILE}: its files cannot be checked (emodesk models lock {folder})"]
    problems = []
    present = {p.name for p in lockable_files(folder)}
    for name in sorted(present | set(lock)):
        if name not in present:
            problems.append(f"{name}: listed in the lock but missing")
            continue
        try:
            check_locked(Path(folder) / name)
        except ModelError as e:
            problems.append(str(e))
    return problems
