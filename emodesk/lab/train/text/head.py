"""Re-fit the linear head of an exported text member on its own encoder's pooled features.

``emodesk train text --refit-head MODEL.onnx --out OUT.onnx``. The encoder of
the exported member — int8 after quantisation — is kept byte for byte; only
the classifier after the mean pooling is replaced by a float32 linear layer
fitted on the pooled features that very graph computes for the training rows.

Why: fine-tuning chose one trade-off between the datasets (inverse-frequency
class weights, the mean macro-F1 of the val sets), while the product reads
spoken words, and the encoder it ended with was then quantised. A softmax
regression on the frozen features is cheap and convex (L-BFGS, no seed), so
the data weights and the L2 strength can be chosen by a grid on the val
splits with the same ``--select``/``--floor`` rule as the fine-tuning, and
the head sees exactly the features the app's int8 encoder produces. Running
it again on its own output gives the same head: the features do not change.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emodesk.errors import EmodeskError, InputError
from emodesk.evaluation.metrics import compute_metrics
from emodesk.inference.manifest import ManifestDraft, ModelManifest
from emodesk.lab.train.common import command_line, write_manifest
from emodesk.lab.train.text.data import (
    Selection,
    default_data_dirs,
    load_text_splits,
    parse_train_rows,
    subsample_train,
)
from emodesk.lab.train.text.exported import (
    check_in_app,
    data_lines,
    license_text,
    ort_session,
    record_name,
    seconds_per_sentence,
    softmax,
    usage_note,
)
from emodesk.labels import LABELS, N_LABELS
from emodesk.machine import cpu_name
from emodesk.resources import sha256_file

L2_GRID = (1e-4, 1e-3, 1e-2)
_PREFIX = "head/refit"


@dataclass(frozen=True)
class HeadGraph:
    """Where the pooled features are in an exported text member, and which nodes make its output."""

    pooled: str
    output: str
    head_nodes: tuple[int, ...]  # indices into graph.node


def find_head(model: Any, output: str) -> HeadGraph:
    """The mean-pooled tensor (the last ``Div`` before ``output``) and the nodes after it.

    Works for the fp32 and the int8 (dynamic quantisation) graphs that ``emodesk
    train text`` exports, for a graph this module wrote, and for one that
    ``emodesk retrain`` appended a layer to (that layer belongs to the head).
    """
    g = model.graph
    producer = {o: i for i, n in enumerate(g.node) for o in n.output}
    if output not in producer:
        raise InputError(f"the graph has no output {output!r}")
    ancestors: set[int] = set()
    todo = [producer[output]]
    while todo:
        i = todo.pop()
        if i in ancestors:
            continue
        ancestors.add(i)
        todo.extend(producer[t] for t in g.node[i].input if t in producer)
    divs = [i for i in sorted(ancestors) if g.node[i].op_type == "Div"]
    if not divs:
        raise InputError("no mean pooling (Div) before the output: not a text member of `emodesk train text`")
    pooled = g.node[divs[-1]].output[0]
    after: set[str] = {pooled}
    head: list[int] = []
    for i, n in enumerate(g.node):  # nodes are topologically sorted
        if i in ancestors and any(t in after for t in n.input):
            head.append(i)
            after.update(n.output)
    if not head:
        raise InputError(f"nothing computes {output!r} from the pooled features {pooled!r}")
    return HeadGraph(pooled, output, tuple(head))


def with_pooled_output(model: Any, head: HeadGraph) -> Any:
    """A copy of ``model`` that also outputs the pooled features (as ``head.pooled``)."""
    import onnx
    from onnx import helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    if head.pooled not in {o.name for o in m.graph.output}:
        m.graph.output.append(helper.make_tensor_value_info(head.pooled, onnx.TensorProto.FLOAT, None))
    return m


def replace_head(model: Any, head: HeadGraph, w: np.ndarray, b: np.ndarray) -> Any:
    """A copy of ``model`` whose output (logits) is ``pooled @ w.T + b``.

    The encoder's nodes and initializers are copied unchanged; the old head's
    nodes go, and so do the initializers only they used.
    """
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    drop = set(head.head_nodes)
    keep = [n for i, n in enumerate(g.node) if i not in drop]
    used = {t for n in keep for t in n.input}
    inits = [t for t in g.initializer if t.name in used]
    del g.node[:]
    g.node.extend(keep)
    del g.initializer[:]
    g.initializer.extend(inits)
    g.initializer.extend(
        [
            numpy_helper.from_array(np.ascontiguousarray(w.T, dtype=np.float32), f"{_PREFIX}/W_T"),
            numpy_helper.from_array(np.asarray(b, dtype=np.float32), f"{_PREFIX}/b"),
        ]
    )
    mm = f"{_PREFIX}/mm"
    g.node.append(helper.make_node("MatMul", [head.pooled, f"{_PREFIX}/W_T"], [mm], name=f"{_PREFIX}/MatMul"))
    g.node.append(helper.make_node("Add", [mm, f"{_PREFIX}/b"], [head.output], name=f"{_PREFIX}/Add"))
    onnx.checker.check_model(m)
    return m


def fit_head(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """Softmax regression: weights ``(7, D)`` and bias ``(7,)`` on the raw features.

    Minimises the ``w``-weighted mean cross-entropy + ``l2`` ‖W‖² on
    standardised features with L-BFGS (deterministic), then folds the
    standardisation into the returned weights.
    """
    x64 = np.asarray(x, np.float64)
    mu = x64.mean(axis=0)
    sd = x64.std(axis=0) + 1e-6
    xt = torch.as_tensor((x64 - mu) / sd)
    yt = torch.as_tensor(np.asarray(y, np.int64))
    wt = torch.as_tensor(np.asarray(w, np.float64))
    wt = wt / wt.sum()
    wm = torch.zeros((N_LABELS, x64.shape[1]), dtype=torch.float64, requires_grad=True)
    bm = torch.zeros(N_LABELS, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [wm, bm], lr=1.0, max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        ce = torch.nn.functional.cross_entropy(xt @ wm.T + bm, yt, reduction="none")
        loss = (ce * wt).sum() + l2 * (wm**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    w_std = wm.detach().numpy()
    w_raw = w_std / sd
    b_raw = bm.detach().numpy() - w_raw @ mu
    return w_raw, b_raw


def parse_weight_grid(
    spec: str | None, names: Sequence[str], option: str = "--refit-weights"
) -> list[dict[str, float]]:
    """``"meld=1,2,3"`` → one dict of per-dataset row weights per combination (others 1; none: ``[{}]``)."""
    options: dict[str, list[float]] = {}
    for part in (spec or "").split(";"):
        if not part.strip():
            continue
        name, _, values = part.partition("=")
        name = name.strip()
        if name not in names:
            raise InputError(f"{option} names {name!r}, not among --data ({list(names)})")
        try:
            vals = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise InputError(f"{option} {spec!r}: expected DIR=W[,W…][;DIR=W…]") from None
        if not vals or min(vals) <= 0:
            raise InputError(f"{option} {spec!r}: weights must be positive numbers")
        options[name] = vals
    keys = list(options)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(options[k] for k in keys))]


def parse_l2_grid(spec: str, option: str) -> list[float]:
    """``"1e-3,1e-2"`` → ``[0.001, 0.01]``: the L2 strengths a grid tries (at least one, none negative)."""
    try:
        grid = [float(v) for v in str(spec).split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{option} {spec!r}: expected numbers, e.g. 1e-3,1e-2") from None
    if not grid or min(grid) < 0:
        raise InputError(f"{option}: give at least one strength ≥ 0")
    return grid


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--refit-head",
        type=Path,
        metavar="MODEL.onnx",
        help="keep this exported text member's encoder (int8 included) and re-fit only its linear head on "
        "the pooled features it computes for the training rows; weights and L2 chosen on val by --select",
    )
    p.add_argument(
        "--refit-weights",
        metavar="DIR=W[,W…][;DIR=…]",
        help="with --refit-head: candidate weights of one dataset folder's training rows (others weigh 1), "
        "e.g. meld=1,2,3,5",
    )
    p.add_argument(
        "--refit-l2",
        metavar="L[,L…]",
        default=",".join(f"{v:g}" for v in L2_GRID),
        help=f"with --refit-head: candidate L2 strengths (default {','.join(f'{v:g}' for v in L2_GRID)})",
    )


# --- the command ---------------------------------------------------------------------------------


def batch1_outputs(sess: Any, ids: Sequence[np.ndarray], outputs: Sequence[str]) -> list[np.ndarray]:
    """``outputs`` for every sequence run alone, unpadded, as the app's TextScorer runs it.

    One at a time on purpose: an int8 graph quantises its activations with a
    scale taken from the whole batch, so a padded batch gives other features.
    """
    got: list[list[np.ndarray]] = [[] for _ in outputs]
    for seq in ids:
        x = np.asarray(seq, np.int64)[None]
        res = sess.run(list(outputs), {"input_ids": x, "attention_mask": np.ones_like(x)})
        for acc, r in zip(got, res, strict=True):
            acc.append(r[0])
    return [np.stack(a).astype(np.float32) for a in got]


def val_scores(sets: Sequence[Any], probs: Sequence[np.ndarray]) -> dict[str, dict[str, float]]:
    out = {}
    for s, p in zip(sets, probs, strict=True):
        m = compute_metrics(s.labels, p, bootstrap=0)
        out[s.name] = {"macro_f1": float(m["macro_f1"]), "weighted_f1": float(m["weighted_f1"])}
    return out


def run(args: argparse.Namespace) -> int:
    """Re-fit the head of ``args.refit_head`` and write ``args.out`` with its manifest and tokenizer."""
    import onnx
    from tokenizers import Tokenizer

    src: Path = args.refit_head
    if not src.is_file() or not src.with_suffix(".json").is_file():
        raise InputError(f"--refit-head {src}: needs the model and its manifest ({src.with_suffix('.json')})")
    man = ModelManifest.load(src.with_suffix(".json"))
    if man.modality != "text" or list(man.labels or ()) != list(LABELS) or not man.outputs:
        raise InputError(f"--refit-head {src}: not a text member with the 7 canonical labels")
    tok_file = man.companion_paths[0] if man.companion_paths else None
    if tok_file is None or not tok_file.is_file():
        raise InputError(f"--refit-head {src}: its tokenizer file is missing")
    l2_grid = parse_l2_grid(args.refit_l2, "--refit-l2")
    data: list[Path] = list(args.data) if args.data else default_data_dirs()
    for d in data:
        if not d.is_dir():
            raise InputError(f"--data {d}: no such folder (set EMODESK_DATA or pass --data DIR ...)")

    model = onnx.load(str(src))
    output = man.outputs[0].name
    head = find_head(model, output)
    if str(man.preprocessing.get("output", "probs")) != "logits":
        raise InputError(f"--refit-head {src}: its output is not logits (as `emodesk train text` exports)")
    tok = Tokenizer.from_file(str(tok_file))  # the member's own tokenizer, as the app runs it
    tok.no_padding()
    train_sets = load_text_splits(data, "train", tok, limit=args.limit, seed=args.seed)
    val_sets = load_text_splits(data, "val", tok, limit=args.limit, seed=args.seed)
    if args.train_rows:
        train_sets = subsample_train(train_sets, parse_train_rows(args.train_rows), args.seed)
    names = [s.name for s in val_sets]
    selection = Selection.parse(args.select, args.floor, names)
    grid_w = parse_weight_grid(args.refit_weights, names)
    threads = max(1, torch.get_num_threads())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td) / "pooled.onnx"
        onnx.save(with_pooled_output(model, head), str(tmp))
        sess = ort_session(tmp, threads)
        if not args.quiet:
            print(f"pooled features of {src.name} ({head.pooled}) for train and val rows…", file=sys.stderr)
        feats_tr = [batch1_outputs(sess, s.ids, [head.pooled])[0] for s in train_sets]
        val_pairs = [tuple(batch1_outputs(sess, s.ids, [head.pooled, output])) for s in val_sets]
        del sess
    x = np.vstack(feats_tr)
    y = np.concatenate([s.labels for s in train_sets])
    before = val_scores(val_sets, [softmax(o) for _, o in val_pairs])

    grid: list[dict[str, Any]] = []
    best: tuple[float, int] = (float("-inf"), -1)
    for weights in grid_w:
        w = np.concatenate([np.full(len(s.labels), weights.get(s.name, 1.0)) for s in train_sets])
        for l2 in l2_grid:
            wm, bm = fit_head(x, y, w, l2)
            scores = val_scores(val_sets, [softmax(f @ wm.T + bm) for f, _ in val_pairs])
            score = selection.score(scores)
            grid.append({"weights": weights, "l2": l2, "val": scores, "selection_score": score})
            if not args.quiet:
                vals = "  ".join(
                    f"{n} mF1 {v['macro_f1']:.4f} wF1 {v['weighted_f1']:.4f}" for n, v in scores.items()
                )
                print(f"weights {weights or 'all 1'} l2 {l2:g}: {vals}", file=sys.stderr)
            if score > best[0]:
                best = (score, len(grid) - 1)
    if best[1] < 0:
        raise EmodeskError(f"no setting met the floors ({selection.describe()}); nothing exported")
    chosen = grid[best[1]]
    w = np.concatenate([np.full(len(s.labels), chosen["weights"].get(s.name, 1.0)) for s in train_sets])
    wm, bm = fit_head(x, y, w, chosen["l2"])
    new = replace_head(model, head, wm, bm)
    onnx.save(new, str(args.out))

    # The written graph computes what was selected: its outputs on val against pooled @ W + b.
    sess = ort_session(args.out, threads)
    diff = 0.0
    for s, (f, _) in zip(val_sets, val_pairs, strict=True):
        pick = np.arange(min(64, len(s.ids)))
        got = batch1_outputs(sess, [s.ids[i] for i in pick], [output])[0]
        ref = softmax(f[pick] @ wm.T + bm)
        diff = max(diff, float(np.max(np.abs(softmax(got) - ref))))
    if diff > 1e-3:
        raise EmodeskError(f"{args.out}: the written head disagrees with the fitted one by {diff:.2e}")

    tok_out = args.out.with_name(f"{args.out.stem}.tokenizer.json")
    if tok_out.resolve() != tok_file.resolve():
        shutil.copyfile(tok_file, tok_out)
    test_sets = load_text_splits(data, "test", tok, limit=args.limit, seed=args.seed)
    metrics = {
        record_name(s): compute_metrics(s.labels, softmax(batch1_outputs(sess, s.ids, [output])[0]))
        for s in test_sets
    }
    sample = [t for s in test_sets for t in s.texts]
    pick = np.random.default_rng(args.seed).permutation(len(sample))[:200]
    per_sentence = seconds_per_sentence(args.out, tok, [sample[i] for i in pick])

    raw: dict[str, Any] = json.loads(src.with_suffix(".json").read_text(encoding="utf-8"))
    source = dict(raw.get("source", {}))
    kinds = {s.kind for s in train_sets}
    prior = source.get("head_refit", {}).get("base_model")  # a re-fit of a re-fit: keep the first base
    adapted = source.pop("fine_tuned", None)  # `emodesk retrain`'s output layer is part of the old head
    source.update(
        {
            "data": data_lines(data, train_sets, val_sets, test_sets),
            "architecture": str(source.get("architecture", "")).split("; head re-fitted")[0]
            + "; head re-fitted on the frozen exported encoder's pooled features (float32 linear layer)",
            "head_refit": {
                "base_model": prior
                or {"file": src.name, "sha256": sha256_file(src), "command": source.get("command")},
                "method": "softmax regression on standardised pooled features, L-BFGS, weighted mean "
                "cross-entropy + L2 ‖W‖²; standardisation folded into the layer",
                "selection": selection.describe(),
                "val_before": before,
                "grid": grid,
                "chosen": {"weights": chosen["weights"], "l2": chosen["l2"], "val": chosen["val"]},
                "train_rows": {s.name: len(s.labels) for s in train_sets},
                "onnx_vs_fit_max_abs_diff": diff,
                **({"replaced_session_adaptation": adapted} if adapted else {}),
            },
            "weights": f"{source.get('weights', 'fp32')} encoder, float32 head",
            "seconds_per_sentence_cpu1": per_sentence,
            "timing_cpu": cpu_name(),
            "command": command_line(),
        }
    )
    draft = ManifestDraft.from_dict(raw)
    fields = replace(
        draft,
        id=args.out.stem,
        preprocessing={**draft.preprocessing, "tokenizer": tok_out.name},
        source=source,
        metrics=metrics,
        license=license_text(kinds),
        usage=usage_note(kinds),
        created=None,
    )
    write_manifest(args.out, fields)
    check_in_app(args.out, sess, tok, sample[0])
    if not args.quiet:
        print(f"\n{args.out}: chosen weights {chosen['weights'] or 'all 1'}, l2 {chosen['l2']:g}")
        for name, m in metrics.items():
            print(
                f"{name:28s} n {m['n']:6d}  accuracy {m['accuracy']:.4f}  macro_f1 {m['macro_f1']:.4f}  "
                f"weighted_f1 {m['weighted_f1']:.4f}"
            )
    return 0
