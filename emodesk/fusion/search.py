"""The fusion-weight search: member scores of paired rows, the objective, and the optimizers.

- :func:`score_paired` scores every row of a paired manifest with every
  ensemble member, through the same scorers as ``emodesk eval``, and keeps the
  scores in a :class:`ScoreCache` keyed by the model's sha256 and the input, so
  re-pairing, re-optimising or re-evaluating never re-runs a model.
- :class:`FusionProblem` is the weight search as a :class:`Problem`: one
  variable per member (or per member × class) in [0, 1], normalised; the fused
  probabilities come from :func:`~emodesk.fusion.fuse.fuse_population`, the
  very rule the live app applies (members absent from a row are renormalised
  away), for the whole population in one call.
- **Rules.** ``weighted-sum`` searches one share per member (or member × class) in [0, 1];
  ``log-linear`` searches one weight per member (or member × class) in [0, 3] — its scale is the
  member's temperature, so it is not normalised — and the seven class biases in [−3, 3], as one
  problem (``fusion.json`` version 2 stores both).
- **Objective** (the documented choice): ``1 − macro-F1`` (or ``1 − UAR``) on
  the validation rows, plus a penalty toward equal weights,
  ``penalty × TV(ŵ, uniform)``, the total-variation distance between the
  normalised weights and equal ones (0 for equal weights, below 1 always).
  Macro-F1 over a few hundred rows moves in steps of a few tenths of a point;
  without the penalty an optimizer happily trades a member away for one more
  correct row. The default penalty 0.01 makes abandoning equal weights
  entirely cost about one macro-F1 point: a change must buy more than that.
  With ``nll_weight`` λ > 0 the objective also adds ``λ × NLL``, the mean negative log-likelihood
  of the true labels under the fused probabilities: macro-F1 counts argmax decisions, so it is
  flat between them; the likelihood is smooth, breaks its ties toward confident right answers and
  keeps the rule's temperature honest (emodesk/lab/studies/fusion_rule chose λ by cross-validation
  inside the validation rows).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from emodesk.errors import InputError
from emodesk.evaluation.datasets import Row
from emodesk.evaluation.metrics import batch_confusions, compute_metrics, confusion_scores
from emodesk.fusion.config import fusion_json_document
from emodesk.fusion.fuse import RULES, WEIGHTED_SUM, Rule, Weight, fuse_population, weight_vector
from emodesk.fusion.optimize import AquilaLevySearch, AquilaOptimizer, Problem, Result, minimize
from emodesk.fusion.optimize.baselines import CMAES, DifferentialEvolution, ParticleSwarm, RandomSearch
from emodesk.fusion.optimize.problem import Callback
from emodesk.fusion.paired import PairedRow
from emodesk.inference.manifest import ModelManifest
from emodesk.inference.utterance_scorers import text_context
from emodesk.labels import N_LABELS

if TYPE_CHECKING:
    from emodesk.inference.members import TextMember

FUSION_OPTIMIZERS: dict[str, Any] = {
    "ao": AquilaOptimizer,
    "ao-levy-ls": AquilaLevySearch,
    "de": DifferentialEvolution,
    "pso": ParticleSwarm,
    "random": RandomSearch,
    "cmaes": CMAES,
}
OBJECTIVES = ("macro_f1", "uar")
DEFAULT_PENALTY = 0.01
DEFAULT_NLL_WEIGHT = 0.1  # chosen by 5-fold CV inside the validation rows (fusion_rule/choice.json)
DEFAULT_AGENTS = 30
DEFAULT_ITERATIONS = 100
DEFAULT_RULE = "log-linear"
LOG_LINEAR_MAX_WEIGHT = 3.0  # a member's weight (its inverse temperature) in [0, 3]
LOG_LINEAR_MAX_BIAS = 3.0  # a class bias in [-3, 3]: e^3 = 20 times the odds at most


@dataclass(frozen=True)
class MemberScores:
    """Every member's probabilities over the rows: ``P[m, n]`` (canonical order), NaN where absent."""

    ids: tuple[str, ...]
    modalities: tuple[str, ...]
    sha256: tuple[str, ...]
    P: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if self.P.shape != (len(self.ids), len(self.y), N_LABELS):
            raise ValueError(f"P must be ({len(self.ids)}, {len(self.y)}, {N_LABELS}), got {self.P.shape}")

    @property
    def present(self) -> np.ndarray:
        """``(m, n)``: member m scored row n."""
        return ~np.isnan(self.P).any(axis=2)

    def modality(self, modality: str) -> MemberScores:
        """The members of one modality (all rows)."""
        idx = [i for i, m in enumerate(self.modalities) if m == modality]
        return MemberScores(
            tuple(self.ids[i] for i in idx),
            tuple(self.modalities[i] for i in idx),
            tuple(self.sha256[i] for i in idx),
            self.P[idx],
            self.y,
        )

    def rows(self, idx: np.ndarray) -> MemberScores:
        """These rows (all members)."""
        return MemberScores(self.ids, self.modalities, self.sha256, self.P[:, idx], self.y[idx])

    def weight_array(self, weights: Mapping[str, Any] | None) -> np.ndarray:
        """``(m, 7)`` weights in member order; members missing from ``weights`` weigh 0 (as live)."""
        if weights is None:
            return np.ones((len(self.ids), N_LABELS))
        return np.stack([weight_vector(weights.get(m, 0.0)) for m in self.ids])


