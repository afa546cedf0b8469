"""``emodesk retrain``: better fusion for *your* people and setting, from your labeled sessions.

What this version does, honestly scoped:

1. Takes every session under the given folders; each must pass ``sessions
   check`` (repair first otherwise).
2. Exports each session's labeled utterances as paired rows (face crop at the
   utterance's midpoint, its audio, its words) and splits **by session**:
   about 30% of the sessions (at least one) are held out, never by frame.
3. Scores every row with every installed member, then re-optimises the
   fusion weights with the Aquila Optimizer (or ``--optimizer``) on the
   training sessions' rows (objective of :mod:`emodesk.fusion.search`).
4. Compares the active set and the new one on the held-out sessions: the new
   set is installed only if its fused macro-F1 is higher by more than the
   bootstrap noise (the 95% interval of the paired difference, 1,000 row
   resamples, lies above 0) and no modality is worse by more than 2 points.
5. Installs it as a new version in ``<user data>/emodesk/models/<version>/``
   (the first place the app looks), records the previous one, and can roll
   back (``emodesk retrain --rollback``).

Every member is fitted to the training sessions and compared as part of the
new set (needs the ``train`` extra): the voice member's head is re-fitted on
their utterances (optionally with a RAVDESS-layout ``--base-data``); each face
and text member gets an output layer fitted on its scores of their rows
(:mod:`emodesk.lab.retrain.adapt`: few session rows would overfit the networks
themselves). It refuses, with the numbers, when there is too little labeled
data.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from emodesk.errors import EmodeskError, InputError, ModelError
from emodesk.evaluation.metrics import batch_confusions, compute_metrics, confusion_scores
from emodesk.fusion.config import write_fusion_json
from emodesk.fusion.paired import PairedRow, load_paired_manifest
from emodesk.fusion.search import FusionProblem, MemberScores, fused_probs, fusion_document, optimize_weights
from emodesk.inference.lock import LOCK_FILE, verify_folder, write_lock

MIN_SESSIONS = 2
MIN_ROWS = 20
MIN_HELDOUT_ROWS = 5
MAX_MODALITY_DROP = 0.02


class TooLittleData(EmodeskError):
    """Not enough labeled data to learn from (the message has the counts)."""


@dataclass
class RetrainResult:
    installed: bool
    reason: str
    version: str | None = None
    old: dict[str, float] = field(default_factory=dict)
    new: dict[str, float] = field(default_factory=dict)
    diff_ci95: tuple[float, float] | None = None
    sessions: dict[str, list[str]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    fine_tuned: str = ""


def find_sessions(paths: Sequence[Path | str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if (p / "session.json").is_file():
            out.append(p)
        elif p.is_dir():
            out += sorted(d for d in p.iterdir() if (d / "session.json").is_file())
        else:
            raise InputError(f"{p} is neither a session nor a folder of sessions")
    return out


def _paired_rows(sessions: Sequence[Path], work: Path) -> dict[str, list[PairedRow]]:
    from emodesk.recording.export import export_session
    from emodesk.recording.session import check_session

    rows: dict[str, list[PairedRow]] = {}
    for s in sessions:
        rep = check_session(s)
        if not rep.ok:
            raise InputError(f"{s}: {'; '.join(rep.problems)} (run emodesk sessions repair {s} first)")
        out = work / s.name
        try:
            export_session(s, out)
        except InputError:  # no labels: contributes nothing
            continue
        paired = out / "paired.csv"
        if paired.stat().st_size and len(paired.read_text(encoding="utf-8").splitlines()) > 1:
            rows[s.name] = load_paired_manifest(paired)
    return rows


def _macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    ok = ~np.isnan(p).any(axis=1)
    return float(compute_metrics(y[ok], p[ok], bootstrap=0)["macro_f1"])


def paired_bootstrap_diff(
    y: np.ndarray, old: np.ndarray, new: np.ndarray, *, n: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% interval of macro-F1(new) − macro-F1(old) over ``n`` row resamples (the same rows for both)."""
    ok = ~(np.isnan(old).any(axis=1) | np.isnan(new).any(axis=1))
    y, p_old, p_new = y[ok], np.argmax(old[ok], axis=1), np.argmax(new[ok], axis=1)
    idx = np.random.default_rng(seed).integers(0, len(y), size=(n, len(y)))
    f1_old = confusion_scores(batch_confusions(y[idx], p_old[idx]))["macro_f1"]
    f1_new = confusion_scores(batch_confusions(y[idx], p_new[idx]))["macro_f1"]
    lo, hi = np.percentile(f1_new - f1_old, [2.5, 97.5])
    return float(lo), float(hi)


