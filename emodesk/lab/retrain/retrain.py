"""``emodesk retrain``: better fusion for *your* people and setting, from your labeled sessions.

What this version does, honestly scoped:

1. Takes every session under the given folders; each must pass ``sessions
   check`` (repair first otherwise).
2. Exports each session's labeled utterances as paired rows (face crop at the
   utterance's midpoint, its audio, its words) and puts each session on one
   side of a **fixed three-way split** (:mod:`emodesk.lab.retrain.split`):
   *adapt* (the members are fitted here), *fusion* (the weights are searched
   here, on rows the adapted members never saw) and *held out* (the verdict).
   A session keeps its side across runs and seeds; new sessions are assigned.
3. Scores every row with every installed member, adapts the members on the
   adapt sessions, then searches the fusion weights with the Aquila Optimizer
   (or ``--optimizer``) on the fusion sessions (objective of
   :mod:`emodesk.fusion.search`). Too few fusion rows, or a search that finds
   nothing better than balanced weights (each modality a third), gives the
   balanced weights, said so and recorded.
4. Compares the active set and the new one on the held-out sessions — never on
   a session that trained the active set (its ``fusion.json`` records them):
   those are left out of the verdict, and with none left it refuses. The new
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
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emodesk.errors import EmodeskError, InputError
from emodesk.evaluation.metrics import batch_confusions, compute_metrics, confusion_scores
from emodesk.fusion.fuse import WEIGHTED_SUM, Rule
from emodesk.fusion.model_sets import install_set, models_root, rollback  # noqa: F401  (re-exported)
from emodesk.fusion.paired import PairedRow, load_paired_manifest
from emodesk.fusion.search import FusionProblem, MemberScores, fused_probs, fusion_document, optimize_weights
from emodesk.lab.retrain.coverage import Coverage, coverage
from emodesk.lab.retrain.split import (
    FUSION,
    TRAINING_SIDES,
    assign,
    by_side,
    load_split,
    save_split,
    session_key,
)
from emodesk.labels import LABELS

MIN_SESSIONS = 2
MIN_ROWS = 20
MIN_HELDOUT_ROWS = 5
MIN_FUSION_ROWS = 10  # fewer fusion-side utterances than this: balanced weights, not a search
MAX_MODALITY_DROP = 0.02
EXIT_NOT_INSTALLED = 3  # ``emodesk retrain``: evaluated, not installed (0 installed, 1 failure, 2 usage)


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
    sessions: dict[str, list[str]] = field(default_factory=dict)  # adapt / fusion / held_out
    rows: dict[str, int] = field(default_factory=dict)
    fine_tuned: str = ""
    fusion_rule: str = ""  # how the weights were found (searched on N rows, or the fallback and why)
    left_out: list[str] = field(default_factory=list)  # held-out sessions that trained the active set
    coverage: Coverage | None = None
    # fused F1 per label present in the verdict rows: {"active": {label: f1}, "new": {...}}
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)


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
        key = session_key(s)
        rep = check_session(s)
        if not rep.ok:
            raise InputError(f"{s}: {'; '.join(rep.problems)} (run emodesk sessions repair {s} first)")
        out = work / key
        try:
            export_session(s, out)
        except InputError:  # no labels: contributes nothing
            continue
        paired = out / "paired.csv"
        if paired.stat().st_size and len(paired.read_text(encoding="utf-8").splitlines()) > 1:
            rows[key] = load_paired_manifest(paired)
    return rows


def _macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    ok = ~np.isnan(p).any(axis=1)
    return float(compute_metrics(y[ok], p[ok], bootstrap=0)["macro_f1"])


def per_class_f1(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Fused F1 of each label that has true rows in ``y`` (labels absent from the verdict rows have no
    F1, and the macro average is over the ones present)."""
    ok = ~np.isnan(p).any(axis=1)
    conf = batch_confusions(y[ok], np.argmax(p[ok], axis=1)[None])
    f1 = confusion_scores(conf)["f1"][0]
    present = np.bincount(y[ok], minlength=len(LABELS)) > 0
    return {LABELS[i]: float(f1[i]) for i in range(len(LABELS)) if present[i]}


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


