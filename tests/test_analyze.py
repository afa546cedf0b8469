"""End to end: a generated video-with-speech file through the real models, as a user runs it."""

import json
import subprocess
import sys

import numpy as np
import pytest

from emodesk.cli.main import main
from emodesk.labels import LABELS
from emodesk.records import read_records
from emodesk.resources import shipped_models_dir
from tests.support.media import speech_video

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_face_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("media") / "two_faces.mp4"
    return speech_video(
        path, ["The quick brown fox jumps over the lazy dog.", "I am really happy with this result."], faces=2
    )


def _valid_probs(p):
    assert list(p) == list(LABELS)
    v = np.array(list(p.values()))
    assert np.all(v >= 0) and abs(v.sum() - 1) < 1e-3


def test_analyze_finds_faces_transcribes_and_fuses(two_face_clip, tmp_path, capsys):
    path, spans = two_face_clip
    out = tmp_path / "out.jsonl"
    report = tmp_path / "report.json"
    assert main(["analyze", str(path), "--out", str(out), "--json", str(report)]) == 0
    recs = read_records(out)
    faces = [r for r in recs if r["kind"] == "face"]
    fused = [r for r in recs if r["kind"] == "fused"]
    trans = [r for r in recs if r["kind"] == "transcript"]
    duration = spans[-1][1] + 1.0

    # two faces in (nearly) every frame, each keeping its own track id; one record per face
    # and scoring model: the cheapest face member on every frame, the others by turns
    # (FacePipeline's schedule), so every member scores the same faces
    models = sorted({r["model"] for r in faces})
    by_frame: dict[tuple[float, str], int] = {}
    for r in faces:
        by_frame[r["t"], r["model"]] = by_frame.get((r["t"], r["model"]), 0) + 1
    per_frame = list(by_frame.values())
    assert np.mean([n == 2 for n in per_frame]) > 0.9
    frames = {r["t"] for r in faces}
    every = [m for m in models if sum(k[1] == m for k in by_frame) == len(frames)]
    cheapest = min(models, key=lambda m: (shipped_models_dir() / f"{m}.onnx").stat().st_size)
    assert every == [cheapest], every  # the smallest model scores every frame
    turns = max(len(models) - 1, 2)  # a single other member takes every other frame
    for m in set(models) - set(every):  # the others take turns
        share = sum(k[1] == m for k in by_frame) / len(frames)
        assert abs(share - 1 / turns) < 0.05, (m, share)
    tracks = {r["track"] for r in faces}
    assert 2 <= len(tracks) <= 4, tracks
    for r in faces[:50]:
        _valid_probs(r["probs"])
        x, y, w, h = r["box"]
        assert 0 <= x and 0 <= y and x + w <= 640.5 and y + h <= 480.5 and w > 60

    # the spoken words, with utterance times near the truth
    text = " ".join(r["text"] for r in trans).lower()
    assert "fox" in text and "dog" in text and "happy" in text, text
    assert len(trans) == 2
    for r, (a, b) in zip(trans, spans, strict=True):
        assert abs(r["t0"] - a) < 0.5 and abs(r["t1"] - b) < 0.6 and r["t"] == r["t1"]

    # fused rows: at least one per media second while the face member is fresh
    secs = {int(r["t"]) for r in fused}
    assert set(range(int(duration) - 1)) <= secs
    for r in fused:
        _valid_probs(r["probs"])
        assert r["track"] in tracks

    ts = [r["t"] for r in recs]
    assert ts == sorted(ts)
    rep = json.loads(report.read_text())
    assert rep["frames"] > 0 and rep["utterances"] == 2 and rep["face_fps"] > 0
    assert "records" in capsys.readouterr().out


