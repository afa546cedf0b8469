"""Training checkpoints load with ``weights_only``: tensors and plain values, never arbitrary pickles."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from emodesk.errors import InputError  # noqa: E402
from emodesk.lab.train.common import atomic_torch_save, load_checkpoint, rng_state, set_rng_state  # noqa: E402


class _Payload:
    """What a hostile checkpoint carries: unpickling it would call ``print`` (any callable would do)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this ran while loading",))


def test_a_checkpoint_with_rng_states_round_trips_under_weights_only(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    path = tmp_path / "last.pt"
    atomic_torch_save({"rng": rng_state(), "epoch": 4, "history": [{"loss": 0.5}]}, path)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    ck = load_checkpoint(path)
    set_rng_state(ck["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    assert ck["epoch"] == 4 and ck["history"] == [{"loss": 0.5}]


def test_a_checkpoint_holding_other_objects_is_refused_unrun(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "extra": _Payload()}, path)
    with pytest.raises(InputError, match="not loaded"):
        load_checkpoint(path)
    assert "this ran" not in capsys.readouterr().out
    old = tmp_path / "old.pt"  # an older emodesk pickled NumPy's RNG state as NumPy objects
    torch.save({"rng": {"numpy": np.random.get_state()}}, old)
    with pytest.raises(InputError, match="older emodesk"):
        load_checkpoint(old)


def test_an_unreadable_checkpoint_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.pt"
    path.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(InputError, match=r"cannot be read|not loaded"):
        load_checkpoint(path)
