"""The text trainers' data: dataset folders, tokenised splits (with dialogue context and a teacher's
soft labels when asked), training subsets, the selection rule and length-bucketed batches. Shared by
the fine-tune (:mod:`.finetune`), the head re-fit (:mod:`.head`), the n-gram member (:mod:`.ngram`)
and the teacher (:mod:`.teacher`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emodesk.errors import InputError
from emodesk.evaluation.datasets import Row, dataset_kind, earlier_in_group, load_split

INFERENCE_MAX_LENGTH = 128  # what TextScorer truncates to in the app
EVAL_BATCH = 128
_TEXT_KINDS = {"goemotions", "meld", "dair-ai"}


#: the manifest's description of each dataset kind
DATA_DESCRIPTIONS = {
    "goemotions": "GoEmotions, Ekman taxonomy (Demszky et al. 2020; Apache-2.0); single-label rows",
    "meld": "MELD transcripts (Poria et al. 2019; GPL-3.0); train file cut by dialogue, dev file = test",
    "dair-ai": "dair-ai/emotion (Saravia et al. 2018; research and educational use only); 'love' dropped",
}


def default_data_dirs() -> list[Path]:
    from emodesk.resources import datasets_dir  # platformdirs: absent from the GPU machines' image

    base = datasets_dir() / "text"
    return [base / "goemotions-ekman", base / "meld"]


@dataclass
class TextSplit:
    """One split of one dataset, tokenized: ``ids[i]`` are the token ids of ``texts[i]``.

    ``types[i]`` (a model that reads context): token type 0 on the current utterance, 1 on its
    context, and ``contexts[i]`` the earlier utterances it was given (most recent first); both ``None``
    for a member without context. ``soft[i]``: a teacher's logits for row ``i``."""

    name: str
    kind: str
    texts: list[str]
    labels: np.ndarray
    ids: list[np.ndarray]
    types: list[np.ndarray] | None = None
    soft: np.ndarray | None = None
    contexts: list[list[str]] | None = None

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))

    def take(self, keep: np.ndarray) -> TextSplit:
        """The rows ``keep`` (indices), everything that belongs to a row carried along."""
        return TextSplit(
            self.name,
            self.kind,
            [self.texts[k] for k in keep],
            self.labels[keep],
            [self.ids[k] for k in keep],
            None if self.types is None else [self.types[k] for k in keep],
            None if self.soft is None else self.soft[keep],
            None if self.contexts is None else [self.contexts[k] for k in keep],
        )


def with_context(rows: Sequence[Row], context: int) -> list[tuple[str, list[str], int]]:
    """``(text, previous utterances most recent first, label)`` (:func:`earlier_in_group`)."""
    return [(r.x, prev, r.label) for r, prev in zip(rows, earlier_in_group(rows, context), strict=True)]


