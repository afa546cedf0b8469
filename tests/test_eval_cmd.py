"""``emodesk eval``: real models over small generated data, checked against what the models must output.

The face path runs the shipped mini-Xception on crops of the astronaut
picture; the text and voice paths run tiny ONNX models built here whose
outputs are known in closed form, so a wrong tokenizer, label reordering,
resampling or row handling shows up as a wrong prediction.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from emodesk.cli.eval_cmd import main
from emodesk.evaluation.evaluate import read_audio_16k
from emodesk.imaging import read_image
from emodesk.inference.face_detector import FaceDetector
from emodesk.inference.face_scorer import FaceExpressionScorer
from emodesk.inference.manifest import ManifestDraft
from emodesk.labels import LABELS
from emodesk.resources import assets_dir, shipped_models_dir

FACE_ID = "face-resnet-s-ferplus"  # the smaller shipped face member
FACE_MODEL = shipped_models_dir() / f"{FACE_ID}.onnx"
CONTRACT_KEYS = {
    "n",
    "accuracy",
    "uar",
    "macro_f1",
    "weighted_f1",
    "per_class_recall",
    "confusion",
    "labels",
    "ci95",
    "model",
    "sha256",
    "source",
    "seconds_per_item",
}
# A label order that is not canonical, so the test sees the remapping work.
MODEL_ORDER = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def _write_csv(path: Path, header: str, rows: list[tuple[str, str]]) -> Path:
    path.write_text(header + "\n" + "".join(f"{a},{b}\n" for a, b in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def face_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six face crops of the astronaut (BGR, gray, flipped, shifted, small), as a manifest would list them."""
    d = tmp_path_factory.mktemp("faces")
    img = cv2.imread(str(assets_dir() / "face_astronaut.png"))
    assert img is not None
    box = FaceDetector.load(device="cpu").detect(img)[0]
    crop = FaceExpressionScorer.load(device="cpu").crop(img, box, resize=False)
    h, w = crop.shape[:2]
    variants = {
        "a.png": crop,
        "b.png": cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY),
        "c.png": crop[:, ::-1],
        "d.png": crop[h // 10 :, w // 10 :],
        "e.jpg": cv2.resize(crop, (48, 48), interpolation=cv2.INTER_AREA),
        "f.png": cv2.convertScaleAbs(crop, alpha=0.6),
    }
    for name, v in variants.items():
        assert cv2.imwrite(str(d / name), np.ascontiguousarray(v))
    cv2.imwrite(str(d / "whole.png"), img)
    cv2.imwrite(str(d / "blank.png"), np.full((240, 320, 3), 128, np.uint8))
    return d


FACE_ROWS = [
    ("a.png", "happy"),
    ("b.png", "joy"),
    ("c.png", "neutral"),
    ("d.png", "surprised"),
    ("e.jpg", "sad"),
    ("f.png", "angry"),
]


