"""A second text member: TF-IDF over token n-grams and a linear classifier, featurised inside ONNX.

``emodesk train text --arch ngram --out models/text-ngram.onnx``. The
fine-tuned MiniLM reads a sentence as a whole; this member counts which
word pieces and word-piece pairs (and triples) occur, weighs them by
TF-IDF and scores them with a multinomial logistic regression. The two
disagree usefully: the lexical model keeps a memory of every phrase the
training dialogues used ("oh my god", "what?!"), which a six-layer encoder
fine-tuned on mostly GoEmotions smooths over.

The whole featurisation lives in the exported graph, so the member takes the
same inputs as the MiniLM one (``input_ids``, ``attention_mask`` of the same
WordPiece tokenizer) and the app needs no code of its own for it:

- n-gram keys: a unigram's key is its token id; a bigram's ``V + a·V + b``; a
  trigram's ``V + V² + (a·V + b)·V + c`` (``V`` the vocabulary size), over
  every token the mask keeps, [CLS] and [SEP] included (so the first and
  last words are features of their own);
- ``ai.onnx.ml.LabelEncoder`` maps a key to its column (unknown: a dummy
  column whose IDF is 0);
- ``ScatterElements(reduction="add")`` counts the columns per sentence;
- sublinear TF (1 + ln count) × IDF (ln((1 + N)/(1 + df)) + 1), L2-normalised,
  then ``MatMul`` with the weights (int8 per class when that keeps the val
  macro-F1 within 0.5 points).

Training is convex (L-BFGS on the sparse features, no seed): the data weight
of each dataset and the L2 strength are chosen by a grid on the val splits.
``--companion`` (default: the one installed text member, ``text-minilm``) makes the grid
select on what the app will show — the equal-weight fusion of both text
members, as ``eval``'s ``modality:text`` — instead of this member alone.
Test splits are scored once, on the exported file.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emodesk.errors import EmodeskError, InputError
from emodesk.evaluation.metrics import compute_metrics
from emodesk.inference.manifest import ManifestDraft, ModelManifest
from emodesk.lab.train.common import command_line, torch, write_manifest
from emodesk.lab.train.text.data import (
    INFERENCE_MAX_LENGTH,
    Selection,
    TextSplit,
    default_data_dirs,
    load_text_splits,
    parse_train_rows,
    subsample_train,
)
from emodesk.lab.train.text.exported import (
    check_in_app,
    data_lines,
    license_text,
    onnx_logits,
    ort_session,
    record_name,
    seconds_per_sentence,
    softmax,
    usage_note,
)
from emodesk.lab.train.text.head import parse_l2_grid, parse_weight_grid, val_scores
from emodesk.lab.train.text.minilm import tokenizer_from_file
from emodesk.labels import LABELS, N_LABELS
from emodesk.machine import cpu_name
from emodesk.resources import sha256_file

DEFAULT_NGRAM = 2
DEFAULT_MIN_DF = 2
L2_GRID = (3e-7, 1e-6, 3e-6, 1e-5)
INT8_MAX_DROP = 0.005
ML_DOMAIN = "ai.onnx.ml"
OPSET = 17
TOKENIZER_LICENSE = (
    "Tokenizer: the WordPiece vocabulary of sentence-transformers/all-MiniLM-L6-v2, Apache-2.0."
)


# --- features ------------------------------------------------------------------------------------


def ngram_keys(ids: np.ndarray, vocab_size: int, n: int) -> np.ndarray:
    """The keys of every 1..n-gram of one token sequence (the ONNX graph computes the same)."""
    ids = np.asarray(ids, np.int64)
    v = np.int64(vocab_size)
    parts = []
    offset = np.int64(0)
    for k in range(1, n + 1):
        if len(ids) < k:
            break
        key = ids[: len(ids) - k + 1].copy()
        for j in range(1, k):
            key = key * v + ids[j : len(ids) - k + 1 + j]
        parts.append(key + offset)
        offset = offset + v**k
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


@dataclass(frozen=True)
class NgramVocabulary:
    """The kept n-gram keys (sorted), their IDF, and how they were counted."""

    keys: np.ndarray  # (F,) int64, sorted
    idf: np.ndarray  # (F,) float64
    vocab_size: int
    n: int

    @classmethod
    def fit(cls, seqs: Sequence[np.ndarray], vocab_size: int, n: int, min_df: int) -> NgramVocabulary:
        if len(seqs) == 0:
            raise InputError("no training rows to build the n-gram vocabulary from")
        per_doc = [np.unique(ngram_keys(s, vocab_size, n)) for s in seqs]
        keys, df = np.unique(np.concatenate(per_doc), return_counts=True)
        keep = df >= min_df
        keys, df = keys[keep], df[keep]
        if len(keys) == 0:
            raise InputError(f"no n-gram occurs in {min_df} or more training rows; lower --min-df")
        idf = np.log((1.0 + len(seqs)) / (1.0 + df)) + 1.0
        return cls(keys, idf, vocab_size, n)

    def __len__(self) -> int:
        return len(self.keys)

    def transform(self, seqs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR arrays (indptr, columns, values) of the L2-normalised sublinear TF-IDF rows."""
        indptr = [0]
        cols: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        for s in seqs:
            k, c = np.unique(ngram_keys(s, self.vocab_size, self.n), return_counts=True)
            pos = np.searchsorted(self.keys, k)
            pos = np.minimum(pos, len(self.keys) - 1)
            hit = self.keys[pos] == k
            col = pos[hit]
            x = (1.0 + np.log(c[hit])) * self.idf[col]
            norm = np.sqrt(np.sum(x * x))
            cols.append(col)
            vals.append(x / norm if norm > 0 else x)
            indptr.append(indptr[-1] + len(col))
        empty = np.zeros(0)
        return (
            np.asarray(indptr, np.int64),
            np.concatenate(cols).astype(np.int64) if cols else empty.astype(np.int64),
            np.concatenate(vals) if vals else empty,
        )


