"""The session faults of issue "Nothing leaves, nothing breaks silently", one regression test each:
a bounded export, label lines without a time, a lost session.json rebuilt, an id that points
outside ``--out``. Every command answers with a message and an exit status; no recording is lost."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from emodesk.cli.main import main as cli
from emodesk.recording.format import read_session_json
from emodesk.recording.session import check_session, read_labels
from tests.support.sessions import write_small_session


@pytest.fixture
def session(tmp_path: Path) -> Path:
    return write_small_session(tmp_path / "parent", t0=5.0)


def _append(path: Path, *lines: dict[str, object]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        for line in lines:
            fh.write(json.dumps(line) + "\n")


def test_export_face_every_zero_is_refused_at_once(
    session: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for bad in ("0", "-1", "nan", "1e-9"):
        start = time.monotonic()
        assert (
            cli(["sessions", "export", str(session), "--out", str(tmp_path / "x"), "--face-every", bad]) == 2
        )
        assert time.monotonic() - start < 10
    assert "--face-every must be between 0.02 and 3600" in capsys.readouterr().err


def test_a_label_at_minus_1e20_is_an_invalid_line_and_export_still_returns(
    session: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(session / "labels.jsonl", {"t": -1e20, "label": "angry", "source": "edit"})
    assert cli(["sessions", "check", str(session)]) == 1
    assert "labels.jsonl: unparsable or invalid line(s) 3" in capsys.readouterr().out
    assert cli(["sessions", "export", str(session), "--out", str(tmp_path / "x")]) == 0
    faces = (tmp_path / "x" / "faces.csv").read_text(encoding="utf-8").splitlines()
    assert len(faces) > 1 and "angry" not in "".join(faces)


def test_label_lines_without_a_time_are_reported_and_repair_drops_them(
    session: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(session / "labels.jsonl", {"label": "angry"}, {"t": "soon", "label": "fear"}, {"t": 6.5})
    assert [c["label"] for c in read_labels(session)] == ["happy", "sad"]
    assert cli(["sessions", "label", str(session), "fear", "--from", "5.2", "--to", "5.4"]) == 2
    assert "run emodesk sessions repair" in capsys.readouterr().err
    assert cli(["sessions", "export", str(session), "--out", str(tmp_path / "x")]) == 0
    assert cli(["sessions", "repair", str(session)]) == 0
    assert "labels.jsonl: dropped 3 torn or unparsable line(s)" in capsys.readouterr().out
    assert cli(["sessions", "label", str(session), "fear", "--from", "5.2", "--to", "5.4"]) == 0
    assert check_session(session).ok


@pytest.mark.parametrize("how", ["deleted", "garbage", "bomb"])
def test_a_lost_session_json_is_rebuilt_from_the_files_with_the_streams_on_the_clock(
    how: str, session: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = read_session_json(session)
    if how == "deleted":
        (session / "session.json").unlink()
    else:
        text = "\x00garbage" if how == "garbage" else "[" * 100_000
        (session / "session.json").write_text(text, encoding="utf-8")
    assert cli(["sessions", "check", str(session)]) == 1
    assert cli(["sessions", "repair", str(session)]) == 0
    out = capsys.readouterr().out
    assert "rebuilt from the" in out
    doc = read_session_json(session)
    assert doc["state"] == "repaired" and doc["id"] == session.name
    for stream in ("audio", "video"):
        assert doc[stream]["start_t"] == before[stream]["start_t"] == 5.0
    assert (
        doc["video"]["frames"] == before["video"]["frames"]
        and doc["audio"]["samples"] == before["audio"]["samples"]
    )
    if how != "deleted":  # the broken file is kept, never deleted
        assert (session / "session.json.broken").is_file()
    assert check_session(session).ok
    assert cli(["sessions", "export", str(session), "--out", str(tmp_path / "x")]) == 0
    voice = (tmp_path / "x" / "voice.csv").read_text(encoding="utf-8").splitlines()
    assert len(voice) == 3, voice  # both utterances cut from the audio at their media times


def test_repair_without_any_files_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert cli(["sessions", "repair", str(tmp_path / "empty")]) == 2
    assert "no media or score files" in capsys.readouterr().err


def test_an_id_that_climbs_out_of_out_is_confined(session: Path, tmp_path: Path) -> None:
    doc = read_session_json(session)
    doc["id"] = "../../../x"
    (session / "session.json").write_text(json.dumps(doc), encoding="utf-8")
    out = tmp_path / "export" / "a"
    assert cli(["sessions", "export", str(session), "--out", str(out)]) == 0
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "parent" not in p.parts]
    assert written and all(out in p.parents for p in written), written


def test_wrong_types_in_session_json_are_one_message_naming_the_key(
    session: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = read_session_json(session)
    doc["audio"]["start_t"] = "five"
    (session / "session.json").write_text(json.dumps(doc), encoding="utf-8")
    assert cli(["sessions", "export", str(session), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "audio: start_t: expected a number, got the text 'five'" in err and "Traceback" not in err


def test_record_from_a_camera_that_does_not_open_exits_1(tmp_path: Path) -> None:
    """``record camera:7`` used to exit 0 with an empty "complete" session (issue 19)."""
    import os
    import subprocess
    import sys

    if Path("/dev/video7").exists():
        pytest.skip("this machine has a /dev/video7")
    env = {**os.environ, "EMODESK_HOME": str(tmp_path / "home"), "QT_QPA_PLATFORM": "offscreen"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "emodesk",
            "record",
            "camera:7",
            "--out",
            str(tmp_path / "s"),
            "--duration",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "camera 7" in r.stderr and "holds what was recorded" in r.stderr and "Traceback" not in r.stderr
    (session,) = (tmp_path / "s").iterdir()
    doc = read_session_json(session)
    assert doc["state"] == "stopped" and "camera 7" in doc["stop_reason"]


def test_an_unpaired_surrogate_in_session_json_is_one_reported_session(
    session: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``"id": "\\ud800x"`` is valid JSON but no text: it used to crash printing and writing."""
    raw = (session / "session.json").read_text(encoding="utf-8")
    (session / "session.json").write_text(raw.replace('"id": "', '"id": "\\ud800', 1), encoding="utf-8")
    assert cli(["sessions", "list", str(session.parent)]) == 0
    assert "1 problem(s)" in capsys.readouterr().out
    assert cli(["sessions", "check", str(session)]) == 1
    assert "unpaired surrogate" in capsys.readouterr().out
    assert cli(["sessions", "repair", str(session)]) == 0
    assert check_session(session).ok