def active_training_sessions() -> set[str]:
    """The sessions the active model set was fitted or searched on (its ``fusion.json`` says)."""
    from emodesk.fusion.config import load_active_fusion

    raw = load_active_fusion().raw or {}
    sides = raw.get("data", {}).get("sessions", {}) if isinstance(raw.get("data"), dict) else {}
    if not isinstance(sides, dict):
        return set()
    return {str(k) for side in TRAINING_SIDES for k in sides.get(side, []) or []}


def retrain(
    session_paths: Sequence[Path | str],
    *,
    optimizer: str = "ao",
    seed: int = 0,
    holdout: float = 0.3,
    fusion_share: float = FUSION,
    min_rows: int = MIN_ROWS,
    base_data: Path | None = None,
    fine_tune: bool = True,
    log: Callable[[str], None] | None = None,
) -> RetrainResult:
    """Adapt, search, compare and maybe install (module docstring); ``seed`` drives the optimizer and
    the bootstrap, never the split."""
    from emodesk.fusion.config import load_active_fusion
    from emodesk.fusion.search import ScoreCache, score_paired
    from emodesk.inference.members import MEMBER_MODALITIES
    from emodesk.inference.registry import installed_manifests

    if base_data is not None and not any(Path(base_data).glob("Actor_*")):
        raise InputError(
            f"--base-data {base_data}: only a RAVDESS-layout folder (for the voice member) is supported"
        )
    sessions = find_sessions(session_paths)
    folders: dict[str, Path] = {}
    for s in sessions:
        key = session_key(s)
        if key in folders and folders[key].resolve() != s.resolve():
            raise InputError(f"{s} and {folders[key]} are the same session ({key}): pass one of them")
        folders[key] = s
    with tempfile.TemporaryDirectory(prefix="emodesk-retrain-") as tmp:
        work = Path(tmp)
        per_session = _paired_rows(list(folders.values()), work)
        total = sum(len(r) for r in per_session.values())
        if len(per_session) < MIN_SESSIONS or total < min_rows:
            raise TooLittleData(
                f"too little labeled data to learn from: {len(per_session)} labeled session(s) of "
                f"{len(sessions)}, {total} labeled utterance(s); need at least {MIN_SESSIONS} sessions and "
                f"{min_rows} labeled utterances (record more; label them with `emodesk sessions label "
                "SESSION --from S --to S LABEL`, or 1–7 while recording in the window)"
            )
        known = load_split(models_root())
        sides = assign(sorted(per_session), known, holdout=holdout, fusion=fusion_share)
        if any(k not in known for k in sides):
            save_split(models_root(), {**known, **sides}, holdout=holdout, fusion=fusion_share)
        parts = by_side(sides)
        order = parts["adapt"] + parts["fusion"] + parts["held_out"]
        rows = [r for k in order for r in per_session[k]]
        groups = [k for k in order for _ in per_session[k]]
        side_of = np.array([sides[g] for g in groups])
        is_adapt, is_fusion, is_held = (side_of == "adapt"), (side_of == "fusion"), (side_of == "held_out")
        trained_active = active_training_sessions()
        left_out = [k for k in parts["held_out"] if k in trained_active]
        is_verdict = is_held & ~np.isin(np.asarray(groups), left_out)
        counts = ", ".join(f"{side} {len(parts[side])}" for side in ("adapt", "fusion", "held_out"))
        counts = f"sessions: {counts}"
        if not parts["adapt"]:
            raise TooLittleData(f"no session on the adapt side ({counts}): record more sessions")
        if is_verdict.sum() < MIN_HELDOUT_ROWS:
            why = (
                f"; left out of the verdict because they trained the active set: {', '.join(left_out)}"
                if left_out
                else ""
            )
            raise TooLittleData(
                f"too little held-out data: {int(is_verdict.sum())} utterance(s) in the held-out session(s) "
                f"{parts['held_out']}{why}; need {MIN_HELDOUT_ROWS} ({counts}). Record more sessions: new "
                "ones are assigned to the sides that need them"
            )
        cov = coverage(folders, per_session, sides)
        members = sorted(
            (m for m in installed_manifests().values() if m.modality in MEMBER_MODALITIES), key=lambda m: m.id
        )
        if log:
            log(
                f"{len(rows)} labeled utterances from {len(per_session)} sessions; adapt: "
                f"{', '.join(parts['adapt'])}; fusion: {', '.join(parts['fusion']) or 'none'}; "
                f"held out: {', '.join(parts['held_out'])}"
            )
            if left_out:
                log(f"left out of the verdict (they trained the active set): {', '.join(left_out)}")
            for w in cov.warnings:
                log(f"coverage: {w}")
        scores = score_paired(rows, members, cache=ScoreCache(work / "scores.npz"), log=log)
        new_files: list[Path] = []
        new_scores, tuned = scores, "members: not fine-tuned (--no-fine-tune)"
        if fine_tune:
            new_scores, new_files, tuned = _finetune_voice(
                scores, rows, groups, ~is_adapt, work, base_data, seed, log
            )
            new_scores, adapted_files, adapted_what = _adapt_members(
                new_scores, rows, groups, ~is_adapt, work, log
            )
            new_files += adapted_files
            tuned = "; ".join([tuned, *adapted_what])
        active = load_active_fusion()
        result = _compare_and_install(
            scores,
            new_scores,
            is_verdict,
            active.weights,
            optimizer,
            seed,
            new_files,
            is_fusion=is_fusion,
            old_rule=active.rule,
            data={
                "sessions": parts,
                "rows_by_side": {
                    "adapt": int(is_adapt.sum()),
                    "fusion": int(is_fusion.sum()),
                    "held_out": int(is_held.sum()),
                },
                "coverage": cov.as_dict(),
                "fine_tuned": tuned,
            },
        )
        result.sessions = parts
        result.rows = {
            "adapt": int(is_adapt.sum()),
            "fusion": int(is_fusion.sum()),
            "held_out": int(is_verdict.sum()),
        }
        result.fine_tuned = tuned
        result.left_out = left_out
        result.coverage = cov
        return result