def _csr(csr: tuple[np.ndarray, np.ndarray, np.ndarray], n_cols: int) -> tuple[Any, Any]:
    """The rows as a torch CSR matrix, and its transpose (for the gradient), float64."""
    indptr, cols, vals = csr
    n_rows = len(indptr) - 1
    with (
        warnings.catch_warnings()
    ):  # "sparse CSR support is in beta": matmul with a dense matrix is all we use
        warnings.simplefilter("ignore", UserWarning)
        x = torch.sparse_csr_tensor(
            torch.as_tensor(indptr),
            torch.as_tensor(cols),
            torch.as_tensor(vals),
            (n_rows, n_cols),
            check_invariants=True,
        )
    rows = np.repeat(np.arange(n_rows), np.diff(indptr))
    order = np.lexsort((rows, cols))
    t_indptr = np.concatenate([[0], np.cumsum(np.bincount(cols, minlength=n_cols))])
    xt = torch.sparse_csr_tensor(
        torch.as_tensor(t_indptr),
        torch.as_tensor(rows[order]),
        torch.as_tensor(vals[order]),
        (n_cols, n_rows),
        check_invariants=True,
    )
    return x, xt


def fit_linear(
    csr: tuple[np.ndarray, np.ndarray, np.ndarray],
    n_cols: int,
    y: np.ndarray,
    row_weight: np.ndarray,
    l2: float,
    max_iter: int = 1000,
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax regression on sparse rows: ``W (F, 7)``, ``b (7,)``.

    Minimises the weighted mean cross-entropy + ``l2`` ‖W‖² with L-BFGS
    (deterministic); the caller's row weights already balance the classes.
    The gradient is written out (``Xᵀ (P − Y)``) rather than taken through
    a sparse product, which is several times faster on the CPU.
    """
    x, xt = _csr(csr, n_cols)
    yt = torch.as_tensor(np.asarray(y, np.int64))
    onehot = torch.nn.functional.one_hot(yt, N_LABELS).double()
    wt = torch.as_tensor(np.asarray(row_weight, np.float64))
    wt = (wt / wt.sum())[:, None]
    wm = torch.zeros((n_cols, N_LABELS), dtype=torch.float64, requires_grad=True)
    bm = torch.zeros(N_LABELS, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [wm, bm],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-8,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Any:
        with torch.no_grad():
            logits = x @ wm + bm
            logp = torch.log_softmax(logits, dim=1)
            loss = -(wt * onehot * logp).sum() + l2 * (wm**2).sum()
            g = wt * (logp.exp() - onehot)
            wm.grad = xt @ g + 2 * l2 * wm
            bm.grad = g.sum(dim=0)
        return loss

    opt.step(closure)
    return wm.detach().numpy(), bm.detach().numpy()


def balanced_row_weights(labels: np.ndarray, data_weight: np.ndarray) -> np.ndarray:
    """``data_weight`` times a class weight that gives every present class the same total weight."""
    tot = np.bincount(labels, weights=data_weight, minlength=N_LABELS)
    present = tot > 0
    cw = np.where(present, data_weight.sum() / (present.sum() * np.maximum(tot, 1e-12)), 0.0)
    return data_weight * cw[labels]


# --- the ONNX graph ------------------------------------------------------------------------------


def _quantize_columns(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per class (column): ``w ≈ q * scale``."""
    scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / 127.0
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def build_graph(vocab: NgramVocabulary, w: np.ndarray, b: np.ndarray, *, int8: bool) -> Any:
    """The member as one ONNX graph: token ids + mask in, logits out (see the module docstring)."""
    from onnx import TensorProto, helper, numpy_helper

    f = len(vocab)
    v = vocab.vocab_size
    nodes: list[Any] = []
    inits: list[Any] = []

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(op: str, ins: Sequence[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, list(ins), [out], name=out, **attrs))
        return out

    const("V", np.array(v, np.int64))
    const("one_i", np.array([1], np.int64))
    const("zero_i", np.array([0], np.int64))
    const("axis1", np.array([1], np.int64))
    const("big", np.array([np.iinfo(np.int64).max], np.int64))
    shape = node("Shape", ["input_ids"], "shape")
    seq_len = node("Slice", [shape, "one_i", "big"], "seq_len")
    keys, valid = [], []
    offset = 0
    for k in range(1, vocab.n + 1):
        # the j-th token of every k-gram: columns j .. S-k+j
        key = ""
        m = ""
        for j in range(k):
            end = node(
                "Add", [seq_len, const(f"endoff{k}_{j}", np.array([j - k + 1], np.int64))], f"end{k}_{j}"
            )
            beg = const(f"beg{k}_{j}", np.array([j], np.int64))
            ids_j = node("Slice", ["input_ids", beg, end, "axis1"], f"ids{k}_{j}")
            m_j = node("Slice", ["attention_mask", beg, end, "axis1"], f"mask{k}_{j}")
            key = (
                ids_j
                if j == 0
                else node("Add", [node("Mul", [key, "V"], f"kv{k}_{j}"), ids_j], f"key{k}_{j}")
            )
            m = m_j if j == 0 else node("Mul", [m, m_j], f"m{k}_{j}")
        if offset:
            key = node("Add", [key, const(f"off{k}", np.array(offset, np.int64))], f"key{k}")
        keys.append(key)
        valid.append(m)
        offset += v**k
    all_keys = node("Concat", keys, "keys", axis=1) if len(keys) > 1 else keys[0]
    all_valid = node("Concat", valid, "valid", axis=1) if len(valid) > 1 else valid[0]
    col = node(
        "LabelEncoder",
        [all_keys],
        "col_raw",
        domain=ML_DOMAIN,
        keys_int64s=[int(k) for k in vocab.keys],
        values_int64s=list(range(f)),
        default_int64=f,
    )
    is_valid = node("Cast", [all_valid], "is_valid", to=TensorProto.BOOL)
    col = node("Where", [is_valid, col, const("dummy", np.array(f, np.int64))], "col")
    batch = node("Slice", [shape, "zero_i", "one_i"], "batch")
    dense_shape = node("Concat", [batch, const("n_cols", np.array([f + 1], np.int64))], "dense_shape", axis=0)
    zeros = node(
        "ConstantOfShape", [dense_shape], "zeros", value=numpy_helper.from_array(np.zeros(1, np.float32))
    )
    ones = node(
        "ConstantOfShape",
        [node("Shape", [col], "col_shape")],
        "ones",
        value=numpy_helper.from_array(np.ones(1, np.float32)),
    )
    counts = node("ScatterElements", [zeros, col, ones], "counts", axis=1, reduction="add")
    present = node("Greater", [counts, const("zero_f", np.array(0.0, np.float32))], "present")
    safe = node("Max", [counts, const("one_f", np.array(1.0, np.float32))], "safe_counts")
    tf = node("Add", [node("Log", [safe], "log_counts"), "one_f"], "tf_present")
    tf = node("Where", [present, tf, "zero_f"], "tf")
    idf = np.concatenate([vocab.idf, [0.0]]).astype(np.float32)
    x = node("Mul", [tf, const("idf", idf[None, :])], "tfidf")
    norm = node(
        "Sqrt", [node("ReduceSum", [node("Mul", [x, x], "sq"), "axis1"], "sumsq", keepdims=1)], "norm"
    )
    x = node(
        "Div", [x, node("Max", [norm, const("eps", np.array(1e-12, np.float32))], "norm_safe")], "features"
    )
    w_full = np.vstack([w, np.zeros((1, N_LABELS))])
    if int8:
        q, scale = _quantize_columns(w_full)
        wname = node(
            "DequantizeLinear",
            [const("W_q", q), const("W_scale", scale), const("W_zero", np.zeros(N_LABELS, np.int8))],
            "W",
            axis=1,
        )
    else:
        wname = const("W", w_full.astype(np.float32))
    mm = node("MatMul", [x, wname], "mm")
    nodes.append(helper.make_node("Add", [mm, const("b", b.astype(np.float32))], ["logits"], name="logits"))
    graph = helper.make_graph(
        nodes,
        "emodesk-text-ngram",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", N_LABELS])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(ML_DOMAIN, 2)],
        producer_name="emodesk",
    )
    model.ir_version = 8
    import onnx

    onnx.checker.check_model(model)
    return model


# --- the command ---------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ngram",
        type=int,
        default=DEFAULT_NGRAM,
        help=f"with --arch ngram: longest n-gram (default {DEFAULT_NGRAM})",
    )
    p.add_argument(
        "--min-df",
        type=int,
        default=DEFAULT_MIN_DF,
        help="with --arch ngram: keep n-grams found in at least this many training rows "
        f"(default {DEFAULT_MIN_DF})",
    )
    p.add_argument(
        "--ngram-weights",
        metavar="DIR=W[,W…][;DIR=…]",
        help="with --arch ngram: candidate weights of one dataset folder's training rows (others weigh 1), "
        "e.g. meld=3,6",
    )
    p.add_argument(
        "--ngram-l2",
        metavar="L[,L…]",
        default=",".join(f"{v:g}" for v in L2_GRID),
        help=f"with --arch ngram: candidate L2 strengths (default {','.join(f'{v:g}' for v in L2_GRID)})",
    )
    p.add_argument(
        "--companion",
        metavar="MODEL.onnx|none",
        help="with --arch ngram: select on the equal-weight fusion with this text member's val scores "
        "(default: the installed text member, when there is one); none: on this member alone",
    )
    p.add_argument(
        "--tokenizer",
        type=Path,
        metavar="FILE.json",
        help="with --arch ngram: the WordPiece tokenizer (default: the companion's)",
    )


