"""Files only their owner can read: what the app writes about a person is theirs.

Face crops, transcripts and emotion scores are personal data. Every file the app writes with
them — ``analyze`` records and reports, ``sessions export`` — is created 0600 (owner read and
write), and every folder the app creates on the way to it 0700, parents included; folders the
user made are left as they are. Recorded sessions already follow the same rule
(``emodesk.recording.files``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

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


def open_private(path: Path | str, mode: str = "w", **kwargs: Any) -> IO[Any]:
    """``open(path, mode)`` for writing, the file created (or truncated) with mode 0600 and its
    missing folders 0700."""
    p = Path(path)
    make_dirs(p.parent)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(p, flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # an existing file keeps its old mode through os.open
    return os.fdopen(fd, mode, **kwargs)


def write_text(path: Path | str, text: str) -> Path:
    with open_private(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return Path(path)


def restrict(path: Path | str) -> Path:
    """Make a file written by another function 0600."""
    os.chmod(path, FILE_MODE)
    return Path(path)
