"""Recorded sessions: written, read back in sync, survive kill -9, a full disk and a refused folder."""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emodesk.capture.synthesis import write_video_with_audio
from emodesk.cli.main import main as cli
from emodesk.recording import files
from emodesk.recording.format import AUDIO_FILE, SCORES_FILE, read_session_json
from emodesk.recording.session import (
    check_session,
    iter_video,
    read_audio,
    read_labels,
    read_records,
    repair_session,
)
from emodesk.recording.writer import RecordingError, SessionMeta, SessionWriter, labels_at

REPO = Path(__file__).resolve().parent.parent
SR = 16000
FLASH_T = 1.5


@pytest.fixture(scope="module")
def sync_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s at 30 fps: dark frames with one white flash at 1.5 s, and a beep starting at 1.5 s."""
    path = tmp_path_factory.mktemp("sync") / "sync.mp4"
    frames = [np.full((480, 640, 3), 20, np.uint8) for _ in range(90)]
    frames[round(FLASH_T * 30)] = np.full((480, 640, 3), 240, np.uint8)
    audio = np.zeros(3 * SR, np.float32)
    n = int(0.2 * SR)
    audio[int(FLASH_T * SR) : int(FLASH_T * SR) + n] = 0.6 * np.sin(2 * np.pi * 1000 * np.arange(n) / SR)
    write_video_with_audio(path, frames, 30.0, audio, SR)
    return path


@pytest.mark.slow
def test_a_headless_recording_reads_back_in_sync(sync_clip: Path, tmp_path: Path, qapp: object) -> None:
    from emodesk.workers.record import record_headless

    session = record_headless(str(sync_clip), tmp_path, label="surprise", use_mic=False)
    assert session.parent == tmp_path and oct(session.stat().st_mode & 0o777) == "0o700"
    for f in session.iterdir():
        assert oct(f.stat().st_mode & 0o777) == "0o600", f
    rep = check_session(session)
    assert rep.ok, rep.problems
    doc = read_session_json(session)
    assert doc["state"] == "complete" and doc["schema"] == 1 and doc["labels"]["changes"] == 1
    assert {m["id"] for m in doc["models"]} >= {"face-resnet-s-ferplus", "text-minilm"}
    frames = list(iter_video(session))
    assert 85 <= len(frames) <= 90, len(frames)
    audio, a_start = read_audio(session)
    assert a_start is not None and abs(len(audio) / SR - 3.0) < 0.1
    # the flash and the beep happened at the same media time: recorded within 50 ms of each other
    flash_t = max(frames, key=lambda f: float(f[1].mean()))[0]
    beep_t = a_start + int(np.argmax(np.abs(audio) > 0.3)) / SR
    assert abs(flash_t - beep_t) < 0.05, (flash_t, beep_t)
    assert read_labels(session) == [{"t": 0.0, "label": "surprise", "source": "start"}]
    assert labels_at(read_labels(session), 2.0) == "surprise"
    assert doc["stats"]["dropped_frames"] == 0


def _writer(tmp_path: Path, **kw: object) -> SessionWriter:
    return SessionWriter(tmp_path, SessionMeta(source="test"), **kw)  # type: ignore[arg-type]


def _feed(w: SessionWriter, seconds: float, t0: float = 0.0) -> None:
    img = np.zeros((120, 160, 3), np.uint8)
    for k in range(int(seconds * 30)):
        t = t0 + k / 30
        img[:] = k % 255
        w.add_frame(img.copy(), t)
        w.add_audio(np.full(SR // 30, 0.1, np.float32), t)
        w.add_record({"t": round(t, 3), "kind": "face", "model": "m", "probs": {}})
        time.sleep(0.002)


def test_labels_span_from_one_change_to_the_next_and_audio_gaps_keep_the_clock(tmp_path: Path) -> None:
    w = _writer(tmp_path)
    path = w.start(0.0)
    w.set_label("happy", 1.0)
    w.set_label("joy", 2.0)  # aliases are stored canonical
    w.set_label(None, 3.0)
    w.add_audio(np.ones(SR, np.float32) * 0.1, 0.0)
    w.add_audio(np.ones(SR, np.float32) * 0.1, 2.0)  # a second went missing upstream
    with pytest.raises(Exception, match="unknown label"):
        w.set_label("grumpy", 4.0)
    w.stop(4.0)
    changes = read_labels(path)
    assert [c["label"] for c in changes] == ["happy", "happy", None]
    assert [labels_at(changes, t) for t in (0.5, 1.5, 2.5, 3.5)] == [None, "happy", "happy", None]
    audio, start = read_audio(path)
    assert start == 0.0 and len(audio) == 3 * SR and np.all(audio[SR : 2 * SR] == 0)  # the gap is silence
    assert read_session_json(path)["stats"]["audio_gap_s"] == pytest.approx(1.0)


class _FullDisk:
    """A file that takes ``room`` bytes and then fails like a full disk (ENOSPC)."""

    def __init__(self, fh, room: int) -> None:  # type: ignore[no-untyped-def]
        self._fh, self._room = fh, room

    def write(self, b: bytes) -> int:
        if len(b) > self._room:
            raise OSError(errno.ENOSPC, "No space left on device", self._fh.name)
        self._room -= len(b)
        return self._fh.write(b)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._fh, name)

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *a: object) -> None:
        self._fh.close()


def test_a_full_disk_stops_the_recording_with_a_clear_message_and_keeps_what_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = files.opener

    def opener(path: Path, mode: str):  # type: ignore[no-untyped-def]
        fh = real(path, mode)
        return _FullDisk(fh, 200_000) if path.name == AUDIO_FILE else fh

    monkeypatch.setattr(files, "opener", opener)
    errors: list[str] = []
    w = _writer(tmp_path, on_error=errors.append)
    path = w.start(0.0)
    _feed(w, 10.0)  # 10 s of audio is 320 kB: the disk fills after about 6 s
    deadline = time.monotonic() + 10
    while w.error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert w.error is not None and "disk is full" in w.error and AUDIO_FILE in w.error
    assert errors == [w.error] and not w.recording
    assert w.add_frame(np.zeros((120, 160, 3), np.uint8), 11.0) is False  # refused, not queued
    w.stop()
    doc = read_session_json(path)
    assert doc["state"] == "stopped" and "disk is full" in doc["stop_reason"]
    frames = list(iter_video(path))
    assert len(frames) > 30  # everything before the failure is readable
    rep = repair_session(path)
    assert rep.ok, rep.problems
    audio, _ = read_audio(path)
    assert 4.0 < len(audio) / SR <= 6.3


def test_permission_denied_at_start_is_a_clear_error_even_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def opener(path: Path, mode: str):  # type: ignore[no-untyped-def]
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(files, "opener", opener)
    with pytest.raises(RecordingError, match=r"cannot start a recording .*Permission denied"):
        _writer(tmp_path).start(0.0)


def test_a_folder_really_not_writable_is_refused_for_a_normal_user(tmp_path: Path) -> None:
    """For real, without injection: a non-root user and a read-only parent folder."""
    if os.geteuid() != 0:
        parent = tmp_path / "ro"
        parent.mkdir(mode=0o500)
        with pytest.raises(RecordingError, match="Permission denied"):
            _writer(parent).start(0.0)
        return
    parent = tmp_path / "ro"
    parent.mkdir(mode=0o755)
    os.chmod(tmp_path, 0o755)
    code = (
        "from pathlib import Path\n"
        "from emodesk.recording.writer import SessionWriter, RecordingError\n"
        f"try:\n    SessionWriter(Path({str(parent)!r})).start(0.0)\nexcept RecordingError as e:\n"
        "    print('refused:', e)\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], user="nobody", capture_output=True, text=True, timeout=120, cwd="/"
        )
    except (PermissionError, OSError) as e:
        pytest.skip(f"cannot run as nobody here: {e}")
    if "No module named" in proc.stderr or (
        "Permission denied: '" in proc.stderr and "python" in proc.stderr
    ):
        pytest.skip(f"the test environment is not readable by nobody: {proc.stderr.strip()[-200:]}")
    assert "refused:" in proc.stdout and "Permission denied" in proc.stdout, (proc.stdout, proc.stderr)


@pytest.mark.slow
def test_kill_9_mid_recording_loses_at_most_a_second_and_repair_restores_the_session(tmp_path: Path) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "emodesk", "record", "demo", "--out", str(tmp_path), "--duration", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 60
        session = None
        while time.monotonic() < deadline:
            found = [d for d in tmp_path.iterdir() if (d / SCORES_FILE).exists()]
            if found and (found[0] / SCORES_FILE).stat().st_size > 20_000:
                session = found[0]
                break
            time.sleep(0.1)
        assert session is not None, proc.stderr.read1().decode() if proc.stderr else ""  # type: ignore[union-attr]
        time.sleep(2.0)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    rep = check_session(session)
    assert not rep.ok and any("never closed" in p for p in rep.problems), rep.problems
    assert cli(["sessions", "check", str(session)]) == 1
    assert cli(["sessions", "repair", str(session)]) == 0
    assert cli(["sessions", "check", str(session)]) == 0
    doc = read_session_json(session)
    assert doc["state"] == "repaired" and doc["repairs"]
    # every stream reaches within a second of the last moment anything was recorded
    last = max(float(r["t"]) for r in read_records(session))
    audio, a_start = read_audio(session)
    frames = list(iter_video(session))
    assert a_start is not None and frames
    end_audio, end_video = a_start + len(audio) / SR, frames[-1][0]
    assert end_audio > last - 1.0 and end_video > last - 1.0, (end_audio, end_video, last)
    json.dumps(doc)  # still plain JSON


def test_a_really_full_disk_on_a_tiny_tmpfs(tmp_path: Path) -> None:
    """For real, without injection: a 400 kB tmpfs fills up mid-recording (needs root to mount)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mnt)], capture_output=True
    ).returncode:
        pytest.skip("this machine does not allow mounting a tmpfs")
    try:
        (mnt / "filler").write_bytes(b"x" * 100_000)  # what the user deletes to make room
        errors: list[str] = []
        w = _writer(mnt, on_error=errors.append)
        path = w.start(0.0)
        _feed(w, 20.0)
        deadline = time.monotonic() + 10
        while w.error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert w.error is not None and "disk is full" in w.error, w.error
        w.stop()
        assert errors == [w.error]
        assert not check_session(path).ok  # session.json could not even be finished
        (mnt / "filler").unlink()
        repair_session(path)
        assert check_session(path).ok
        assert len(read_audio(path)[0]) > SR  # what fitted is there and readable
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.slow
def test_export_gives_manifests_that_eval_and_fusion_accept(
    tmp_path: Path, qapp: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from emodesk.workers.record import record_headless

    session = record_headless("demo", tmp_path / "sessions", duration=5.0, label="happy", use_mic=False)
    out = tmp_path / "new" / "export"  # two folders the export creates
    assert cli(["sessions", "export", str(session), "--out", str(out)]) == 0
    # faces, voices and words of a person: only their owner may read them (issue 19, privacy)
    for d in (tmp_path / "new", out, out / "faces", out / "voice"):
        assert d.stat().st_mode & 0o777 == 0o700, d
    written = [p for p in out.rglob("*") if p.is_file()]
    assert written and all(p.stat().st_mode & 0o777 == 0o600 for p in written), [
        (p.name, oct(p.stat().st_mode & 0o777)) for p in written if p.stat().st_mode & 0o777 != 0o600
    ]
    # a session.json is user input: an id that climbs out of --out is made a plain name (issue 19)
    import json as _json

    sj = session / "session.json"
    doc = _json.loads(sj.read_text(encoding="utf-8"))
    original = dict(doc)
    doc["id"] = "../../../escaped"
    sj.write_text(_json.dumps(doc), encoding="utf-8")
    deep = tmp_path / "a" / "b" / "c"
    assert cli(["sessions", "export", str(session), "--out", str(deep)]) == 0
    assert all(deep in p.parents for p in tmp_path.rglob("*escaped*"))
    assert any((deep / "faces").glob("*escaped-*.png"))
    sj.write_text(_json.dumps(original), encoding="utf-8")
    faces = (out / "faces.csv").read_text().splitlines()
    voice = (out / "voice.csv").read_text().splitlines()
    paired = (out / "paired.csv").read_text().splitlines()
    assert faces[0] == "path,label,group" and len(faces) > 5 and faces[1].endswith(f",happy,{session.name}")
    assert voice[0] == "path,label,group" and len(voice) >= 2  # the clip's first sentence ends at 2.9 s
    assert paired[0] == "face_path,audio_path,text,label,text_context" and len(paired) >= 2
    rows = list(csv.DictReader((out / "paired.csv").open()))
    row = rows[0]
    # each text row's context is the trusted words said before it (a context member reads them)
    said = [r["text"] for r in rows if r["text"]]
    for r, k in zip((r for r in rows if r["text"]), range(len(said)), strict=True):
        assert r["text_context"] == (_json.dumps(said[:k][::-1][:4], ensure_ascii=False) if k else "")
    assert row["face_path"].startswith("faces/") and row["audio_path"].startswith("voice/") and row["text"]
    assert row["label"] == "happy"
    assert "happy" in (out / "text.csv").read_text().lower()
    capsys.readouterr()
    model = REPO / "models" / "face-resnet-s-ferplus.onnx"
    assert cli(["eval", "face", "--manifest", str(out / "faces.csv"), "--model", str(model)]) == 0
    assert cli(["eval", "voice", "--manifest", str(out / "voice.csv")]) == 0
    assert cli(["eval", "text", "--manifest", str(out / "text.csv")]) == 0
    members = "face-resnet-s-ferplus,text-minilm,voice-tinyen-ravdess-aug"
    args = ["--manifest", str(out / "paired.csv"), "--members", members, "--cache", "none"]
    assert cli(["fusion", "eval", *args]) == 0
    assert "fused" in capsys.readouterr().out


def test_a_session_replays_through_the_pipeline_as_a_source(sync_clip: Path, tmp_path: Path) -> None:
    from emodesk.capture.sources import open_sources

    w = SessionWriter(tmp_path, SessionMeta(source="test"))
    path = w.start(0.0)
    img = np.full((120, 160, 3), 90, np.uint8)
    for k in range(30):
        w.add_frame(img, k / 30)
        w.add_audio(np.zeros(SR // 30, np.float32), k / 30)
    w.stop(1.0)
    src = open_sources(str(path), paced=False, use_mic=False)
    assert src.description == f"session {path.name}" and src.video is not None and src.audio is not None
    src.video.open()
    n = 0
    while src.video.read() is not None:
        n += 1
    src.video.close()
    assert n == 30
    with pytest.raises(Exception, match="is a folder"):
        open_sources(str(tmp_path), paced=False)


def test_labels_are_corrected_after_the_fact_on_a_span(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = _writer(tmp_path)
    path = w.start(0.0)
    w.set_label("happy", 1.0)
    w.set_label("sad", 5.0)
    w.stop(8.0)
    assert cli(["sessions", "label", str(path), "angry", "--from", "2", "--to", "6"]) == 0
    changes = read_labels(path)
    assert [labels_at(changes, t) for t in (0.5, 1.5, 2.5, 5.5, 6.5)] == [
        None,
        "happy",
        "angry",
        "angry",
        "sad",
    ]
    assert cli(["sessions", "label", str(path), "none", "--from", "0", "--to", "1.5"]) == 0
    assert labels_at(read_labels(path), 1.2) is None and labels_at(read_labels(path), 1.7) == "happy"
    assert cli(["sessions", "label", str(path), "grumpy", "--from", "0", "--to", "1"]) == 2
    assert cli(["sessions", "label", str(path), "sad", "--from", "3", "--to", "1"]) == 2
    assert check_session(path).ok


def test_a_broken_session_json_is_reported_and_the_rest_of_the_folder_still_lists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``[]``, a nesting bomb or a structure of the wrong types in one session.json used to crash
    ``sessions list`` for the whole parent folder (issue 19)."""
    w = _writer(tmp_path)
    good = w.start(0.0)
    w.add_audio(np.zeros(1600, np.float32), 0.0)
    w.stop(0.1)
    for name, text in (("list", "[]"), ("bomb", "[" * 100_000 + "]" * 100_000), ("types", '{"audio": 5}')):
        (tmp_path / name).mkdir()
        (tmp_path / name / "session.json").write_text(text, encoding="utf-8")
    assert cli(["sessions", "list", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "4 session(s)" in out and good.name in out
    assert out.count("problem(s)") >= 3
    for name in ("list", "types"):
        assert cli(["sessions", "check", str(tmp_path / name)]) == 1
    err = capsys.readouterr()
    assert "Traceback" not in err.out + err.err


def test_4k_frames_are_bounded_in_bytes_and_every_frame_is_written_or_counted_dropped(tmp_path: Path) -> None:
    """Recording 4K video used to hold 60 frames of 25 MB (1.5 GB) and write 31 of 150 frames while
    reporting 0 dropped (issue 19): the queue is bounded in bytes, and frames + dropped = offered."""
    from emodesk.recording import writer as writer_mod

    w = _writer(tmp_path)
    path = w.start(0.0)
    img = np.zeros((2160, 3840, 3), np.uint8)
    for k in range(150):
        img[:, :, k % 3] = k
        w.add_frame(img.copy(), k / 30)
    w.stop(5.0, timeout=60)
    doc = read_session_json(path)
    stats = doc["stats"]
    assert stats["frames_offered"] == 150
    assert doc["video"]["frames"] + stats["dropped_frames"] == 150, (doc["video"], stats)
    assert stats["dropped_frames"] > 0  # the encoder cannot keep up with 150 frames offered at once
    assert stats["max_queued_mb"] * 2**20 <= writer_mod.FRAME_QUEUE_BYTES + img.nbytes
    assert check_session(path).info["frames"] == doc["video"]["frames"]


def test_frames_lost_to_an_io_error_or_a_slow_encoder_are_counted_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """frames_offered = written + dropped after a disk error, and when stop() gives up on an
    encoder that is behind."""
    real = files.VideoWriter.write
    calls = {"n": 0}

    def failing(self: files.VideoWriter, image: np.ndarray, t: float) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        time.sleep(0.05)
        real(self, image, t)

    def record(folder: Path, n: int, **stop: float) -> dict[str, Any]:
        w = _writer(folder)
        path = w.start(0.0)
        for k in range(n):
            w.add_frame(np.zeros((120, 160, 3), np.uint8), k / 30)
        w.stop(1.0, **stop)
        return read_session_json(path)

    monkeypatch.setattr(files.VideoWriter, "write", failing)
    doc = record(tmp_path / "a", 20)
    assert doc["state"] == "stopped"
    assert doc["video"]["frames"] + doc["stats"]["dropped_frames"] == doc["stats"]["frames_offered"] == 20

    def slow(self: files.VideoWriter, image: np.ndarray, t: float) -> None:
        time.sleep(0.3)
        real(self, image, t)

    monkeypatch.setattr(files.VideoWriter, "write", slow)
    doc = record(tmp_path / "b", 30, timeout=1.0)
    assert doc["stats"]["dropped_frames"] > 0
    assert doc["video"]["frames"] + doc["stats"]["dropped_frames"] == doc["stats"]["frames_offered"] == 30
