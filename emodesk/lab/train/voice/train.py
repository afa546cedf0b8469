"""``emodesk train voice``: a head over the ASR's whisper encoder, with per-session normalisation.

The member (see :mod:`emodesk.inference.voice_features`): each utterance is
encoded once by the ASR model the app already runs for transcripts
(``Transcriber.encode``, the same window rule as live), its encoder states are
pooled to mean and standard deviation, standardised by the running statistics
of the session (speaker and microphone) shrunk toward the training set's, and
scored by a linear softmax head exported to ONNX. The encoder stays in
CTranslate2; the manifest's ``requires`` pins it by sha256.

Training matches what the head meets live: every training clip is seen in
``--views`` simulated sessions of random age — normalised with the prior plus
a random number of other clips of the same speaker — so that the first
utterance of a session (prior only) and the hundredth (the speaker's own
statistics) are both in distribution. Validation (and model selection of the
prior weight, weight decay and epoch count) replays each validation speaker
as one session in a seeded random order, exactly as ``emodesk eval voice`` and
the live app do.

Protocol (RAVDESS, speaker-independent): train actors 01–18, select on 19–20;
the test actors 21–24 are only ever touched by ``emodesk eval``. ``--cv-folds``
also reports k actor-group folds over actors 01–20 with the selected settings.

Encoder features are cached (``--cache``, resumable): extracting them is the
slow part (one encoder pass per clip), the head trains in seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from emodesk.errors import InputError
from emodesk.evaluation.datasets import Row, load_split
from emodesk.evaluation.metrics import compute_metrics
from emodesk.inference.manifest import ManifestDraft
from emodesk.inference.voice_features import pool_frames, shrunk_stats
from emodesk.lab.train.common import (
    History,
    check_agreement,
    command_line,
    export_onnx,
    onnx_outputs,
    progress,
    seed_everything,
    torch,
    write_manifest,
)
from emodesk.labels import LABELS, N_LABELS

DEFAULT_ASR = "tiny.en"
_CHECK_EVERY = 10


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        type=Path,
        action="append",
        help="a speech dataset folder with train and val splits (RAVDESS, TESS; repeat to train on "
        "several; default: $EMODESK_DATA/speech/ravdess)",
    )
    p.add_argument("--asr-model", default=DEFAULT_ASR, help="whose encoder the member is built on (tiny.en)")
    p.add_argument(
        "--encoder-blocks",
        metavar="N[,M…]",
        help="pool the states after these encoder blocks (1-based), computed by a weightless ONNX graph "
        "on the ASR's weights (emodesk.speech.whisper_layers), instead of the ASR's own final output",
    )
    p.add_argument(
        "--cache",
        type=Path,
        help="pooled encoder features (.npz; default: features-<encoder sha>.npz in the checkpoint dir)",
    )
    p.add_argument(
        "--prior-weights",
        default="5,10,20",
        help="candidate prior weights (utterances) of the running normalisation, chosen by CV",
    )
    p.add_argument("--weight-decay", type=float, default=1e-2, help="AdamW weight decay (default 1e-2)")
    p.add_argument("--views", type=int, default=8, help="simulated sessions per training clip (default 8)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate, full batch (default 1e-3)")
    p.add_argument(
        "--cv-folds",
        type=int,
        default=0,
        help="select the settings by K actor-group folds over RAVDESS actors 01–20 instead of on the "
        "val splits (RAVDESS data only; default 0: select on the val splits)",
    )
    p.add_argument(
        "--augment",
        type=int,
        default=0,
        metavar="K",
        help="K augmented copies of every training clip, heard in simulated rooms and devices "
        "(emodesk/lab/train/voice/augment.py); the clips of one simulated session share a room, "
        "noise kind and device (default 0)",
    )
    p.add_argument(
        "--augment-val",
        type=int,
        metavar="V",
        help="V augmented copies of every val clip, another val set for the selection "
        "(default: 1 when --augment is given, else 0)",
    )
    p.add_argument(
        "--session-size",
        type=int,
        default=20,
        help="clips per simulated session of the augmented copies (default 20)",
    )
    p.add_argument(
        "--balance",
        choices=("corpora", "none"),
        default="corpora",
        help="weigh the training corpora equally in the loss, inside the class balance (default)",
    )
    p.add_argument("--limit", type=int, help="at most N clips per split (quick runs)")
    p.add_argument("--no-export", action="store_true", help="report the selection and CV, write nothing")


# ------------------------------------------------------------------ features


def _cache_key(asr_sha: str, min_context_s: float | None, graph_sha: str = "") -> str:
    return f"{asr_sha}:{min_context_s}" + (f":{graph_sha}" if graph_sha else "")


def parse_blocks(spec: str | None) -> tuple[int, ...]:
    """``"2,3"`` → ``(2, 3)``; None or "" → ``()`` (the ASR's final output)."""
    if not spec:
        return ()
    try:
        blocks = tuple(sorted({int(b) for b in spec.split(",") if b.strip()}))
    except ValueError:
        raise InputError(f"--encoder-blocks {spec!r}: expected block numbers such as 2 or 2,3") from None
    if not blocks or blocks[0] < 1:
        raise InputError(f"--encoder-blocks {spec!r}: blocks are numbered from 1")
    return blocks


def extract_features(
    rows: list[Row],
    asr_model: str,
    cache: Path,
    *,
    quiet: bool = False,
    device: str = "auto",
    blocks: tuple[int, ...] = (),
    graph: Path | None = None,
    keys: list[str] | None = None,
    load: Callable[[str], np.ndarray] | None = None,
) -> tuple[np.ndarray, str]:
    """Pooled encoder features ``(len(rows), 2d)`` and the encoder's sha256; cached by key.

    ``keys`` name what is encoded, one per row (default: each row's file path), and ``load`` gives
    a key's 16 kHz audio (default: the file at the path): an augmented copy is one more key.
    ``blocks``: the states after these encoder blocks, computed by the graph written to ``graph``
    (:mod:`emodesk.speech.whisper_layers`), instead of the ASR's final output.
    The cache is rewritten every 100 clips, so a killed extraction continues where it stopped.
    """
    from emodesk.evaluation.evaluate import read_audio_16k
    from emodesk.resources import sha256_file
    from emodesk.speech.asr import Transcriber

    dev: Literal["cuda", "cpu"] = "cuda" if device == "cuda" else "cpu"
    encode: Callable[[np.ndarray], np.ndarray]
    if blocks:
        from emodesk.lab.train.voice.whisper_graph import write_graph
        from emodesk.speech.asr import encoder_sha256, resolve_asr_model
        from emodesk.speech.whisper_layers import WhisperLayers

        if graph is None:
            raise ValueError("encoder blocks need a path for their graph")
        folder = Path(resolve_asr_model(asr_model))
        if not (folder / "model.bin").is_file():
            raise InputError(f"--encoder-blocks needs a local CTranslate2 folder for {asr_model}")
        write_graph(graph, folder / "model.bin", blocks)
        layers = WhisperLayers(graph, folder / "model.bin", blocks, device=dev, threads=os.cpu_count() or 1)
        sha = encoder_sha256(folder)
        key = _cache_key(sha, layers.min_context_s, sha256_file(graph))
        encode = layers.frames
    else:
        asr = Transcriber(asr_model, device=dev, cpu_threads=os.cpu_count() or 1)
        sha = asr.encoder_sha256
        key = _cache_key(sha, asr.min_context_s)

        def encode(audio: np.ndarray) -> np.ndarray:
            return asr.encode(audio).frames()

    done: dict[str, np.ndarray] = {}
    if cache.is_file():
        with np.load(cache) as z:
            if str(z["key"]) == key:
                done = dict(zip((str(n) for n in z["paths"]), z["features"], strict=True))
    names = keys if keys is not None else [r.x for r in rows]
    if len(names) != len(rows):
        raise ValueError("one key per row")
    read = load or read_audio_16k
    todo = list(dict.fromkeys(k for k in names if k not in done))

    def save() -> None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(
                fh, key=key, paths=np.array(list(done), dtype=str), features=np.stack(list(done.values()))
            )
        os.replace(tmp, cache)

    for i, name in enumerate(progress(todo, desc="encoder features", quiet=quiet)):
        done[name] = pool_frames(encode(read(name)))
        if (i + 1) % 100 == 0:
            save()
    if todo:
        save()
    return np.stack([done[k] for k in names]), sha


# -------------------------------------------------------------- augmentation

_AUG = "#aug"


@dataclass(frozen=True)
class Item:
    """One encoder input: a clip, clean or heard in a simulated session's condition."""

    row: Row
    key: str  # the feature cache's key
    session: str  # whose running normalisation it meets
    corpus: str

    @property
    def augmented(self) -> bool:
        return _AUG in self.key


def clean_items(rows: list[Row], corpus: str) -> list[Item]:
    return [Item(r, r.x, r.group, corpus) for r in rows]


def augmentation_version() -> str:
    """A digest of the augmentation code: cached augmented features are keyed by it."""
    import hashlib

    from emodesk.lab.train.voice import augment

    return hashlib.sha256(Path(augment.__file__).read_bytes()).hexdigest()[:12]


def augmented_items(rows: list[Row], copies: int, session_size: int, *, corpus: str, part: str) -> list[Item]:
    """``copies`` augmented copies of ``rows`` (the ``part`` split, "train" or "val", of ``corpus``).
    Per speaker and copy, the clips in a seeded order are cut into simulated sessions of
    ``session_size`` clips; a session is heard in one condition (room, noise kind, device, level)
    and normalised on its own, as a live session would be."""
    from emodesk.lab.train.voice.augment import view_rng

    if session_size < 1:
        raise InputError("--session-size must be at least 1")
    version = augmentation_version()
    role = f"{corpus}-{part}"
    by_group: dict[str, list[Row]] = {}
    for r in rows:
        by_group.setdefault(r.group, []).append(r)
    out: list[Item] = []
    for g, members in sorted(by_group.items()):
        for v in range(1, copies + 1):
            order = view_rng(f"{role}:{g}", v).permutation(len(members))
            for j, i in enumerate(order):
                session = f"{role}:{g}:{v}:{j // session_size}"
                r = members[int(i)]
                out.append(Item(r, f"{r.x}{_AUG}{v}@{session}@{version}", session, corpus))
    return out


class ItemAudio:
    """The 16 kHz audio of an item's key: the file, or the file heard in its session's condition
    (drawn once per session from the session's name; the noise itself from the clip's path)."""

    def __init__(self) -> None:
        self._conditions: dict[str, Any] = {}

    def __call__(self, key: str) -> np.ndarray:
        from emodesk.evaluation.evaluate import read_audio_16k

        if _AUG not in key:
            return read_audio_16k(key)
        from emodesk.lab.train.voice.augment import JITTER_DB, apply, draw_condition, view_rng

        path, rest = key.split(_AUG, 1)
        view, session, _ = rest.split("@")
        v = int(view)
        if session not in self._conditions:
            self._conditions[session] = draw_condition(view_rng(f"session:{session}", v))
        audio, _ = apply(
            read_audio_16k(path), self._conditions[session], view_rng(path, v), jitter_db=JITTER_DB
        )
        return audio


# ------------------------------------------------------------- normalisation


@dataclass(frozen=True)
class Prior:
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> Prior:
        return cls(x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6))