def _finetune_voice(
    scores: MemberScores,
    rows: Sequence[PairedRow],
    groups: Sequence[str],
    is_held: np.ndarray,
    work: Path,
    base_data: Path | None,
    seed: int,
    log: Callable[[str], None] | None,
) -> tuple[MemberScores, list[Path], str]:
    """Scores with every voice member re-fitted on the training sessions (and ``base_data``), their
    files, and what was done; the unchanged scores when fine-tuning cannot run here."""
    from emodesk.evaluation.datasets import Row, load_split
    from emodesk.fusion.search import ScoreCache, score_paired
    from emodesk.inference.registry import installed_manifests

    voice = [m for m in installed_manifests().values() if m.modality == "voice" and m.id in scores.ids]
    if not voice:
        return scores, [], "voice: not fine-tuned (no voice member installed)"
    try:
        from emodesk.lab.train.voice.finetune import finetune_voice
    except ImportError:
        return scores, [], "voice: not fine-tuned (needs the train extra: pip install -e '.[train]')"
    train_rows = [
        Row(r.audio, r.label, g) for r, g, h in zip(rows, groups, is_held, strict=True) if r.audio and not h
    ]
    base = load_split(base_data, "train") if base_data is not None else []
    if len(train_rows) < 5:
        return scores, [], f"voice: not fine-tuned ({len(train_rows)} training utterances with audio)"
    P, sha, files, done = scores.P.copy(), list(scores.sha256), [], []
    for member in voice:
        if log:
            log(f"fine-tuning {member.id} on {len(train_rows)} session utterances + {len(base)} base clips")
        new = finetune_voice(
            member,
            train_rows,
            work / "new-set",
            base=base,
            cache=work / f"voice-features-{member.id}.npz",
            seed=seed,
            note="emodesk retrain: training sessions " + ", ".join(sorted({r.group for r in train_rows})),
        )
        fresh = score_paired(list(rows), [new], cache=ScoreCache(work / f"scores-new-{member.id}.npz"))
        k = scores.ids.index(new.id)
        P[k] = fresh.P[0]
        sha[k] = new.sha256
        files += [new.model_path, new.path, *new.companion_paths]
        done.append(f"voice: {new.id} re-fitted on {len(train_rows)} session utterances")
    what = "; ".join(done) + (f" (+ {len(base)} clips of {base_data})" if base else "")
    return MemberScores(scores.ids, scores.modalities, tuple(sha), P, scores.y), files, what


def _adapt_members(
    scores: MemberScores,
    rows: Sequence[PairedRow],
    groups: Sequence[str],
    is_held: np.ndarray,
    work: Path,
    log: Callable[[str], None] | None,
) -> tuple[MemberScores, list[Path], list[str]]:
    """Scores with every face and text member's output layer fitted on the training sessions
    (:mod:`emodesk.lab.retrain.adapt`), their files, and what was done."""
    from emodesk.fusion.search import ScoreCache, score_paired
    from emodesk.inference.registry import installed_manifests

    try:
        from emodesk.lab.retrain.adapt import (
            adapted,
            choose_lambda,
            fit_layer,
            write_adapted_member,
        )
    except ImportError:
        return scores, [], ["face, text: not adapted (needs the train extra: pip install -e '.[train]')"]
    manifests = installed_manifests()
    P, sha = scores.P.copy(), list(scores.sha256)
    files: list[Path] = []
    done: list[str] = []
    g = np.asarray(groups)
    for k, (mid, mod) in enumerate(zip(scores.ids, scores.modalities, strict=True)):
        if mod not in ("face", "text") or mid not in manifests:
            continue
        ok = ~is_held & ~np.isnan(scores.P[k]).any(axis=1)
        if ok.sum() < MIN_ROWS // 2 or len(set(scores.y[ok])) < 2:
            done.append(f"{mid}: not adapted ({int(ok.sum())} training rows with its scores)")
            continue
        lam, cv = choose_lambda(scores.P[k][ok], scores.y[ok], g[ok])
        a, c = fit_layer(scores.P[k][ok], scores.y[ok], lam)
        new = write_adapted_member(
            manifests[mid],
            a,
            c,
            work / "new-set",
            fitted={
                "rows": int(ok.sum()),
                "sessions": sorted(set(g[ok])),
                "lambda": lam,
                "lambda_cv_macro_f1": cv,
            },
        )
        fresh = score_paired(list(rows), [new], cache=ScoreCache(work / f"scores-{mid}.npz"))
        expect = adapted(scores.P[k], a, c)
        both = ~np.isnan(fresh.P[0]).any(axis=1) & ~np.isnan(expect).any(axis=1)
        gap = float(np.abs(fresh.P[0][both] - expect[both]).max()) if both.any() else 0.0
        if gap > 1e-3:  # the exported graph must compute the fitted layer
            raise EmodeskError(f"{mid}: the adapted ONNX disagrees with the fitted layer by {gap:.2g}")
        P[k], sha[k] = fresh.P[0], new.sha256
        files += [new.model_path, new.path, *new.companion_paths]
        done.append(f"{mid}: output layer fitted on {int(ok.sum())} session rows (λ={lam:g})")
        if log:
            log(done[-1])
    return MemberScores(scores.ids, scores.modalities, tuple(sha), P, scores.y), files, done


