"""``emodesk retrain`` on a tiny synthetic session set: end to end on the CPU, refusals, install, rollback."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from emodesk.cli.main import main as cli
from emodesk.inference.face_detector import FaceDetector
from emodesk.labels import LABELS
from emodesk.recording.writer import SessionMeta, SessionWriter
from emodesk.training.retrain import TooLittleData, install_fusion, retrain, rollback
from tests.media import face_image

SENTENCES = {
    "angry": "I am so angry and furious right now",
    "happy": "I am so happy and glad to see you",
    "sad": "I feel so sad and lonely today",
    "surprise": "wow I did not expect that at all",
}


def _session(parent: Path, seed: int, utterances: int = 8) -> Path:
    rng = np.random.default_rng(seed)
    face = face_image()
    frame = np.full((480, 640, 3), 60, np.uint8)
    h, w = face.shape[:2]
    scale = 300 / max(h, w)
    small = cv2.resize(face, (int(w * scale), int(h * scale)))
    frame[90 : 90 + small.shape[0], 170 : 170 + small.shape[1]] = small
    box = FaceDetector.load(device="cpu").detect(frame)[0].box
    writer = SessionWriter(parent, SessionMeta(source="synthetic"), fps=10)
    path = writer.start(0.0)
    labels = list(SENTENCES)
    t = 0.0
    for k in range(utterances):
        lab = labels[(k + seed) % len(labels)]
        writer.set_label(lab, t)
        for i in range(15):  # 1.5 s at 10 fps, with audio
            ft = t + i / 10
            writer.add_frame(frame, ft)
            writer.add_audio((0.05 * rng.standard_normal(1600)).astype(np.float32), ft)
            writer.add_record(
                {"t": round(ft, 3), "kind": "face", "model": "m", "probs": {}, "track": 1, "box": list(box)}
            )
        writer.add_record(
            {"t": t + 1.2, "kind": "transcript", "t0": t + 0.2, "t1": t + 1.2, "text": SENTENCES[lab]}
        )
        t += 1.5
    writer.stop(t)
    return path


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    parent = tmp_path_factory.mktemp("sessions")
    for seed in range(4):
        _session(parent, seed)
    return parent


@pytest.mark.slow
def test_retrain_runs_end_to_end_and_installs_only_beyond_the_noise(
    sessions: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = retrain([sessions], seed=0)
    assert len(r.sessions["held_out"]) == 1 and len(r.sessions["train"]) == 3  # split by session
    assert r.rows == {"train": 24, "held_out": 8}
    assert set(r.old) >= {"fused", "face", "voice", "text"} and r.diff_ci95 is not None
    # the voice member was re-fitted on the training sessions' utterances and compared as part of the new set
    assert r.fine_tuned == "voice: voice-tinyen-ravdess re-fitted on 24 session utterances", r.fine_tuned
    lo, hi = r.diff_ci95
    assert lo <= r.new["fused"] - r.old["fused"] <= hi
    # 8 held-out utterances cannot show a gain beyond the bootstrap noise: nothing is installed
    assert not r.installed and "does not clear the bootstrap noise" in r.reason
    from emodesk.resources import active_models_dir

    assert active_models_dir() is None
    assert cli(["retrain", "--sessions", str(sessions)]) == 0
    out = capsys.readouterr().out
    assert "held-out macro-F1" in out and "not installed" in out


def test_too_little_labeled_data_is_refused_with_the_numbers(
    sessions: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = sorted(sessions.iterdir())[0]
    with pytest.raises(TooLittleData, match=r"1 labeled session\(s\) of 1, 8 labeled utterance"):
        retrain([one])
    assert cli(["retrain", "--sessions", str(one)]) == 1
    assert "too little labeled data" in capsys.readouterr().err
    with pytest.raises(TooLittleData, match="need at least 2 sessions and 100"):
        retrain([sessions], min_rows=100)


def test_install_and_rollback_of_model_sets(emodesk_home: Path) -> None:
    from emodesk.inference.registry import installed_manifests
    from emodesk.pipeline.models import load_fusion
    from emodesk.resources import active_models_dir

    ms = [m for m in installed_manifests().values() if m.modality in ("face", "voice", "text")]
    doc = {
        "version": 1,
        "classes": list(LABELS),
        "members": [{"id": m.id, "sha256": m.sha256, "modality": m.modality} for m in ms],
        "weights": {m.id: (1.0 if m.modality == "text" else 0.0) for m in ms},
    }
    v1 = install_fusion(doc)
    assert active_models_dir() == emodesk_home / "models" / v1
    cfg = load_fusion()
    assert cfg.path == emodesk_home / "models" / v1 / "fusion.json" and not cfg.dropped
    v2 = install_fusion({**doc, "weights": {m.id: 1.0 for m in ms}})
    assert active_models_dir() == emodesk_home / "models" / v2 and v2 != v1
    assert rollback() == v1 and active_models_dir() == emodesk_home / "models" / v1
    assert rollback() == "shipped" and active_models_dir() is None
    with pytest.raises(Exception, match="nothing to roll back"):
        rollback()
    assert json.loads((emodesk_home / "models" / "history.json").read_text()) == []


@pytest.mark.slow
def test_the_voice_member_is_refitted_on_session_utterances(sessions: Path, tmp_path: Path) -> None:
    from emodesk.evaluation.datasets import load_manifest
    from emodesk.inference.registry import installed_manifests
    from emodesk.inference.utterance_scorers import VoiceScorer
    from emodesk.recording.export import export_session
    from emodesk.training.voice_finetune import finetune_voice

    rows = []
    for s in sorted(sessions.iterdir())[:2]:
        export_session(s, tmp_path / s.name)
        rows += load_manifest(tmp_path / s.name / "voice.csv", column="path")
    old = next(m for m in installed_manifests().values() if m.modality == "voice")
    new = finetune_voice(old, rows, tmp_path / "set", cache=tmp_path / "f.npz", note="test")
    assert new.id == old.id and new.sha256 != old.sha256 and new.path.parent == tmp_path / "set"
    src = json.loads(new.path.read_text())["source"]["fine_tuned"]
    assert src["from_sha256"] == old.sha256 and src["rows"] == len(rows) == 16
    assert src["onnx_vs_torch_max_abs_diff"] < 1e-5
    scorer = VoiceScorer.load(new, device="cpu")
    scorer.prepare()
    p = scorer.score(np.zeros(16000, np.float32))
    assert p.shape == (7,) and abs(float(p.sum()) - 1) < 1e-5


def test_paired_bootstrap_interval_of_the_gain() -> None:
    from emodesk.training.retrain import paired_bootstrap_diff

    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 200)
    noisy = np.eye(7)[np.where(rng.random(200) < 0.5, y, rng.integers(0, 7, 200))]
    assert paired_bootstrap_diff(y, noisy, noisy) == (0.0, 0.0)
    lo, hi = paired_bootstrap_diff(y, noisy, np.eye(7)[y])  # perfect predictions: a clear gain
    assert 0.3 < lo <= hi < 0.8