def _companion(spec: str | None) -> ModelManifest | None:
    if spec is not None and spec.lower() == "none":
        return None
    if spec is None:  # the installed text member, when there is exactly one
        from emodesk.inference.registry import models_of

        members = models_of("text")
        if len(members) != 1:
            found = ", ".join(sorted(m.id for m in members)) or "none"
            raise InputError(
                f"no --companion given and {len(members)} text members installed ({found}); "
                "pass --companion MODEL.onnx or none"
            )
        return members[0]
    path = Path(spec)
    if not path.is_file() or not path.with_suffix(".json").is_file():
        raise InputError(
            f"--companion {spec}: needs the model and its manifest ({path.with_suffix('.json')})"
        )
    man = ModelManifest.load(path.with_suffix(".json"))
    if man.modality != "text":
        raise InputError(f"--companion {spec}: a {man.modality} model, not a text member")
    return man


def _companion_probs(man: ModelManifest, sets: Sequence[TextSplit], tokenizer_file: Path) -> list[np.ndarray]:
    """The companion's probabilities for every row, one sentence at a time as the app runs it."""
    from tokenizers import Tokenizer

    from emodesk.inference.utterance_scorers import TextScorer

    own = man.companion_paths[0] if man.companion_paths else None
    if (
        own is None
        or Tokenizer.from_file(str(own)).get_vocab() != Tokenizer.from_file(str(tokenizer_file)).get_vocab()
    ):
        raise InputError(
            f"--companion {man.id}: its tokenizer has another vocabulary than --tokenizer {tokenizer_file}"
        )
    scorer = TextScorer.load(man, device="cpu")
    return [np.stack([scorer.score(t) for t in s.texts]) for s in sets]


