"""A face member's classifier refitted on the FER+ crowd votes, over its own frozen features.

Why: the members learned FER-2013's labels, and FER+ (ten crowd votes per
image) moves 54 % of "sad" and 37 % of "fear" images to neutral. Most of that
disagreement is where the classes are divided, not what the network sees, so
the cheapest correct step — one that runs on the 2-core CPU in minutes, where
retraining a network from scratch takes hours — is to keep each member's
feature extractor and refit its last linear layer with the vote distributions
as soft targets (cross-entropy against the renormalised seven-emotion votes;
images whose votes are mostly contempt, unknown or not-a-face are skipped,
``ferplus_votes``).

The features of the training faces are computed on the clean crop and on
``--augment`` copies through :func:`train.augment` (roll, scale, shift,
mirror, contrast, occlusion) and :func:`webcam.webcam` (low resolution, blur,
uneven light, sensor noise, JPEG), so the new layer separates the classes the
way a webcam shows them too. For the ResNets, whose graph averages the crop
and its mirror image, both branches' features are training rows. The L2
strength is chosen on the FER+ **val** split (majority labels, the rule the
shipped graph applies); the test split is scored afterwards by ``emodesk eval``.

The new graph is the member's own with only the classifier swapped: the
ResNets' ``Gemm`` (both branches) takes float weights and feeds the softmax
directly (an int8 graph's output quantiser is dropped: its range was the old
logits'); the mini-Xception's last convolution and global pooling become a
flatten and a ``Gemm`` over its 4×4 map. The export is checked against the
numpy head on the val features.

    python -m emodesk.lab.train.face.ferplus_head --model models/face-resnet-m.onnx \
        --out build/face/face-resnet-m-ferplus.onnx [--augment 4] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper, numpy_helper
from torch.nn import functional as F

from emodesk import imaging
from emodesk.errors import InputError, ModelError
from emodesk.evaluation.datasets import ferplus_votes, load_rows
from emodesk.evaluation.metrics import compute_metrics
from emodesk.inference.manifest import ManifestDraft
from emodesk.lab.paths import REPO
from emodesk.lab.train.common import check_agreement, seed_everything, write_manifest
from emodesk.lab.train.face.train import augment
from emodesk.lab.train.face.webcam import webcam
from emodesk.labels import LABELS, N_LABELS

L2_GRID = (1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3)
BATCH = 256


@dataclasses.dataclass(frozen=True)
class Head:
    """Where a member's classifier sits: the feature tensors it reads (one per test-time branch)
    and the nodes that the refitted layer replaces."""

    kind: str  # "gemm" (ResNet: Gemm per branch, shared weights) or "conv_gap" (mini-Xception)
    features: tuple[str, ...]
    gemms: tuple[str, ...] = ()


def find_head(model: onnx.ModelProto) -> Head:
    """The classifier of a face member's graph, or a clear error naming what was expected."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    softmaxes = [n for n in g.node if n.op_type == "Softmax"]
    gemms: list[onnx.NodeProto] = []
    for sm in softmaxes:
        n = producer.get(sm.input[0])
        while n is not None and n.op_type in ("DequantizeLinear", "QuantizeLinear"):
            n = producer.get(n.input[0])
        if n is not None and n.op_type == "Gemm":
            gemms.append(n)
    if gemms and len(gemms) == len(softmaxes):
        return Head("gemm", tuple(n.input[0] for n in gemms), tuple(n.name for n in gemms))
    if len(softmaxes) == 1:
        chain: list[onnx.NodeProto] = []
        n = producer.get(softmaxes[0].input[0])
        while n is not None and n.op_type in ("Flatten", "GlobalAveragePool", "Reshape") and len(chain) < 3:
            chain.append(n)
            n = producer.get(n.input[0])
        if n is not None and n.op_type == "Conv" and any(c.op_type == "GlobalAveragePool" for c in chain):
            return Head("conv_gap", (n.input[0],))
    raise ModelError(
        "expected a face member whose softmax reads a Gemm (one per mirror branch) or a last "
        "convolution and global average pooling; found neither"
    )


def with_feature_outputs(model: onnx.ModelProto, names: Sequence[str]) -> bytes:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for name in names:
        m.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return m.SerializeToString()


