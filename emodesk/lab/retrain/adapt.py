"""Adapt a frozen face or text member to recorded sessions (``emodesk retrain``; the ``train`` extra).

Why an output layer and not the network: a few sessions give tens to a few
hundred labeled utterances, which would overfit a 1–22 M parameter network
within an epoch, and the shipped ONNX files carry no training state (the
int8 ones not even float weights). What the sessions can teach with that
little data is how *this* person's and room's scores map to their labels:
a matrix scaling of the member's log-probabilities (Guo et al., 2017),

    adapted = softmax(A · log p + c),   A: 7×7, c: 7,

initialised at the identity (A = I, c = 0 gives back p exactly), fitted with
class-balanced cross-entropy plus λ(‖A − I‖² + ‖c‖²) toward that identity.
λ is chosen by leave-one-session-out cross-validation over the training
sessions only. The layer is appended to the member's ONNX graph, so the app
runs it with no code of its own; the id stays, the sha256 changes, and the
manifest records what was fitted on what.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emodesk.evaluation.metrics import compute_metrics
from emodesk.inference.manifest import ManifestDraft, ModelManifest
from emodesk.labels import LABELS, N_LABELS

LAMBDAS = (0.01, 0.1, 1.0, 10.0)
_EPS = 1e-7


def _log_probs(p: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(np.asarray(p, np.float64), _EPS))


def adapted(p: np.ndarray, a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``softmax(A · log p + c)`` row by row (canonical label order)."""
    z = _log_probs(p) @ a.T + c
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_layer(p: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """A and c minimising class-balanced cross-entropy + ``lam`` (‖A − I‖² + ‖c‖²)."""
    counts = np.bincount(y, minlength=N_LABELS).astype(np.float64)
    w = np.where(counts > 0, len(y) / (np.maximum(counts, 1) * max(1, (counts > 0).sum())), 0.0)
    z = torch.as_tensor(_log_probs(p))
    yt = torch.as_tensor(y, dtype=torch.int64)
    wt = torch.as_tensor(w)
    eye = torch.eye(N_LABELS, dtype=torch.float64)
    a = eye.clone().requires_grad_(True)
    c = torch.zeros(N_LABELS, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([a, c], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ a.T + c, yt, weight=wt)
        loss = loss + lam * (((a - eye) ** 2).sum() + (c**2).sum())
        loss.backward()
        return loss

    opt.step(closure)
    return a.detach().numpy(), c.detach().numpy()


def choose_lambda(p: np.ndarray, y: np.ndarray, groups: Sequence[str]) -> tuple[float, dict[str, float]]:
    """λ by leave-one-session-out macro-F1 on the training sessions (ties: the larger, more conservative)."""
    g = np.asarray(groups)
    sessions = sorted(set(g))
    if len(sessions) < 2:
        return 1.0, {}
    scores: dict[str, float] = {}
    for lam in LAMBDAS:
        pred = np.zeros_like(p)
        for s in sessions:
            tr, te = g != s, g == s
            a, c = fit_layer(p[tr], y[tr], lam)
            pred[te] = adapted(p[te], a, c)
        scores[f"{lam:g}"] = float(compute_metrics(y, pred, bootstrap=0)["macro_f1"])
    best = max(LAMBDAS, key=lambda lam: (round(scores[f"{lam:g}"], 6), lam))
    return best, scores


def _append_layer(model: Any, output: str, a_m: np.ndarray, c_m: np.ndarray, logits: bool) -> None:
    """Rename the graph's ``output`` to ``output/base`` and compute ``output`` from it through the layer."""
    from onnx import helper, numpy_helper

    g = model.graph
    base = f"{output}/base"
    producers = [n for n in g.node if output in n.output]
    if len(producers) != 1:
        raise ValueError(f"cannot find the node that computes {output}")
    node = producers[0]
    node.output[list(node.output).index(output)] = base
    g.initializer.extend(
        [
            numpy_helper.from_array(a_m.T.astype(np.float32), f"{output}/adapt/A_T"),
            numpy_helper.from_array(c_m.astype(np.float32), f"{output}/adapt/c"),
            numpy_helper.from_array(np.array(_EPS, np.float32), f"{output}/adapt/eps"),
        ]
    )
    if logits:
        nodes = [helper.make_node("LogSoftmax", [base], [f"{output}/adapt/logp"], axis=1)]
    else:
        nodes = [
            helper.make_node("Max", [base, f"{output}/adapt/eps"], [f"{output}/adapt/p"]),
            helper.make_node("Log", [f"{output}/adapt/p"], [f"{output}/adapt/logp"]),
        ]
    nodes += [
        helper.make_node("MatMul", [f"{output}/adapt/logp", f"{output}/adapt/A_T"], [f"{output}/adapt/mm"]),
        helper.make_node(
            "Add", [f"{output}/adapt/mm", f"{output}/adapt/c"], [output if logits else f"{output}/adapt/z"]
        ),
    ]
    if not logits:
        nodes.append(helper.make_node("Softmax", [f"{output}/adapt/z"], [output], axis=1))
    g.node.extend(nodes)


def write_adapted_member(
    member: ModelManifest,
    a: np.ndarray,
    c: np.ndarray,
    out_dir: Path,
    *,
    fitted: dict[str, Any],
) -> ModelManifest:
    """``member`` with the layer (``a``, ``c`` in canonical order) appended, as ``out_dir/<file>``."""
    import onnx

    if not member.labels or len(member.labels) != N_LABELS or not member.outputs:
        raise ValueError(f"{member.id}: its manifest must name its 7 labels and its output")
    raw: dict[str, Any] = json.loads(member.path.read_text(encoding="utf-8"))
    logits = str(raw.get("preprocessing", {}).get("output", "probs")) != "probs"
    perm = np.array([LABELS.index(lab) for lab in member.labels])  # model index → canonical index
    model = onnx.load(str(member.model_path))
    _append_layer(model, member.outputs[0].name, a[np.ix_(perm, perm)], c[perm], logits)
    onnx.checker.check_model(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / member.file
    onnx.save(model, str(out))
    for f in member.companion_paths:  # e.g. the text member's tokenizer
        shutil.copy2(f, out_dir / f.name)
    draft = ManifestDraft.from_dict(raw)
    source = {
        **draft.source,
        "fine_tuned": {
            "from_sha256": member.sha256,
            "method": "output adaptation: softmax(A·log p + c), A and c fitted on session rows "
            "(emodesk/lab/retrain/adapt.py); the network's own weights unchanged",
            "A": np.round(a, 6).tolist(),
            "c": np.round(c, 6).tolist(),
            **fitted,
        },
    }
    return replace(draft, source=source, metrics={}).write(out)