def run(args: argparse.Namespace) -> int:
    """Build the vocabulary, choose data weight and L2 on val, export ``args.out`` with its manifest."""
    import onnx

    if args.ngram < 1 or args.ngram > 3 or args.min_df < 1:
        raise InputError("--ngram must be 1, 2 or 3 and --min-df ≥ 1")
    if args.resume or args.export_only or args.init_from is not None or args.refit_head is not None:
        raise InputError(
            "--arch ngram trains in one go: drop --resume, --export-only, --init-from, --refit-head"
        )
    l2_grid = parse_l2_grid(args.ngram_l2, "--ngram-l2")
    companion = _companion(args.companion)
    tok_file: Path | None = args.tokenizer
    if tok_file is None:
        if companion is None or not companion.companion_paths:
            raise InputError("--arch ngram needs --tokenizer FILE.json (or a --companion with its tokenizer)")
        tok_file = companion.companion_paths[0]
    if not tok_file.is_file():
        raise InputError(f"--tokenizer {tok_file}: no such file")
    data: list[Path] = list(args.data) if args.data else default_data_dirs()
    for d in data:
        if not d.is_dir():
            raise InputError(f"--data {d}: no such folder (set EMODESK_DATA or pass --data DIR ...)")
    tok = tokenizer_from_file(tok_file, INFERENCE_MAX_LENGTH)  # what the app's TextScorer feeds the member
    vocab_size = tok.get_vocab_size()
    train_sets = load_text_splits(data, "train", tok, limit=args.limit, seed=args.seed)
    val_sets = load_text_splits(data, "val", tok, limit=args.limit, seed=args.seed)
    if args.train_rows:
        train_sets = subsample_train(train_sets, parse_train_rows(args.train_rows), args.seed)
    names = [s.name for s in val_sets]
    selection = Selection.parse(args.select, args.floor, names)
    grid_w = parse_weight_grid(args.ngram_weights, names, option="--ngram-weights")
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))

    t0 = time.perf_counter()
    train_ids = [x for s in train_sets for x in s.ids]
    vocab = NgramVocabulary.fit(train_ids, vocab_size, args.ngram, args.min_df)
    x_train = vocab.transform(train_ids)
    x_val = [vocab.transform(s.ids) for s in val_sets]
    y = np.concatenate([s.labels for s in train_sets])
    say(f"{len(vocab)} n-grams (n ≤ {args.ngram}, in ≥ {args.min_df} rows) from {len(y)} training rows")
    comp_val = _companion_probs(companion, val_sets, tok_file) if companion is not None else None
    if comp_val is not None:
        say(f"companion {companion.id if companion else ''}: {val_scores(val_sets, comp_val)}")

    def member_val(w: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
        return [softmax(_csr_logits(xv, w, b)) for xv in x_val]

    def judged(probs: list[np.ndarray]) -> list[np.ndarray]:
        return probs if comp_val is None else [(p + c) / 2 for p, c in zip(probs, comp_val, strict=True)]

    grid: list[dict[str, Any]] = []
    best: tuple[float, int, Any] = (float("-inf"), -1, None)
    for weights in grid_w:
        dw = np.concatenate([np.full(len(s.labels), weights.get(s.name, 1.0)) for s in train_sets])
        rw = balanced_row_weights(y, dw)
        for l2 in l2_grid:
            t = time.perf_counter()
            w, b = fit_linear(x_train, len(vocab), y, rw, l2)
            probs = member_val(w, b)
            own, fused = val_scores(val_sets, probs), val_scores(val_sets, judged(probs))
            score = selection.score(fused)
            grid.append(
                {"weights": weights, "l2": l2, "val": own, "val_judged": fused, "selection_score": score}
            )
            say(
                f"weights {weights or 'all 1'} l2 {l2:g} ({time.perf_counter() - t:.0f} s): "
                + "  ".join(
                    f"{n} mF1 {own[n]['macro_f1']:.4f}/{fused[n]['macro_f1']:.4f} "
                    f"wF1 {own[n]['weighted_f1']:.4f}/{fused[n]['weighted_f1']:.4f}"
                    for n in names
                )
                + ("  (member/fused)" if comp_val is not None else "")
            )
            if score > best[0]:
                best = (score, len(grid) - 1, (w, b))
    if best[1] < 0:
        raise EmodeskError(f"no setting met the floors ({selection.describe()}); nothing exported")
    chosen = grid[best[1]]
    w, b = best[2]
    fit_s = time.perf_counter() - t0

    # Export: float32, and int8 weights when the member's mean val macro-F1 stays within 0.5 points.
    args.out.parent.mkdir(parents=True, exist_ok=True)
    threads = max(1, torch.get_num_threads())
    variants: dict[str, dict[str, float]] = {}
    diff = 0.0
    graphs = {}
    for kind in ("fp32", "int8"):
        if kind == "int8" and args.no_quantize:
            continue
        graphs[kind] = build_graph(vocab, w, b, int8=kind == "int8")
        path = args.out.with_name(f".{args.out.stem}.{kind}.onnx")
        onnx.save(graphs[kind], str(path))
        sess = ort_session(path, threads)
        got = [onnx_logits(sess, s.ids) for s in val_sets]
        if kind == "fp32":  # the graph computes the fitted model: padded batches against the numpy features
            ref = [_csr_logits(xv, w, b) for xv in x_val]
            diff = max(float(np.max(np.abs(g - r))) for g, r in zip(got, ref, strict=True))
            if diff > 1e-3:
                raise EmodeskError(f"{path}: the ONNX graph disagrees with the fitted model by {diff:.2e}")
        f1 = {n: v["macro_f1"] for n, v in val_scores(val_sets, [softmax(g) for g in got]).items()}
        f1["mean"] = float(np.mean(list(f1.values())))
        variants[kind] = f1
        del sess
    weights_kind = "fp32"
    if "int8" in variants and (
        args.force_int8 or variants["fp32"]["mean"] - variants["int8"]["mean"] <= INT8_MAX_DROP
    ):
        weights_kind = "int8"
    for kind in graphs:
        tmp = args.out.with_name(f".{args.out.stem}.{kind}.onnx")
        if kind == weights_kind:
            shutil.move(str(tmp), str(args.out))
        else:
            tmp.unlink()

    tok_out = args.out.with_name(f"{args.out.stem}.tokenizer.json")
    if tok_out.resolve() != tok_file.resolve():
        shutil.copyfile(tok_file, tok_out)
    shipped_tok = tokenizer_from_file(tok_out, INFERENCE_MAX_LENGTH)
    test_sets = load_text_splits(data, "test", shipped_tok, limit=args.limit, seed=args.seed)
    sess = ort_session(args.out, threads)
    metrics: dict[str, Any] = {
        record_name(s): compute_metrics(s.labels, softmax(onnx_logits(sess, s.ids))) for s in test_sets
    }
    sample = [t for s in test_sets for t in s.texts]
    pick = np.random.default_rng(args.seed).permutation(len(sample))[:200]
    per_sentence = seconds_per_sentence(args.out, shipped_tok, [sample[i] for i in pick])

    kinds = {s.kind for s in train_sets}
    fields = ManifestDraft(
        id=args.out.stem,
        modality="text",
        outputs=[{"name": "logits", "shape": ["batch", N_LABELS], "dtype": "float32"}],
        labels=list(LABELS),
        preprocessing={"tokenizer": tok_out.name, "max_length": INFERENCE_MAX_LENGTH, "output": "logits"},
        source={
            "data": data_lines(data, train_sets, val_sets, test_sets),
            "protocol": "train on the datasets' train splits (MELD: its train file minus a dialogue-level "
            "10% val); data weight and L2 chosen on their val splits; test sets scored once, on the "
            "exported file",
            "architecture": f"TF-IDF over WordPiece 1..{args.ngram}-grams ([CLS]/[SEP] included; kept "
            f"when in ≥ {args.min_df} training rows; sublinear TF, smoothed IDF, L2 norm) → multinomial "
            "logistic regression; featurised inside the ONNX graph (emodesk/lab/train/text/ngram.py)",
            "tokenizer": {"file": tok_out.name, "from": str(tok_file.name), "sha256": sha256_file(tok_out)},
            "n_features": len(vocab),
            "top_features": top_features(vocab, w, shipped_tok),
            "training": {
                "method": "softmax regression, L-BFGS (deterministic), weighted mean cross-entropy + "
                "L2 ‖W‖²; row weight = dataset weight × a class weight giving every class the same total",
                "selection": selection.describe()
                + (
                    f", of the equal-weight fusion with {companion.id} (sha256 {companion.sha256[:12]}…) "
                    "as eval's modality:text"
                    if companion is not None
                    else ", of this member alone"
                ),
                "grid": grid,
                "chosen": {k: chosen[k] for k in ("weights", "l2", "val", "val_judged")},
                "train_rows": {s.name: len(s.labels) for s in train_sets},
                "rows_per_split_limit": args.limit,
                "seconds": round(fit_s, 1),
                **({"companion": {"id": companion.id, "sha256": companion.sha256}} if companion else {}),
            },
            "weights": weights_kind,
            "quantization": {
                "val_macro_f1": variants,
                "onnx_vs_fit_max_abs_diff": diff,
                "shipped": weights_kind,
                "rule": "int8 weights (symmetric, per class) when the mean val macro-F1 drops ≤ 0.005"
                + ("; overridden by --force-int8" if args.force_int8 else ""),
            },
            "seconds_per_sentence_cpu1": per_sentence,
            "timing_cpu": cpu_name(),
            "command": command_line(),
            "seed": args.seed,
        },
        license=license_text(kinds, TOKENIZER_LICENSE),
        usage=usage_note(kinds),
        metrics=metrics,
        requires={},
    )
    write_manifest(args.out, fields)
    check_in_app(args.out, sess, shipped_tok, sample[0])
    if not args.quiet:
        size = args.out.stat().st_size / 1e6
        print(
            f"\n{args.out} ({weights_kind}, {size:.1f} MB, {len(vocab)} n-grams): chosen weights "
            f"{chosen['weights'] or 'all 1'}, l2 {chosen['l2']:g}; {per_sentence * 1000:.2f} ms per sentence"
        )
        for name, m in metrics.items():
            print(
                f"{name:28s} n {m['n']:6d}  accuracy {m['accuracy']:.4f}  macro_f1 {m['macro_f1']:.4f}  "
                f"weighted_f1 {m['weighted_f1']:.4f}"
            )
    return 0


def top_features(vocab: NgramVocabulary, w: np.ndarray, tokenizer: Any, k: int = 12) -> dict[str, list[str]]:
    """The ``k`` n-grams that push each class up most, as text: what the member learned, for review.

    A lexical member memorises its corpus: trained on MELD (the TV series
    Friends), the characters' names get weights of their own;
    ``emodesk/lab/studies/text_ngram/name_probe.py`` measures what a name does to the read-out.
    """

    def text(key: int) -> str:
        parts = []
        order, offset = 1, 0
        while key - offset >= vocab.vocab_size**order:
            offset += vocab.vocab_size**order
            order += 1
        rest = key - offset
        for _ in range(order):
            rest, t = divmod(rest, vocab.vocab_size)
            parts.append(tokenizer.id_to_token(int(t)) or f"<{t}>")
        return " ".join(reversed(parts))

    return {
        label: [text(int(vocab.keys[i])) for i in np.argsort(-w[:, c], kind="stable")[:k]]
        for c, label in enumerate(LABELS)
    }


def _csr_logits(csr: tuple[np.ndarray, np.ndarray, np.ndarray], w: np.ndarray, b: np.ndarray) -> np.ndarray:
    indptr, cols, vals = csr
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    out = np.tile(b.astype(np.float64), (len(indptr) - 1, 1))
    np.add.at(out, rows, vals[:, None] * w[cols])
    return out
