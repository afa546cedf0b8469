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
        help="RAVDESS-layout folder (Actor_NN/*.wav|flac; default: $EMODESK_DATA/speech/ravdess)",
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
        default=6,
        help="actor-group folds over train+val actors that select the settings",
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
) -> tuple[np.ndarray, str]:
    """Pooled encoder features ``(len(rows), 2d)`` and the encoder's sha256; cached by file path.

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
    todo = [r.x for r in rows if r.x not in done]

    def save() -> None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(
                fh, key=key, paths=np.array(list(done), dtype=str), features=np.stack(list(done.values()))
            )
        os.replace(tmp, cache)

    for i, path in enumerate(progress(todo, desc="encoder features", quiet=quiet)):
        done[path] = pool_frames(encode(read_audio_16k(path)))
        if (i + 1) % 100 == 0:
            save()
    if todo:
        save()
    return np.stack([done[r.x] for r in rows]), sha


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
) -> torch.nn.Module:
    """Full-batch AdamW on class-balanced cross-entropy for ``epochs`` epochs; ``on_check(epoch,
    head, loss)`` every ``_CHECK_EVERY`` epochs (how the epoch count is selected)."""
    torch.manual_seed(seed)
    head = _head(z.shape[1])
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    xt, yt = torch.as_tensor(z), torch.as_tensor(y)
    counts = np.bincount(y, minlength=N_LABELS).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / N_LABELS, 0.0)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.as_tensor(w, dtype=torch.float32))
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


def run(args: argparse.Namespace) -> int:
    seed_everything(args.seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if args.views < 1:
        raise InputError("--views must be at least 1")
    if args.data is None:
        from emodesk.resources import datasets_dir

        args.data = datasets_dir() / "speech" / "ravdess"
    if not Path(args.data).is_dir():
        raise InputError(f"voice data {args.data} not found; pass --data FOLDER (RAVDESS layout)")
    ckdir: Path = args.checkpoint_dir or args.out.parent / f".{args.out.stem}.ckpt"
    rows = {s: _subset(load_split(args.data, s), args.limit, args.seed) for s in ("train", "val")}
    if not rows["train"] or not rows["val"]:
        raise InputError(f"{args.data}: the train and val splits must both hold clips")
    t0 = time.monotonic()
    blocks = parse_blocks(getattr(args, "encoder_blocks", None))
    tag = args.asr_model.replace("/", "_") + ("-blocks" + "_".join(map(str, blocks)) if blocks else "")
    cache: Path = args.cache or ckdir / f"features-{tag}.npz"
    x, sha = extract_features(
        rows["train"] + rows["val"],
        args.asr_model,
        cache,
        quiet=args.quiet,
        device=args.device,
        blocks=blocks,
        graph=encoder_graph_path(args.out) if blocks else None,
    )
    n_tr = len(rows["train"])

    def split(rs: list[Row], xs: np.ndarray) -> Split:
        return Split(xs, np.array([r.label for r in rs], np.int64), np.array([r.group for r in rs]))

    tr, va = split(rows["train"], x[:n_tr]), split(rows["val"], x[n_tr:])
    print(
        f"features: {len(tr.y)} train / {len(va.y)} val clips, {x.shape[1]} dims "
        f"({time.monotonic() - t0:.0f} s); encoder sha256 {sha[:12]}…",
        file=sys.stderr,
    )
    pool = Split(
        np.concatenate([tr.x, va.x]), np.concatenate([tr.y, va.y]), np.concatenate([tr.groups, va.groups])
    )
    best, grid = select_by_cv(pool, args)
    print(
        f"selected prior weight {best['prior_weight']:g}, {best['epochs']} epochs: {args.cv_folds}-fold "
        f"actor-group CV accuracy {best['cv_accuracy']:.4f} (UAR {best['cv_uar']:.4f})",
        file=sys.stderr,
    )
    # the shipped head: trained on the training actors only, with the selected settings;
    # the validation actors are scored per epoch for the record (they were in the CV pool)
    prior = Prior.of(tr.x)
    rng = np.random.default_rng(args.seed)
    z, idx = simulated_sessions(tr.x, tr.groups, prior, best["prior_weight"], args.views, rng)
    zv = running_sessions(va.x, va.groups, prior, best["prior_weight"], args.seed)
    history = History()

    def record(epoch: int, head: torch.nn.Module, loss: float) -> None:
        m = compute_metrics(va.y, predict(head, zv), bootstrap=0)
        history.add(
            {"epoch": epoch, "loss": loss, "val_accuracy": m["accuracy"], "val_uar": m["uar"]},
            quiet=args.quiet,
        )

    head = fit_head(
        z,
        tr.y[idx],
        weight_decay=args.weight_decay,
        lr=args.lr,
        epochs=int(best["epochs"]),
        seed=args.seed,
        on_check=record,
    )
    if args.no_export:
        return 0
    export_voice(head, prior, best, grid, sha, args, va, history, blocks=blocks)
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
    va: Split,
    history: History,
    *,
    blocks: tuple[int, ...] = (),
) -> Path:
    out: Path = args.out

    class WithSoftmax(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.inner(x), dim=-1)

    model = WithSoftmax(head).eval()
    zv = running_sessions(va.x, va.groups, prior, best["prior_weight"], args.seed)
    val = compute_metrics(va.y, predict(head, zv), bootstrap=0)
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
            "data": "RAVDESS speech (Livingstone & Russo 2018), 7 labels, calm → neutral",
            "protocol": "speaker-independent: the prior weight and epoch count were selected by "
            f"{args.cv_folds}-fold actor-group cross-validation over actors 01–20 (each held-out actor "
            "replayed as one live session); the shipped head is trained on actors 01–18; actors 21–24 "
            "were never used for training or selection",
            "command": command_line(),
            "seed": args.seed,
            "selected": {"prior_weight": best["prior_weight"], "epochs": best["epochs"]},
            "val_metrics": {k: val[k] for k in ("n", "accuracy", "uar", "macro_f1")},
            "settings": {"lr": args.lr, "weight_decay": args.weight_decay, "views": args.views},
            "cross_validation": {
                "folds": args.cv_folds,
                "fold_actors": best["fold_actors"],
                "accuracy_per_fold": best["folds"],
                "mean_accuracy": best["cv_accuracy"],
                "mean_uar": best["cv_uar"],
                "note": "selection and report on the same folds: the mean is optimistic by the selection",
            },
            "val_history": history.epochs,
            "search": [{k: v for k, v in r.items() if k != "folds"} for r in grid],
            "onnx_vs_torch_max_abs_diff": diff,
        },
        usage="non-commercial use only: trained on RAVDESS (CC BY-NC-SA 4.0)",
        license="Apache-2.0 (emodesk). Trained on RAVDESS, licensed CC BY-NC-SA 4.0: this model is "
        "for NON-COMMERCIAL use only.",
        metrics={},
    )
    write_manifest(out, fields)
    print(f"wrote {out} and {out.with_suffix('.json')} (ONNX vs torch {diff:.2g})", file=sys.stderr)
    return out