def texts_sha256(texts: Sequence[str]) -> str:
    """A digest of a split's texts in order: what a teacher's soft labels align to."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8") + b"\0")
    return h.hexdigest()


def _tokenize(tokenizer: Any, texts: Sequence[str]) -> list[np.ndarray]:
    return [np.asarray(e.ids, dtype=np.int64) for e in tokenizer.encode_batch(list(texts))]


@dataclass(frozen=True)
class ContextSpec:
    """How a context member's input is built (``emodesk train text --context``): the manifest's
    ``preprocessing.context`` / ``max_current`` / ``max_length``."""

    context: int
    max_current: int
    max_length: int


@dataclass
class SoftLabels:
    """A teacher's logits per split (``soft_labels.npz``) and their provenance (the ``.json`` beside)."""

    path: Path
    arrays: dict[str, np.ndarray]
    provenance: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> SoftLabels:
        meta = path.with_suffix(".json")
        if not path.is_file() or not meta.is_file():
            raise InputError(f"--soft-labels {path}: needs the .npz and its .json provenance beside it")
        try:
            with np.load(path) as z:
                arrays = {k: np.asarray(z[k], dtype=np.float32) for k in z.files}
            provenance = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise InputError(f"--soft-labels {path}: unreadable ({e})") from None
        for k, a in arrays.items():
            if a.ndim != 2 or a.shape[1] != 7 or not np.isfinite(a).all():
                raise InputError(f"--soft-labels {path}: {k} is not finite rows × 7 logits")
        if not isinstance(provenance.get("splits"), dict):
            raise InputError(f"{meta}: no 'splits' (not written by the teacher's score command)")
        return cls(path, arrays, provenance)

    def rows_for(self, key: str, texts: Sequence[str]) -> np.ndarray | None:
        """The logits of split ``key`` (``meld-train``), checked against its texts; ``None`` if absent."""
        if key not in self.arrays:
            return None
        info = self.provenance["splits"].get(key, {})
        a = self.arrays[key]
        if len(a) != len(texts) or info.get("texts_sha256") != texts_sha256(texts):
            raise InputError(
                f"--soft-labels {self.path}: {key} was scored on other rows ({len(a)} rows, texts digest "
                f"{str(info.get('texts_sha256'))[:12]}…) than the dataset holds now ({len(texts)} rows, "
                f"{texts_sha256(texts)[:12]}…); score them again"
            )
        return a


def load_text_splits(
    folders: Sequence[Path],
    split: str,
    tokenizer: Any,
    *,
    limit: int | None,
    seed: int,
    context: ContextSpec | None = None,
    soft: SoftLabels | None = None,
) -> list[TextSplit]:
    """``split`` of each folder, optionally a seeded subset of ``limit`` rows, tokenized.

    ``context``: each row also reads the previous utterances of its dialogue (all of them, before
    the subset is taken), encoded as the app encodes them (``tokenizer`` then truncates at
    ``context.max_length``). ``soft``: the teacher's logits for the split's rows, where it has them."""
    from emodesk.inference.utterance_scorers import encode_with_context

    out: list[TextSplit] = []
    for f in folders:
        kind = dataset_kind(f)
        if kind not in _TEXT_KINDS:
            raise InputError(
                f"--data {f}: not a text dataset folder (GoEmotions, MELD or dair-ai emotion layout; "
                "see ../shared/datasets/README.md)"
            )
        rows = load_split(f, split)  # type: ignore[arg-type]
        texts = [r.x for r in rows]
        name = f.name if f.name not in {s.name for s in out} else f"{f.name}-{len(out)}"
        labels = np.asarray([r.label for r in rows], dtype=np.int64)
        if context is None:
            s = TextSplit(name, str(kind), texts, labels, _tokenize(tokenizer, texts))
        else:
            prevs = earlier_in_group(rows, context.context)
            enc = [
                encode_with_context(
                    tokenizer,
                    text,
                    prev,
                    n_context=context.context,
                    max_current=context.max_current,
                    max_length=context.max_length,
                )
                for text, prev in zip(texts, prevs, strict=True)
            ]
            ids = [np.asarray(e[0], np.int64) for e in enc]
            types = [np.asarray(e[1], np.int64) for e in enc]
            s = TextSplit(name, str(kind), texts, labels, ids, types, contexts=prevs)
        if soft is not None:
            s.soft = soft.rows_for(f"{f.name}-{split}", texts)
        if limit is not None and len(rows) > limit:
            s = s.take(np.sort(np.random.default_rng([seed, len(out)]).permutation(len(rows))[:limit]))
        out.append(s)
    return out


def parse_train_rows(spec: str | None) -> dict[str, int]:
    """``"goemotions-ekman=9000"`` → ``{"goemotions-ekman": 9000}``."""
    out: dict[str, int] = {}
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        name, _, n = part.partition("=")
        try:
            out[name.strip()] = int(n)
        except ValueError:
            raise InputError(f"--train-rows {spec!r}: expected DIR=N[,DIR=N]") from None
        if out[name.strip()] < 1:
            raise InputError(f"--train-rows {spec!r}: N must be at least 1")
    return out


