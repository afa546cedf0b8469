"""A face member fine-tuned end to end on the FER+ crowd votes, through webcam conditions.

Why: :mod:`ferplus_head` refits only the last layer, over features learned
from FER-2013's noisy labels; FER+'s own networks, trained on the vote
distributions from the start, reach 83–85 % on FER+ test. Training every
layer from the member's own weights (read back from its ONNX graph by
:func:`from_onnx.rebuild`) costs about a minute an epoch for the small ResNet
on two CPU cores with bfloat16 autocast and channels-last tensors, so it fits
a session where training from scratch would not.

- **targets**: the FER+ vote distribution over the seven emotions (images with
  mostly contempt, unknown or not-a-face votes skipped: ``ferplus_votes``),
  cross-entropy against the soft target;
- **inputs**: each batch through :func:`train.augment` (roll, scale, shift,
  mirror, contrast, occlusion), and ``--webcam`` of them further through
  :func:`webcam.webcam` (low resolution, blur, uneven light, sensor noise,
  JPEG) — other seeds than the webcam test frames;
- **schedule**: SGD with Nesterov momentum, one-cycle learning rate from
  ``--lr``/25 up to ``--lr`` over the first epoch (30 % of one) and down again;
- **selection**: the epoch with the best mirror-averaged accuracy on FER+
  **val** (majority labels); the test split is scored afterwards by
  ``emodesk eval``. ``last.pt`` after every epoch makes ``--resume`` continue
  a killed run where it stopped.

The export is the shipped form (``FlipAveragedProbs``: the softmax of the crop
and of its mirror image averaged inside the graph), checked against PyTorch,
then static int8 when that costs at most 0.5 points of val accuracy.

    python -m emodesk.lab.train.face.ferplus_finetune --init models/face-resnet-s-ferplus.onnx \\
        --out build/face/ft/face-resnet-s-ferplus-ft.onnx [--epochs 12] [--lr 0.02] [--resume]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from emodesk.errors import InputError, ModelError
from emodesk.evaluation.metrics import compute_metrics
from emodesk.inference.manifest import ManifestDraft
from emodesk.lab.paths import REPO
from emodesk.lab.train.common import (
    History,
    atomic_torch_save,
    check_agreement,
    export_onnx,
    load_checkpoint,
    onnx_outputs,
    rng_state,
    seed_everything,
    set_rng_state,
    write_manifest,
)
from emodesk.lab.train.face import minixception
from emodesk.lab.train.face.ferplus_head import ferplus_faces, to_input
from emodesk.lab.train.face.from_onnx import rebuild
from emodesk.lab.train.face.net import FaceNet, FlipAveragedProbs
from emodesk.lab.train.face.train import SIZE, augment, maybe_quantize, predict
from emodesk.lab.train.face.webcam import webcam
from emodesk.labels import LABELS

CALIBRATION_FACES = 4096


def is_minixception(init: Path) -> bool:
    """Whether ``init`` is a converted mini-Xception graph (else it must be a ``FaceNet`` export)."""
    import onnx

    try:
        return minixception.is_minixception(onnx.load(str(init)))
    except Exception as e:  # protobuf's DecodeError, OSError: one clear message
        raise ModelError(f"--init {init}: not a readable ONNX graph ({e})") from e


def build_net(init: Path, base: ManifestDraft, calibration: np.ndarray | None = None) -> torch.nn.Module:
    """The trainable network of ``init``, taking 48-px faces in [-1, 1] and giving logits in ``LABELS``
    order: a ``FaceNet`` read back from a ResNet graph, or a mini-Xception behind a bilinear resize
    to its own input size. ``calibration``: 48-px inputs for the folded batch norms' statistics."""
    if not is_minixception(init):
        return rebuild(init, calibration)
    net = minixception.rebuild(init, list(base.labels or []))
    if calibration is not None:
        x = minixception.AtSize(net).resize(torch.as_tensor(calibration)).numpy()
        minixception.calibrate(net, x)
    return minixception.AtSize(net)


