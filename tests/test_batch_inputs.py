"""Batch runs without models: expanding inputs, the run index and resume, the emotion summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emodesk.batch.inputs import expand_inputs
from emodesk.batch.runs import input_sha256, model_set_identity
from emodesk.errors import InputError
from emodesk.labels import LABELS
from emodesk.results.runs import RunIndex, done_before
from emodesk.results.summary import emotion_summary


def _touch(p: Path, data: bytes = b"x") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def test_files_folders_globs_and_manifests_expand_to_unique_inputs(tmp_path: Path) -> None:
    a = _touch(tmp_path / "clips" / "a.mp4")
    b = _touch(tmp_path / "clips" / "b.wav")
    _touch(tmp_path / "clips" / "notes.txt")  # not media: left out of a folder
    other_a = _touch(tmp_path / "more" / "a.mp4", b"y")  # the same stem as clips/a.mp4
    session = tmp_path / "clips" / "s1"
    _touch(session / "session.json", b"{}")
    found = expand_inputs([str(tmp_path / "clips")])
    assert [(i.id, i.path) for i in found] == [("a", a), ("b", b), ("s1", session)]
    # a glob, the same file named twice (once kept), two files of one stem told apart by their path
    found = expand_inputs([str(tmp_path / "**" / "a.mp4"), str(a)])
    assert [i.path for i in found] == [a, other_a]
    assert found[0].id.startswith("a-") and found[1].id.startswith("a-") and found[0].id != found[1].id
    manifest = tmp_path / "study.csv"
    manifest.write_text("path,id\nclips/a.mp4,P01 session 1\nmore/a.mp4,P02\n", encoding="utf-8")
    found = expand_inputs([str(manifest)])
    assert [(i.id, i.path) for i in found] == [("P01_session_1", a), ("P02", other_a)]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("missing.mp4", "does not exist"),
        ("*.nothing", "matches no video"),
        ("empty", "holds no video"),
        ("nopath.csv", "no 'path' column"),
        ("badrow.csv", "line 2: "),
    ],
)
def test_inputs_that_cannot_start_are_refused_before_any_work(
    tmp_path: Path, spec: str, message: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "nopath.csv").write_text("file\nx.mp4\n", encoding="utf-8")
    (tmp_path / "badrow.csv").write_text("path\ngone.mp4\n", encoding="utf-8")
    with pytest.raises(InputError, match=message):
        expand_inputs([str(tmp_path / spec)])


def test_resume_needs_the_same_bytes_the_same_model_set_and_the_output(tmp_path: Path) -> None:
    clip = _touch(tmp_path / "a.mp4", b"clip")
    out = _touch(tmp_path / "out" / "a.jsonl", b"{}\n")
    index = RunIndex(tmp_path / "out")
    ident = model_set_identity()
    assert ident["key"] == model_set_identity()["key"] and ident["key"] != model_set_identity("base")["key"]
    # the code makes the records too: another emodesk version is another model set; so is CUDA
    assert model_set_identity(device="cpu")["onnx_device"] == "cpu"
    assert ident["onnx_device"] in ("cpu", "cuda")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("emodesk.__version__", "99.0")
        assert model_set_identity()["key"] != ident["key"] and model_set_identity()["emodesk"] == "99.0"
    entry = {"id": "a", "status": "ok", "sha256": input_sha256(clip), "model_set": ident}
    index.append({**entry, "status": "failed"})
    index.append(entry)
    index.append({"id": "a", "status": "skipped"})  # a skip does not hide the run it skipped
    with open(index.path, "a", encoding="utf-8") as f:
        f.write('{"id": "a", "status": "fail')  # a line a kill cut off
    latest = index.latest()["a"]
    assert latest["status"] == "ok"
    kw = {"input_sha256": input_sha256(clip), "model_key": ident["key"], "output": out}
    assert done_before(latest, **kw)
    assert not done_before(latest, **{**kw, "model_key": "another set"})
    assert not done_before(latest, **{**kw, "input_sha256": "changed bytes"})
    assert not done_before(latest, **{**kw, "output": tmp_path / "out" / "gone.jsonl"})
    assert not done_before({**latest, "status": "degraded"}, **kw)


def _probs(top: str) -> dict[str, float]:
    return {lab: (0.7 if lab == top else 0.05) for lab in LABELS}


def test_the_emotion_summary_counts_the_time_each_reading_held() -> None:
    recs = [{"t": float(t), "kind": "fused", "probs": _probs("happy"), "track": 1} for t in range(6)]
    recs += [{"t": 6.0, "kind": "fused", "probs": _probs("sad"), "track": 2}]
    recs += [{"t": 9.0, "kind": "fused", "probs": _probs("sad")}]  # after a gap: holds 1 s, not 3
    # one face track at 10 fps for 2 s: happy, then 1 s of angry from two members that disagree
    for i in range(20):
        t = i / 10
        recs.append(
            {
                "t": t,
                "kind": "face",
                "model": "f1",
                "track": 1,
                "probs": _probs("happy" if i < 10 else "angry"),
            }
        )
        if i >= 10:
            recs.append({"t": t, "kind": "face", "model": "f2", "track": 1, "probs": _probs("fear")})
    recs += [
        {"t": 3.0, "kind": "voice", "t0": 1.0, "t1": 3.0, "probs": _probs("angry")},
        {"t": 5.0, "kind": "voice", "t0": 4.5, "t1": 5.0, "probs": _probs("neutral")},
        {"t": 3.0, "kind": "text", "t0": 1.0, "t1": 3.0, "probs": _probs("sad")},
        {"t": 5.0, "kind": "text", "t0": 4.5, "t1": 5.0, "probs": _probs("happy"), "trusted": False},
        {"t": 5.0, "kind": "transcript", "t0": 4.5, "t1": 5.0, "text": "hm"},
    ]
    s = emotion_summary(recs, media_end=10.0)
    assert s["fused"]["seconds"] == pytest.approx(8.0)
    assert s["fused"]["share"]["happy"] == pytest.approx(6 / 8) and s["fused"]["top"] == "happy"
    assert s["fused"]["by_track"]["2"]["share"]["sad"] == 1.0 and s["fused"]["by_track"]["1"]["seconds"] == 6
    assert s["face"]["seconds"] == pytest.approx(2.0)
    # the members' mean decides a frame: 0.7 angry + 0.05 vs 0.05 + 0.7 fear is a tie -> first label
    assert s["face"]["share"]["happy"] == pytest.approx(0.5) and s["face"]["share"]["angry"] == pytest.approx(
        0.5
    )
    assert s["voice"]["share"]["angry"] == pytest.approx(0.8) and s["voice"]["utterances"] == 2
    assert s["text"]["share"]["sad"] == 1.0 and s["text"]["untrusted"] == 1 and s["text"]["utterances"] == 1
    assert all(set(m["share"]) == set(LABELS) for m in s.values())
    json.dumps(s)  # what the --json report and runs.jsonl carry
    empty = emotion_summary([])
    assert empty["fused"]["seconds"] == 0 and empty["fused"]["top"] is None


def test_ids_never_take_the_index_name_nor_collide_by_case_and_odd_names_are_names(tmp_path: Path) -> None:
    runs = _touch(tmp_path / "d" / "runs.wav")
    upper = _touch(tmp_path / "d" / "Interview.mp4")
    lower = _touch(tmp_path / "d" / "interview.wav")
    _touch(tmp_path / "d" / "._Interview.mp4")  # macOS metadata: not an input
    found = {i.path: i.id for i in expand_inputs([str(tmp_path / "d")])}
    assert set(found) == {runs, upper, lower}
    assert found[runs].startswith("runs-")
    assert found[upper].casefold() != found[lower].casefold()
    bracket = _touch(tmp_path / "Interview [2024].mp4")
    assert [i.path for i in expand_inputs([str(bracket)])] == [bracket]  # a name, not a pattern
    bom = tmp_path / "excel.csv"
    bom.write_bytes("\ufeffpath\nd/runs.wav\n".encode())
    assert [i.path for i in expand_inputs([str(bom)])] == [runs]


def test_a_line_appended_after_one_a_kill_cut_stays_whole(tmp_path: Path) -> None:
    index = RunIndex(tmp_path)
    index.append({"id": "a", "status": "ok"})
    with open(index.path, "a", encoding="utf-8") as f:
        f.write('{"id": "b", "sta')
    index.append({"id": "c", "status": "failed"})
    assert [e["id"] for e in index.entries()] == ["a", "c"]
