"""Files only their owner can read: what the app writes about a person is theirs.

Face crops, transcripts and emotion scores are personal data. Every file the app writes with
them — ``analyze`` records and reports, ``sessions export`` — is created 0600 (owner read and
write), and every folder the app creates on the way to it 0700, parents included; folders the
user made are left as they are. Recorded sessions already follow the same rule
(``emodesk.recording.files``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO, Any

from emodesk.errors import InputError

FILE_MODE = 0o600
DIR_MODE = 0o700


def make_dirs(path: Path | str) -> Path:
    """``path`` and each missing parent, created 0700 (an existing folder is not touched)."""
    p = Path(path)
    missing: list[Path] = []
    q = p
    while not q.exists():
        missing.append(q)
        if q.parent == q:
            break
        q = q.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # made meanwhile by someone else: theirs, not ours
        os.chmod(d, DIR_MODE)  # mkdir's mode passes through the umask
    return p


_MODES = {"w": os.O_TRUNC, "wb": os.O_TRUNC, "a": os.O_APPEND, "ab": os.O_APPEND}


def open_private(path: Path | str, mode: str = "w", **kwargs: Any) -> IO[Any]:
    """``open(path, mode)`` for writing (``w``, ``wb``, ``a``, ``ab``): a new file is created 0600
    and its missing folders 0700; an existing regular file is made 0600; anything else the user
    named (``/dev/null``, a pipe) is written as it is."""
    if mode not in _MODES:
        raise ValueError(f"open_private writes only ({', '.join(_MODES)}), not {mode!r}")
    p = Path(path)
    make_dirs(p.parent)
    flags = os.O_WRONLY | os.O_CREAT | _MODES[mode] | getattr(os, "O_BINARY", 0)
    fd = os.open(p, flags, FILE_MODE)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):  # os.open keeps an existing file's old mode
            os.chmod(p, FILE_MODE)
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def write_text(path: Path | str, text: str) -> Path:
    """``text`` into ``path`` (0600); ``InputError`` naming the file when it cannot be written."""
    try:
        with open_private(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}") from None
    return Path(path)


def restrict(path: Path | str) -> Path:
    """Make a file written by another function 0600."""
    os.chmod(path, FILE_MODE)
    return Path(path)


def check_writable(path: Path | str, *, what: str = "output", folder: bool = False) -> Path:
    """``path`` can be written (a file, or with ``folder`` a folder to write into), found out before
    any work: it is not the other kind of thing, and the nearest part of it that exists is a folder
    this user may write into. :class:`InputError` saying which, otherwise."""
    p = Path(path)
    if p.exists():
        if folder and not p.is_dir():
            raise InputError(f"{what} {p} is a file, not a folder")
        if not folder and p.is_dir():
            raise InputError(f"{what} {p} is a folder, not a file")
        if not os.access(p, os.W_OK):
            raise InputError(f"{what} {p} is not writable")
        if not folder and p.is_file() and not os.access(p.parent, os.W_OK | os.X_OK):
            raise InputError(f"{what} {p}: its folder {p.parent} is not writable (OUT.partial goes there)")
        return p
    q = p.parent
    while not q.exists():
        if q.parent == q:
            break
        q = q.parent
    if not q.is_dir():
        raise InputError(f"{what} {p} cannot be created: {q} is a file, not a folder")
    if not os.access(q, os.W_OK | os.X_OK):
        raise InputError(f"{what} {p} cannot be created: {q} is not writable")
    return p
