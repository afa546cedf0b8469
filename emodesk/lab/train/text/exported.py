"""What the text trainers share about an exported member: its ONNX Runtime session and logits, its
speed at batch 1, the license, usage and data lines of its manifest, and the check that the app
loads it (manifest → ``TextScorer``) and scores as the export does."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emodesk.errors import EmodeskError
from emodesk.lab.train.text.data import DATA_DESCRIPTIONS, EVAL_BATCH, TextSplit, pad_batch, pad_types
from emodesk.labels import N_LABELS


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def ort_session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def onnx_logits(
    sess: Any, ids: Sequence[np.ndarray], types: Sequence[np.ndarray] | None = None
) -> np.ndarray:
    """The exported model's outputs for every sequence, batched by length (``types``: token types,
    for a member that reads context)."""
    order = np.argsort([len(s) for s in ids], kind="stable")
    out = np.zeros((len(ids), N_LABELS), dtype=np.float32)
    for i in range(0, len(order), EVAL_BATCH):
        b = order[i : i + EVAL_BATCH]
        x, m = pad_batch([ids[j] for j in b])
        feeds = {"input_ids": x, "attention_mask": m}
        if types is not None:
            feeds["token_type_ids"] = pad_types([types[j] for j in b])
        out[b] = sess.run(None, feeds)[0]
    return out


def seconds_per_sentence(
    path: Path,
    tokenizer: Any,
    texts: Sequence[str],
    contexts: Sequence[Sequence[str]] | None = None,
    *,
    max_current: int = 0,
    max_length: int = 0,
) -> float:
    """Median wall time of tokenize + run for one sentence, batch 1, one CPU thread (as in the app).
    With ``contexts`` (earlier utterances per text, most recent first) it is timed as a context member
    reads it, with :func:`~emodesk.inference.utterance_scorers.encode_with_context`."""
    from emodesk.inference.utterance_scorers import encode_with_context

    sess = ort_session(path, 1)
    n_context = max((len(c) for c in contexts), default=0) if contexts is not None else 0

    def one(k: int) -> None:
        if contexts is None:
            e = tokenizer.encode(texts[k])
            ids, types = e.ids, None
        else:
            ids, types, _ = encode_with_context(
                tokenizer,
                texts[k],
                contexts[k],
                n_context=n_context,
                max_current=max_current,
                max_length=max_length,
            )
        feeds = {"input_ids": np.asarray([ids], np.int64), "attention_mask": np.ones((1, len(ids)), np.int64)}
        if types is not None:
            feeds["token_type_ids"] = np.asarray([types], np.int64)
        sess.run(None, feeds)

    for k in range(min(5, len(texts))):  # warm-up
        one(k)
    times = []
    for k in range(len(texts)):
        t0 = time.perf_counter()
        one(k)
        times.append(time.perf_counter() - t0)
    return float(statistics.median(times))


MINILM_LICENSE = "Encoder: sentence-transformers/all-MiniLM-L6-v2, Apache-2.0."


def license_text(kinds: set[str], model_line: str = MINILM_LICENSE) -> str:
    """The manifest's ``license``: the code, what the model is built from (``model_line``), the data."""
    parts = ["Code: Apache-2.0 (emodesk).", model_line]
    if "goemotions" in kinds:
        parts.append("Training data: GoEmotions, Apache-2.0 (Demszky et al. 2020).")
    if "meld" in kinds:
        parts.append(
            "Training data: MELD, GPL-3.0 (Poria et al. 2019); weights trained on MELD may carry "
            "GPL-3.0 obligations: check before distributing them under other terms."
        )
    if "dair-ai" in kinds:
        parts.append(
            "Training data: dair-ai/emotion, research and educational use only (Saravia et al. 2018); "
            "weights trained on it are not for commercial use."
        )
    return " ".join(parts)


def usage_note(kinds: set[str]) -> str:
    """The restriction the window shows (empty: none beyond the license)."""
    notes = []
    if "meld" in kinds:
        notes.append("trained on MELD (GPL-3.0): GPL-3.0 obligations may apply to these weights")
    if "dair-ai" in kinds:
        notes.append("trained on dair-ai/emotion: research and educational use only")
    return "; ".join(notes)


def _data_source(d: Path) -> str:
    """The folder relative to the shared datasets root when it lies there (no machine paths)."""
    try:
        from emodesk.resources import datasets_dir

        return f"../shared/datasets/{d.resolve().relative_to(datasets_dir().resolve()).as_posix()}"
    except (ImportError, ValueError):
        return d.name


_TEST_NAMES = {"goemotions": "goemotions-test", "meld": "meld-dev", "dair-ai": "dair-ai-test"}


def data_lines(
    data: Sequence[Path],
    train_sets: Sequence[TextSplit],
    val_sets: Sequence[TextSplit],
    test_sets: Sequence[TextSplit],
) -> list[str]:
    """The manifest's ``source.data``: each dataset, where it came from, and its rows per split."""
    return [
        f"{DATA_DESCRIPTIONS[t.kind]}: {_data_source(d)}, rows train {len(t.texts)} / val {len(v.texts)} / "
        f"test {len(s.texts)}"
        for d, t, v, s in zip(data, train_sets, val_sets, test_sets, strict=True)
    ]


def record_name(s: TextSplit) -> str:
    """The name ``eval text --record`` uses for the same test split, so a re-record replaces it."""
    return _TEST_NAMES.get(s.kind, f"{s.name}-test")


def check_in_app(
    out: Path, sess: Any, tokenizer: Any, text: str, *, split: TextSplit | None = None, row: int = 0
) -> None:
    """Load the result the way the app does (manifest → TextScorer) and compare one sentence: ``text``,
    or row ``row`` of ``split`` with the context the trainer encoded for it (a context member) — the
    app must build the very same tokens from the text and its earlier utterances."""
    from emodesk.inference.manifest import ModelManifest
    from emodesk.inference.utterance_scorers import TextScorer

    scorer = TextScorer.load(ModelManifest.load(out.with_suffix(".json")), device="cpu")
    if split is None or split.types is None:
        p = scorer.score(text)
        ref = softmax(onnx_logits(sess, [np.asarray(tokenizer.encode(text).ids, np.int64)]))[0]
    else:
        ids, types = split.ids[row], split.types[row]
        p = scorer.score(split.texts[row], split.contexts[row] if split.contexts else ())
        ref = softmax(onnx_logits(sess, [ids], [types]))[0]
        got = scorer.encode(split.texts[row], split.contexts[row] if split.contexts else ())
        if got != (ids.tolist(), types.tolist()):
            raise EmodeskError(
                f"{out}: TextScorer encodes row {row} of {split.name} otherwise than training did"
            )
    if not np.allclose(p, ref, atol=1e-4):
        raise EmodeskError(f"{out}: TextScorer gives {p.round(4)}, the batched export {ref.round(4)}")