def graph_net(net: torch.nn.Module) -> torch.nn.Module:
    """What the exported graph wraps: the network at its own input size."""
    return net.net if isinstance(net, minixception.AtSize) else net


def graph_input(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """48-px inputs as the exported graph receives them (resized for the mini-Xception)."""
    return net.resize(x) if isinstance(net, minixception.AtSize) else x


def soft_cross_entropy(logits: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` against target distributions ``q`` (rows sum to 1)."""
    return -(q * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def batch_inputs(x: torch.Tensor, gen: torch.Generator, webcam_share: float) -> torch.Tensor:
    """Augmented inputs: every face through ``augment``, a ``webcam_share`` of them through ``webcam``."""
    xb = augment(to_input(x), gen)
    if webcam_share <= 0:
        return xb
    pick = torch.rand(len(xb), generator=gen) < webcam_share
    return torch.where(pick.view(-1, 1, 1, 1), webcam(xb, gen), xb)


def _autocast(bf16: bool) -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)


def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively here; without it autocast is emulated, several times slower
    than float32 (mini-Xception on an AVX2 EPYC: over 10 min an epoch against 72 s)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def use_bf16(args: argparse.Namespace) -> bool:
    """``--precision``: bf16 or float32 as asked; ``auto`` (default) bf16 only where the CPU has it."""
    if args.no_bf16 or args.precision == "float32":
        return False
    return args.precision == "bf16" or cpu_has_bf16()


def train_epoch(
    net: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    x: torch.Tensor,
    q: torch.Tensor,
    gen: torch.Generator,
    *,
    batch_size: int,
    webcam_share: float,
    bf16: bool,
) -> float:
    """One pass over the training faces in a seeded order; the mean loss."""
    net.train()
    perm = torch.randperm(len(x), generator=gen)
    total, seen = 0.0, 0
    for i in range(0, len(x), batch_size):
        idx = perm[i : i + batch_size]
        xb = batch_inputs(x[idx], gen, webcam_share).contiguous(memory_format=torch.channels_last)
        with _autocast(bf16):
            logits = net(xb)
        loss = soft_cross_entropy(logits, q[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += float(loss.detach()) * len(idx)
        seen += len(idx)
    return total / max(1, seen)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Provenance:
    """What the manifest says about the run that made the export."""

    best_epoch: int  # 0-based
    val_before: float
    seconds: float
    n_train: int
    command: str


def _check_args(args: argparse.Namespace) -> None:
    problems = [
        msg
        for bad, msg in (
            (args.epochs < 1, "--epochs must be at least 1"),
            (args.batch_size < 1, "--batch-size must be at least 1"),
            (not args.lr > 0, "--lr must be above 0"),
            (args.weight_decay < 0, "--weight-decay must not be negative"),
            (not 0 <= args.webcam <= 1, "--webcam is a share in [0, 1]"),
            (args.limit is not None and args.limit < 1, "--limit must be at least 1"),
            (args.threads < 1, "--threads must be at least 1"),
        )
        if bad
    ]
    if problems:
        raise InputError("; ".join(problems))


def load_base(init: Path) -> ManifestDraft:
    """The starting member's manifest, checked to be a seven-label face member that rebuilds: a ResNet
    on 48-px crops with the labels in ``LABELS`` order, or a mini-Xception (any size, any label order)."""
    if not init.is_file() or not init.with_suffix(".json").is_file():
        raise InputError(f"--init {init}: the .onnx and its .json manifest beside it are needed")
    base = ManifestDraft.from_file(init.with_suffix(".json"))
    mini = is_minixception(init)
    labels = list(base.labels or [])
    if (sorted(labels) if mini else labels) != (sorted(LABELS) if mini else list(LABELS)):
        raise ModelError(
            f"--init {init}: labels {list(base.labels or [])}, the FER+ targets are {list(LABELS)}"
        )
    size = list(base.preprocessing.get("size", []))
    square = len(size) == 2 and size[0] == size[1]
    if base.modality != "face" or not square or (not mini and size != [SIZE, SIZE]):
        want = "square crops" if mini else f"{SIZE}x{SIZE} crops"
        raise ModelError(f"--init {init}: a face member on {want} is needed (size {size})")
    build_net(init, base)  # fails now, with the reason, rather than after the faces are decoded
    return base


def run_settings(args: argparse.Namespace, n_train: int) -> dict[str, Any]:
    """What a resumed run must share with the run that wrote its checkpoint."""
    return {
        "init_sha256": _sha256(args.init),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "webcam": args.webcam,
        "seed": args.seed,
        "limit": args.limit,
        "bf16": use_bf16(args),
        "train_faces": n_train,
    }


def check_resumable(saved: dict[str, Any], now: dict[str, Any], path: Path) -> None:
    """Refuse to continue a checkpoint made with other settings (its schedule and data would not fit)."""
    differ = [f"{k} {saved.get(k)!r} -> {v!r}" for k, v in now.items() if saved.get(k) != v]
    if differ:
        raise InputError(
            f"--resume: {path} was written by a run with other settings ({'; '.join(differ)}): "
            "resume with the same options, or pass another --checkpoint-dir to start afresh"
        )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--init", type=Path, required=True, help="a face ResNet or the fer mini-Xception (.json beside it)"
    )
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ferplus", type=Path, default=REPO.parent / "shared" / "datasets" / "faces" / "ferplus")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--lr", type=float, default=0.02, help="peak SGD learning rate (default 0.02)")
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--webcam", type=float, default=0.5, help="share of each batch through webcam conditions")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--precision",
        choices=("auto", "bf16", "float32"),
        default="auto",
        help="bf16 autocast or float32; auto (default): bf16 where the CPU runs it natively",
    )
    ap.add_argument("--no-bf16", action="store_true", help="the same as --precision float32")
    ap.add_argument("--no-quantize", action="store_true", help="ship float32 (never try int8)")
    ap.add_argument("--checkpoint-dir", type=Path, help="default: a hidden folder beside --out")
    ap.add_argument("--resume", action="store_true", help="continue from last.pt in the checkpoint folder")
    ap.add_argument(
        "--cache", type=Path, default=REPO / "build" / "face", help="folder for the decoded faces"
    )
    ap.add_argument("--limit", type=int, help="at most N training faces (quick runs)")
    ap.add_argument(
        "--allow-worse",
        action="store_true",
        help="export even when no epoch beats the starting weights on val (default: exit 3, no export)",
    )
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _check_args(args)
    t_start = time.monotonic()
    seed_everything(args.seed)
    torch.set_num_threads(args.threads)
    base = load_base(args.init)
    _, x_tr_np, q_tr_np, x_va, y_va = ferplus_faces(args.ferplus, args.cache, SIZE)
    if args.limit:
        keep = np.sort(np.random.default_rng(args.seed).permutation(len(x_tr_np))[: args.limit])
        x_tr_np, q_tr_np = x_tr_np[keep], q_tr_np[keep]
    calib = np.random.default_rng(args.seed).permutation(len(x_tr_np))[:CALIBRATION_FACES]
    net = build_net(args.init, base, to_input(x_tr_np[np.sort(calib)]).numpy())
    net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    x_tr, q_tr = torch.as_tensor(x_tr_np), torch.as_tensor(q_tr_np)
    steps = math.ceil(len(x_tr) / args.batch_size)
    opt = torch.optim.SGD(
        net.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=args.weight_decay
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.epochs * steps, pct_start=min(0.3, 1 / args.epochs)
    )
    ckdir: Path = args.checkpoint_dir or args.out.parent / f".{args.out.stem}.ckpt"
    last_path, best_path = ckdir / "last.pt", ckdir / "best.pt"
    history = History()
    gen = torch.Generator().manual_seed(args.seed)
    settings = run_settings(args, len(x_tr))
    command = "python -m emodesk.lab.train.face.ferplus_finetune " + shlex.join(sys.argv[1:])
    start, best_acc, seconds_before = 0, -1.0, 0.0
    before = float((predict(net, x_va, torch.device("cpu")).argmax(1) == y_va).mean())
    print(
        f"{len(x_tr)} training faces, {len(x_va)} val faces; val accuracy before: {before:.4f}",
        file=sys.stderr,
    )
    if args.resume and last_path.is_file():
        ck = load_checkpoint(last_path, "cpu")
        check_resumable(ck.get("settings", {}), settings, last_path)
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        history.epochs = ck["history"]
        start, best_acc = int(ck["epoch"]) + 1, float(ck["best_accuracy"])
        command = str(ck["command"])
        seconds_before = sum(float(e["seconds"]) for e in history.epochs)
        set_rng_state(ck["rng"])
        gen.set_state(ck["gen"])
        print(f"resumed from {last_path} after epoch {start}", file=sys.stderr)
    bf16 = use_bf16(args)
    for epoch in range(start, args.epochs):
        t0 = time.monotonic()
        loss = train_epoch(
            net, opt, sched, x_tr, q_tr, gen, batch_size=args.batch_size, webcam_share=args.webcam, bf16=bf16
        )
        m = compute_metrics(y_va, predict(net, x_va, torch.device("cpu")), bootstrap=0)
        row = {
            "epoch": epoch + 1,
            "loss": loss,
            "val_accuracy": m["accuracy"],
            "val_uar": m["uar"],
            "lr": float(sched.get_last_lr()[0]),
            "seconds": time.monotonic() - t0,
        }
        history.add(row)
        if m["accuracy"] > best_acc:
            best_acc = m["accuracy"]
            atomic_torch_save({"model": net.state_dict(), "epoch": epoch, "config": net.config}, best_path)
        (ckdir / "history.json").write_text(json.dumps(history.epochs, indent=1), encoding="utf-8")
        atomic_torch_save(
            {
                "model": net.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "history": history.epochs,
                "epoch": epoch,
                "best_accuracy": best_acc,
                "settings": settings,
                "command": command,
                "rng": rng_state(),
                "gen": gen.get_state(),
            },
            last_path,
        )
    if best_acc <= before and not args.allow_worse:
        print(
            f"no epoch beat the starting weights on val ({best_acc:.4f} <= {before:.4f}): nothing exported "
            "(--allow-worse exports the best epoch anyway)",
            file=sys.stderr,
        )
        return 3
    best = load_checkpoint(best_path, "cpu")
    final = build_net(args.init, base)
    final.load_state_dict(best["model"])
    prov = Provenance(
        best_epoch=int(best["epoch"]),
        val_before=before,
        seconds=seconds_before + (time.monotonic() - t_start),
        n_train=len(x_tr),
        command=command,
    )
    export(final, args, base, (x_va, y_va), history, prov)
    return 0


def export(
    net: torch.nn.Module,
    args: argparse.Namespace,
    base: ManifestDraft,
    val: tuple[np.ndarray, np.ndarray],
    history: History,
    prov: Provenance,
) -> Path:
    """The shipped graph (mirror averaging and softmax inside), checked, maybe int8, with its manifest."""
    out: Path = args.out
    x_va, y_va = val
    net = net.eval().to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    mini = isinstance(net, minixception.AtSize)
    model = FlipAveragedProbs(graph_net(net)).eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(
        model,
        [graph_input(net, to_input(x_va[:8]))],
        out,
        input_names=["input"],
        output_names=["probs"],
        dynamic_axes={"input": {0: "N"}, "probs": {0: "N"}},
    )
    x = graph_input(net, to_input(x_va[:256]))
    with torch.no_grad():
        ref = model(x).numpy()
    diff = check_agreement(ref, onnx_outputs(out, {"input": x.numpy()}), atol=1e-4, what=str(out))
    val_m = compute_metrics(y_va, predict(net, x_va, torch.device("cpu")))
    if mini:  # 0.2 MB in float32, and maybe_quantize feeds 48-px faces
        quant: dict[str, Any] = {"kept": "float32", "rule": "not tried: a mini-Xception is 0.2 MB in float32"}
    else:
        quant = maybe_quantize(out, {"x_val": x_va, "y_val": y_va}, skip=args.no_quantize)
    src: dict[str, Any] = dict(base.source)
    if mini:
        architecture = (
            f"{src.get('architecture', 'mini-Xception')}; weights read back from the base member's graph "
            "(emodesk/lab/train/face/minixception.py: folded batch norms recreated and calibrated), "
            f"its outputs reordered to {', '.join(LABELS)}; trained on the 48-px faces resized "
            f"bilinearly to {net.net.size} px, as the app resizes them"
        )
    else:
        cfg = net.config if isinstance(net, FaceNet) else {}
        architecture = (
            f"pre-activation ResNet, widths {list(cfg['widths'])}, blocks {list(cfg['blocks'])} "
            "(emodesk/lab/train/face/net.py), weights read back from the base member's graph "
            "(emodesk/lab/train/face/from_onnx.py)"
        )
    draft = dataclasses.replace(
        base,
        id=out.stem,
        labels=list(LABELS),
        source={
            "base_model": {"id": base.id or args.init.stem, "sha256": _sha256(args.init)},
            "base_source": {
                k: src[k]
                for k in (
                    "base_model",
                    "package",
                    "wheel_sha256",
                    "hdf5_sha256",
                    "architecture",
                    "method",
                    "data",
                    "command",
                )
                if k in src
            },
            "architecture": architecture,
            "method": "every layer fine-tuned (emodesk/lab/train/face/ferplus_finetune.py): soft "
            "cross-entropy against the FER+ crowd votes over the seven emotions (images with mostly "
            "contempt/unknown/not-a-face votes skipped), each batch through train.augment and "
            f"{args.webcam:.0%} of it through webcam.webcam, SGD (Nesterov, weight decay "
            f"{args.weight_decay:g}) with a one-cycle rate peaking at {args.lr:g}, "
            f"{'bfloat16 autocast' if use_bf16(args) else 'float32'}; the epoch chosen on FER+ val "
            "majority labels (mirror-averaged accuracy)",
            "data": "FER-2013 train images with FER+ votes (Barsoum et al. 2016); FER+ val (a seeded 10 % "
            "of FER-2013's training images, never trained on) chose the epoch"
            f"{'' if mini else ' and calibrated int8'}; "
            "FER-2013 test never seen",
            "train_faces": prov.n_train,
            "epochs_run": len(history.epochs),
            "best_epoch": prov.best_epoch + 1,
            "val_accuracy_before": prov.val_before,
            "val_accuracy_before_note": "the base's weights in PyTorch float32, mirror-averaged, as every "
            "epoch's val accuracy is measured (an int8 base's own graph differs on ~1% of faces)",
            "val_metrics": {k: val_m[k] for k in ("n", "accuracy", "uar", "macro_f1", "weighted_f1")},
            "history": history.epochs,
            "onnx_vs_torch_max_abs_diff": diff,
            "quantization": quant,
            "command": prov.command,
            "seed": args.seed,
            "seconds": round(prov.seconds, 1),
        },
        metrics={},
        created=None,
    )
    write_manifest(out, draft)
    print(
        f"wrote {out} (FER+ val accuracy {val_m['accuracy']:.4f}, before {prov.val_before:.4f}, "
        f"best epoch {prov.best_epoch + 1}, ONNX vs torch {diff:.2g})",
        file=sys.stderr,
    )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
