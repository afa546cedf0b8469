"""``emodesk analyze`` over many inputs with the real models: a folder in, ID.jsonl + runs.jsonl out,
bad files recorded and passed over, a killed run resumed without redoing what was done."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emodesk.cli.main import main
from emodesk.labels import LABELS
from emodesk.records import read_records
from emodesk.resources import assets_dir
from emodesk.results.summary import emotion_summary

pytestmark = pytest.mark.slow
DEMO = assets_dir() / "demo.mp4"


def _runs(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "runs.jsonl").read_text(encoding="utf-8").splitlines()]


def test_a_folder_of_inputs_one_broken_then_resumed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(DEMO, src / name)
    (src / "broken.mp4").write_bytes(b"\x00not a video" * 300)
    out, report = tmp_path / "out", tmp_path / "report.json"
    assert main(["analyze", str(src), "--out", str(out), "--json", str(report)]) == 1  # one failed
    runs = _runs(out)
    assert [(e["id"], e["status"]) for e in runs] == [("a", "ok"), ("b", "ok"), ("broken", "failed")]
    assert "broken.mp4" in runs[2]["error"] and not (out / "broken.jsonl").exists()
    ok = runs[0]
    assert ok["sha256"] == runs[1]["sha256"] and ok["model_set"]["key"] and ok["records"] > 100
    assert ok["media_s"] == pytest.approx(14.7, abs=0.1) and set(ok["fusion"]["weights"]) >= {"text-minilm"}
    shares = ok["emotions"]["fused"]["share"]
    assert list(shares) == list(LABELS) and sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
    assert ok["emotions"]["fused"]["seconds"] == pytest.approx(ok["media_s"], abs=1.0)
    rep = json.loads(report.read_text(encoding="utf-8"))
    assert rep["counts"] == {"ok": 2, "degraded": 0, "failed": 1, "skipped": 0}
    # each input's records are exactly what the one-input form writes for that file
    single = tmp_path / "single.jsonl"
    assert main(["analyze", str(DEMO), "--out", str(single)]) == 0
    assert (out / "a.jsonl").read_bytes() == single.read_bytes() == (out / "b.jsonl").read_bytes()
    capsys.readouterr()

    stamp = (out / "a.jsonl").stat().st_mtime_ns
    assert main(["analyze", str(src), "--out", str(out), "--resume"]) == 1  # broken is still broken
    assert [(e["id"], e["status"]) for e in _runs(out)[3:]] == [
        ("a", "skipped"),
        ("b", "skipped"),
        ("broken", "failed"),
    ]
    assert (out / "a.jsonl").stat().st_mtime_ns == stamp
    (src / "broken.mp4").unlink()
    assert main(["analyze", str(src), "--out", str(out), "--resume"]) == 0
    assert "2 skipped" in capsys.readouterr().out
    # an input that fails now keeps no earlier output under its name: it is set aside, not deleted
    (src / "a.mp4").write_bytes(b"\x00truncated" * 100)
    assert main(["analyze", str(src), "--out", str(out), "--resume"]) == 1
    last = [e for e in _runs(out) if e["id"] == "a"][-1]  # skips are written first, then each run
    assert last["id"] == "a" and last["status"] == "failed" and last["previous_output"] == "a.jsonl.previous"
    assert not (out / "a.jsonl").exists() and (out / "a.jsonl.previous").read_bytes() == single.read_bytes()
    # a device is written as it is, with no partial file beside it; the emotion summary is tallied
    # from the records as they are written (nothing to read back from /dev/null): the same as the file's
    nul = tmp_path / "nul.json"
    assert main(["analyze", str(DEMO), "--out", "/dev/null", "--json", str(nul)]) == 0
    tallied = json.loads(nul.read_text(encoding="utf-8"))["emotions"]
    assert tallied == ok["emotions"]
    from_file = emotion_summary(read_records(single), media_end=ok["media_s"])
    for kind in ("fused", "face", "voice", "text"):
        assert tallied[kind]["share"] == pytest.approx(from_file[kind]["share"], abs=2e-4)
    assert tallied["fused"]["seconds"] > 10


def test_a_killed_run_leaves_every_record_so_far_and_resume_finishes_it(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name in ("c1.mp4", "c2.mp4", "c3.mp4"):
        shutil.copy(DEMO, src / name)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "emodesk", "analyze", str(src), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    partial = out / "c2.jsonl.partial"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            if partial.is_file() and len(partial.read_bytes().splitlines()) >= 200:
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.02)
        else:
            pytest.fail("the second input never got 200 records")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert [(e["id"], e["status"]) for e in _runs(out)] == [("c1", "ok")]
    assert not (out / "c2.jsonl").exists() and (out / "c1.jsonl").is_file()
    # what the kill left is a prefix of the whole file (the same media): every record up to it
    whole = (out / "c1.jsonl").read_bytes().splitlines(keepends=True)
    left = partial.read_bytes().splitlines(keepends=True)
    if left and not left[-1].endswith(b"\n"):
        left = left[:-1]  # a line the kill cut
    assert len(left) >= 200 and left == whole[: len(left)] and len(left) < len(whole)

    assert main(["analyze", str(src), "--out", str(out), "--resume"]) == 0
    assert [(e["id"], e["status"]) for e in _runs(out)[1:]] == [("c1", "skipped"), ("c2", "ok"), ("c3", "ok")]
    assert (out / "c2.jsonl").read_bytes() == (out / "c1.jsonl").read_bytes() and not partial.exists()


def test_a_worker_loads_its_models_once_and_each_input_starts_afresh(tmp_path: Path) -> None:
    from emodesk.batch.inputs import expand_inputs
    from emodesk.batch.local import run_batch
    from emodesk.pipeline.model_cache import ModelCache

    for name in ("x.mp4", "y.mp4"):
        shutil.copy(DEMO, tmp_path / name)
    (tmp_path / "z.wav").write_bytes(b"RIFF\x00\x00")  # broken: fails, the models stay usable
    shutil.copy(DEMO, tmp_path / "zz.mp4")
    cache = ModelCache()
    result = run_batch(expand_inputs([str(tmp_path)]), tmp_path / "out", models=cache)
    assert [e["status"] for e in result.entries] == ["ok", "ok", "failed", "ok"]
    assert cache.loads == 2  # the face path's models and the speech path's, once each
    out = tmp_path / "out"
    # the same records as a fresh process gives the file, for the first input and every later one
    fresh = tmp_path / "fresh.jsonl"
    assert main(["analyze", str(DEMO), "--out", str(fresh)]) == 0
    for name in ("x", "y", "zz"):
        assert (out / f"{name}.jsonl").read_bytes() == fresh.read_bytes(), name


def test_what_cannot_start_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x", encoding="utf-8")
    clip = tmp_path / "a.mp4"
    shutil.copy(DEMO, clip)
    cases = [
        (["analyze", str(clip), "--out", str(a_file / "o.jsonl")], "is a file, not a folder"),
        (
            ["analyze", str(clip), "--out", str(tmp_path / "o.jsonl"), "--json", str(a_file / "r.json")],
            "--json",
        ),
        (["analyze", str(clip), str(tmp_path / "gone.mp4"), "--out", str(tmp_path / "o")], "does not exist"),
        (["analyze", str(tmp_path), "--out", str(tmp_path / "x.jsonl")], "takes one input"),
        (["analyze", str(clip), "--out", str(tmp_path / "o.jsonl"), "--resume"], "needs a folder"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.jsonl").exists()
    assert not (tmp_path / "x.jsonl").exists() and not (tmp_path / "o.jsonl.partial").exists()
