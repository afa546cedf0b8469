"""The app as a user starts it: `emodesk --self-test`, and the window on a real X screen (Xvfb)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emodesk.imaging import read_image

REPO = Path(__file__).resolve().parent.parent


def _emodesk(*args, env=None, timeout=180):
    return subprocess.run(
        [sys.executable, "-m", "emodesk", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


def test_self_test_passes_offscreen(tmp_path):
    env = {**os.environ, "EMODESK_HOME": str(tmp_path)}
    env.pop("DISPLAY", None)
    r = _emodesk("--self-test", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    for check in ("models", "face path", "speech path", "fusion", "window"):
        assert f"ok   {check}" in r.stdout
    assert "Traceback" not in r.stderr


def test_self_test_fails_on_a_corrupt_model(tmp_path):
    models = tmp_path / "models"
    shutil.copytree(REPO / "models", models)
    p = models / "face-detector-blazeface-short.onnx"
    p.write_bytes(p.read_bytes()[:-100])
    env = {**os.environ, "EMODESK_HOME": str(tmp_path), "EMODESK_MODELS": str(models)}
    r = _emodesk("--self-test", env=env)
    assert r.returncode == 1
    assert "FAIL models" in r.stdout and "face-detector-blazeface-short" in r.stdout
    assert "ok   speech path" in r.stdout  # the rest still ran


def _copied_models(tmp_path):
    from tests.support.model_sets import copy_shipped_models

    models = copy_shipped_models(tmp_path)
    env = {**os.environ, "EMODESK_HOME": str(tmp_path), "EMODESK_MODELS": str(models)}
    env.pop("DISPLAY", None)
    return models, env


@pytest.mark.parametrize("relocked", [False, True])
def test_self_test_fails_on_a_face_manifest_with_two_labels_swapped(tmp_path, relocked):
    """The lock refuses the edited manifest; locked on purpose, the known answer still catches it."""
    import json

    models, env = _copied_models(tmp_path)
    jp = models / "face-resnet-s-ferplus.json"
    m = json.loads(jp.read_text(encoding="utf-8"))
    labels = m["labels"]
    i, j = labels.index("happy"), labels.index("sad")
    labels[i], labels[j] = labels[j], labels[i]
    jp.write_text(json.dumps(m), encoding="utf-8")
    if relocked:
        assert _emodesk("models", "lock", str(models), env=env).returncode == 0
    r = _emodesk("--self-test", env=env)
    assert r.returncode == 1, r.stdout
    if relocked:
        assert (
            "ok   lock" in r.stdout and "face-resnet-s-ferplus reads the smiling test face as sad" in r.stdout
        )
    else:
        assert (
            "FAIL lock" in r.stdout
            and "face-resnet-s-ferplus.json differs from its model set's lock" in r.stdout
        )
        assert "FAIL models" in r.stdout  # the refused member does not silently leave the set


@pytest.mark.parametrize("relocked", [False, True])
def test_self_test_fails_on_a_tokenizer_with_two_token_ids_swapped(tmp_path, relocked):
    import json

    models, env = _copied_models(tmp_path)
    tp = models / "text-minilm.tokenizer.json"
    tok = json.loads(tp.read_text(encoding="utf-8"))
    vocab = tok["model"]["vocab"]
    vocab["happy"], vocab["sad"] = vocab["sad"], vocab["happy"]
    tp.write_text(json.dumps(tok), encoding="utf-8")
    if relocked:
        assert _emodesk("models", "lock", str(models), env=env).returncode == 0
    r = _emodesk("--self-test", env=env)
    assert r.returncode == 1, r.stdout
    if relocked:
        assert "FAIL voice/text members" in r.stdout and "text-minilm reads" in r.stdout
    else:
        assert (
            "FAIL lock" in r.stdout
            and "text-minilm.tokenizer.json differs from its model set's lock" in r.stdout
        )
        assert "FAIL models" in r.stdout


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"id": ' + "9" * 4400 + "}"])
def test_a_stray_hostile_json_in_the_model_folder_is_named_not_a_traceback(tmp_path, text):
    """A nesting bomb or a 4,400-digit integer in a stray models/*.json used to crash ``models``, the
    self-test and ``analyze`` with a traceback (issue 19): it is refused by name; the rest loads."""
    models, env = _copied_models(tmp_path)
    (models / "stray.json").write_text(text, encoding="utf-8")
    r = _emodesk("models", env=env)
    assert r.returncode == 0 and "text-minilm" in r.stdout and "Traceback" not in r.stderr
    r = _emodesk("--self-test", env=env)
    assert r.returncode == 1 and "FAIL models" in r.stdout and "stray.json" in r.stdout
    assert "ok   face path" in r.stdout and "Traceback" not in r.stdout + r.stderr
    r = _emodesk("models", "lock", str(models), env=env)  # locked on purpose: the reader still refuses it
    r = _emodesk("--self-test", env=env)
    assert r.returncode == 1 and "stray.json" in r.stdout and "Traceback" not in r.stdout + r.stderr
    assert "nests deeper than 32 levels" in r.stdout or "4400 digits" in r.stdout


def test_models_verify_names_every_file_that_differs_and_lock_records_a_deliberate_change(tmp_path):
    models, env = _copied_models(tmp_path)
    assert _emodesk("models", "verify", str(models), env=env).returncode == 0
    (models / "fusion.json").write_text(
        (models / "fusion.json").read_text(encoding="utf-8") + " ", encoding="utf-8"
    )
    (models / "stray.onnx").write_bytes(b"x")
    (models / "text-minilm.json").unlink()
    r = _emodesk("models", "verify", str(models), env=env)
    assert r.returncode == 1
    for line in (
        "fusion.json differs from its model set's lock",
        "stray.onnx is not in its model set's lock",
        "text-minilm.json: listed in the lock but missing",
    ):
        assert line in r.stdout, r.stdout
    assert _emodesk("models", "lock", str(models), env=env).returncode == 0
    assert _emodesk("models", "verify", str(models), env=env).returncode == 0


@pytest.mark.parametrize("content", ["{", "[]", '{"rule": "weighted", "members": 7}'])
def test_self_test_fails_when_fusion_json_does_not_load(tmp_path, content):
    models, env = _copied_models(tmp_path)
    (models / "fusion.json").write_text(content, encoding="utf-8")
    r = _emodesk("--self-test", env=env)
    assert r.returncode == 1, r.stdout
    assert "FAIL fusion" in r.stdout and "ok   face path" in r.stdout


@pytest.mark.slow
def test_window_on_a_real_x_screen_in_demo_mode(x_screen, tmp_path):
    shot = tmp_path / "window.png"
    env = {**os.environ, "DISPLAY": x_screen, "EMODESK_HOME": str(tmp_path)}
    env.pop("QT_QPA_PLATFORM", None)  # the real xcb platform plugin, as a user gets it
    r = _emodesk("--quit-after", "9", "--screenshot", str(shot), env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    img = read_image(shot, gray=False)
    assert img is not None and img.shape[1] >= 800
    assert np.std(img) > 20  # a rendered window, not a blank surface
    log = (tmp_path / "logs" / "emodesk.log").read_text()
    assert "demo" in log.lower()


def test_without_a_display_the_window_exits_2_saying_so_instead_of_running_invisibly(tmp_path):
    """No DISPLAY, no WAYLAND_DISPLAY and no platform asked for: one line, exit 2, even for a missing
    file or demo mode (an offscreen window nobody can see or close would run until killed)."""
    env = {**os.environ, "EMODESK_HOME": str(tmp_path)}
    for k in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        env.pop(k, None)
    for args in ([str(tmp_path / "missing.mp4")], ["demo"]):
        r = _emodesk(*args, env=env, timeout=60)  # no dialog may block here
        assert r.returncode == 2, args
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("emodesk: no display found"), lines
        assert "QT_QPA_PLATFORM=offscreen" in lines[0]
    # asked for explicitly, the offscreen platform runs the window (and a missing file is exit 2)
    r = _emodesk(str(tmp_path / "missing.mp4"), env={**env, "QT_QPA_PLATFORM": "offscreen"}, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"emodesk: input file {tmp_path / 'missing.mp4'} does not exist"]


@pytest.mark.parametrize(
    "args",
    [
        ["eval", "face", "--manifest", "x.csv"],
        ["bench", "demo", "--seconds", "1", "--json", "b.json"],
        ["record", "demo", "--duration", "1"],
    ],
    ids=["eval", "bench", "record"],
)
def test_device_cuda_without_cuda_is_bad_input_before_any_work(tmp_path, args):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA: --device cuda is usable here")
    env = {**os.environ, "EMODESK_HOME": str(tmp_path)}
    r = subprocess.run(
        [sys.executable, "-m", "emodesk", *args, "--device", "cuda"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--device cuda" in r.stderr and "Traceback" not in r.stderr
    assert not list(tmp_path.glob("*.json")) and not (tmp_path / "sessions").exists()


def test_models_lists_each_license_and_every_measured_accuracy_in_full():
    """Issue 24: `emodesk models` cut licenses at 40 characters, hiding e.g. the GPL-3.0 of MELD."""
    import json

    r = _emodesk("models", env={**os.environ, "COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    flat = " ".join(r.stdout.split())
    repo = Path(__file__).resolve().parents[1]
    seen = 0
    for path in sorted((repo / "models").glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or "license" not in doc:
            continue  # fusion.json, lock.json, the tokenizer
        seen += 1
        assert " ".join(doc["license"].split()) in flat, doc["id"]
        for name, met in doc.get("metrics", {}).items():
            if isinstance(met, dict) and isinstance(met.get("accuracy"), float):
                assert f"{name}: acc {met['accuracy']:.3f}" in flat
    assert seen >= 6
    assert "GPL-3.0" in flat
    assert max(len(line) for line in r.stdout.splitlines()[1:]) <= 80  # wrapped to the terminal


@pytest.mark.parametrize("cmd", [["demo"], ["record", "demo", "--duration", "1"]])
def test_a_named_microphone_that_is_not_there_fails_saying_so(tmp_path, cmd):
    """`--mic` with a file source was silently ignored by the window and by `record`."""
    env = {**os.environ, "EMODESK_HOME": str(tmp_path), "QT_QPA_PLATFORM": "offscreen"}
    extra = ["--quit-after", "3"] if cmd == ["demo"] else ["--out", str(tmp_path / "rec")]
    r = _emodesk(*cmd, "--mic", "Blue Yeti", *extra, env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--mic Blue Yeti: no such microphone" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "rec").exists() or not any((tmp_path / "rec").iterdir())  # nothing half-made


def test_analyze_refuses_a_microphone_it_would_never_open(tmp_path):
    r = _emodesk("analyze", "assets/demo.mp4", "--mic", "1", "--out", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2 and "analyze reads files only" in r.stderr
    assert not (tmp_path / "o.jsonl").exists()