def subsample_train(sets: list[TextSplit], rows: dict[str, int], seed: int) -> list[TextSplit]:
    """The named training sets cut to a seeded subset of their rows (the others unchanged)."""
    unknown = sorted(set(rows) - {s.name for s in sets})
    if unknown:
        raise InputError(
            f"--train-rows names {', '.join(unknown)}, not among --data ({[s.name for s in sets]})"
        )
    out = []
    for i, s in enumerate(sets):
        n = rows.get(s.name)
        if n is None or n >= len(s.texts):
            out.append(s)
            continue
        out.append(s.take(np.sort(np.random.default_rng([seed, 1000 + i]).permutation(len(s.texts))[:n])))
    return out


@dataclass(frozen=True)
class Selection:
    """Which val score selects the epoch (``--select``), and the macro-F1 floors (``--floor``)."""

    metric: str = "macro_f1"
    dataset: str = "mean"
    floors: tuple[tuple[str, float], ...] = ()

    @classmethod
    def parse(cls, select: str, floors: Sequence[str], names: Sequence[str]) -> Selection:
        metric, _, dataset = select.partition(":")
        if metric not in ("macro_f1", "weighted_f1") or not dataset:
            raise InputError(f"--select {select!r}: expected macro_f1:mean, macro_f1:DIR or weighted_f1:DIR")
        if dataset == "mean" and metric != "macro_f1":
            raise InputError("--select: only macro-F1 is averaged over the datasets")
        parsed = []
        for f in floors:
            name, _, value = f.partition("=")
            try:
                parsed.append((name, float(value)))
            except ValueError:
                raise InputError(f"--floor {f!r}: expected DIR=F1, e.g. goemotions-ekman=0.60") from None
        for name in [dataset, *(n for n, _ in parsed)]:
            if name != "mean" and name not in names:
                raise InputError(f"--select/--floor name {name!r}, not among the val sets {list(names)}")
        return cls(metric, dataset, tuple(parsed))

    @property
    def default(self) -> bool:
        return self == Selection()

    def describe(self) -> str:
        what = (
            "mean val macro-F1 over the datasets"
            if self.dataset == "mean"
            else f"{self.dataset} val {self.metric}"
        )
        floors = "".join(f"; counted only when {n} val macro-F1 ≥ {v:g}" for n, v in self.floors)
        return what + floors

    def score(self, scores: dict[str, dict[str, float]]) -> float:
        """The selection score of one epoch's val ``scores[name][metric]``; -inf below a floor."""
        if any(scores[n]["macro_f1"] < v for n, v in self.floors):
            return float("-inf")
        if self.dataset == "mean":
            return float(np.mean([s["macro_f1"] for s in scores.values()]))
        return float(scores[self.dataset][self.metric])


def pad_batch(seqs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad to the longest sequence of the batch (dynamic padding): ids and mask, int64."""
    t = max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), t), dtype=np.int64)
    mask = np.zeros((len(seqs), t), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return ids, mask


def pad_types(seqs: Sequence[np.ndarray]) -> np.ndarray:
    """Token types right-padded with 0 to the longest sequence, as :func:`pad_batch` pads the ids."""
    return pad_batch(seqs)[0]


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Shuffled batches of similar lengths (little padding), a pure function of (seed, epoch).

    Rows are shuffled, cut into pools of 50 batches, sorted by length within
    each pool, batched, and the batches shuffled again.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    pool = batch_size * 50
    out: list[np.ndarray] = []
    for i in range(0, len(order), pool):
        c = order[i : i + pool]
        c = c[np.argsort(lengths[c], kind="stable")]
        out += [c[j : j + batch_size] for j in range(0, len(c), batch_size)]
    return [out[k] for k in rng.permutation(len(out))]
