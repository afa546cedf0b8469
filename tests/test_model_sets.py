"""``emodesk models sets|use|prune`` and the adapted mark of ``emodesk models`` (no training needed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from emodesk.cli.main import main as cli
from emodesk.fusion import model_sets as ms
from emodesk.fusion.config import equal_fusion_document
from emodesk.inference.registry import installed_manifests
from emodesk.resources import active_models_dir


def _doc(held: list[str], f1_new: float) -> dict[str, object]:
    members = [m for m in installed_manifests().values() if m.modality in ("face", "voice", "text")]
    doc = equal_fusion_document([(m.id, m.sha256, m.modality) for m in members])
    doc["data"] = {"sessions": {"adapt": ["a1", "a2"], "fusion": ["f1"], "held_out": held}}
    doc["verdict"] = {
        "held_out_macro_f1": {"active": {"fused": 0.5}, "new": {"fused": f1_new}},
        "gain_ci95": [0.01, 0.2],
        "held_out_rows": 30,
    }
    return doc


def test_sets_are_listed_switched_rolled_back_and_pruned(
    emodesk_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v1 = ms.install_set(_doc(["h1"], 0.61))
    v2 = ms.install_set(_doc(["h1"], 0.66))
    assert active_models_dir() is not None and active_models_dir().name == v2
    assert cli(["models", "sets"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line[2:].startswith((v1, v2, "shipped"))]
    assert [r[0] for r in rows] == [" ", "*", " "], out  # v1, v2 (active), shipped
    assert "sessions adapt 2, fusion 1, held_out 1" in rows[1]
    assert "held-out fused macro-F1 0.660 (then active 0.500, gain 95% CI [+0.010, +0.200])" in rows[1]
    assert cli(["models", "use", "shipped"]) == 0 and active_models_dir() is None
    assert cli(["models", "use", v1]) == 0 and active_models_dir().name == v1  # type: ignore[union-attr]
    assert ms.history() == ["shipped", v1, v2, "shipped"]
    assert cli(["models", "use", "20990101-000000-000000"]) == 2
    assert "no model set '20990101-000000-000000'" in capsys.readouterr().err
    assert ms.rollback() == "shipped" and active_models_dir() is None
    assert cli(["models", "use", v1]) == 0
    assert cli(["models", "prune", "--keep", "0", "--dry-run"]) == 0
    assert f"would delete 1 model set(s): {v2}" in capsys.readouterr().out
    assert (emodesk_home / "models" / v2).is_dir()
    assert cli(["models", "prune", "--keep", "0"]) == 0
    assert not (emodesk_home / "models" / v2).exists() and active_models_dir().name == v1  # type: ignore[union-attr]
    assert v2 not in ms.history()
    # a set that fails its lock is named as such and is not used
    (emodesk_home / "models" / v1 / "fusion.json").write_text("{}", encoding="utf-8")
    assert "PROBLEM: fails its lock" in next(s.summary() for s in ms.list_sets() if s.version == v1)
    ms.use_set("shipped")
    assert cli(["models", "use", v1]) == 1
    assert "fails its lock" in capsys.readouterr().err


def test_models_marks_the_members_adapted_to_your_sessions(
    emodesk_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = next(m for m in installed_manifests().values() if m.id == "text-minilm")
    doc = json.loads(text.path.read_text(encoding="utf-8"))
    doc["source"] = {**doc["source"], "fine_tuned": {"sessions": ["a1"], "rows": 12}}
    files = [tmp_path / text.path.name]
    files[0].write_text(json.dumps(doc), encoding="utf-8")
    for extra in [text.model_path, *text.companion_paths]:
        shutil.copy2(extra, tmp_path / extra.name)
        files.append(tmp_path / extra.name)
    v = ms.install_set(_doc(["h1"], 0.7), files)
    assert cli(["models"]) == 0
    out = capsys.readouterr().out
    assert "text-minilm (adapted to your sessions by emodesk retrain)" in out
    assert "face-resnet-s-ferplus (adapted" not in out
    listed = next(s for s in ms.list_sets() if s.version == v)
    assert listed.adapted == ["text-minilm"] and listed.problem is None