def balanced_weights(scores: MemberScores) -> dict[str, float]:
    """Each modality present a third (an equal share), split equally among its members."""
    per = {mod: scores.modalities.count(mod) for mod in set(scores.modalities)}
    return {
        m: round(1.0 / (len(per) * per[mod]), 6) for m, mod in zip(scores.ids, scores.modalities, strict=True)
    }


def _fusion_weights(
    scores: MemberScores, is_fusion: np.ndarray, optimizer: str, seed: int, rule_name: str = "weighted-sum"
) -> tuple[dict[str, Any], Rule, str, dict[str, Any]]:
    """(weights, their fusion rule, how they were chosen in words, the ``fusion.json`` document)
    from the fusion-side rows only; ``rule_name`` is the rule searched (the active set's)."""
    from emodesk.fusion.config import fusion_json_document

    fus = scores.rows(np.flatnonzero(is_fusion))
    balanced = balanced_weights(scores)
    members = list(zip(scores.ids, scores.sha256, scores.modalities, strict=True))
    labels = len(set(fus.y.tolist()))
    bal_f1 = _macro_f1(fus.y, fused_probs(fus, balanced)) if len(fus.y) else float("nan")

    def fallback(why: str) -> tuple[dict[str, Any], Rule, str, dict[str, Any]]:
        rule = f"balanced weights (each modality an equal share): {why}"
        doc = fusion_json_document(
            members,
            balanced,
            optimizer={"name": "none", "rule": rule},
            objective={
                "name": "macro_f1 on the fusion sessions",
                "macro_f1": round(bal_f1, 6),
                "rows": len(fus.y),
            },
            data={"manifest": None, "sha256": None, "rows": len(fus.y)},
        )
        return balanced, WEIGHTED_SUM, rule, doc

    if len(fus.y) < MIN_FUSION_ROWS or labels < 2:
        return fallback(
            f"{len(fus.y)} fusion-side utterance(s) with {labels} label(s), too few to search on "
            f"(need {MIN_FUSION_ROWS} with at least 2 labels)"
        )
    problem = FusionProblem(fus, rule=rule_name)
    res, weights = optimize_weights(problem, optimizer=optimizer, seed=seed)
    best = float(problem.metric(res.x[None])[0])
    if best <= bal_f1 + 1e-9:
        return fallback(
            f"the {optimizer} search on {len(fus.y)} fusion-side utterances found nothing better "
            f"(macro-F1 {best:.3f} vs {bal_f1:.3f} balanced)"
        )
    doc = fusion_document(problem, res, weights, optimizer=optimizer, manifest=None, rows=len(fus.y))
    rule = (
        f"{optimizer} search ({rule_name} rule) on {len(fus.y)} fusion-side utterances the adapted "
        f"members never saw: macro-F1 {best:.3f} there (balanced weights {bal_f1:.3f})"
    )
    return weights, problem.rule_of(res.x), rule, doc


