"""The typed manifest builder every exporter writes through, and the reader it is checked by."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from emodesk.errors import ModelError
from emodesk.inference.manifest import ManifestDraft, ModelManifest
from emodesk.resources import shipped_models_dir

SHIPPED = shipped_models_dir()
MANIFESTS = sorted(
    p
    for p in SHIPPED.glob("*.json")
    if p.name not in ("fusion.json", "lock.json") and not p.name.endswith(".tokenizer.json")
)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.stem)
def test_every_shipped_manifest_survives_a_round_trip_through_the_builder(path: Path, tmp_path: Path) -> None:
    """A draft of a shipped manifest writes the same JSON (every key known, none dropped)."""
    original = json.loads(path.read_text(encoding="utf-8"))
    model = tmp_path / original["file"]
    model.symlink_to(SHIPPED / original["file"])
    written = ManifestDraft.from_file(path).write(model)
    again = json.loads(model.with_suffix(".json").read_text(encoding="utf-8"))
    if "created" not in original:
        again.pop("created")
    assert again == original
    assert written.sha256 == original["sha256"]


def test_a_draft_the_app_would_refuse_is_refused_when_written(tmp_path: Path) -> None:
    model = tmp_path / "face-resnet-s-ferplus.onnx"
    shutil.copy(SHIPPED / model.name, model)
    draft = ManifestDraft.from_file(SHIPPED / "face-resnet-s-ferplus.json")
    with pytest.raises(ModelError, match="modality 'faces' is not one of"):
        replace(draft, modality="faces").write(model)
    with pytest.raises(ModelError, match="must name the model's inputs"):
        replace(draft, inputs=()).write(model)
    with pytest.raises(ModelError, match=r"unknown keys \['colour'\]"):
        ManifestDraft.from_dict(
            {**json.loads((SHIPPED / "face-resnet-s-ferplus.json").read_text()), "colour": "x"}
        )
    m = replace(draft, id="face-copy", metrics={}).write(model)
    assert isinstance(m, ModelManifest) and m.id == "face-copy" and m.metrics == {}
    assert m.sha256 == draft.document(model)["sha256"]


def test_concurrent_lock_updates_keep_every_entry_and_an_unreadable_lock_is_not_replaced(
    tmp_path: Path,
) -> None:
    import threading

    from emodesk.errors import ModelError
    from emodesk.inference.lock import read_lock, update_lock, verify_folder, write_lock

    (tmp_path / "a.json").write_text("{}", encoding="utf-8")
    write_lock(tmp_path)

    def add(i: int) -> None:
        p = tmp_path / f"m{i}.onnx"
        p.write_bytes(bytes([i]) * 10)
        update_lock(tmp_path, [p])

    threads = [threading.Thread(target=add, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lock = read_lock(tmp_path)
    assert lock is not None and len(lock) == 13 and verify_folder(tmp_path) == []
    (tmp_path / "lock.json").write_text("[", encoding="utf-8")
    with pytest.raises(ModelError, match="model set lock"):
        update_lock(tmp_path, [tmp_path / "a.json"])
    assert (tmp_path / "lock.json").read_text(encoding="utf-8") == "["
