"""Would the previous utterance help the text member on MELD? A study on the validation splits only.

Continues fine-tuning the text member's training checkpoint (``build/text/ckpt/best.pt``,
written by ``emodesk train text … --checkpoint-dir build/text/ckpt``) for ``--epochs`` on
GoEmotions-Ekman train (a seeded ``--goemotions-rows`` subset, no context: Reddit comments
come alone) plus MELD train with, when ``--context 1``, the previous utterance of the same
dialogue as a second segment: ``[CLS] current [SEP] previous [SEP]`` with token types 0/1,
mean-pooled over the *current* utterance's tokens only (with no previous utterance the
input is exactly the single-sentence one). The live transcript has the same context: the
user's previous utterance.

Reports MELD *val* (the dialogue-level 10% of MELD train) weighted-F1 and GoEmotions *val*
macro-F1 before training and after every epoch; with ``--ablate`` the last checkpoint is
also scored on MELD val *without* its context. Test splits are never read here.

    python -m emodesk.lab.studies.text_context.study --context 1 --epochs 2      # ~45-90 min on 2 cores
    python -m emodesk.lab.studies.text_context.study --context 1 --epochs 2 --ablate-only
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from emodesk.lab.paths import REPO

ROOT = REPO

from emodesk.evaluation.datasets import Row, load_split  # noqa: E402
from emodesk.evaluation.metrics import compute_metrics  # noqa: E402
from emodesk.lab.train.common import class_weights, load_checkpoint, seed_everything, torch  # noqa: E402
from emodesk.lab.train.text.data import epoch_batches  # noqa: E402
from emodesk.lab.train.text.finetune import EmotionClassifier  # noqa: E402
from emodesk.lab.train.text.minilm import load_encoder, load_tokenizer, mean_pool, resolve_encoder_dir  # noqa: E402
from emodesk.resources import datasets_dir  # noqa: E402

F = torch.nn.functional
Item = tuple[np.ndarray, np.ndarray, int]  # ids, token types, label


def with_previous(rows: list[Row], use: bool) -> list[tuple[str, str, int]]:
    """(text, previous utterance of the same dialogue or "", label); rows are in dialogue order."""
    out: list[tuple[str, str, int]] = []
    prev: dict[str, str] = {}
    for r in rows:
        out.append((r.x, prev.get(r.group, "") if use else "", r.label))
        prev[r.group] = r.x
    return out


def encode(tok: Any, rows: list[tuple[str, str, int]], cur_max: int, total_max: int = 128) -> list[Item]:
    out = []
    for cur, prev, y in rows:
        a = tok.encode(cur).ids
        ids = [*a[:-1][: cur_max - 1], a[-1]]  # [CLS] … [SEP]
        types = [0] * len(ids)
        room = total_max - len(ids)
        if prev and room > 1:
            b = tok.encode(prev).ids[1:]  # … [SEP], without [CLS]
            b = [*b[:-1][: room - 1], b[-1]]
            ids, types = ids + b, types + [1] * len(b)
        out.append((np.array(ids), np.array(types), y))
    return out


def batch(items: list[Item]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    t = max(len(i[0]) for i in items)
    ids = np.zeros((len(items), t), np.int64)
    types, mask = np.zeros_like(ids), np.zeros_like(ids)
    for k, (a, b, _) in enumerate(items):
        ids[k, : len(a)], types[k, : len(b)], mask[k, : len(a)] = a, b, 1
    return torch.from_numpy(ids), torch.from_numpy(types), torch.from_numpy(mask)


def forward(
    model: EmotionClassifier, ids: torch.Tensor, types: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    states = model.encoder(ids, mask, types)
    return model.head(model.dropout(mean_pool(states, mask * (1 - types))))


def scores(model: EmotionClassifier, items: list[Item]) -> dict[str, float]:
    model.eval()
    order = np.argsort([len(i[0]) for i in items])
    p = np.zeros((len(items), 7), np.float32)
    with torch.no_grad():
        for i in range(0, len(items), 128):
            b = order[i : i + 128]
            p[b] = torch.softmax(forward(model, *batch([items[j] for j in b])), -1).numpy()
    m = compute_metrics(np.array([i[2] for i in items]), p, bootstrap=0)
    return {k: round(float(m[k]), 4) for k in ("accuracy", "macro_f1", "weighted_f1")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--context", type=int, choices=(0, 1), default=1)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-5, help="encoder learning rate (head: 5×)")
    ap.add_argument("--goemotions-rows", type=int, default=9000)
    ap.add_argument("--init", type=Path, default=ROOT / "build/text/ckpt/best.pt")
    ap.add_argument("--out", type=Path, default=ROOT / "build/text_context")
    ap.add_argument(
        "--ablate-only", action="store_true", help="score the last checkpoint with/without context"
    )
    args = ap.parse_args()
    seed_everything(0)
    torch.set_num_threads(2)
    enc = resolve_encoder_dir(None)
    tok = load_tokenizer(enc, 128)
    tok.no_truncation()
    base = datasets_dir() / "text"
    rng = np.random.default_rng(0)
    ge_tr = load_split(base / "goemotions-ekman", "train")
    ge_tr = [ge_tr[i] for i in rng.permutation(len(ge_tr))[: args.goemotions_rows]]
    me_tr, me_va = load_split(base / "meld", "train"), load_split(base / "meld", "val")
    ge_va = load_split(base / "goemotions-ekman", "val")
    train = encode(tok, with_previous(ge_tr, False), 64) + encode(
        tok, with_previous(me_tr, bool(args.context)), 64
    )
    va_me = encode(tok, with_previous(me_va, bool(args.context)), 128)
    va_me_plain = encode(tok, with_previous(me_va, False), 128)
    va_ge = encode(tok, with_previous(ge_va, False), 128)
    model = EmotionClassifier(load_encoder(enc))
    args.out.mkdir(parents=True, exist_ok=True)
    last = args.out / f"context{args.context}-last.pt"
    log = args.out / f"context{args.context}.jsonl"

    def report(epoch: int, **extra: object) -> None:
        row = {
            "epoch": epoch,
            "meld_val": scores(model, va_me),
            "goemotions_val": scores(model, va_ge),
            **extra,
        }
        print(json.dumps(row), flush=True)
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    if args.ablate_only:
        model.load_state_dict(load_checkpoint(last, "cpu")["model"])
        report(args.epochs, meld_val_without_context=scores(model, va_me_plain))
        return 0
    model.load_state_dict(load_checkpoint(args.init, "cpu")["model"])
    report(0)
    y = np.array([i[2] for i in train])
    w = torch.from_numpy(class_weights(y, 7))
    enc_params = [p for n, p in model.named_parameters() if not n.startswith("head")]
    opt = torch.optim.AdamW(
        [{"params": enc_params, "lr": args.lr}, {"params": model.head.parameters(), "lr": 5 * args.lr}],
        weight_decay=0.01,
    )
    bs = 32
    lengths = np.array([len(i[0]) for i in train])
    steps = args.epochs * math.ceil(len(train) / bs)
    warm = int(0.06 * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warm) if s < warm else max(0.0, (steps - s) / max(1, steps - warm))
    )
    t0 = time.time()
    for ep in range(args.epochs):
        model.train()
        batches = epoch_batches(lengths, bs, 0, ep)  # emodesk train text's length-pooled order
        for k, b in enumerate(batches):
            loss = F.cross_entropy(
                forward(model, *batch([train[j] for j in b])), torch.from_numpy(y[b]), weight=w
            )
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            if k % 100 == 0:
                print(
                    f"epoch {ep + 1} step {k}/{len(batches)} loss {loss.item():.3f} {time.time() - t0:.0f}s"
                )
        torch.save({"model": model.state_dict()}, last)
        report(ep + 1)
    model.load_state_dict(load_checkpoint(last, "cpu")["model"])
    report(args.epochs, meld_val_without_context=scores(model, va_me_plain))
    return 0


if __name__ == "__main__":
    sys.exit(main())