class ScoreCache:
    """Scores by ``sha256|context|input`` in one ``.npz`` (no pickles), saved atomically."""

    def __init__(self, path: Path | str | None) -> None:
        self.path = None if path is None else Path(path)
        self._d: dict[str, np.ndarray] = {}
        self._dirty = False
        if self.path is not None and self.path.is_file():
            try:
                with np.load(self.path, allow_pickle=False) as z:
                    self._d = dict(zip(z["keys"].tolist(), z["probs"], strict=True))
            except (OSError, ValueError, KeyError) as e:
                raise InputError(
                    f"score cache {self.path} is unreadable ({e}); delete it to rescore"
                ) from None

    def __len__(self) -> int:
        return len(self._d)

    def get(self, key: str) -> np.ndarray | None:
        return self._d.get(key)

    def put(self, key: str, probs: np.ndarray) -> None:
        self._d[key] = np.asarray(probs, dtype=np.float32)
        self._dirty = True

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        keys = list(self._d)
        np.savez(buf, keys=np.array(keys, dtype=str), probs=np.stack([self._d[k] for k in keys]))
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, self.path)
        self._dirty = False


def _sessions(paths: Sequence[str]) -> dict[str, list[str]]:
    """Audio files by folder: one folder is one speaker's session."""
    out: dict[str, list[str]] = {}
    for p in sorted(set(paths)):
        out.setdefault(str(Path(p).parent), []).append(p)
    return out