def _compare_and_install(
    old_scores: MemberScores,
    new_scores: MemberScores,
    is_held: np.ndarray,
    old_weights: Any,
    optimizer: str,
    seed: int,
    new_files: Sequence[Path],
    *,
    is_fusion: np.ndarray,
    data: dict[str, Any] | None = None,
    old_rule: Rule = WEIGHTED_SUM,
) -> RetrainResult:
    """Weights searched on the ``is_fusion`` rows, the verdict on the ``is_held`` rows (disjoint).
    ``old_weights`` and ``old_rule`` are the active set's; the search uses its rule too."""
    if (is_fusion & is_held).any():
        raise ValueError("the fusion rows and the held-out rows overlap")
    weights, new_rule, rule, doc = _fusion_weights(new_scores, is_fusion, optimizer, seed, old_rule.name)
    te_old, te_new = (
        old_scores.rows(np.flatnonzero(is_held)),
        new_scores.rows(np.flatnonzero(is_held)),
    )
    old_p, new_p = fused_probs(te_old, old_weights, old_rule), fused_probs(te_new, weights, new_rule)
    y = te_old.y
    result = RetrainResult(
        installed=False,
        reason="",
        old={"fused": _macro_f1(y, old_p)},
        new={"fused": _macro_f1(y, new_p)},
        fusion_rule=rule,
    )
    lo, hi = paired_bootstrap_diff(y, old_p, new_p, seed=seed)
    result.diff_ci95 = (lo, hi)
    result.per_class = {"active": per_class_f1(y, old_p), "new": per_class_f1(y, new_p)}
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
    held_sessions = sorted((data or {}).get("sessions", {}).get("held_out", []))
    _record_held_out_metrics(new_scores, is_held, new_files, held_sessions, seed)
    doc["data"] = {**doc.get("data", {}), **(data or {})}
    doc["verdict"] = {
        "held_out_macro_f1": {
            "active": {k: round(v, 4) for k, v in result.old.items()},
            "new": {k: round(v, 4) for k, v in result.new.items()},
        },
        "held_out_f1_per_label": {
            side: {k: round(v, 4) for k, v in f1.items()} for side, f1 in result.per_class.items()
        },
        "gain_ci95": [round(lo, 4), round(hi, 4)],
        "held_out_rows": len(y),
    }
    result.version = install_set(doc, new_files)
    result.installed = True
    result.reason = f"installed as model set {result.version}"
    return result


def _record_held_out_metrics(
    scores: MemberScores, is_held: np.ndarray, files: Sequence[Path], sessions: Sequence[str], seed: int
) -> None:
    """Each re-fitted member's manifest gains ``metrics["retrain-held-out"]``: its own scores on the
    held-out sessions (the rows the verdict used), so ``emodesk models`` shows what it measured."""
    for f in files:
        if f.suffix != ".json" or f.name.endswith(".tokenizer.json") or f.stem not in scores.ids:
            continue
        k = scores.ids.index(f.stem)
        ok = is_held & ~np.isnan(scores.P[k]).any(axis=1)
        if not ok.any():
            continue
        doc = json.loads(f.read_text(encoding="utf-8"))
        met = compute_metrics(scores.y[ok], scores.P[k][ok], bootstrap=1000, seed=seed)
        met["sessions"] = list(sessions)
        doc.setdefault("metrics", {})["retrain-held-out"] = met
        f.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


# ------------------------------------------------------------------ model sets

# Installing, rolling back and listing sets is app code (an installed app manages its sets too).
install_fusion = install_set