def simulated_sessions(
    x: np.ndarray, groups: np.ndarray, prior: Prior, weight: float, views: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``views`` normalised copies of every clip, each in a session of random age.

    A view of clip i: the session holds i and k other clips of its speaker, k uniform in
    [0, n_speaker − 1]. Returns the features ``(views·n, 2d)`` and the row index of each.
    """
    out, idx = [], []
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        xg = x[members]
        n = len(members)
        for _ in range(views):
            # a random subset of size k of the other clips, one per clip: rank random keys
            k = rng.integers(0, n, size=n)
            keys = rng.random((n, n))
            keys[np.arange(n), np.arange(n)] = -1.0  # the clip itself always belongs to its session
            ranks = keys.argsort(axis=1).argsort(axis=1)
            mask = (ranks <= k[:, None]).astype(np.float64)  # itself (rank 0) + k others
            count = mask.sum(axis=1, keepdims=True)
            mean, std = shrunk_stats(prior.mean, prior.std, weight, count, mask @ xg, mask @ (xg * xg))
            out.append((xg - mean) / std)
            idx.append(members)
    return np.concatenate(out).astype(np.float32), np.concatenate(idx)


def running_sessions(
    x: np.ndarray, groups: np.ndarray, prior: Prior, weight: float, seed: int = 0
) -> np.ndarray:
    """Each speaker as one live session in a seeded random order (as eval and the app do)."""
    from emodesk.evaluation.evaluate import voice_session_order

    rows = [Row("", 0, str(g)) for g in groups]
    z = np.empty_like(x, dtype=np.float32)
    for order in voice_session_order(rows, seed):
        xs = x[order]
        cum, cum_sq = np.cumsum(xs, axis=0), np.cumsum(xs * xs, axis=0)
        n = np.arange(1, len(order) + 1, dtype=np.float64)[:, None]
        mean, std = shrunk_stats(prior.mean, prior.std, weight, n, cum, cum_sq)
        z[order] = (xs - mean) / std
    return z


# --------------------------------------------------------------------- head


def _head(dim: int) -> torch.nn.Module:
    return torch.nn.Linear(dim, N_LABELS)


def fit_head(
    z: np.ndarray,
    y: np.ndarray,
    *,
    weight_decay: float,
    lr: float,
    epochs: int,
    seed: int,
    on_check: Callable[[int, torch.nn.Module, float], None] | None = None,
    sample_weight: np.ndarray | None = None,
) -> torch.nn.Module:
    """Full-batch AdamW on class-balanced cross-entropy for ``epochs`` epochs; ``on_check(epoch,
    head, loss)`` every ``_CHECK_EVERY`` epochs (how the epoch count is selected).

    ``sample_weight`` (e.g. equal corpora) weighs the rows before the classes are balanced on the
    weighted counts; without it every row weighs 1."""
    torch.manual_seed(seed)
    head = _head(z.shape[1])
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    xt, yt = torch.as_tensor(z), torch.as_tensor(y)
    sw = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    counts = np.bincount(y, weights=sw, minlength=N_LABELS)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1e-12) / N_LABELS, 0.0)
    row_w = torch.as_tensor(sw * w[y], dtype=torch.float32)
    row_w = row_w / row_w.sum()

    def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
        return (ce * row_w).sum()

    for epoch in range(1, epochs + 1):
        opt.zero_grad()
        loss = loss_fn(head(xt), yt)
        loss.backward()
        opt.step()
        if on_check is not None and epoch % _CHECK_EVERY == 0:
            on_check(epoch, head, float(loss.detach()))
    return head


def predict(head: torch.nn.Module, z: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(head(torch.as_tensor(z, dtype=torch.float32)), dim=-1).numpy()


# ---------------------------------------------------------------------- run


def _floats(spec: str, flag: str) -> list[float]:
    try:
        vals = [float(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{flag} takes comma-separated numbers, got {spec!r}") from None
    if not vals or any(v < 0 for v in vals):
        raise InputError(f"{flag} takes non-negative numbers, got {spec!r}")
    return vals


def _actor(group: str) -> int:
    return int(group.removeprefix("actor"))


@dataclass
class Split:
    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    corpus: np.ndarray | None = None


def _subset(rows: list[Row], limit: int | None, seed: int) -> list[Row]:
    if not limit or limit >= len(rows):
        return rows
    keep = np.sort(np.random.default_rng(seed).permutation(len(rows))[:limit])
    return [rows[i] for i in keep]


def fold_of(actors: np.ndarray, k: int) -> np.ndarray:
    """Actor-group folds: actor a is tested in fold (a − 1) mod k (men and women in every fold)."""
    return (actors - 1) % k


def select_by_cv(pool: Split, args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Prior weight and epoch count by the mean accuracy of k actor-group folds over ``pool``.

    Each fold trains on the other actors, normalises with their prior, and replays its own
    actors as live sessions. Returns the choice (with its per-fold results) and the whole grid.
    """
    k = args.cv_folds
    max_epochs = args.epochs if args.epochs is not None else 200
    if max_epochs < _CHECK_EVERY:
        raise InputError(f"--epochs must be at least {_CHECK_EVERY}")
    folds = fold_of(np.array([_actor(g) for g in pool.groups]), k)
    if len(np.unique(folds)) < k:
        raise InputError(f"--cv-folds {k}: the training and validation actors do not fill {k} folds")
    checks = list(range(_CHECK_EVERY, max_epochs + 1, _CHECK_EVERY))
    grid: list[dict[str, Any]] = []
    weights = _floats(args.prior_weights, "--prior-weights")
    if any(w <= 0 for w in weights):
        raise InputError("--prior-weights must be positive")
    for pw in progress(weights, desc="prior weights", quiet=args.quiet):
        acc = np.zeros((k, len(checks)))
        uar = np.zeros((k, len(checks)))
        for f in range(k):
            test = folds == f
            prior = Prior.of(pool.x[~test])
            rng = np.random.default_rng(args.seed)
            z, idx = simulated_sessions(pool.x[~test], pool.groups[~test], prior, pw, args.views, rng)
            zt = running_sessions(pool.x[test], pool.groups[test], prior, pw, args.seed)

            def check(
                epoch: int,
                head: torch.nn.Module,
                loss: float,
                f: int = f,
                zt: np.ndarray = zt,
                acc: np.ndarray = acc,
                uar: np.ndarray = uar,
            ) -> None:
                m = compute_metrics(pool.y[folds == f], predict(head, zt), bootstrap=0)
                c = checks.index(epoch)
                acc[f, c], uar[f, c] = m["accuracy"], m["uar"]

            fit_head(
                z,
                pool.y[~test][idx],
                weight_decay=args.weight_decay,
                lr=args.lr,
                epochs=max_epochs,
                seed=args.seed,
                on_check=check,
            )
        for c, ep in enumerate(checks):
            grid.append(
                {
                    "prior_weight": pw,
                    "epochs": ep,
                    "cv_accuracy": float(acc[:, c].mean()),
                    "cv_uar": float(uar[:, c].mean()),
                    "folds": [float(a) for a in acc[:, c]],
                }
            )
        if not args.quiet:
            b = int(acc.mean(axis=0).argmax())
            print(
                f"prior weight {pw:g}: best CV accuracy {acc[:, b].mean():.4f} at {checks[b]} epochs",
                file=sys.stderr,
            )
    best = max(grid, key=lambda r: (r["cv_accuracy"], r["cv_uar"]))
    actors = np.array([_actor(g) for g in pool.groups])
    best["fold_actors"] = [sorted({int(a) for a in actors[folds == f]}) for f in range(k)]
    return best, grid


#: what each training corpus is, and the terms a member trained on it ships with
CORPORA: dict[str, dict[str, str]] = {
    "ravdess": {
        "data": "RAVDESS speech (Livingstone & Russo 2018), 7 labels, calm → neutral",
        "license": "RAVDESS (CC BY-NC-SA 4.0)",
    },
    "tess": {
        "data": "TESS (Dupuis & Pichora-Fuller 2010), 2 speakers, the 180 words of its train split, "
        "pleasant surprise → surprise",
        "license": "TESS (CC BY-NC-ND 4.0: no distribution of adapted material)",
    },
}


@dataclass
class Corpus:
    name: str
    folder: Path
    train: list[Row]
    val: list[Row]


def load_corpora(folders: list[Path], limit: int | None, seed: int) -> list[Corpus]:
    from emodesk.evaluation.datasets import dataset_kind

    out: list[Corpus] = []
    for folder in folders:
        if not Path(folder).is_dir():
            raise InputError(f"voice data {folder} not found; pass --data FOLDER (RAVDESS or TESS layout)")
        kind = dataset_kind(folder)
        if kind not in CORPORA:
            raise InputError(
                f"--data {folder}: a voice training corpus is RAVDESS or TESS, not {kind or 'this'}"
            )
        if any(c.name == kind for c in out):
            raise InputError(f"--data {folder}: {kind} given twice")
        rows = {s: _subset(load_split(folder, s), limit, seed) for s in ("train", "val")}
        if not rows["train"] or not rows["val"]:
            raise InputError(f"{folder}: the train and val splits must both hold clips")
        out.append(Corpus(kind, Path(folder), rows["train"], rows["val"]))
    return out


def corpus_weights(corpus: np.ndarray) -> np.ndarray:
    """Row weights that give every corpus the same total weight."""
    names, inverse, counts = np.unique(corpus, return_inverse=True, return_counts=True)
    return (len(corpus) / (len(names) * counts))[inverse]


#: corpora whose val split holds speakers the train split does not: only these judge a selection
#: (TESS's val words are said by its two training speakers)
SPEAKER_INDEPENDENT_VAL = ("ravdess",)


def judged(name: str) -> bool:
    """Whether val set ``name`` ("ravdess", "tess+augmented", …) takes part in the selection."""
    return name.split("+", 1)[0] in SPEAKER_INDEPENDENT_VAL


def select_on_val(
    tr: Split, vals: dict[str, Split], prior: Prior, args: argparse.Namespace
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Prior weight and epoch count by the mean UAR over the speaker-independent val sets (each of
    their speakers, or each simulated session of an augmented set, replayed as one live session);
    ties by mean accuracy. The other val sets are scored for the record."""
    if not any(judged(n) for n in vals):
        raise InputError("the selection needs a speaker-independent val split: add --data …/ravdess")
    max_epochs = args.epochs if args.epochs is not None else 200
    if max_epochs < _CHECK_EVERY:
        raise InputError(f"--epochs must be at least {_CHECK_EVERY}")
    weights = _floats(args.prior_weights, "--prior-weights")
    if any(w <= 0 for w in weights):
        raise InputError("--prior-weights must be positive")
    sw = _sample_weight(tr, args)
    grid: list[dict[str, Any]] = []
    for pw in progress(weights, desc="prior weights", quiet=args.quiet):
        z, idx = simulated_sessions(tr.x, tr.groups, prior, pw, args.views, np.random.default_rng(args.seed))
        zv = {n: running_sessions(v.x, v.groups, prior, pw, args.seed) for n, v in vals.items()}
        rows: list[dict[str, Any]] = []

        def check(
            epoch: int,
            head: torch.nn.Module,
            loss: float,
            pw: float = pw,
            zv: dict[str, np.ndarray] = zv,
            rows: list[dict[str, Any]] = rows,
        ) -> None:
            per = {}
            for n, v in vals.items():
                m = compute_metrics(v.y, predict(head, zv[n]), bootstrap=0)
                per[n] = {"accuracy": m["accuracy"], "uar": m["uar"]}
            rows.append(
                {
                    "prior_weight": pw,
                    "epochs": epoch,
                    "val_uar": float(np.mean([m["uar"] for n, m in per.items() if judged(n)])),
                    "val_accuracy": float(np.mean([m["accuracy"] for n, m in per.items() if judged(n)])),
                    "per_set": per,
                }
            )

        fit_head(
            z,
            tr.y[idx],
            weight_decay=args.weight_decay,
            lr=args.lr,
            epochs=max_epochs,
            seed=args.seed,
            on_check=check,
            sample_weight=None if sw is None else sw[idx],
        )
        grid += rows
        if not args.quiet:
            b = max(rows, key=lambda r: (r["val_uar"], r["val_accuracy"]))
            print(
                f"prior weight {pw:g}: best val UAR {b['val_uar']:.4f} at {b['epochs']} epochs",
                file=sys.stderr,
            )
    best = max(grid, key=lambda r: (r["val_uar"], r["val_accuracy"]))
    return best, grid


def training_sets(
    corpora: list[Corpus], augment: int, augment_val: int, session_size: int
) -> tuple[list[Item], dict[str, list[Item]]]:
    """The training items (every clip clean, then ``augment`` copies) and the val sets by name
    ("ravdess", "ravdess+augmented", …), in the order their features are extracted."""
    train = [it for c in corpora for it in clean_items(c.train, c.name)]
    train += [
        it
        for c in corpora
        for it in augmented_items(c.train, augment, session_size, corpus=c.name, part="train")
    ]
    vals: dict[str, list[Item]] = {c.name: clean_items(c.val, c.name) for c in corpora}
    if augment_val:
        for c in corpora:
            vals[f"{c.name}+augmented"] = augmented_items(
                c.val, augment_val, session_size, corpus=c.name, part="val"
            )
    return train, vals


def to_split(items: list[Item], x: np.ndarray) -> Split:
    """Items and their features (one row each) as a :class:`Split` grouped by session."""
    return Split(
        x,
        np.array([it.row.label for it in items], np.int64),
        np.array([it.session for it in items]),
        np.array([it.corpus for it in items]),
    )


def fit_selected(
    tr: Split,
    best: dict[str, Any],
    args: argparse.Namespace,
    on_check: Callable[[int, torch.nn.Module, float], None] | None = None,
) -> tuple[torch.nn.Module, Prior]:
    """The head with the selected prior weight and epoch count, trained on the training rows only,
    and the prior it normalises with."""
    prior = Prior.of(tr.x)
    rng = np.random.default_rng(args.seed)
    z, idx = simulated_sessions(tr.x, tr.groups, prior, best["prior_weight"], args.views, rng)
    sw = _sample_weight(tr, args)
    head = fit_head(
        z,
        tr.y[idx],
        weight_decay=args.weight_decay,
        lr=args.lr,
        epochs=int(best["epochs"]),
        seed=args.seed,
        on_check=on_check,
        sample_weight=None if sw is None else sw[idx],
    )
    return head, prior


def _sample_weight(tr: Split, args: argparse.Namespace) -> np.ndarray | None:
    if tr.corpus is None or args.balance == "none" or len(np.unique(tr.corpus)) < 2:
        return None
    return corpus_weights(tr.corpus)


def run(args: argparse.Namespace) -> int:
    seed_everything(args.seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if args.views < 1:
        raise InputError("--views must be at least 1")
    if args.augment < 0 or (args.augment_val is not None and args.augment_val < 0):
        raise InputError("--augment and --augment-val take a number of copies, 0 or more")
    aug_val = args.augment_val if args.augment_val is not None else (1 if args.augment else 0)
    if not args.data:
        from emodesk.resources import datasets_dir

        args.data = [datasets_dir() / "speech" / "ravdess"]
    corpora = load_corpora(list(args.data), args.limit, args.seed)
    if not any(c.name in SPEAKER_INDEPENDENT_VAL for c in corpora):
        raise InputError("the selection needs a speaker-independent val split: add --data …/ravdess")
    if args.cv_folds and (len(corpora) != 1 or corpora[0].name != "ravdess" or args.augment):
        raise InputError(
            "--cv-folds selects over RAVDESS actors, without augmentation: one RAVDESS --data only"
        )
    ckdir: Path = args.checkpoint_dir or args.out.parent / f".{args.out.stem}.ckpt"
    t0 = time.monotonic()
    train_items, val_sets = training_sets(corpora, args.augment, aug_val, args.session_size)
    everything = train_items + [it for items in val_sets.values() for it in items]
    blocks = parse_blocks(getattr(args, "encoder_blocks", None))
    tag = args.asr_model.replace("/", "_") + ("-blocks" + "_".join(map(str, blocks)) if blocks else "")
    cache: Path = args.cache or ckdir / f"features-{tag}.npz"
    x, sha = extract_features(
        [it.row for it in everything],
        args.asr_model,
        cache,
        quiet=args.quiet,
        device=args.device,
        blocks=blocks,
        graph=encoder_graph_path(args.out) if blocks else None,
        keys=[it.key for it in everything],
        load=ItemAudio(),
    )

    n_tr = len(train_items)
    tr = to_split(train_items, x[:n_tr])
    vals: dict[str, Split] = {}
    at = n_tr
    for name, items in val_sets.items():
        vals[name] = to_split(items, x[at : at + len(items)])
        at += len(items)
    print(
        f"features: {len(tr.y)} train ({args.augment} augmented cop{'y' if args.augment == 1 else 'ies'}) / "
        + ", ".join(f"{len(v.y)} {n}" for n, v in vals.items())
        + f" val clips, {x.shape[1]} dims ({time.monotonic() - t0:.0f} s); encoder sha256 {sha[:12]}…",
        file=sys.stderr,
    )
    if args.cv_folds:
        va = vals[corpora[0].name]
        pool = Split(
            np.concatenate([tr.x, va.x]), np.concatenate([tr.y, va.y]), np.concatenate([tr.groups, va.groups])
        )
        best, grid = select_by_cv(pool, args)
        print(
            f"selected prior weight {best['prior_weight']:g}, {best['epochs']} epochs: {args.cv_folds}-fold "
            f"actor-group CV accuracy {best['cv_accuracy']:.4f} (UAR {best['cv_uar']:.4f})",
            file=sys.stderr,
        )
    else:
        best, grid = select_on_val(tr, vals, Prior.of(tr.x), args)
        print(
            f"selected prior weight {best['prior_weight']:g}, {best['epochs']} epochs: mean val UAR "
            f"{best['val_uar']:.4f} (accuracy {best['val_accuracy']:.4f}) over "
            f"{', '.join(n for n in vals if judged(n))}",
            file=sys.stderr,
        )
    # the shipped head: trained on the training clips only, with the selected settings;
    # the val sets are scored per epoch for the record
    prior = Prior.of(tr.x)
    zv = {n: running_sessions(v.x, v.groups, prior, best["prior_weight"], args.seed) for n, v in vals.items()}
    history = History()

    def record(epoch: int, head: torch.nn.Module, loss: float) -> None:
        entry: dict[str, Any] = {"epoch": epoch, "loss": loss}
        for n, v in vals.items():
            m = compute_metrics(v.y, predict(head, zv[n]), bootstrap=0)
            suffix = "" if n == corpora[0].name else f"_{n}"
            entry[f"val_accuracy{suffix}"], entry[f"val_uar{suffix}"] = m["accuracy"], m["uar"]
        history.add(entry, quiet=args.quiet)

    head, prior = fit_selected(tr, best, args, on_check=record)
    if args.no_export:
        return 0
    export_voice(head, prior, best, grid, sha, args, vals, history, blocks=blocks, corpora=corpora)
    return 0


def _encoder_preprocessing(out: Path, blocks: tuple[int, ...]) -> dict[str, Any]:
    window = "the utterance plus 2 s of padding, at least 10 s of window (Transcriber.encode's)"
    if not blocks:
        return {
            "input": "whisper_encoder",
            "encoder": f"Transcriber.encode: {window}; "
            "the states of the utterance's own frames (50 per second)",
        }
    from emodesk.resources import sha256_file

    graph = encoder_graph_path(out)
    return {
        "input": "whisper_layers",
        "encoder": f"the residual stream after encoder block(s) {', '.join(map(str, blocks))} of the ASR's "
        f"whisper encoder over {window}, run by ONNX Runtime on the ASR's model.bin weights "
        "(linear weights by CTranslate2's int8 rule); the states of the utterance's own frames",
        "encoder_graph": graph.name,
        "encoder_graph_sha256": sha256_file(graph),
        "blocks": list(blocks),
    }


def encoder_graph_path(out: Path) -> Path:
    """Where a ``whisper_layers`` member's weightless encoder graph lives: beside its head."""
    return out.with_name(out.stem + ".encoder.onnx")


def export_voice(
    head: torch.nn.Module,
    prior: Prior,
    best: dict[str, Any],
    grid: list[dict[str, Any]],
    encoder_sha: str,
    args: argparse.Namespace,
    vals: dict[str, Split],
    history: History,
    *,
    blocks: tuple[int, ...] = (),
    corpora: list[Corpus],
) -> Path:
    out: Path = args.out

    class WithSoftmax(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.inner(x), dim=-1)

    model = WithSoftmax(head).eval()
    val_metrics: dict[str, dict[str, Any]] = {}
    for n, v in vals.items():
        m = compute_metrics(
            v.y,
            predict(head, running_sessions(v.x, v.groups, prior, best["prior_weight"], args.seed)),
            bootstrap=0,
        )
        val_metrics[n] = {k: m[k] for k in ("n", "accuracy", "uar", "macro_f1")}
    va = vals[corpora[0].name]
    zv = running_sessions(va.x, va.groups, prior, best["prior_weight"], args.seed)
    export_onnx(
        model,
        [torch.as_tensor(zv[:4])],
        out,
        input_names=["features"],
        output_names=["probs"],
        dynamic_axes={"features": {0: "N"}, "probs": {0: "N"}},
    )
    with torch.no_grad():
        ref = model(torch.as_tensor(zv)).numpy()
    diff = check_agreement(ref, onnx_outputs(out, {"features": zv}), atol=1e-5, what=str(out))
    if args.cv_folds:
        protocol = (
            "speaker-independent: the prior weight and epoch count were selected by "
            f"{args.cv_folds}-fold actor-group cross-validation over actors 01–20 (each held-out actor "
            "replayed as one live session); the shipped head is trained on actors 01–18; actors 21–24 "
            "were never used for training or selection"
        )
    else:
        protocol = (
            "the prior weight and epoch count were selected by the mean UAR over the "
            "speaker-independent val sets ("
            + ", ".join(n for n in vals if judged(n))
            + "; each speaker, or each simulated session of an augmented set, replayed as one live "
            "session); the head is trained on the train splits only: RAVDESS actors 01–18 (val 19–20"
            ", speaker-independent)"
            + (
                "; TESS's 2 speakers, words split 90/10 into train and val (not speaker-independent)"
                if any(c.name == "tess" for c in corpora)
                else ""
            )
            + "; RAVDESS actors 21–24 and every cross-corpus set were never used for training or selection"
        )
    fields = ManifestDraft(
        id=out.stem,
        modality="voice",
        outputs=[{"name": "probs", "shape": ["N", N_LABELS], "dtype": "float32"}],
        preprocessing={
            **_encoder_preprocessing(out, blocks),
            "pooling": "mean_std",
            "normalization": {
                "kind": "running_session",
                "prior_weight": float(best["prior_weight"]),
                "prior_mean": [float(v) for v in prior.mean],
                "prior_std": [float(v) for v in prior.std],
            },
            "output": "probs",
        },
        labels=list(LABELS),
        requires={"asr_model": args.asr_model, "encoder_sha256": encoder_sha},
        source={
            "architecture": "linear softmax head over pooled whisper encoder states "
            + (
                f"after block(s) {', '.join(map(str, blocks))} (emodesk/lab/train/voice/train.py); "
                "the blocks run "
                "as a weightless ONNX graph on the ASR's own weights (emodesk/speech/whisper_layers.py)"
                if blocks
                else "(emodesk/lab/train/voice/train.py); the encoder is the ASR's, run by CTranslate2"
            ),
            "data": "; ".join(CORPORA[c.name]["data"] for c in corpora)
            + (
                f"; each training clip also heard in {args.augment} simulated room/noise/device "
                f"condition(s), {args.session_size} clips a session (emodesk/lab/train/voice/augment.py, "
                f"version {augmentation_version()})"
                if args.augment
                else ""
            ),
            "protocol": protocol,
            "command": command_line(),
            "seed": args.seed,
            "selected": {"prior_weight": best["prior_weight"], "epochs": best["epochs"]},
            "val_metrics": val_metrics[corpora[0].name] if len(val_metrics) == 1 else val_metrics,
            "settings": {
                "lr": args.lr,
                "weight_decay": args.weight_decay,
                "views": args.views,
                "augment": args.augment,
                "session_size": args.session_size,
                "balance": args.balance if len(corpora) > 1 else "none",
            },
            **(
                {
                    "cross_validation": {
                        "folds": args.cv_folds,
                        "fold_actors": best["fold_actors"],
                        "accuracy_per_fold": best["folds"],
                        "mean_accuracy": best["cv_accuracy"],
                        "mean_uar": best["cv_uar"],
                        "note": "selection and report on the same folds: the mean is optimistic by "
                        "the selection",
                    }
                }
                if args.cv_folds
                else {}
            ),
            "val_history": history.epochs,
            "search": [{k: v for k, v in r.items() if k not in ("folds",)} for r in grid],
            "onnx_vs_torch_max_abs_diff": diff,
        },
        usage="non-commercial use only: trained on "
        + " and ".join(CORPORA[c.name]["license"] for c in corpora),
        license="Apache-2.0 (emodesk). Trained on "
        + " and ".join(CORPORA[c.name]["license"] for c in corpora)
        + ": this model is for NON-COMMERCIAL use only.",
        metrics={},
    )
    write_manifest(out, fields)
    print(f"wrote {out} and {out.with_suffix('.json')} (ONNX vs torch {diff:.2g})", file=sys.stderr)
    return out