def test_audio_only_file(two_face_clip, tmp_path):
    from emodesk.capture.files import AudioFileSource
    from emodesk.capture.synthesis import write_wav

    path, _ = two_face_clip
    src = AudioFileSource(path, chunk_s=1.0)
    src.open()
    audio = np.concatenate([c.samples for c in iter(src.read, None)])
    src.close()
    wav = tmp_path / "speech.wav"
    write_wav(wav, audio, 16000)
    out = tmp_path / "a.jsonl"
    assert main(["analyze", str(wav), "--out", str(out)]) == 0
    recs = read_records(out)
    kinds = {r["kind"] for r in recs}
    assert "face" not in kinds and "transcript" in kinds
    text = [r for r in recs if r["kind"] == "transcript"]
    assert "fox" in " ".join(r["text"] for r in text).lower()
    # each utterance is scored by every installed voice member (no face, so fused = voice [+ text])
    from emodesk.inference.registry import models_of

    voice_ids = {m.id for m in models_of("voice")}
    assert {r["model"] for r in recs if r["kind"] == "voice"} == voice_ids
    assert len([r for r in recs if r["kind"] == "voice"]) == len(voice_ids) * len(text)


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "emodesk", *args], capture_output=True, text=True, timeout=120
    )


def test_bad_inputs_exit_2_with_one_line(tmp_path):
    r = _run("analyze", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "does not exist" in r.stderr
    assert "Traceback" not in r.stderr
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00garbage" * 500)
    r = _run("analyze", str(junk), "--out", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "junk.mp4" in r.stderr
    r = _run("analyze", str(junk))  # no --out: usage error
    assert r.returncode == 2


def _shipped_models_copy(tmp_path, monkeypatch):
    """A copy of the shipped model set, made the active one (``EMODESK_MODELS``), to break."""
    from tests.support.model_sets import copy_shipped_models

    models = copy_shipped_models(tmp_path)
    monkeypatch.setenv("EMODESK_MODELS", str(models))
    return models


def _analyze_in_a_child(path, out):
    return subprocess.run(
        [sys.executable, "-m", "emodesk", "analyze", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_corrupt_model_is_named_and_the_rest_keeps_working(two_face_clip, tmp_path, monkeypatch):
    models = _shipped_models_copy(tmp_path, monkeypatch)
    onnx = models / "face-resnet-m-ferplus.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    path, _ = two_face_clip
    out = tmp_path / "o.jsonl"
    r = _analyze_in_a_child(path, out)
    assert r.returncode == 0, r.stderr
    assert "face-resnet-m-ferplus" in r.stderr and "sha256" in r.stderr  # says which model and why
    recs = read_records(out)
    assert "transcript" in {rec["kind"] for rec in recs}
    # the other face members keep scoring; the broken one never appears
    face_models = {rec["model"] for rec in recs if rec["kind"] == "face"}
    assert "face-resnet-m-ferplus" not in face_models
    others = [m.stem for m in models.glob("face-*.onnx") if m.stem != "face-resnet-m-ferplus"]
    assert face_models == {m for m in others if not m.startswith(("face-detector", "face-verifier"))}


def test_a_missing_audio_file_or_an_unusable_cuda_is_bad_input_before_any_work(two_face_clip, tmp_path):
    path, _ = two_face_clip
    out = tmp_path / "o.jsonl"
    r = _run("analyze", str(path), "--audio", str(tmp_path / "nope.wav"), "--out", str(out))
    assert r.returncode == 2 and "nope.wav" in r.stderr and not out.exists()
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA: --device cuda is usable here")
    r = _run("analyze", str(path), "--device", "cuda", "--out", str(out))
    assert r.returncode == 2 and "--device cuda" in r.stderr and not out.exists()


def test_a_manifest_value_of_the_wrong_type_refuses_that_member_only(two_face_clip, tmp_path, monkeypatch):
    """``max_length: "abc"`` used to kill the speech thread: no voice, text or transcript rows, and
    exit 0 (issue 19). Now the text member is refused with a message, the rest runs, and the
    command exits 1 because the text modality did not run."""
    jp = _shipped_models_copy(tmp_path, monkeypatch) / "text-minilm.json"
    m = json.loads(jp.read_text(encoding="utf-8"))
    m["preprocessing"]["max_length"] = "abc"
    jp.write_text(json.dumps(m), encoding="utf-8")
    from emodesk.inference.lock import write_lock

    write_lock(jp.parent)  # a set made this way, so the type check (not the lock) refuses it
    path, _ = two_face_clip
    out = tmp_path / "o.jsonl"
    r = _analyze_in_a_child(path, out)
    assert r.returncode == 1, r.stderr
    assert "max_length" in r.stderr and "text failed" in r.stderr and "Traceback" not in r.stderr
    kinds = {rec["kind"] for rec in read_records(out)}
    assert {"face", "voice", "transcript"} <= kinds and "text" not in kinds


def test_a_speech_path_that_crashes_mid_run_fails_the_command_and_keeps_the_faces(
    two_face_clip, tmp_path, monkeypatch, capsys
):
    from emodesk.pipeline import analyze as an

    def crash(self, chunk):
        raise RuntimeError("simulated fault in the speech worker")

    monkeypatch.setattr(an.UtterancePipeline, "insert", crash)
    path, _ = two_face_clip
    out = tmp_path / "o.jsonl"
    assert main(["analyze", str(path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "speech path" in err and "simulated fault" in err and "Traceback" not in err
    kinds = {rec["kind"] for rec in read_records(out)}
    assert "face" in kinds and "transcript" not in kinds  # what the face path produced is kept


def test_a_model_set_without_face_members_is_no_failure(two_face_clip, tmp_path, monkeypatch):
    """Voice and text only (the face files removed, the detector with them): the face path is
    missing, not failed, so analyze succeeds with the other modalities."""
    models = _shipped_models_copy(tmp_path, monkeypatch)
    for p in [*models.glob("face-*"), models / "fusion.json"]:
        p.unlink()
    path, _ = two_face_clip
    out = tmp_path / "o.jsonl"
    r = _analyze_in_a_child(path, out)
    assert r.returncode == 0, r.stderr
    kinds = {rec["kind"] for rec in read_records(out)}
    assert "face" not in kinds and {"voice", "transcript"} <= kinds


def test_a_truncated_file_keeps_the_speech_before_the_cut(tmp_path):
    """A half-truncated .mp4 used to give 0 utterances and exit 0 (issue 19): now the speech decoded
    before the corruption is transcribed and scored, and the command exits 1 naming it."""
    path, spans = speech_video(
        tmp_path / "clip.mp4",
        [
            "The quick brown fox jumps over the lazy dog.",
            "I am really happy with this result.",
            "This is cut.",
        ],
    )
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    out = tmp_path / "o.jsonl"
    r = _analyze_in_a_child(cut, out)
    assert r.returncode == 1, r.stderr
    assert "the speech before it is kept" in r.stderr and "Traceback" not in r.stderr
    assert "is corrupt" in r.stderr or "its audio track declares (truncated?)" in r.stderr
    trans = [rec for rec in read_records(out) if rec["kind"] == "transcript"]
    assert trans and trans[0]["t1"] <= spans[1][0] + 0.5  # the first sentence, whole
    assert "fox" in trans[0]["text"].lower()
    assert {"voice", "text"} <= {rec["kind"] for rec in read_records(out)}


def test_a_video_longer_than_its_audio_is_not_called_truncated(tmp_path):
    """The check compares the audio with its own track's length, not the container's."""
    from emodesk.capture.files import AudioFileSource
    from emodesk.capture.synthesis import write_video_with_audio
    from emodesk.pipeline.analyze import _ends_early

    path = tmp_path / "va.mp4"
    frames = [np.full((96, 128, 3), 40, np.uint8) for _ in range(120)]  # 4 s of video
    write_video_with_audio(path, frames, 30.0, np.zeros(3 * 16000, np.float32), 16000)  # 3 s of audio
    assert _ends_early(AudioFileSource(path), 3.0) is None
    assert "truncated" in (_ends_early(AudioFileSource(path), 1.0) or "")