def retrain(
    session_paths: Sequence[Path | str],
    *,
    optimizer: str = "ao",
    seed: int = 0,
    holdout: float = 0.3,
    min_rows: int = MIN_ROWS,
    base_data: Path | None = None,
    fine_tune: bool = True,
    log: Callable[[str], None] | None = None,
) -> RetrainResult:
    from emodesk.fusion.config import load_active_fusion
    from emodesk.fusion.search import ScoreCache, score_paired
    from emodesk.inference.members import MEMBER_MODALITIES
    from emodesk.inference.registry import installed_manifests

    if base_data is not None and not any(Path(base_data).glob("Actor_*")):
        raise InputError(
            f"--base-data {base_data}: only a RAVDESS-layout folder (for the voice member) is supported"
        )
    sessions = find_sessions(session_paths)
    with tempfile.TemporaryDirectory(prefix="emodesk-retrain-") as tmp:
        work = Path(tmp)
        per_session = _paired_rows(sessions, work)
        total = sum(len(r) for r in per_session.values())
        if len(per_session) < MIN_SESSIONS or total < min_rows:
            raise TooLittleData(
                f"too little labeled data to learn from: {len(per_session)} labeled session(s) of "
                f"{len(sessions)}, {total} labeled utterance(s); need at least {MIN_SESSIONS} sessions and "
                f"{min_rows} labeled utterances (record more, label with 1–7 while recording)"
            )
        names = sorted(per_session)
        order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
        n_hold = max(1, round(holdout * len(order)))
        held, train = sorted(order[:n_hold]), sorted(order[n_hold:])
        rows = [r for s in train + held for r in per_session[s]]
        groups = [s for s in train + held for _ in per_session[s]]
        is_held = np.array([g in held for g in groups])
        if is_held.sum() < MIN_HELDOUT_ROWS:
            raise TooLittleData(
                f"too little held-out data: {int(is_held.sum())} utterance(s) in the held-out session(s) "
                f"{held}; need {MIN_HELDOUT_ROWS}"
            )
        members = sorted(
            (m for m in installed_manifests().values() if m.modality in MEMBER_MODALITIES), key=lambda m: m.id
        )
        if log:
            log(f"{len(rows)} labeled utterances from {len(names)} sessions; held out: {', '.join(held)}")
        scores = score_paired(rows, members, cache=ScoreCache(work / "scores.npz"), log=log)
        new_files: list[Path] = []
        new_scores, tuned = scores, "members: not fine-tuned (--no-fine-tune)"
        if fine_tune:
            new_scores, new_files, tuned = _finetune_voice(
                scores, rows, groups, is_held, work, base_data, seed, log
            )
            new_scores, adapted_files, adapted_what = _adapt_members(
                new_scores, rows, groups, is_held, work, log
            )
            new_files += adapted_files
            tuned = "; ".join([tuned, *adapted_what])
        result = _compare_and_install(
            scores, new_scores, is_held, load_active_fusion().weights, optimizer, seed, new_files
        )
        result.sessions = {"train": train, "held_out": held}
        result.rows = {"train": int((~is_held).sum()), "held_out": int(is_held.sum())}
        result.fine_tuned = tuned
        return result