def _context_key(row: PairedRow, n: int, said: dict[str, tuple[str, tuple[str, ...]]]) -> str | None:
    """The input of a context member for ``row``: its text alone, or with a digest of the (at most
    ``n``) utterances before it, remembered in ``said`` as (text, context) to score it with."""
    if row.text is None:
        return None
    context = row.text_context[:n]
    key = row.text
    if context:
        key += (
            "|ctx:" + hashlib.sha1(json.dumps(context, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]
        )
    said[key] = (row.text, context)
    return key


def score_paired(
    rows: Sequence[PairedRow],
    manifests: Sequence[ModelManifest],
    *,
    cache: ScoreCache | None = None,
    device: str = "auto",
    log: Callable[[str], None] | None = None,
) -> MemberScores:
    """Score each row's inputs with every member (cached); NaN where a row lacks the member's input.

    Voice is scored per session (one folder of audio), each from a fresh running
    normalisation in a seeded order, exactly as ``emodesk eval voice`` scores a
    speaker; its cache key includes the session's file list. A text member that
    reads context gets each row's ``text_context`` (as many utterances as its
    manifest asks for); its cache key includes them.
    """
    from emodesk.evaluation.evaluate import load_scorer, score_rows

    if not rows:
        raise InputError("no rows to score")
    cache = cache if cache is not None else ScoreCache(None)
    P = np.full((len(manifests), len(rows), N_LABELS), np.nan)
    for k, man in enumerate(manifests):
        mod = man.modality
        if mod not in ("face", "voice", "text"):
            raise InputError(f"model {man.id} is a {mod!r} model, not a fusion member")
        n_context = text_context(man) if mod == "text" else 0
        said: dict[str, tuple[str, tuple[str, ...]]] = {}  # a context member's input → (text, context)
        col = [_context_key(r, n_context, said) if n_context else r.get(mod) for r in rows]
        uniq = sorted({x for x in col if x is not None})
        ctx: dict[str, str] = {}
        groups: dict[str, list[str]] = {"": uniq}
        if mod == "voice":
            groups = _sessions(uniq)
            for files in groups.values():
                h = hashlib.sha1("\n".join(files).encode()).hexdigest()[:16]
                ctx.update(dict.fromkeys(files, h))

        def key(x: str, _sha: str = man.sha256, _ctx: dict[str, str] = ctx) -> str:
            return f"{_sha}|{_ctx.get(x, '')}|{x}"

        todo = [files for files in groups.values() if any(cache.get(key(x)) is None for x in files)]
        if mod != "voice" and todo:
            todo = [[x for x in uniq if cache.get(key(x)) is None]]
        if todo:
            n = sum(len(t) for t in todo)
            if log:
                log(f"scoring {n} {mod} input(s) with {man.id}")
            scorer = load_scorer(man, device=device)  # type: ignore[arg-type]
            for files in todo:
                if n_context:  # a text member: it reads each row's words after their context
                    text_member = cast("TextMember", scorer)
                    probs = np.stack([text_member.score(*said[x]) for x in files])
                else:
                    group_rows = [Row(x, 0, "session" if mod == "voice" else "") for x in files]
                    probs = score_rows(mod, group_rows, scorer)  # type: ignore[arg-type]
                for x, p in zip(files, probs, strict=True):
                    cache.put(key(x), p)
        for i, xi in enumerate(col):
            if xi is not None:
                got = cache.get(key(xi))
                if got is not None and not np.isnan(got).any():
                    P[k, i] = got
    cache.save()
    return MemberScores(
        tuple(m.id for m in manifests),
        tuple(m.modality for m in manifests),
        tuple(m.sha256 for m in manifests),
        P,
        np.array([r.label for r in rows], dtype=np.int64),
    )


class FusionProblem(Problem):
    """Find fusion weights (and, for ``log-linear``, class biases): minimise
    ``1 − metric(fused) + penalty · TV(ŵ, equal) + nll_weight · NLL(fused)`` (module docstring)."""

    def __init__(
        self,
        scores: MemberScores,
        *,
        objective: str = "macro_f1",
        per_class: bool = False,
        penalty: float = DEFAULT_PENALTY,
        rule: str = "weighted-sum",
        nll_weight: float = DEFAULT_NLL_WEIGHT,
    ) -> None:
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        if penalty < 0:
            raise ValueError(f"penalty must be non-negative, got {penalty}")
        if not nll_weight >= 0:
            raise ValueError(f"nll_weight must be non-negative, got {nll_weight}")
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        m = len(scores.ids)
        if m < 2:
            raise InputError(f"fusion needs at least two members, got {list(scores.ids)}")
        self.n_weights = m * N_LABELS if per_class else m
        if rule == "log-linear":
            xl = np.r_[np.zeros(self.n_weights), np.full(N_LABELS, -LOG_LINEAR_MAX_BIAS)]
            xu = np.r_[np.full(self.n_weights, LOG_LINEAR_MAX_WEIGHT), np.full(N_LABELS, LOG_LINEAR_MAX_BIAS)]
            super().__init__(self.n_weights + N_LABELS, xl, xu)
        else:
            super().__init__(self.n_weights, 0.0, 1.0)
        keep = scores.present.any(axis=0)
        if not keep.any():
            raise InputError("no row has any member's score")
        self.scores = scores
        self.P = scores.P[:, keep]
        self.y = scores.y[keep]
        self.objective, self.per_class, self.penalty = objective, per_class, float(penalty)
        self.nll_weight = float(nll_weight)
        self.rule = rule
        # the rule whose biases the search supplies per candidate (fuse_population's B)
        self._template = Rule.log_linear(np.zeros(N_LABELS)) if rule == "log-linear" else WEIGHTED_SUM
        self.m = m

    def _weight_part(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64)[:, : self.n_weights].reshape(len(X), self.m, -1)

    def shares(self, X: np.ndarray) -> np.ndarray:
        """``(k, m)`` or ``(k, m, 7)`` normalised weights summing to 1 per candidate (all-zero → equal)."""
        X = self._weight_part(X)
        total = X.sum(axis=(1, 2), keepdims=True)
        share = np.where(total > 0, X / np.where(total > 0, total, 1), 1.0 / X[0].size)
        return share if self.per_class else share[:, :, 0]

    def weights(self, X: np.ndarray) -> np.ndarray:
        """``(k, m, 7)`` weights for :func:`fuse_population`: shares for the weighted sum (its scale
        is irrelevant to the fused result), the raw weights for the log-linear rule (whose scale is
        the members' temperature)."""
        if self.rule == "log-linear":
            return np.broadcast_to(self._weight_part(X), (len(X), self.m, N_LABELS))
        s = self.shares(X)
        return s * N_LABELS if self.per_class else np.repeat(s[:, :, None], N_LABELS, axis=2)

    def biases(self, X: np.ndarray) -> np.ndarray | None:
        """``(k, 7)`` class biases of the log-linear rule (None for the weighted sum)."""
        return np.asarray(X, dtype=np.float64)[:, self.n_weights :] if self.rule == "log-linear" else None

    def fused(self, X: np.ndarray) -> np.ndarray:
        """``(k, n, 7)`` fused probabilities of the search rows under each candidate."""
        return fuse_population(self.P, self.weights(X), self._template, self.biases(X))

    def metric(self, X: np.ndarray) -> np.ndarray:
        """The objective's metric (macro-F1 or UAR) of each candidate's fused predictions."""
        return self._metric(self.fused(X))

    def _metric(self, fused: np.ndarray) -> np.ndarray:
        return confusion_scores(batch_confusions(self.y, np.argmax(fused, axis=2)))[self.objective]

    def nll(self, X: np.ndarray) -> np.ndarray:
        """Mean negative log-likelihood of the true labels under each candidate's fused probabilities."""
        return self._nll(self.fused(X))

    def _nll(self, fused: np.ndarray) -> np.ndarray:
        p = np.take_along_axis(fused, self.y[None, :, None], axis=2)[..., 0]
        return -np.log(np.maximum(p, 1e-12)).mean(axis=1)

    def distance_from_equal(self, X: np.ndarray) -> np.ndarray:
        s = self.shares(X).reshape(len(X), -1)
        return 0.5 * np.abs(s - 1.0 / s.shape[1]).sum(axis=1)

    def _evaluate(self, X: np.ndarray) -> np.ndarray:
        fused = self.fused(X)
        f = 1.0 - self._metric(fused) + self.penalty * self.distance_from_equal(X)
        return f + self.nll_weight * self._nll(fused) if self.nll_weight else f

    def weight_dict(self, x: np.ndarray) -> dict[str, float | list[float]]:
        """The member → weight map of one solution as ``fusion.json`` stores it: normalised shares for
        the weighted sum, the weights themselves for the log-linear rule."""
        x = np.asarray(x, dtype=np.float64)[None]
        if self.rule == "log-linear":
            w = self._weight_part(x)[0]
            if self.per_class:
                return {m: [round(float(v), 6) for v in w[i]] for i, m in enumerate(self.scores.ids)}
            return {m: round(float(w[i, 0]), 6) for i, m in enumerate(self.scores.ids)}
        s = self.shares(x)[0]
        if self.per_class:
            return {m: [round(float(v) * N_LABELS, 6) for v in s[i]] for i, m in enumerate(self.scores.ids)}
        return {m: round(float(s[i]), 6) for i, m in enumerate(self.scores.ids)}

    def rule_of(self, x: np.ndarray) -> Rule:
        """The :class:`Rule` of one solution (its class biases, for the log-linear rule)."""
        b = self.biases(np.asarray(x, dtype=np.float64)[None])
        return WEIGHTED_SUM if b is None else Rule.log_linear(np.round(b[0], 6))


def make_fusion_optimizer(name: str, agents: int = DEFAULT_AGENTS) -> Any:
    try:
        return FUSION_OPTIMIZERS[name](pop_size=agents)
    except KeyError:
        raise InputError(f"unknown optimizer {name!r}; choose from {', '.join(FUSION_OPTIMIZERS)}") from None


def optimize_weights(
    problem: FusionProblem,
    *,
    optimizer: str = "ao",
    agents: int = DEFAULT_AGENTS,
    iterations: int = DEFAULT_ITERATIONS,
    seed: int = 0,
    callback: Callback | None = None,
) -> tuple[Result, dict[str, float | list[float]]]:
    """Run one optimizer on the weight search; the result and its normalised weights.
    ``callback(t, X, F)`` sees the population after each iteration (:func:`minimize`)."""
    res = minimize(
        problem, make_fusion_optimizer(optimizer, agents), n_iter=iterations, seed=seed, callback=callback
    )
    return res, problem.weight_dict(res.x)


def convergence_curve(result: Result) -> list[dict[str, float]]:
    """The best-so-far objective after each iteration, with the evaluations spent by then: every
    optimizer here spends ``pop_size`` evaluations per iteration, the initial population included."""
    per_iteration = result.n_evals / len(result.history)
    return [
        {"iteration": t, "evaluations": round(per_iteration * (t + 1)), "best": float(f)}
        for t, f in enumerate(result.history)
    ]


def write_curve(path: Path, curve: Sequence[Mapping[str, float]]) -> Path:
    """``iteration,evaluations,best`` rows of :func:`convergence_curve`, written atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write("iteration,evaluations,best\n")
        for c in curve:
            fh.write(f"{int(c['iteration'])},{int(c['evaluations'])},{c['best']:.6f}\n")
    os.replace(tmp, path)
    return path


def fusion_document(
    problem: FusionProblem,
    result: Result,
    weights: Mapping[str, float | list[float]],
    *,
    optimizer: str,
    manifest: Path | None,
    rows: int,
) -> dict[str, Any]:
    """``fusion.json`` for a search result."""
    s = problem.scores
    data_sha = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest is not None else None
    metric = float(problem.metric(result.x[None])[0])
    return fusion_json_document(
        list(zip(s.ids, s.sha256, s.modalities, strict=True)),
        weights,
        rule=problem.rule_of(result.x),
        optimizer={
            "name": optimizer,
            "params": {**dict(result.params), "iterations": result.n_iter},
            "seed": result.seed,
            "evaluations": result.n_evals,
        },
        objective={
            "name": f"1 - {problem.objective} + {problem.penalty:g} * TV(weights, equal)"
            + (f" + {problem.nll_weight:g} * NLL" if problem.nll_weight else ""),
            "value": round(float(result.f), 6),
            problem.objective: round(metric, 6),
            "per_class": problem.per_class,
        },
        data={
            "manifest": manifest.name if manifest is not None else None,
            "sha256": data_sha,
            "rows": rows,
        },
    )


def fused_probs(
    scores: MemberScores, weights: Mapping[str, Any] | None, rule: Rule = WEIGHTED_SUM
) -> np.ndarray:
    """``(n, 7)`` fused probabilities of every row under ``weights`` (None: equal per member) and
    ``rule``."""
    return fuse_population(scores.P, scores.weight_array(weights)[None], rule)[0]


def evaluate_fusion(
    scores: MemberScores,
    weights: Mapping[str, Weight] | None,
    *,
    rule: Rule = WEIGHTED_SUM,
    bootstrap: int = 1000,
) -> dict[str, Any]:
    """The ``fusion eval`` report (docs/formats.md, "`fusion eval --json` output"): fused under
    ``rule``, equal weights (the weighted sum), each member, each modality."""
    out: dict[str, Any] = {}
    rows = scores.present.any(axis=0)
    y = scores.y[rows]
    out["fused"] = compute_metrics(y, fused_probs(scores, weights, rule)[rows], bootstrap=bootstrap)
    out["equal_weights"] = compute_metrics(y, fused_probs(scores, None)[rows], bootstrap=bootstrap)
    present = scores.present
    for i, m in enumerate(scores.ids):
        if present[i].any():
            out[m] = compute_metrics(scores.y[present[i]], scores.P[i, present[i]], bootstrap=bootstrap)
    for mod in ("face", "voice", "text"):
        sub = scores.modality(mod)
        if not sub.ids:
            continue
        r = sub.present.any(axis=0)
        if r.any():
            out[f"modality:{mod}"] = compute_metrics(
                scores.y[r], fused_probs(sub, None)[r], bootstrap=bootstrap
            )
    return out
