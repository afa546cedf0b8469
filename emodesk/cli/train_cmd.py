"""``emodesk train face|voice|text --out MODEL.onnx …``: train, export and describe a member.

Training needs PyTorch, which only the ``train`` extra installs; the app and
the bundle never import it (import-linter contract), so a missing torch is a
one-line message here, not a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from emodesk.cli.common import lab_module
from emodesk.errors import EmodeskError, InputError
from emodesk.inference.members import MEMBER_KINDS


def _parser(modality: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"emodesk train {modality}",
        description=f"Train the {modality} emotion member, export it to ONNX and write its manifest.",
    )
    p.add_argument("--out", type=Path, required=True, metavar="MODEL.onnx", help="the exported model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--epochs", type=int, help="maximum epochs (early stopping may end sooner)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument(
        "--checkpoint-dir", type=Path, help="where checkpoints go (default: .<out stem>.ckpt beside --out)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    return p


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    usage = f"usage: emodesk train {{{','.join(MEMBER_KINDS)}}} --out MODEL.onnx [options]"
    if argv[:1] in (["-h"], ["--help"]):
        print(f"{usage}\n(emodesk train MODALITY --help lists a modality's options)")
        return 0
    if not argv or argv[0] not in MEMBER_KINDS:
        print(usage, file=sys.stderr)
        return 2
    modality, rest = argv[0], argv[1:]
    try:
        mod = lab_module(MEMBER_KINDS[modality].trainer, "training")
    except EmodeskError as e:  # torch or the lab missing: the message says what to install
        print(f"emodesk: {e}", file=sys.stderr)
        return 2
    p = _parser(modality)
    mod.add_arguments(p)
    args = p.parse_args(rest)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.out.suffix != ".onnx":
        print(f"emodesk: --out must name a .onnx file, got {args.out}", file=sys.stderr)
        return 2
    try:
        return int(mod.run(args))
    except InputError as e:
        print(f"emodesk: {e}", file=sys.stderr)
        return 2
    except EmodeskError as e:
        print(f"emodesk: {e}", file=sys.stderr)
        return 1
