"""What every ``emodesk train`` run shares: seeding, devices, checkpoints, early stopping, export.

Why resumable checkpoints: a session on the 2-core dev machine lasts at most
a few hours and its processes die with it, so every epoch ends with an
atomic checkpoint (model, optimiser, scheduler, RNG states, history) that
``--resume`` continues from, giving the same result as an uninterrupted run.

Export goes through the TorchScript ONNX exporter (``dynamo=False``): it
needs only ``torch`` and ``onnx``, and the graphs here are plain
feed-forward networks. Every export is checked against torch on real
inputs before a manifest is written.
"""

from __future__ import annotations

import logging
import os
import random
import shlex
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from emodesk.errors import EmodeskError, InputError
from emodesk.inference.manifest import ManifestDraft, ModelManifest

try:
    import torch
except ImportError as e:  # pragma: no cover - the message is the point
    raise EmodeskError(
        "training needs PyTorch: install the `train` extra (pip install 'emodesk[train]')"
    ) from e

log = logging.getLogger(__name__)
T = TypeVar("T")


def seed_everything(seed: int) -> None:
    """Same seed, same run (on the same device and library versions)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    """``auto`` → CUDA when torch sees one, else CPU; ``cuda`` without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: this torch build sees no CUDA device; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise InputError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def progress(
    items: Iterable[T], *, total: int | None = None, desc: str = "", quiet: bool = False
) -> Iterator[T]:
    """A tqdm bar on stderr (tqdm comes with faster-whisper's dependencies)."""
    if quiet:
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write to a temporary file and rename, so a kill never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors and plain values, so a checkpoint loads with ``weights_only``."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    st: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: Mapping[str, Any]) -> None:
    random.setstate(st["python"])
    n = st["numpy"]
    keys = np.asarray(n["keys"].numpy() if isinstance(n["keys"], torch.Tensor) else n["keys"], np.uint32)
    np.random.set_state((n["name"], keys, int(n["pos"]), int(n["has_gauss"]), float(n["cached_gaussian"])))
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """A checkpoint read with ``weights_only=True``: tensors and plain values only.

    A full unpickle can run any code the file carries, and users point ``--resume`` and
    ``--init-from`` at files. A checkpoint holding anything else (one written by an emodesk
    that pickled NumPy's RNG state, or by another tool) is refused with what to do instead.
    """
    import pickle

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise InputError(
            f"checkpoint {path} holds more than tensors and plain values, so it is not loaded "
            f"(unpickling it could run code): {str(e).splitlines()[0]}. A checkpoint of an older "
            "emodesk cannot be resumed: delete it (or pass another --checkpoint-dir) and train again"
        ) from None
    except (OSError, RuntimeError, EOFError) as e:
        raise InputError(f"checkpoint {path} cannot be read: {e}") from None


@dataclass
class EarlyStopping:
    """Stop when the validation score has not improved for ``patience`` epochs (higher is better)."""

    patience: int
    min_delta: float = 1e-4
    best: float = -float("inf")
    best_epoch: int = -1
    bad_epochs: int = 0

    def step(self, score: float, epoch: int) -> bool:
        """Record an epoch's score; True when it is the best so far."""
        if score > self.best + self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = score, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        self.best, self.best_epoch, self.bad_epochs = (
            float(d["best"]),
            int(d["best_epoch"]),
            int(d["bad_epochs"]),
        )


@dataclass
class History:
    """Per-epoch metrics, printed as one line each and kept in the checkpoint and manifest."""

    epochs: list[dict[str, float]] = field(default_factory=list)

    def add(self, row: dict[str, float], *, quiet: bool = False) -> None:
        self.epochs.append(row)
        if not quiet:
            print(
                " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                file=sys.stderr,
                flush=True,
            )


def class_weights(labels: np.ndarray, n_classes: int, power: float = 0.5) -> np.ndarray:
    """Inverse-frequency loss weights, softened by ``power`` (0.5: square root), mean 1."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, (counts.sum() / np.maximum(counts, 1)) ** power, 0.0)
    return (w / w[counts > 0].mean()).astype(np.float32)


def export_onnx(
    model: torch.nn.Module,
    example: Sequence[torch.Tensor],
    path: Path,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
    opset: int = 17,
) -> None:
    """Export ``model`` (in eval mode, on the CPU) to ``path`` via a temporary file."""
    model = model.eval().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            tuple(t.cpu() for t in example),
            str(tmp),
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes={k: dict(v) for k, v in dynamic_axes.items()},
            opset_version=opset,
            dynamo=False,
        )
    os.replace(tmp, path)


def onnx_outputs(path: Path, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, dict(feeds))[0])


def check_agreement(reference: np.ndarray, onnx_out: np.ndarray, *, atol: float, what: str) -> float:
    """Max |torch − ONNX|; raises when it exceeds ``atol`` (a broken export never ships)."""
    diff = float(np.max(np.abs(np.asarray(reference, np.float64) - np.asarray(onnx_out, np.float64))))
    if not np.isfinite(diff) or diff > atol:
        raise EmodeskError(f"{what}: ONNX and torch disagree by {diff:.3g} (tolerance {atol:.3g})")
    return diff


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation (weights int8, activations quantised at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


def quantize_static_int8(src: Path, dst: Path, calibration: Sequence[Mapping[str, np.ndarray]]) -> None:
    """Static int8 (QDQ, per-channel 7-bit weights, uint8 activations calibrated on ``calibration``):
    what convolutional networks need, where dynamic quantisation leaves the convolutions float."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return dict(nxt) if (nxt := next(self._it, None)) is not None else None

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pre = Path(tmp) / "pre.onnx"
        level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # per-tensor notes on the root logger
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre),
                str(dst),
                Reader(),
                quant_format=QuantFormat.QDQ,
                # the convolutions and the classifier only: the softmax and the mirror averaging
                # stay float, so the output is an exact probability vector
                op_types_to_quantize=["Conv", "Gemm", "MatMul"],
                per_channel=True,
                # 7-bit weights: x86 CPUs without VNNI sum uint8 × int8 products in 16 bits
                # (vpmaddubsw), which saturate with 8-bit weights, so the model would score
                # differently there (emodesk/lab/convert/weights_7bit.py has the measurement)
                reduce_range=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
        finally:
            logging.getLogger().setLevel(level)


