"""The member registry: one table of member kinds serves loading, eval and ``emodesk train``."""

from __future__ import annotations

import importlib

import pytest

from emodesk.errors import ModelError
from emodesk.inference.members import MEMBER_KINDS, MEMBER_MODALITIES, load_member
from emodesk.inference.registry import find_model, installed_manifests


def test_every_member_kind_names_a_trainer_the_lab_has() -> None:
    assert MEMBER_MODALITIES == ("face", "voice", "text")
    for kind in MEMBER_KINDS.values():
        mod = importlib.import_module(f"emodesk.lab.{kind.trainer}")
        assert callable(mod.add_arguments) and callable(mod.run), kind.trainer


def test_a_model_that_is_no_member_is_refused_with_the_member_kinds() -> None:
    with pytest.raises(ModelError, match="not a member modality; members are face, voice, text"):
        load_member(find_model("face-detector-blazeface-short"), device="cpu")


def test_every_shipped_member_loads_through_the_registry() -> None:
    members = [m for m in installed_manifests().values() if m.modality in MEMBER_KINDS]
    assert {m.modality for m in members} == set(MEMBER_MODALITIES)
    for m in members:
        member = load_member(m, device="cpu")
        assert member.id == m.id and member.model.manifest.modality == m.modality