def _session(model_bytes: bytes, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def read_faces(paths: Sequence[str], size: int) -> np.ndarray:
    """Grey crops at the member's input size, read the way ``emodesk eval`` reads a crop manifest."""
    out = np.empty((len(paths), size, size), np.uint8)
    for i, p in enumerate(paths):
        out[i] = imaging.resize(imaging.to_gray(imaging.read_image(p)), (size, size))
    return out


def ferplus_faces(
    ferplus: Path, cache: Path, size: int
) -> tuple[list[tuple[str, list[float]]], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """FER+ training votes and faces, val faces and majority labels (decoded once into ``cache``).

    Returns ``(train, x_train, q_train, x_val, y_val)``: ``train`` the (path, votes) pairs of
    ``ferplus_votes``, faces as (N, size, size) uint8, votes as (N, 7) float32.
    """
    train = ferplus_votes(ferplus, "train")
    val = load_rows(ferplus, column="path", split="val")
    if not train or not val:
        raise InputError(f"{ferplus}: no FER+ train votes or val rows")
    cache.mkdir(parents=True, exist_ok=True)
    faces = cache / f"ferplus-faces-{size}.npz"
    if faces.is_file():
        with np.load(faces) as z:
            x_tr, x_va = z["x_train"], z["x_val"]
    else:
        x_tr = read_faces([p for p, _ in train], size)
        x_va = read_faces([r.x for r in val], size)
        np.savez(faces, x_train=x_tr, x_val=x_va)
    if len(x_tr) != len(train) or len(x_va) != len(val):
        raise InputError(f"{faces} does not match {ferplus}'s rows: delete it to decode the faces again")
    q_tr = np.asarray([v for _, v in train], np.float32)
    y_va = np.asarray([r.label for r in val], np.int64)
    return train, x_tr, q_tr, x_va, y_va


def features(sess: ort.InferenceSession, head: Head, x: torch.Tensor) -> list[np.ndarray]:
    """Each branch's features (N, D) for inputs (N, 1, S, S) in [-1, 1]."""
    outs: list[list[np.ndarray]] = [[] for _ in head.features]
    name = sess.get_inputs()[0].name
    for i in range(0, len(x), BATCH):
        got = sess.run(list(head.features), {name: x[i : i + BATCH].numpy()})
        for k, a in enumerate(got):
            outs[k].append(a.reshape(len(a), -1))
    return [np.concatenate(o) for o in outs]


def _frames(csv_path: Path) -> list[tuple[str, int, str]]:
    """(frame path, label id, source face) of a ``webcam_fer`` CSV (``path,label,source``)."""
    out: list[tuple[str, int, str]] = []
    try:
        with open(csv_path, encoding="utf-8", newline="") as fh:
            for i, rec in enumerate(csv.DictReader(fh), start=2):
                if rec.get("label") not in LABELS or not rec.get("source"):
                    raise InputError(f"{csv_path}:{i}: expected path,label,source with one of {LABELS}")
                out.append((str(csv_path.parent / rec["path"]), LABELS.index(rec["label"]), rec["source"]))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{csv_path} is unreadable: {e}") from None
    if not out:
        raise InputError(f"{csv_path} lists no frames")
    return out


def live_boxes(frames: Sequence[tuple[str, int, str]], cache: Path) -> np.ndarray:
    """The live detector's largest face in each frame, as ``emodesk eval --detect`` finds it:
    (N, 4) x, y, w, h with NaN where no face was found; cached (the same for every member)."""
    if cache.is_file():
        with np.load(cache) as z:
            if len(z["boxes"]) == len(frames):
                return z["boxes"]
    from emodesk.evaluation.datasets import Row
    from emodesk.evaluation.evaluate import find_largest_faces
    from emodesk.inference.face_detector import FaceDetector

    t0 = time.monotonic()
    found = find_largest_faces([Row(p, y) for p, y, _ in frames], FaceDetector.load(device="cpu"))
    boxes = np.full((len(frames), 4), np.nan, np.float32)
    for i, f in enumerate(found):
        if f is not None:
            boxes[i] = f.box
    np.savez(cache, boxes=boxes)
    print(f"live detector on {len(frames)} frames: {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return boxes


def live_crops(
    frames: Sequence[tuple[str, int, str]], boxes: np.ndarray, model_json: Path
) -> tuple[np.ndarray, np.ndarray]:
    """The member's own aligned crop of each found face, grey at its input size, and the indices
    of the frames they came from."""
    from emodesk.inference.face_scorer import FaceExpressionScorer
    from emodesk.inference.manifest import ModelManifest
    from emodesk.inference.runtime import OnnxModel

    scorer = FaceExpressionScorer(OnnxModel(ModelManifest.load(model_json), device="cpu"))
    keep = np.flatnonzero(~np.isnan(boxes[:, 0]))
    w, h = scorer.size
    crops = np.empty((len(keep), h, w), np.uint8)
    for k, i in enumerate(keep):
        crop = scorer.crop(imaging.read_image(frames[int(i)][0]), tuple(float(v) for v in boxes[i]))
        if crop.ndim == 3:
            crop = imaging.to_gray(crop[:, :, 0] if crop.shape[2] == 1 else crop)
        crops[k] = crop
    return crops, keep


def _live_features(
    args: argparse.Namespace,
    frames: Sequence[tuple[str, int, str]],
    votes: dict[str, list[float]],
    sess: ort.InferenceSession,
    head: Head,
) -> tuple[list[np.ndarray], np.ndarray, int]:
    """Features of the live crops of the training frames whose source face has FER+ votes
    (one array per branch), their soft targets, and how many faces the detector found."""
    cache = args.cache / f"ferplus-live-{args.model.stem}-{_sha12(args.model)}-{_sha12(args.live_frames)}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            return [z[f"f{i}"] for i in range(len(head.features))], z["q"], int(z["found"])
    boxes = live_boxes(frames, args.cache / f"live-boxes-{_sha12(args.live_frames)}.npz")
    crops, keep = live_crops(frames, boxes, args.model.with_suffix(".json"))
    sources = [str(Path(frames[int(i)][2]).resolve()) for i in keep]
    voted = np.asarray([s in votes for s in sources])
    q = np.asarray([votes[s] for s, v in zip(sources, voted, strict=True) if v], np.float32)
    feats = [f.astype(np.float32) for f in features(sess, head, to_input(crops[voted]))]
    np.savez(cache, q=q, found=len(keep), **{f"f{k}": f for k, f in enumerate(feats)})  # type: ignore[arg-type]
    return feats, q, len(keep)


def to_input(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 faces (N, S, S) as the members' input (N, 1, S, S) in [-1, 1]."""
    return torch.as_tensor(x).float().unsqueeze(1) / 127.5 - 1.0


def fit_softmax(
    x: np.ndarray, q: np.ndarray, l2: float, *, w0: np.ndarray | None = None, iters: int = 150
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression on soft targets ``q`` (rows sum to 1): minimises
    mean cross-entropy + ``l2`` · ||W||² with L-BFGS (convex: the start only saves iterations)."""
    xt, qt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(q, dtype=torch.float32)
    w = torch.zeros((x.shape[1], N_LABELS), dtype=torch.float32)
    if w0 is not None:
        w = torch.as_tensor(w0, dtype=torch.float32).clone()
    w.requires_grad_(True)
    b = torch.zeros(N_LABELS, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=iters, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = -(qt * F.log_softmax(xt @ w + b, dim=1)).sum(1).mean() + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), b.detach().numpy()


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def head_probs(feats: Sequence[np.ndarray], w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """What the new graph outputs: the mean of each branch's softmax."""
    return np.mean([_softmax(f @ w + b) for f in feats], axis=0)


def rewrite(model: onnx.ModelProto, head: Head, w: np.ndarray, b: np.ndarray) -> onnx.ModelProto:
    """The member's graph with the refitted classifier (canonical label order out)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    wname, bname = "ferplus_head.weight", "ferplus_head.bias"
    kept = [t for t in g.initializer if t.name not in (wname, bname)]  # a refitted member refitted again
    del g.initializer[:]
    g.initializer.extend(kept)
    g.initializer.extend(
        [
            numpy_helper.from_array(w.T.astype(np.float32), wname),
            numpy_helper.from_array(b.astype(np.float32), bname),
        ]
    )
    producer = {o: n for n in g.node for o in n.output}
    if head.kind == "gemm":
        for n in g.node:
            if n.name in head.gemms:
                del n.input[1:]
                n.input.extend([wname, bname])
                n.ClearField("attribute")
                n.attribute.append(helper.make_attribute("transB", 1))
        for sm in (n for n in g.node if n.op_type == "Softmax"):
            src = producer[sm.input[0]]
            while src.op_type in ("DequantizeLinear", "QuantizeLinear"):
                src = producer[src.input[0]]
            sm.input[0] = src.output[0]  # the old logits' quantiser is bypassed
    else:
        sm = next(n for n in g.node if n.op_type == "Softmax")
        drop: set[str] = set()
        n = producer[sm.input[0]]
        while True:
            drop.add(n.name)
            if n.op_type == "Conv":
                break
            n = producer[n.input[0]]
        keep = [n for n in g.node if n.name not in drop and n is not sm]
        flat = helper.make_node(
            "Flatten", [head.features[0]], ["ferplus_head/flat"], name="ferplus_head/Flatten", axis=1
        )
        gemm = helper.make_node(
            "Gemm",
            ["ferplus_head/flat", wname, bname],
            ["ferplus_head/logits"],
            name="ferplus_head/Gemm",
            transB=1,
        )
        sm.input[0] = "ferplus_head/logits"
        sm.ClearField("attribute")
        sm.attribute.append(helper.make_attribute("axis", 1))
        del g.node[:]
        g.node.extend([*keep, flat, gemm, sm])
    _drop_unused_initializers(g)
    onnx.checker.check_model(m)
    return m


def _drop_unused_initializers(g: onnx.GraphProto) -> None:
    """Nodes that no longer feed an output (the old head's quantisers), then unread initializers."""
    needed = {o.name for o in g.output}
    live: list[onnx.NodeProto] = []
    for n in reversed(list(g.node)):
        if any(o in needed for o in n.output):
            live.append(n)
            needed.update(n.input)
    del g.node[:]
    g.node.extend(reversed(live))
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)


def _sha12(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="a face member (its .json beside it)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ferplus", type=Path, default=REPO.parent / "shared" / "datasets" / "faces" / "ferplus")
    ap.add_argument("--augment", type=int, default=4, help="augmented copies of each training face")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--cache", type=Path, default=REPO / "build" / "face", help="folder for decoded faces and features"
    )
    ap.add_argument(
        "--live-frames",
        type=Path,
        help="webcam frames of the training faces (python -m emodesk.lab.assets.webcam_fer --split train "
        "--seed 2 writes train.csv): each found face's live crop becomes a training row under its "
        "source face's votes",
    )
    ap.add_argument(
        "--live-val",
        type=Path,
        help="webcam frames of the val faces under FER+ labels (webcam_fer --split val --seed 1: "
        "val-ferplus.csv): the L2 is then chosen on the mean of clean and live-crop val accuracy",
    )
    ap.add_argument(
        "--l2",
        type=float,
        nargs="+",
        default=list(L2_GRID),
        help=f"L2 strengths to choose from on val (default {' '.join(f'{v:g}' for v in L2_GRID)})",
    )
    args = ap.parse_args(argv)
    t_start = time.monotonic()
    seed_everything(args.seed)
    torch.set_num_threads(args.threads)
    base = ManifestDraft.from_file(args.model.with_suffix(".json"))
    model = onnx.load(str(args.model))
    head = find_head(model)
    size = int(base.preprocessing["size"][0])
    sess = _session(with_feature_outputs(model, head.features), args.threads)

    train, x_tr, q_tr, x_va, y_va = ferplus_faces(args.ferplus, args.cache, size)
    print(
        f"{len(x_tr)} training faces with FER+ votes, {len(x_va)} val faces ({size}×{size})", file=sys.stderr
    )

    feats_cache = (
        args.cache
        / f"ferplus-feats-{args.model.stem}-{_sha12(args.model)}-aug{args.augment}-s{args.seed}.npz"
    )
    if feats_cache.is_file():
        with np.load(feats_cache) as z:
            f_tr, qq, f_va = (
                z["f_train"],
                z["q_train"],
                [z[k] for k in sorted(z.files) if k.startswith("f_val")],
            )
    else:
        gen = torch.Generator().manual_seed(args.seed)
        blocks, targets = [], []
        for copy in range(args.augment + 1):
            t0 = time.monotonic()
            x = to_input(x_tr)
            if copy:
                x = torch.cat([webcam(augment(x[i : i + BATCH], gen), gen) for i in range(0, len(x), BATCH)])
            for f in features(sess, head, x):
                blocks.append(f.astype(np.float32))
                targets.append(q_tr)
            print(f"features, copy {copy}: {time.monotonic() - t0:.0f} s", file=sys.stderr)
        f_tr, qq = np.concatenate(blocks), np.concatenate(targets)
        f_va = features(sess, head, to_input(x_va))
        arrays = {"f_train": f_tr, "q_train": qq, **{f"f_val{k}": f for k, f in enumerate(f_va)}}
        np.savez(feats_cache, **arrays)  # type: ignore[arg-type]

    live: dict[str, Any] = {}
    if args.live_frames is not None:
        frames = _frames(args.live_frames)
        votes = {str(Path(p).resolve()): v for p, v in train}
        f_live, q_live, n_found = _live_features(args, frames, votes, sess, head)
        f_tr, qq = np.concatenate([f_tr, *f_live]), np.concatenate([qq, *([q_live] * len(f_live))])
        live["train"] = {
            "frames": len(frames),
            "faces_found": n_found,
            "rows": int(sum(len(f) for f in f_live)),
        }
        print(f"live crops: {n_found} of {len(frames)} training frames", file=sys.stderr)
    f_lv: list[np.ndarray] = []
    y_lv = np.zeros(0, np.int64)
    if args.live_val is not None:
        frames_v = _frames(args.live_val)
        boxes = live_boxes(frames_v, args.cache / f"live-boxes-{_sha12(args.live_val)}.npz")
        crops, keep = live_crops(frames_v, boxes, args.model.with_suffix(".json"))
        f_lv = features(sess, head, to_input(crops))
        y_lv = np.asarray([frames_v[int(i)][1] for i in keep], np.int64)
        live["val"] = {"frames": len(frames_v), "faces_found": len(keep)}

    scores: list[dict[str, float]] = []
    best: tuple[float, float, np.ndarray, np.ndarray] | None = None
    w0: np.ndarray | None = None
    for l2 in sorted(args.l2, reverse=True):  # strongest first, each fit starting from the last
        w, b = fit_softmax(f_tr, qq, l2, w0=w0)
        w0 = w
        acc = float((head_probs(f_va, w, b).argmax(1) == y_va).mean())
        row = {"l2": l2, "val_accuracy": acc}
        judged = acc
        if f_lv:
            row["live_val_accuracy"] = float((head_probs(f_lv, w, b).argmax(1) == y_lv).mean())
            judged = (acc + row["live_val_accuracy"]) / 2
        scores.append(row)
        print(
            f"l2 {l2:g}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "l2"), file=sys.stderr
        )
        if best is None or judged > best[0]:
            best = (judged, l2, w, b)
    assert best is not None
    _, l2, w, b = best

    new = rewrite(model, head, w, b)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(new, str(args.out))
    x_check = to_input(x_va[:512]).numpy()
    got = np.concatenate(
        [
            _session(new.SerializeToString(), args.threads).run(
                None, {sess.get_inputs()[0].name: x_check[i : i + BATCH]}
            )[0]
            for i in range(0, len(x_check), BATCH)
        ]
    )
    diff = check_agreement(head_probs([f[:512] for f in f_va], w, b), got, atol=1e-4, what=str(args.out))
    val_m = compute_metrics(y_va, head_probs(f_va, w, b), bootstrap=0)
    src = dict(base.source)
    draft = dataclasses.replace(
        base,
        id=args.out.stem,
        labels=list(LABELS),
        source={
            "base_model": {
                "id": base.id or args.model.stem,
                "sha256": hashlib.sha256(args.model.read_bytes()).hexdigest(),
            },
            "base_source": {k: src[k] for k in ("architecture", "data", "protocol", "command") if k in src},
            "method": "the base member's graph with its last linear layer refitted on frozen features "
            "(emodesk/lab/train/face/ferplus_head.py): soft targets = FER+ crowd votes over the seven "
            "emotions renormalised (images with mostly contempt/unknown/not-a-face votes skipped), "
            f"{args.augment} augmented copies per training face (train.augment + webcam.webcam)"
            + (
                ", plus the live crop of each training face found in a webcam frame"
                if args.live_frames
                else ""
            )
            + "; L2 chosen on FER+ val majority labels"
            + (" (mean of clean-crop and live-crop val accuracy)" if args.live_val else ""),
            "data": "FER-2013 train images (FER-2013 test never seen) with FER+ votes (Barsoum et al. 2016)",
            "train_rows": len(f_tr),
            "train_faces": len(x_tr),
            "l2": l2,
            "l2_search": scores,
            "live_crops": live or None,
            "val_metrics": {k: val_m[k] for k in ("n", "accuracy", "uar", "macro_f1", "weighted_f1")},
            "onnx_vs_numpy_max_abs_diff": diff,
            "command": "python -m emodesk.lab.train.face.ferplus_head " + shlex.join(sys.argv[1:]),
            "seed": args.seed,
            "seconds": round(time.monotonic() - t_start, 1),
        },
        license=base.license.rstrip(".") + ". Labels: FER+ (Microsoft), MIT.",
        metrics={},
        created=None,
    )
    write_manifest(args.out, draft)
    print(
        f"wrote {args.out} (FER+ val accuracy {val_m['accuracy']:.4f}, l2 {l2:g}, ONNX vs numpy {diff:.2g})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