def test_repairs_null_and_a_huge_face_box_are_handled(session: Path, tmp_path: Path) -> None:
    doc = read_session_json(session)
    doc["repairs"], doc["state"] = None, "stopped"
    (session / "session.json").write_text(json.dumps(doc), encoding="utf-8")
    assert cli(["sessions", "repair", str(session)]) == 0
    p = {"angry": 1.0}
    _append(
        session / "scores.jsonl",
        {"t": 5.5, "kind": "face", "model": "f", "box": [0, 0, 1e9, 1e9], "probs": p},
    )
    assert cli(["sessions", "export", str(session), "--out", str(tmp_path / "x")]) == 0


def test_a_rebuilt_session_keeps_its_privacy_mode(tmp_path: Path) -> None:
    import numpy as np

    from emodesk.recording.writer import SessionMeta, SessionWriter

    w = SessionWriter(tmp_path, SessionMeta(source="t", privacy="face-crops"), fps=10.0)
    path = w.start(0.0)
    for k in range(5):
        w.add_frame(np.zeros((224, 224, 3), np.uint8), k / 10)
    w.stop(0.5)
    (path / "session.json").unlink()
    assert cli(["sessions", "repair", str(path)]) == 0
    assert read_session_json(path)["privacy"] == "face-crops"


def test_a_broken_lock_makes_fusion_fall_back_to_equal_weights(tmp_path: Path) -> None:
    from emodesk.fusion.config import load_fusion_config

    (tmp_path / "fusion.json").write_text('{"members": [], "weights": {}}', encoding="utf-8")
    (tmp_path / "lock.json").write_text("[", encoding="utf-8")
    cfg = load_fusion_config(tmp_path / "fusion.json", {"a": "0" * 64}, {"a": "face"})
    assert cfg.members == ("a",) and any("lock" in w for w in cfg.warnings)
