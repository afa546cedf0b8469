"""Files about a person are the owner's: 0600 files in 0700 folders the app creates."""

from __future__ import annotations

import os
from pathlib import Path

from emodesk import private
from emodesk.records import JsonlWriter


def _mode(p: Path) -> int:
    return p.stat().st_mode & 0o777


def test_missing_folders_are_made_0700_and_existing_ones_are_left_alone(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o755)
    os.chmod(mine, 0o755)
    private.make_dirs(mine / "a" / "b")
    assert _mode(mine) == 0o755
    assert _mode(mine / "a") == 0o700 and _mode(mine / "a" / "b") == 0o700


def test_files_are_0600_even_under_a_permissive_umask_and_when_they_existed(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        p = tmp_path / "x" / "report.json"
        private.write_text(p, "{}")
        assert _mode(p) == 0o600 and _mode(p.parent) == 0o700 and p.read_text() == "{}"
        os.chmod(p, 0o644)
        private.write_text(p, "[]")
        assert _mode(p) == 0o600 and p.read_text() == "[]"
    finally:
        os.umask(old)


def test_analyze_records_are_written_0600(tmp_path: Path) -> None:
    w = JsonlWriter(tmp_path / "out" / "scores.jsonl")
    w.write({"t": 0.0, "kind": "face"})
    w.close()
    assert _mode(tmp_path / "out" / "scores.jsonl") == 0o600 and _mode(tmp_path / "out") == 0o700


def test_only_writing_modes_are_offered(tmp_path: Path) -> None:
    import pytest

    for mode in ("r", "r+", "x", "w+"):
        with pytest.raises(ValueError, match="writes only"):
            private.open_private(tmp_path / "f", mode)
    with private.open_private(tmp_path / "f", "a") as fh:
        fh.write("a")
    with private.open_private(tmp_path / "f", "a") as fh:
        fh.write("b")
    assert (tmp_path / "f").read_text() == "ab" and _mode(tmp_path / "f") == 0o600
