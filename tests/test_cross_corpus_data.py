"""TESS, URDU and FER+ read through their dataset folders, with the protocols of
../shared/datasets/README.md: TESS trains only, URDU tests only, FER+ relabels FER-2013."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from emodesk.errors import InputError
from emodesk.evaluation.datasets import dataset_kind, ferplus_votes, load_split
from emodesk.labels import LABELS
from emodesk.resources import datasets_dir

pytestmark = pytest.mark.needs_data
DATA = datasets_dir()


def _need(sub: str) -> Path:
    d = DATA / sub
    if not d.is_dir():
        pytest.skip(f"{d} is absent (../shared/datasets or $EMODESK_DATA)")
    return d


def test_tess_trains_and_validates_by_word_and_never_tests() -> None:
    d = _need("speech/tess")
    assert dataset_kind(d) == "tess"
    train, val = load_split(d, "train"), load_split(d, "val")
    assert len(train) + len(val) == 2800 and len(val) == 280
    words = lambda rows: {Path(r.x).stem.split("_")[1] for r in rows}  # noqa: E731
    assert not words(train) & words(val)  # a word is in one split only
    assert Counter(r.group for r in val) == {"OAF": 140, "YAF": 140}
    assert {LABELS[r.label] for r in val} == set(LABELS)
    with pytest.raises(InputError, match="no test split"):
        load_split(d, "test")


def test_urdu_is_a_test_set_only_with_its_speakers_as_sessions() -> None:
    d = _need("speech/urdu")
    assert dataset_kind(d) == "urdu"
    rows = load_split(d, "test")
    assert len(rows) == 400 and len({r.group for r in rows}) == 29
    assert Counter(LABELS[r.label] for r in rows) == {"angry": 100, "happy": 100, "neutral": 100, "sad": 100}
    for split in ("train", "val"):
        with pytest.raises(InputError, match="cross-corpus check only"):
            load_split(d, split)  # type: ignore[arg-type]


def test_ferplus_labels_the_fer2013_images_by_their_vote_majority() -> None:
    d = _need("faces/ferplus")
    _need("faces/fer2013")
    assert dataset_kind(d) == "ferplus"
    test = load_split(d, "test")
    assert len(test) == 7047  # the test images whose majority is one of our seven labels
    assert all(Path(r.x).is_file() for r in test[:50])
    votes = ferplus_votes(d, "train")
    assert len(votes) > 20000
    for _, dist in votes[:200]:
        assert len(dist) == 7 and sum(dist) == pytest.approx(1.0) and min(dist) >= 0
