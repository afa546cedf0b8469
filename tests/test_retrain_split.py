"""The retrain split (fixed, three-way, by session), the fusion-weight rule and label coverage: no models."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from emodesk.cli.main import main as cli
from emodesk.errors import InputError
from emodesk.fusion.paired import PairedRow
from emodesk.fusion.search import MemberScores
from emodesk.lab.retrain.coverage import coverage, labelled_seconds
from emodesk.lab.retrain.retrain import MIN_FUSION_ROWS, _compare_and_install, balanced_weights
from emodesk.lab.retrain.split import assign, by_side, load_split, save_split, session_key
from emodesk.labels import LABELS
from emodesk.recording.session import read_labels
from emodesk.recording.writer import SessionMeta, SessionWriter, labels_at


def test_the_split_is_by_session_stable_and_independent_of_order_and_seed() -> None:
    keys = [f"2026120{k}-0900{k:02d}-abc{k}" for k in range(13)]
    a = assign(keys)
    assert assign(list(reversed(keys))) == a  # the folder order does not matter
    assert Counter(a.values()) == {"adapt": 6, "held_out": 4, "fusion": 3}
    more = assign([*keys, "20261210-100000-new1", "20261210-100500-new2"], a)
    assert all(more[k] == a[k] for k in keys)  # old sessions keep their side
    assert Counter(more.values()) == {"adapt": 7, "held_out": 5, "fusion": 3}
    # a session retrained alone later keeps the side the collection gave it
    assert assign([keys[3]], a) == {keys[3]: a[keys[3]]}
    assert Counter(assign(["x", "y"]).values()) == {"adapt": 1, "held_out": 1}  # no fusion side yet
    with pytest.raises(InputError, match="shares"):
        assign(keys, holdout=1.2)


def test_the_split_file_round_trips_and_a_damaged_one_is_never_redrawn(tmp_path: Path) -> None:
    sides = assign(["a", "b", "c", "d"])
    save_split(tmp_path, sides)
    assert load_split(tmp_path) == sides
    parts = by_side(sides)
    assert sorted(k for side in parts.values() for k in side) == ["a", "b", "c", "d"]
    assert {k: len(v) for k, v in parts.items()} == {"adapt": 2, "fusion": 1, "held_out": 1}
    assert load_split(tmp_path / "none") == {}
    (tmp_path / "split.json").write_text('{"sessions": {"a": "somewhere"}}', encoding="utf-8")
    with pytest.raises(InputError, match="damaged"):
        load_split(tmp_path)


def _scores(n: int, rng: np.random.Generator, acc: tuple[float, float, float]) -> MemberScores:
    y = rng.integers(0, 7, n)

    def member(a: float) -> np.ndarray:
        right = rng.random(n) < a
        pred = np.where(right, y, (y + 1 + rng.integers(0, 6, n)) % 7)
        p = np.full((n, 7), 0.02)
        p[np.arange(n), pred] = 0.88
        return p

    return MemberScores(
        ("f1", "f2", "v"), ("face", "face", "voice"), ("a", "b", "c"), np.stack([member(x) for x in acc]), y
    )


def test_the_weights_come_from_the_fusion_rows_or_a_stated_rule(emodesk_home: Path) -> None:
    rng = np.random.default_rng(1)
    s = _scores(300, rng, (0.9, 0.3, 0.6))
    assert balanced_weights(s) == {"f1": 0.25, "f2": 0.25, "v": 0.5}  # each modality half, not a third each
    held = np.arange(300) >= 200
    fusion = np.arange(300) < 100
    with pytest.raises(ValueError, match="overlap"):
        _compare_and_install(s, s, held, None, "ao", 0, [], is_fusion=fusion | held)
    r = _compare_and_install(s, s, held, {"f1": 1.0, "f2": 1.0, "v": 1.0}, "ao", 0, [], is_fusion=fusion)
    assert r.fusion_rule.startswith("ao search (weighted-sum rule) on 100 fusion-side utterances"), (
        r.fusion_rule
    )
    # an active log-linear set is judged by its own rule and searched with it
    from emodesk.fusion.fuse import Rule

    active = Rule.log_linear([0.0] * 7)
    r = _compare_and_install(
        s, s, held, {"f1": 1.0, "f2": 1.0, "v": 1.0}, "ao", 0, [], is_fusion=fusion, old_rule=active
    )
    assert r.fusion_rule.startswith("ao search (log-linear rule) on 100"), r.fusion_rule
    few = np.arange(300) < MIN_FUSION_ROWS - 1
    r = _compare_and_install(s, s, held, None, "ao", 0, [], is_fusion=few)
    assert r.fusion_rule.startswith(f"balanced weights (each modality an equal share): {MIN_FUSION_ROWS - 1}")
    # every weighting perfect on the fusion rows: nothing to choose, so no search result is claimed
    perfect = MemberScores(s.ids, s.modalities, s.sha256, np.stack([np.eye(7)[s.y]] * 3), s.y)
    r = _compare_and_install(perfect, perfect, held, None, "ao", 0, [], is_fusion=fusion)
    assert "found nothing better" in r.fusion_rule and "1.000 vs 1.000" in r.fusion_rule


def test_an_installed_set_records_its_sessions_rule_and_verdict(emodesk_home: Path) -> None:
    from emodesk.resources import active_models_dir

    rng = np.random.default_rng(2)
    old = _scores(400, rng, (0.4, 0.4, 0.4))
    better = MemberScores(
        old.ids, old.modalities, old.sha256, _scores(400, np.random.default_rng(2), (0.75, 0.6, 0.7)).P, old.y
    )
    held, fusion = np.arange(400) >= 250, np.arange(400) < 150
    data = {"sessions": {"adapt": ["s1"], "fusion": ["s2"], "held_out": ["s3"]}}
    r = _compare_and_install(old, better, held, None, "ao", 0, [], is_fusion=fusion, data=data)
    assert r.installed, r.reason
    active = active_models_dir()
    assert active is not None
    doc = json.loads((active / "fusion.json").read_text(encoding="utf-8"))
    assert doc["data"]["sessions"] == data["sessions"] and doc["data"]["rows"] == 150
    assert doc["objective"]["macro_f1"] < 1.0  # a real objective, measured on unseen rows
    assert doc["verdict"]["held_out_rows"] == 150 and doc["verdict"]["gain_ci95"][0] > 0


def _session(parent: Path, changes: list[tuple[float, str | None]], end: float) -> Path:
    w = SessionWriter(parent, SessionMeta(source="synthetic"), fps=10)
    path = w.start(0.0)
    for t, lab in changes:
        w.set_label(lab, t)
    w.add_audio(np.zeros(int(16000 * end), np.float32), 0.0)
    w.stop(end)
    return path


def test_coverage_counts_seconds_utterances_and_crops_and_warns_on_missing_labels(tmp_path: Path) -> None:
    a = _session(tmp_path, [(0.0, "happy"), (4.0, "sad"), (6.0, None)], 10.0)
    b = _session(tmp_path, [(1.0, "angry")], 5.0)
    assert labelled_seconds(a) == {"happy": 4.0, "sad": 2.0}
    assert labelled_seconds(b) == {"angry": 4.0}
    ka, kb = session_key(a), session_key(b)
    assert ka == a.name
    rows = {
        ka: [PairedRow("f.png", "a.wav", "hi", LABELS.index("happy")), PairedRow(None, "b.wav", "x", 5)],
        kb: [PairedRow("g.png", "c.wav", "grr", LABELS.index("angry"))],
    }
    cov = coverage({ka: a, kb: b}, rows, {ka: "adapt", kb: "held_out"})
    assert cov.utterances["adapt"] == {"happy": 1, "sad": 1} and cov.face_crops["adapt"] == {"happy": 1}
    assert cov.seconds["held_out"] == {"angry": 4.0}
    w = cov.warnings
    assert "angry: not in the adapt sessions (the adapted output layers learn nothing of it from you)" in w
    assert any(x.startswith("happy: not in the held-out sessions (the verdict says nothing") for x in w)
    assert "angry: only in the held-out sessions (no training session has it)" in w
    assert "fear: in no session (nothing here can learn or judge it)" in w
    assert "happy" in cov.table() and json.dumps(cov.as_dict())


def test_label_to_the_end_and_spans_past_the_end_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _session(tmp_path, [(0.0, "happy")], 24.6)
    assert cli(["sessions", "label", str(path), "sad", "--from", "20", "--to", "end"]) == 0
    assert "sad on 20 s – the end" in capsys.readouterr().out
    changes = read_labels(path)
    assert labels_at(changes, 19.9) == "happy" and labels_at(changes, 24.5) == "sad"
    assert max(c["t"] for c in changes) == pytest.approx(24.6)
    assert cli(["sessions", "label", str(path), "angry", "--from", "0", "--to", "999"]) == 2
    err = capsys.readouterr().err
    assert "runs from 0 to 24.6 s" in err and "--to end" in err
    assert read_labels(path) == changes  # nothing written
    assert cli(["sessions", "label", str(path), "angry", "--from", "0", "--to", "soon"]) == 2
