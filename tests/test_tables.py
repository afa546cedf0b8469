"""``emodesk table``: tidy tables from analyze outputs, run folders and recorded sessions."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from emodesk.cli.main import main
from emodesk.errors import InputError
from emodesk.labels import LABELS
from emodesk.results.inputs import find_results
from emodesk.results.tables import SCHEMAS, input_rows


def _p(top: str, p: float = 0.9) -> dict[str, float]:
    rest = (1.0 - p) / (len(LABELS) - 1)
    return {lab: (p if lab == top else rest) for lab in LABELS}


RECORDS: list[dict[str, Any]] = [
    {"t": 0.0, "kind": "fused", "probs": _p("happy"), "members": ["f"], "track": 1},
    {"t": 0.0, "kind": "face", "model": "f", "probs": _p("happy"), "track": 1, "box": [1.0, 2.0, 30.0, 30.0]},
    {
        "t": 0.5,
        "kind": "face",
        "model": "f",
        "probs": _p("happy", 0.7),
        "track": 1,
        "box": [1.0, 2.0, 30.0, 30.0],
    },
    {"t": 1.0, "kind": "fused", "probs": _p("sad"), "members": ["f"], "track": 2},
    {"t": 1.2, "kind": "face", "model": "f", "probs": _p("sad"), "track": 2},
    {"t": 1.8, "kind": "transcript", "t0": 0.2, "t1": 1.8, "text": "hello there"},
    {"t": 1.8, "kind": "voice", "model": "v", "probs": _p("angry"), "t0": 0.2, "t1": 1.8},
    {"t": 1.8, "kind": "text", "model": "w", "probs": _p("happy"), "t0": 0.2, "t1": 1.8},
    {"t": 1.8, "kind": "fused", "probs": _p("angry"), "members": ["f", "v", "w"]},
    {
        "t": 2.6,
        "kind": "transcript",
        "t0": 2.0,
        "t1": 2.6,
        "text": "xx",
        "trusted": False,
        "reason": "unsure",
    },
    {"t": 2.6, "kind": "text", "model": "w", "probs": _p("fear"), "t0": 2.0, "t1": 2.6, "trusted": False},
]


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_rows_join_each_second_and_utterance_from_the_records(tmp_path: Path) -> None:
    (inp,) = find_results([_jsonl(tmp_path / "clip.jsonl", RECORDS)])
    rows = input_rows(inp, inp.load())
    tl = rows["timeline"]
    assert [r["t"] for r in tl] == [0.0, 1.0, 2.0] and {r["input"] for r in tl} == {"clip"}
    # second 0: the fused row of t=0 (track 1), track 1's faces in the second (mean), the utterance said
    assert (tl[0]["fused_top"], tl[0]["track"]) == ("happy", 1)
    assert tl[0]["face_happy"] == pytest.approx(0.8)
    assert tl[0]["voice_angry"] == pytest.approx(0.9) and tl[0]["text_happy"] == pytest.approx(0.9)
    # second 1: the fused row of t=1 names track 2, so its face is track 2's
    assert (tl[1]["fused_top"], tl[1]["track"], tl[1]["face_sad"]) == ("sad", 2, pytest.approx(0.9))
    # second 2: at 2.5 the fused row of 1.8 holds; the words said then are doubted: no text scores
    assert tl[2]["fused_top"] == "angry" and tl[2]["text_fear"] is None and tl[2]["face_sad"] is None
    utts = rows["utterances"]
    assert [(u["text"], u["trusted"], u["voice_top"], u["text_top"]) for u in utts] == [
        ("hello there", True, "angry", "happy"),
        ("xx", False, None, "fear"),
    ]
    assert utts[1]["reason"] == "unsure" and utts[0]["label"] is None  # not a session: no labels
    faces = rows["faces"]
    assert [(f["t"], f["track"], f["top"]) for f in faces] == [
        (0.0, 1, "happy"),
        (0.5, 1, "happy"),
        (1.2, 2, "sad"),
    ]
    assert (faces[0]["box_w"], faces[2]["box_w"]) == (30.0, None)
    (info,) = rows["inputs"]
    assert info["status"] == "ok" and info["records"] == len(RECORDS) and info["utterances"] == 2
    for name, got in rows.items():  # every row has exactly its table's columns
        assert all(set(r) == {c for c, _ in SCHEMAS[name]} for r in got), name


def _session(folder: Path) -> Path:
    folder.mkdir()
    _jsonl(folder / "scores.jsonl", RECORDS)
    _jsonl(folder / "labels.jsonl", [{"t": 0.0, "label": "happy"}, {"t": 1.1, "label": "sad"}])
    return folder


def _run_folder(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    _jsonl(run / "a.jsonl", RECORDS)
    _jsonl(
        run / "runs.jsonl",
        [
            {"id": "a", "input": "in/a.mp4", "output": "a.jsonl", "status": "failed", "error": "old"},
            {"id": "b", "input": "in/b.mp4", "output": "b.jsonl", "status": "failed", "error": "not a video"},
            {"id": "a", "input": "in/a.mp4", "output": "a.jsonl", "status": "ok", "media_s": 3.2},
            {"id": "a", "input": "in/a.mp4", "output": "a.jsonl", "status": "skipped"},
        ],
    )
    return run


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_table_over_a_run_and_a_session_writes_tidy_files(tmp_path: Path, fmt: str) -> None:
    run, session = _run_folder(tmp_path), _session(tmp_path / "20261203-101010-abcdef")
    out = tmp_path / "tables"
    assert main(["table", str(run), str(session), "--out", str(out), "--format", fmt]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.{fmt}" for n in SCHEMAS)
    if fmt == "parquet":
        pd = pytest.importorskip("pandas")
        tl = pd.read_parquet(out / "timeline.parquet")
        inputs = pd.read_parquet(out / "inputs.parquet")
        assert list(tl.columns) == [c for c, _ in SCHEMAS["timeline"]]
        assert tl["t"].dtype == "float64" and tl["fused_happy"].dtype == "float64"
        rows = pytest.importorskip("pyarrow.parquet").read_table(out / "timeline.parquet").to_pylist()
    else:
        rows = _read(out / "timeline.csv")
        inputs = None
    # the run's latest lines (a skip is not one): a ran, b failed with no records; then the session
    # a's media ran 3.2 s (its runs.jsonl line): four seconds, the last with nothing fresh but the
    # utterance's end; the session's span comes from its records (no session.json): 0-2.6 s
    by_input = [(r["input"], float(r["t"])) for r in rows]
    assert by_input == [("a", float(k)) for k in range(4)] + [(session.name, float(k)) for k in range(3)]
    labels = [r["label"] for r in rows]
    assert labels[:4] in ([""] * 4, [None] * 4) and labels[4:] == ["happy", "sad", "sad"]
    if inputs is not None:
        assert list(inputs["input"]) == ["a", "b", session.name]
        assert list(inputs["status"]) == ["ok", "failed", "ok"] and inputs["error"][1] == "not a video"
        assert inputs["labelled_s"][2] == 3.0
    else:
        info = _read(out / "inputs.csv")
        assert [(r["input"], r["status"], r["error"]) for r in info] == [
            ("a", "ok", ""),
            ("b", "failed", "not a video"),
            (session.name, "ok", ""),
        ]
    assert (out / f"faces.{fmt}").stat().st_mode & 0o077 == 0  # transcripts and faces stay private


def test_bad_sources_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "tables"
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    for bad in ("missing", "empty", "notes.txt"):
        assert main(["table", str(tmp_path / bad), "--out", str(out)]) == 2
    one = _jsonl(tmp_path / "a.jsonl", RECORDS)
    (tmp_path / "again").mkdir()
    twin = _jsonl(tmp_path / "again" / "a.jsonl", RECORDS)
    with pytest.raises(InputError, match="two inputs have the id 'a'"):
        find_results([one, twin])
    assert main(["table", str(one), str(twin), "--out", str(out)]) == 2
    # a record file that breaks midway: exit 2 naming the line, and no table left that looks whole
    broken = tmp_path / "b.jsonl"
    broken.write_text(json.dumps(RECORDS[0]) + "\n{not json\n", encoding="utf-8")
    assert main(["table", str(one), str(broken), "--out", str(out)]) == 2
    assert not out.exists() or not any(out.iterdir())
    (tmp_path / "file").write_text("x", encoding="utf-8")
    assert main(["table", str(one), "--out", str(tmp_path / "file")]) == 2


def test_hostile_run_lines_and_times_are_refused_or_made_harmless(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    outside = _jsonl(tmp_path / "secret.jsonl", RECORDS)
    rows = [dict(r) for r in RECORDS]
    rows[1] = {**rows[1], "track": 10**25}  # beyond int64: no track, not a crash
    rows[2] = {**rows[2], "track": True}  # a bool is not a track id
    _jsonl(run / "ok.jsonl", rows)
    _jsonl(
        run / "runs.jsonl",
        [
            {"id": "up", "output": "../secret.jsonl", "status": "ok"},
            {"id": "abs", "output": str(outside), "status": "ok"},
            {"id": "ok", "output": "ok.jsonl", "status": "ok", "error": {"not": "text"}},
        ],
    )
    found = {r.id: r for r in find_results([run])}
    for ident in ("up", "abs"):  # the driver writes bare names: anything else is never read
        assert found[ident].status == "failed" and "outside the run folder" in str(found[ident].error)
    out = tmp_path / "t"
    assert main(["table", str(run), "--out", str(out), "--format", "parquet"]) == 0
    pq = pytest.importorskip("pyarrow.parquet")
    faces = pq.read_table(out / "faces.parquet").to_pylist()
    assert faces[0]["track"] is None and faces[1]["track"] is None and faces[2]["track"] == 2
    info = {r["input"]: r for r in pq.read_table(out / "inputs.parquet").to_pylist()}
    assert info["ok"]["error"] == "{'not': 'text'}" and info["up"]["status"] == "failed"
    # a time no recording has: refused (a per-second table of it would never end), nothing written
    far = _jsonl(tmp_path / "far.jsonl", [{"t": 1e7, "kind": "fused", "probs": _p("sad")}])
    with pytest.raises(InputError, match="more than a week"):
        find_results([far])[0].load()
    assert main(["table", str(far), "--out", str(tmp_path / "far-out")]) == 2