def test_eval_face_writes_metrics_scores_and_picture(
    face_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _write_csv(face_dir / "faces.csv", "path,label", FACE_ROWS)
    out = tmp_path / "m.json"
    rc = main(
        [
            "face",
            "--manifest",
            str(manifest),
            "--model",
            str(FACE_MODEL),
            "--device",
            "cpu",
            "--json",
            str(out),
            "--save-scores",
            str(tmp_path / "s.npz"),
            "--png",
            str(tmp_path / "c.png"),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    report = json.loads(out.read_text(encoding="utf-8"))
    m = report[FACE_ID]
    assert CONTRACT_KEYS <= set(m)
    assert m["n"] == 6 and m["model"] == FACE_ID
    assert m["source"] == str(manifest.resolve())
    assert sum(map(sum, m["confusion"])) == 6
    assert m["labels"] == ["angry", "happy", "neutral", "sad", "surprise"]
    assert "accuracy" in captured.out and FACE_ID in captured.out

    # The saved scores are exactly what the scorer gives for the same files.
    scores = np.load(tmp_path / "s.npz")
    images = [read_image(face_dir / name) for name, _ in FACE_ROWS]
    want = FaceExpressionScorer.load(device="cpu").score_crops(images)
    np.testing.assert_allclose(scores[f"probs__{FACE_ID}"], want, atol=1e-5)
    assert scores["y_true"].tolist() == [3, 3, 4, 6, 5, 0]
    assert [Path(x).name for x in scores["x"]] == [n for n, _ in FACE_ROWS]
    correct = int((want.argmax(axis=1) == scores["y_true"]).sum())
    assert m["accuracy"] == pytest.approx(correct / 6)

    png = cv2.imread(str(tmp_path / "c.png"))
    assert png is not None and 400 < png.shape[0] < 2000 and 400 < png.shape[1] < 2000
    assert png.std() > 20  # colours and text, not a blank canvas


def test_several_installed_models_get_one_picture_each(
    face_dir: Path, tmp_path: Path, emodesk_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --model every installed face model is evaluated; PNG names carry the model id."""
    user_set = emodesk_home / "models" / "v1"
    user_set.mkdir(parents=True)
    (user_set / "copy.onnx").write_bytes(FACE_MODEL.read_bytes())
    man = json.loads(FACE_MODEL.with_suffix(".json").read_text(encoding="utf-8"))
    man.update(id="face-copy", metrics={})
    ManifestDraft.from_dict(man).write(user_set / "copy.onnx")
    (emodesk_home / "models" / "active").write_text("v1", encoding="utf-8")
    manifest = _write_csv(face_dir / "two.csv", "path,label", FACE_ROWS[:3])
    rc = main(
        [
            "face",
            "--manifest",
            str(manifest),
            "--device",
            "cpu",
            "--png",
            str(tmp_path / "c.png"),
            "--save-scores",
            str(tmp_path / "s.npz"),
            "--json",
            str(tmp_path / "r.json"),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    from emodesk.inference.registry import models_of

    installed = [m.id for m in models_of("face")]
    assert "face-copy" in installed and FACE_ID in installed
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(f"c-{i}.png" for i in installed)
    s = np.load(tmp_path / "s.npz")
    np.testing.assert_allclose(s["probs__face-copy"], s[f"probs__{FACE_ID}"])
    # the modality as the live fusion sees it: every member, equal weights
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    fused = report["modality:face"]
    assert fused["members"] == installed and fused["n"] == 3
    mean = np.mean([s[f"probs__{i}"] for i in installed], axis=0)
    assert fused["accuracy"] == np.mean(mean.argmax(axis=1) == s["y_true"])


def test_detect_scores_the_largest_face_and_counts_misses(
    face_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _write_csv(
        face_dir / "whole.csv", "path,label", [("whole.png", "happy"), ("blank.png", "sad")]
    )
    out = tmp_path / "m.json"
    rc = main(["face", "--manifest", str(manifest), "--detect", "--device", "cpu", "--json", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    m = json.loads(out.read_text(encoding="utf-8"))[FACE_ID]
    assert m["no_face"] == 1 and m["n"] == 1
    assert m["labels"] == ["happy"]
    # the miss counted as an error: half the images read right at best
    assert m["accuracy_misses_as_errors"] == pytest.approx(m["accuracy"] / 2)
    assert "no face found in 1 of 2" in captured.out


def test_detect_zooms_in_on_a_distant_face_unless_told_not_to(
    face_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    far = np.full((480, 640, 3), 110, np.uint8)  # the face about 55 px wide: a metre or more away
    far[60:190, 60:190] = cv2.resize(
        cv2.imread(str(face_dir / "whole.png")), (130, 130), interpolation=cv2.INTER_AREA
    )
    cv2.imwrite(str(face_dir / "far.png"), far)
    manifest = _write_csv(face_dir / "far.csv", "path,label", [("far.png", "happy"), ("whole.png", "happy")])
    base = ["face", "--manifest", str(manifest), "--model", str(FACE_MODEL), "--detect", "--device", "cpu"]
    assert main(base) == 0
    assert "no face found in 0 of 2" in capsys.readouterr().out
    assert main([*base, "--no-zoom"]) == 0
    assert "no face found in 1 of 2" in capsys.readouterr().out
    assert main(["face", "--manifest", str(manifest), "--model", str(FACE_MODEL), "--no-zoom"]) == 2


def test_unknown_label_names_the_row_unless_mapped_or_ignored(
    face_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [*FACE_ROWS[:2], ("c.png", "bored"), FACE_ROWS[3]]
    manifest = _write_csv(face_dir / "bored.csv", "path,label", rows)
    base = ["face", "--manifest", str(manifest), "--model", str(FACE_MODEL), "--device", "cpu"]

    assert main(base) == 2
    err = capsys.readouterr().err
    assert len(_lines(err)) == 1 and err.startswith("emodesk: ")
    assert "bored.csv:4" in err and "bored" in err and "Traceback" not in err

    out = tmp_path / "m.json"
    assert main([*base, "--ignore-unknown", "--json", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))[FACE_ID]["n"] == 3

    assert main([*base, "--label-map", "bored=neutral", "--save-scores", str(tmp_path / "s.npz")]) == 0
    assert np.load(tmp_path / "s.npz")["y_true"].tolist() == [3, 3, LABELS.index("neutral"), 6]

    assert main([*base, "--label-map", "bored=sleepy"]) == 2  # the target must be a label we know
    assert "sleepy" in capsys.readouterr().err


def test_bad_manifests_exit_2_with_one_line(face_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = _write_csv(face_dir / "missing.csv", "path,label", [("a.png", "happy"), ("gone.png", "sad")])
    assert main(["face", "--manifest", str(missing), "--model", str(FACE_MODEL)]) == 2
    err = capsys.readouterr().err
    assert len(_lines(err)) == 1 and "gone.png" in err and "missing.csv:3" in err

    columns = _write_csv(face_dir / "columns.csv", "file,emotion", [("a.png", "happy")])
    assert main(["face", "--manifest", str(columns), "--model", str(FACE_MODEL)]) == 2
    err = capsys.readouterr().err
    assert len(_lines(err)) == 1 and "path,label" in err

    assert main(["face", "--manifest", str(face_dir / "nope.csv")]) == 2
    assert "nope.csv" in capsys.readouterr().err
    assert main(["text", "--manifest", str(columns), "--detect"]) == 2
    assert "--detect" in capsys.readouterr().err
    assert main(["face", "--manifest", str(missing), "--model", str(face_dir / "x.onnx")]) == 2
    assert "x.onnx" in capsys.readouterr().err


def test_a_csv_that_is_not_utf8_exits_2_naming_the_line(
    face_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A non-UTF-8 CSV used to crash ``eval`` with a traceback (issue 19)."""
    bad = face_dir / "latin1.csv"
    bad.write_bytes(b"path,label\na.png,happy\nb\xe9.png,sad\n")
    assert main(["face", "--manifest", str(bad), "--model", str(FACE_MODEL)]) == 2
    err = capsys.readouterr().err
    assert (
        len(_lines(err)) == 1 and "not UTF-8 text (byte b'\\xe9' on line 3)" in err and "Traceback" not in err
    )


def test_no_installed_model_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "models").mkdir()
    monkeypatch.setattr("emodesk.resources.shipped_models_dir", lambda: tmp_path / "models")
    manifest = _write_csv(tmp_path / "t.csv", "text,label", [("hello", "happy")])
    assert main(["text", "--manifest", str(manifest)]) == 1
    err = capsys.readouterr().err
    assert len(_lines(err)) == 1 and "no text model is installed" in err


# --- text: a word-level bag-of-embeddings model with known outputs ---------------------------------

WORDS = {"[UNK]": None, "glad": "happy", "gloomy": "sad", "meh": "neutral", "yikes": "fear"}


def _embedding() -> np.ndarray:
    """Row per vocabulary id: +3 on the word's label (in the model's own order); [UNK] adds nothing."""
    emb = np.zeros((len(WORDS), 7), np.float32)
    for i, lab in enumerate(WORDS.values()):
        if lab is not None:
            emb[i, MODEL_ORDER.index(lab)] = 3.0
    return emb


def _text_model(folder: Path) -> Path:
    """logits = Σ_tokens embedding[id] (Gather + ReduceSum), with a WordLevel tokenizer JSON."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(folder / "tiny-tokenizer.json"))
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["emb", "input_ids"], ["vecs"], axis=0),
            helper.make_node("ReduceSum", ["vecs", "axes"], ["logits"], keepdims=0),
        ],
        "tiny_text",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "T"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 7])],
        [numpy_helper.from_array(_embedding(), "emb"), numpy_helper.from_array(np.array([1]), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(folder / "tiny-text.onnx"))
    ManifestDraft(
        id="text-tiny",
        modality="text",
        inputs=[{"name": "input_ids", "shape": [1, "T"], "dtype": "int64"}],
        labels=list(MODEL_ORDER),
        preprocessing={"tokenizer": "tiny-tokenizer.json", "output": "logits"},
    ).write(folder / "tiny-text.onnx")
    return folder / "tiny-text.onnx"


def _expected_text_probs(text: str) -> np.ndarray:
    ids = [list(WORDS).index(w) if w in WORDS else 0 for w in text.split()]
    z = _embedding()[ids].sum(axis=0).astype(np.float64)
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    return p[[MODEL_ORDER.index(lab) for lab in LABELS]]


def test_eval_text_predicts_what_the_model_must(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _text_model(tmp_path)
    rows = [("glad glad", "joy"), ("gloomy", "sad"), ("meh", "neutral"), ("glad gloomy gloomy", "happy")]
    manifest = _write_csv(tmp_path / "t.csv", "text,label", rows)
    out, npz = tmp_path / "m.json", tmp_path / "s.npz"
    base = ["text", "--manifest", str(manifest), "--model", str(model), "--json", str(out)]
    rc = main([*base, "--save-scores", str(npz)])
    assert rc == 0, capsys.readouterr().err
    m = json.loads(out.read_text(encoding="utf-8"))["text-tiny"]
    assert m["n"] == 4 and m["accuracy"] == pytest.approx(0.75)
    happy, sad = LABELS.index("happy"), LABELS.index("sad")
    assert m["confusion"][happy] == [0, 0, 0, 1, 0, 1, 0]  # "glad gloomy gloomy" reads as sad
    assert m["confusion"][sad][sad] == 1
    s = np.load(npz)
    want = np.stack([_expected_text_probs(t) for t, _ in rows])
    np.testing.assert_allclose(s["probs__text-tiny"], want, atol=1e-5)
    assert s["x"].tolist() == [t for t, _ in rows]

    assert main([*base, "--limit", "2"]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["text-tiny"]["n"] == 2


def test_eval_text_on_a_goemotions_folder_drops_multi_label_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _text_model(tmp_path)
    ds = tmp_path / "goemotions"
    ds.mkdir()
    names = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]
    (ds / "labels.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    (ds / "test.tsv").write_text(
        "glad glad\t3\tc1\nglad gloomy\t3,5\tc2\ngloomy meh gloomy\t5\tc3\nyikes\t2\tc4\n", encoding="utf-8"
    )
    npz, out = tmp_path / "s.npz", tmp_path / "m.json"
    rc = main(
        ["text", "--manifest", str(ds), "--model", str(model), "--save-scores", str(npz), "--json", str(out)]
    )
    assert rc == 0, capsys.readouterr().err
    s = np.load(npz)
    assert s["x"].tolist() == ["glad glad", "gloomy meh gloomy", "yikes"]
    assert s["y_true"].tolist() == [LABELS.index(x) for x in ("happy", "sad", "fear")]
    m = json.loads(out.read_text(encoding="utf-8"))["text-tiny"]
    assert m["accuracy"] == 1.0 and m["source"] == str(ds.resolve())


# --- voice: mean of the waveform → logits ----------------------------------------------------------


def _voice_model(folder: Path) -> Path:
    """logits = mean(waveform) · w: a positive mean reads happy, a negative one sad."""
    pytest.importorskip("onnx")
    from tests.support.voice_heads import write_waveform_voice_model

    w = np.zeros((1, 7), np.float32)
    w[0, MODEL_ORDER.index("happy")] = 20.0
    w[0, MODEL_ORDER.index("sad")] = -20.0
    return write_waveform_voice_model(folder, w, model_id="voice-tiny", labels=list(MODEL_ORDER))


def test_eval_voice_decodes_and_resamples_audio(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sf = pytest.importorskip("soundfile")
    model = _voice_model(tmp_path)
    t = np.arange(48000) / 48000
    tone = 0.2 * np.sin(2 * np.pi * 220 * t)
    sf.write(tmp_path / "up.wav", tone + 0.3, 48000)
    sf.write(tmp_path / "down.flac", np.stack([tone - 0.3, tone - 0.3], axis=1), 48000)  # stereo
    audio = read_audio_16k(tmp_path / "up.wav")
    assert audio.dtype == np.float32 and abs(len(audio) - 16000) <= 32
    assert audio.mean() == pytest.approx(0.3, abs=0.01)

    manifest = _write_csv(tmp_path / "v.csv", "path,label", [("up.wav", "happy"), ("down.flac", "sad")])
    out = tmp_path / "m.json"
    rc = main(["voice", "--manifest", str(manifest), "--model", str(model), "--json", str(out)])
    assert rc == 0, capsys.readouterr().err
    m = json.loads(out.read_text(encoding="utf-8"))["voice-tiny"]
    assert m["accuracy"] == 1.0 and m["n"] == 2

    (tmp_path / "noise.wav").write_bytes(b"not audio at all")
    bad = _write_csv(tmp_path / "bad.csv", "path,label", [("noise.wav", "happy")])
    assert main(["voice", "--manifest", str(bad), "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert len(_lines(err)) == 1 and "noise.wav" in err


def test_model_that_does_not_match_its_manifest_exits_1(
    face_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "x.onnx").write_bytes(FACE_MODEL.read_bytes())
    man = json.loads(FACE_MODEL.with_suffix(".json").read_text(encoding="utf-8"))
    man.update(file="x.onnx", sha256="0" * 64)
    (tmp_path / "x.json").write_text(json.dumps(man), encoding="utf-8")
    manifest = _write_csv(face_dir / "one.csv", "path,label", FACE_ROWS[:1])
    assert main(["face", "--manifest", str(manifest), "--model", str(tmp_path / "x.onnx")]) == 1
    err = capsys.readouterr().err
    assert len(_lines(err)) == 1 and "sha256" in err and "x.json" in err