def _compare_and_install(
    old_scores: MemberScores,
    new_scores: MemberScores,
    is_held: np.ndarray,
    old_weights: Any,
    optimizer: str,
    seed: int,
    new_files: Sequence[Path],
) -> RetrainResult:
    tr_new = new_scores.rows(np.flatnonzero(~is_held))
    te_old, te_new = (
        old_scores.rows(np.flatnonzero(is_held)),
        new_scores.rows(np.flatnonzero(is_held)),
    )
    problem = FusionProblem(tr_new)
    res, weights = optimize_weights(problem, optimizer=optimizer, seed=seed)
    old_p, new_p = fused_probs(te_old, old_weights), fused_probs(te_new, weights)
    y = te_old.y
    result = RetrainResult(
        installed=False, reason="", old={"fused": _macro_f1(y, old_p)}, new={"fused": _macro_f1(y, new_p)}
    )
    lo, hi = paired_bootstrap_diff(y, old_p, new_p, seed=seed)
    result.diff_ci95 = (lo, hi)
    worse: list[str] = []
    for mod in ("face", "voice", "text"):
        if mod not in te_old.modalities:
            continue
        a = fused_probs(te_old.modality(mod), None)
        b = fused_probs(te_new.modality(mod), None)
        if np.isnan(a).all():
            continue
        result.old[mod], result.new[mod] = _macro_f1(y, a), _macro_f1(y, b)
        if result.new[mod] < result.old[mod] - MAX_MODALITY_DROP:
            worse.append(mod)
    if lo <= 0:
        result.reason = (
            f"not installed: held-out fused macro-F1 {result.new['fused']:.3f} vs {result.old['fused']:.3f} "
            f"now; the gain's 95% interval [{lo:+.3f}, {hi:+.3f}] does not clear the bootstrap noise"
        )
        return result
    if worse:
        result.reason = f"not installed: {', '.join(worse)} worse by more than {MAX_MODALITY_DROP:.0%}"
        return result
    doc = fusion_document(problem, res, weights, optimizer=optimizer, manifest=None, rows=len(tr_new.y))
    result.version = install_fusion(doc, new_files)
    result.installed = True
    result.reason = f"installed as model set {result.version}"
    return result


# ------------------------------------------------------------------ model sets


def _root() -> Path:
    from emodesk.resources import user_models_root

    return user_models_root()


def _history() -> list[str]:
    try:
        h = json.loads((_root() / "history.json").read_text(encoding="utf-8"))
        return [str(v) for v in h] if isinstance(h, list) else []
    except (OSError, ValueError):
        return []


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def install_fusion(doc: dict[str, Any], files: Sequence[Path] = ()) -> str:
    """A new model set = the active one (if any) + ``files`` (re-fitted members) + this ``fusion.json``;
    make it active."""
    from emodesk.resources import active_models_dir

    root = _root()
    root.mkdir(parents=True, exist_ok=True)
    version = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    new = root / version
    current = active_models_dir()
    if current is not None:
        if (current / LOCK_FILE).exists() and (problems := verify_folder(current)):
            raise ModelError(
                f"the active model set {current} fails its lock, so it is not copied into a new set: "
                + "; ".join(problems[:3])
            )
        if not (current / LOCK_FILE).exists():
            log_warning = f"the active model set {current} has no {LOCK_FILE}: copied as it is and locked"
            logging.getLogger(__name__).warning(log_warning)
        shutil.copytree(current, new)
    else:
        new.mkdir()
    for f in files:
        shutil.copy2(f, new / f.name)
    write_fusion_json(new / "fusion.json", doc)
    write_lock(new)
    previous = current.name if current is not None else "shipped"
    _write_atomic(root / "history.json", json.dumps([*_history(), previous]) + "\n")
    _write_atomic(root / "active", version + "\n")
    return version


def rollback() -> str:
    """Make the previous model set active again (``shipped`` = no user set); returns what is active now."""
    root = _root()
    hist = _history()
    if not hist:
        raise InputError("nothing to roll back to: no earlier model set was recorded")
    previous = hist.pop()
    if previous == "shipped":
        (root / "active").unlink(missing_ok=True)
    else:
        _write_atomic(root / "active", previous + "\n")
    _write_atomic(root / "history.json", json.dumps(hist) + "\n")
    return previous