def weights_to_7bit(model: Any) -> int:
    """Halve the int8 weights of a static QDQ graph, in place: what ``reduce_range`` gives at export.

    For a member whose float model is gone (``emodesk/lab/convert/weights_7bit.py``): every
    symmetric int8 weight feeding a Conv/Gemm/MatMul through DequantizeLinear becomes
    ``round(q / 2)`` with twice the scale, and the layer's int32 bias is halved with its
    scale doubled, so the bias scale stays input scale × weight scale (ONNX Runtime's
    fused kernels need that). A weight shared by two layers (the mirror branch) is
    converted once. Returns how many weight tensors changed; ``ValueError`` on
    asymmetric or already-7-bit weights, or a bias that is not the layer's own.
    """
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}

    def get(name: str) -> np.ndarray:
        return numpy_helper.to_array(inits[name])

    def put(name: str, arr: np.ndarray) -> None:
        inits[name].CopyFrom(numpy_helper.from_array(arr, name))

    weights: set[str] = set()
    biases: set[str] = set()
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        wdq = producer.get(node.input[1])
        if wdq is None or wdq.op_type != "DequantizeLinear" or wdq.input[0] not in inits:
            continue
        q = get(wdq.input[0])
        if q.dtype != np.int8:
            continue
        if wdq.input[0] not in weights:  # shared by the mirror branch: once
            if len(wdq.input) > 2 and get(wdq.input[2]).any():
                raise ValueError(f"{wdq.name}: asymmetric int8 weights; this converts symmetric ones")
            if np.abs(q.astype(np.int16)).max() <= 64:
                raise ValueError(f"{wdq.name}: already 7-bit; nothing to do")
            put(wdq.input[0], np.clip(np.round(q.astype(np.float32) / 2), -64, 64).astype(np.int8))
            put(wdq.input[1], (get(wdq.input[1]) * 2).astype(np.float32))
            weights.add(wdq.input[0])
        if len(node.input) > 2 and node.input[2]:
            bdq = producer.get(node.input[2])
            if bdq is None or bdq.op_type != "DequantizeLinear" or bdq.input[0] in biases:
                raise ValueError(f"{node.name}: its bias is not a DequantizeLinear of its own int32 tensor")
            b = get(bdq.input[0])
            put(bdq.input[0], np.round(b.astype(np.float64) / 2).astype(np.int32))
            put(bdq.input[1], (get(bdq.input[1]) * 2).astype(np.float32))
            biases.add(bdq.input[0])
    return len(weights)


def onnx_input_specs(path: Path) -> list[dict[str, Any]]:
    """The graph inputs as manifest ``inputs`` entries (symbolic dims as names)."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    init = {i.name for i in m.graph.initializer}
    out = []
    for i in m.graph.input:
        if i.name in init:
            continue
        t = i.type.tensor_type
        shape = [d.dim_param if d.dim_param else (d.dim_value or None) for d in t.shape.dim]
        out.append(
            {"name": i.name, "shape": shape, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name}
        )
    return out


def write_manifest(onnx_path: Path, draft: ManifestDraft) -> ModelManifest:
    """``X.json`` beside ``X.onnx``, its ``inputs`` read off the exported file itself."""
    return replace(draft, inputs=onnx_input_specs(onnx_path)).write(onnx_path)


def batches(
    n: int, size: int, *, shuffle: bool, rng: np.random.Generator | None = None
) -> Iterator[np.ndarray]:
    idx = rng.permutation(n) if shuffle and rng is not None else np.arange(n)
    for i in range(0, n, size):
        yield idx[i : i + size]


def predict_batched(fn: Callable[[np.ndarray], np.ndarray], n: int, size: int) -> np.ndarray:
    return np.concatenate([fn(b) for b in batches(n, size, shuffle=False)], axis=0)


def command_line() -> str:
    """The command that is running, as a manifest records it: ``emodesk train …`` when it came
    through the CLI, else the process's own argv."""
    argv = sys.argv
    if argv[1:2] in (["train"], ["retrain"]):
        return "emodesk " + shlex.join(argv[1:])
    return shlex.join(argv)
