"""``emodesk train face``: a face-expression network on 48×48 gray crops (FER-2013 layout).

Generalising past FER-2013 crops (a webcam face is not a Kaggle crop):
augmentation on the GPU or CPU tensor itself — random rotation (±15°), scale
(0.85–1.15), shift (±10 %), mirror, brightness/contrast jitter and random
erasing (occlusion by hands, glasses) — so the network sees faces framed a
little differently from the detector's crop; the app crops around the
BlazeFace box with the same scale and shift as the mini-Xception member.

Selection uses only the validation split (accuracy with mirror averaging);
the test split is scored once, after export, by the exported ONNX.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from emodesk.errors import InputError
from emodesk.evaluation.datasets import Row, load_rows
from emodesk.evaluation.metrics import compute_metrics
from emodesk.inference.manifest import ManifestDraft
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
    quantize_static_int8,
    rng_state,
    seed_everything,
    set_rng_state,
    write_manifest,
)
from emodesk.lab.train.face.net import FaceNet, FlipAveragedProbs
from emodesk.labels import LABELS, N_LABELS

SIZE = 48
ARCHS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    # name: (widths, blocks per stage); p50 batch-1 latencies (1 CPU thread, mirror averaging
    # included) are measured by the export and stored in the manifest
    "s": ((32, 64, 128, 256), (1, 1, 1, 1)),
    "m": ((32, 64, 128, 256), (1, 2, 2, 2)),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        type=Path,
        help="FER-2013-layout folder ({train,val,test}/<class>/*.png), or an .npz from --cache "
        "(default: $EMODESK_DATA/faces/fer2013)",
    )
    p.add_argument(
        "--val",
        type=Path,
        help="a path,label manifest of crops for validation (default: the folder's val split)",
    )
    p.add_argument("--arch", choices=sorted(ARCHS), default="s", help="network size (default s)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1, help="peak SGD learning rate (default 0.1)")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument(
        "--balance", type=float, default=0.25, help="class-weight power (0 none, 1 inverse frequency)"
    )
    p.add_argument("--patience", type=int, default=25, help="early stopping on validation accuracy")
    p.add_argument("--workers-threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument(
        "--cache", type=Path, help="write/read the decoded images here (.npz) to skip PNG decoding"
    )
    p.add_argument(
        "--no-export", action="store_true", help="stop after training (export later with --resume)"
    )
    p.add_argument(
        "--export-only",
        action="store_true",
        help="export best.pt of a finished training in --checkpoint-dir (e.g. one run on a GPU machine)",
    )
    p.add_argument("--limit", type=int, help="at most N training images (quick runs)")
    p.add_argument("--no-quantize", action="store_true", help="ship float32 (never try int8)")


def _read_images(rows: list[Row]) -> np.ndarray:
    from emodesk import imaging

    x = np.empty((len(rows), SIZE, SIZE), np.uint8)
    for i, r in enumerate(rows):
        x[i] = imaging.resize(imaging.read_image(r.x, gray=True), (SIZE, SIZE))
    return x


def load_arrays(args: argparse.Namespace) -> dict[str, np.ndarray]:
    """``x_train, y_train, x_val, y_val`` as uint8 images and int64 labels."""
    if args.data is None:
        from emodesk.resources import datasets_dir

        args.data = datasets_dir() / "faces" / "fer2013"
    src: Path = args.data
    if src.suffix == ".npz":
        with np.load(src) as z:
            arrays = {k: z[k] for k in ("x_train", "y_train", "x_val", "y_val")}
    else:
        if not src.is_dir():
            raise InputError(f"face data {src} not found; pass --data FOLDER (FER-2013 layout)")
        cache: Path | None = args.cache
        if cache is not None and cache.is_file():
            with np.load(cache) as z:
                arrays = {k: z[k] for k in ("x_train", "y_train", "x_val", "y_val")}
        else:
            tr = load_rows(src, column="path", split="train")
            va = (
                load_rows(args.val, column="path") if args.val else load_rows(src, column="path", split="val")
            )
            arrays = {
                "x_train": _read_images(tr),
                "y_train": np.array([r.label for r in tr], np.int64),
                "x_val": _read_images(va),
                "y_val": np.array([r.label for r in va], np.int64),
            }
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cache, **arrays)
    if args.limit:  # a seeded random subset: the folders are sorted by class
        keep = np.sort(np.random.default_rng(args.seed).permutation(len(arrays["y_train"]))[: args.limit])
        arrays["x_train"], arrays["y_train"] = arrays["x_train"][keep], arrays["y_train"][keep]
    return arrays


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random affine + mirror + photometric jitter + erasing on a (N, 1, S, S) batch in [-1, 1]."""
    n, dev = x.shape[0], x.device

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return torch.rand(*(shape or (n,)), generator=gen, device=dev) * (hi - lo) + lo

    ang = u(-15, 15) * math.pi / 180
    scale = u(0.85, 1.15)
    flip = torch.where(u(0, 1) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, u(-0.2, 0.2)], 1),
            torch.stack([sin * flip, cos, u(-0.2, 0.2)], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * u(0.7, 1.3).view(n, 1, 1, 1) + mean + u(-0.2, 0.2).view(n, 1, 1, 1)
    # random erasing: a rectangle of 2–20 % of the crop, half of the images
    side = x.shape[-1]
    area = u(0.02, 0.2) * side * side
    aspect = torch.exp(u(math.log(0.3), math.log(3.3)))
    h = torch.sqrt(area * aspect).clamp(4, side - 1)
    w = torch.sqrt(area / aspect).clamp(4, side - 1)
    y0 = u(0, 1) * (side - h)
    x0 = u(0, 1) * (side - w)
    ar = torch.arange(side, device=dev, dtype=torch.float32)
    rows = (ar.view(1, -1) >= y0.view(-1, 1)) & (ar.view(1, -1) < (y0 + h).view(-1, 1))
    cols = (ar.view(1, -1) >= x0.view(-1, 1)) & (ar.view(1, -1) < (x0 + w).view(-1, 1))
    mask = (rows[:, :, None] & cols[:, None, :] & (u(0, 1) < 0.5).view(n, 1, 1)).unsqueeze(1)
    noise = torch.rand(x.shape, generator=gen, device=dev) * 2 - 1
    return torch.where(mask, noise, x.clamp(-1.5, 1.5))


def _to_input(x: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(x).to(device)
    return (t.float().unsqueeze(1) / 127.5) - 1.0


@torch.no_grad()
def predict(net: torch.nn.Module, x: np.ndarray, device: torch.device, batch: int = 512) -> np.ndarray:
    """Mirror-averaged probabilities, as the exported model computes them."""
    net.eval()
    tta = FlipAveragedProbs(net)
    out = [tta(_to_input(x[i : i + batch], device)).float().cpu().numpy() for i in range(0, len(x), batch)]
    return np.concatenate(out)


def run(args: argparse.Namespace) -> int:
    seed_everything(args.seed)
    device = pick_device(args.device)
    if args.workers_threads:
        torch.set_num_threads(args.workers_threads)
    ckdir: Path = args.checkpoint_dir or args.out.parent / f".{args.out.stem}.ckpt"
    last_path, best_path = ckdir / "last.pt", ckdir / "best.pt"
    widths, blocks = ARCHS[args.arch]
    net = FaceNet(widths, blocks).to(device)
    epochs = args.epochs if args.epochs is not None else 80
    data = load_arrays(args)
    if args.export_only:
        return _export_finished(args, ckdir, data)
    x_tr = torch.as_tensor(data["x_train"]).to(device)
    y_tr = torch.as_tensor(data["y_train"]).to(device)
    steps_per_epoch = math.ceil(len(x_tr) / args.batch_size)
    opt = torch.optim.SGD(
        net.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=args.weight_decay
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=max(1, epochs * steps_per_epoch), pct_start=0.15
    )
    weights = torch.as_tensor(class_weights(data["y_train"], N_LABELS, args.balance), device=device)
    stopper = EarlyStopping(patience=args.patience)
    history = History()
    start_epoch = 0
    gen = torch.Generator(device=device)
    gen.manual_seed(args.seed)
    if args.resume and last_path.is_file():
        ck = load_checkpoint(
            last_path, "cpu"
        )  # RNG states must stay on the CPU; load_state_dict moves the rest
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        stopper.load_state_dict(ck["stopper"])
        history.epochs = ck["history"]
        start_epoch = ck["epoch"] + 1
        set_rng_state(ck["rng"])
        gen.set_state(ck["gen"])
        print(f"resumed from {last_path} after epoch {ck['epoch'] + 1}", file=sys.stderr)
    use_bf16 = device.type == "cuda"
    # one-cycle's high-LR phase makes validation accuracy jump around: stopping
    # early is only allowed once the rate has come down (the last 40 % of epochs)
    stop_from = int(0.6 * epochs)
    for epoch in range(start_epoch, epochs):
        if stopper.should_stop and epoch >= stop_from:
            break
        t0 = time.monotonic()
        net.train()
        perm = torch.randperm(len(x_tr), generator=gen, device=device)
        total, seen = 0.0, 0
        for i in progress(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs}", quiet=args.quiet):
            idx = perm[i * args.batch_size : (i + 1) * args.batch_size]
            xb = augment(_to_input(x_tr[idx], device), gen)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                logits = net(xb)
            loss = F.cross_entropy(
                logits.float(), y_tr[idx], weight=weights, label_smoothing=args.label_smoothing
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        probs = predict(net, data["x_val"], device)
        m = compute_metrics(data["y_val"], probs, bootstrap=0)
        improved = stopper.step(m["accuracy"], epoch)
        history.add(
            {
                "epoch": epoch + 1,
                "loss": total / max(1, seen),
                "val_accuracy": m["accuracy"],
                "val_uar": m["uar"],
                "val_macro_f1": m["macro_f1"],
                "lr": float(sched.get_last_lr()[0]),
                "seconds": time.monotonic() - t0,
            },
            quiet=args.quiet,
        )
        if improved:
            atomic_torch_save(
                {"model": net.state_dict(), "epoch": epoch, "config": net.config, "command": command_line()},
                best_path,
            )
        (ckdir / "history.json").write_text(json.dumps(history.epochs, indent=1), encoding="utf-8")
        atomic_torch_save(
            {
                "model": net.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "stopper": stopper.state_dict(),
                "history": history.epochs,
                "epoch": epoch,
                "rng": rng_state(),
                "gen": gen.get_state(),
                "args": {k: str(v) for k, v in vars(args).items()},
            },
            last_path,
        )
    if args.no_export:
        print(f"training done; checkpoints in {ckdir}", file=sys.stderr)
        return 0
    best = load_checkpoint(best_path, "cpu")
    final = FaceNet(widths, blocks)
    final.load_state_dict(best["model"])
    export_face(final, args, data, history, best_epoch=int(best["epoch"]), command=command_line())
    return 0


def _export_finished(args: argparse.Namespace, ckdir: Path, data: dict[str, np.ndarray]) -> int:
    """Export ``best.pt`` with the per-epoch history a finished run left beside it."""
    best_path, hist_path = ckdir / "best.pt", ckdir / "history.json"
    if args.resume or args.no_export:
        raise InputError("--export-only exports a finished training: drop --resume and --no-export")
    if not best_path.is_file() or not hist_path.is_file():
        raise InputError(f"--export-only: {ckdir} lacks best.pt or history.json (train first)")
    best = load_checkpoint(best_path, "cpu")
    cfg = best["config"]
    if (tuple(cfg["widths"]), tuple(cfg["blocks"])) != ARCHS[args.arch]:
        raise InputError(f"--export-only: {best_path} is not arch {args.arch!r} (config {cfg})")
    net = FaceNet(tuple(cfg["widths"]), tuple(cfg["blocks"]))
    net.load_state_dict(best["model"])
    history = History()
    history.epochs = json.loads(hist_path.read_text(encoding="utf-8"))
    # checkpoints from before the command was stored: rebuild it from what the history proves
    peak = max(float(e["lr"]) for e in history.epochs)
    command = best.get("command") or (
        f"emodesk train face --arch {args.arch} --seed {args.seed} --epochs {len(history.epochs)} "
        f"(peak lr ≈ {peak:.2g}; emodesk/lab/train/face/gpu_train.sh)"
    )
    export_face(net, args, data, history, best_epoch=int(best["epoch"]), command=command)
    return 0


def _onnx_val_accuracy(path: Path, data: dict[str, np.ndarray]) -> float:
    x = _to_input(data["x_val"], torch.device("cpu")).numpy()
    probs = np.concatenate([onnx_outputs(path, {"input": x[i : i + 512]}) for i in range(0, len(x), 512)])
    return float((probs.argmax(axis=1) == data["y_val"]).mean())


def maybe_quantize(out: Path, data: dict[str, np.ndarray], *, skip: bool) -> dict[str, Any]:
    """Replace ``out`` by its static int8 version when val accuracy drops by at most 0.5 points."""
    rule = (
        "int8 (static QDQ, per-channel 7-bit weights, calibrated on 512 val images) when val accuracy "
        "drops ≤ 0.005"
    )
    if skip:
        return {"kept": "float32", "rule": "--no-quantize"}
    int8 = out.with_suffix(".int8.onnx")
    x = _to_input(data["x_val"][:512], torch.device("cpu")).numpy()
    quantize_static_int8(out, int8, [{"input": x[i : i + 32]} for i in range(0, len(x), 32)])
    acc32, acc8 = _onnx_val_accuracy(out, data), _onnx_val_accuracy(int8, data)
    kept = "int8" if acc32 - acc8 <= 0.005 else "float32"
    if kept == "int8":
        os.replace(int8, out)
    else:
        int8.unlink()
    print(f"val accuracy float32 {acc32:.4f}, int8 {acc8:.4f}: shipping {kept}", file=sys.stderr)
    return {"kept": kept, "rule": rule, "val_accuracy_float32": acc32, "val_accuracy_int8": acc8}


def export_face(
    net: FaceNet,
    args: argparse.Namespace,
    data: dict[str, np.ndarray],
    history: History,
    *,
    best_epoch: int,
    command: str,
) -> Path:
    """ONNX with mirror averaging and softmax inside; agreement check; manifest."""
    out: Path = args.out
    net = net.eval().cpu()
    model = FlipAveragedProbs(net).eval()
    example = _to_input(data["x_val"][:8], torch.device("cpu"))
    export_onnx(
        model,
        [example],
        out,
        input_names=["input"],
        output_names=["probs"],
        dynamic_axes={"input": {0: "N"}, "probs": {0: "N"}},
    )
    x = _to_input(data["x_val"][:256], torch.device("cpu"))
    with torch.no_grad():
        ref = model(x).numpy()
    diff = check_agreement(ref, onnx_outputs(out, {"input": x.numpy()}), atol=1e-4, what=str(out))
    val = compute_metrics(data["y_val"], predict(net, data["x_val"], torch.device("cpu")))
    quant = maybe_quantize(out, data, skip=args.no_quantize)
    fields = ManifestDraft(
        id=out.stem,
        modality="face",
        outputs=[{"name": "probs", "shape": ["N", N_LABELS], "dtype": "float32"}],
        preprocessing={
            "color": "gray",
            "gray": "ITU-R 601 luma, as cv2.COLOR_BGR2GRAY",
            "size": [SIZE, SIZE],
            "layout": "NCHW",
            "resize": "bilinear (area when shrinking)",
            "range": [-1.0, 1.0],
            "normalize": "x / 127.5 - 1",
            "crop": {
                "box_from": "face-detector-blazeface-short",
                "square": "side = max(w, h) * scale, centre = box centre + (shift_x, shift_y) * max(w, h)",
                "scale": 1.2,
                "shift_x": 0.0,
                "shift_y": -0.05,
                "border": "replicate",
            },
            "output": "probs",
            "test_time": "mean of the softmax of the crop and of its mirror image (inside the graph)",
        },
        labels=list(LABELS),
        source={
            "architecture": f"pre-activation ResNet, widths {list(net.config['widths'])}, blocks "
            f"{list(net.config['blocks'])} (emodesk/lab/train/face/net.py, arch {args.arch!r})",
            "data": "FER-2013 (Goodfellow et al. 2013), ../shared/datasets/faces/fer2013 layout",
            "protocol": "trained on the train split (23,990 images, duplicates removed), early stopping "
            "and selection on the val split (2,665, a seeded 10 % per class of the original training "
            "images); the 7,178-image test split was never used for training or selection",
            "command": command,
            "seed": args.seed,
            "epochs_run": len(history.epochs),
            "best_epoch": best_epoch + 1,
            "val_metrics": {k: val[k] for k in ("n", "accuracy", "uar", "macro_f1", "weighted_f1")},
            "history": history.epochs,
            "onnx_vs_torch_max_abs_diff": diff,
            "quantization": quant,
        },
        license="Apache-2.0 (emodesk). Trained on FER-2013, whose images were collected from the web "
        "and released for the 2013 Kaggle challenge for research; check its terms before commercial use.",
        metrics={},
        requires={},
    )
    write_manifest(out, fields)
    print(
        f"wrote {out} and {out.with_suffix('.json')} (val accuracy {val['accuracy']:.4f}, "
        f"ONNX vs torch {diff:.2g})",
        file=sys.stderr,
    )
    return out
