"""Face detection with BlazeFace (MediaPipe's short-range model) on ONNX Runtime.

Follows MediaPipe's ``face_detection_short_range`` graph: letterbox the frame
to 128×128 RGB in [-1, 1], run the network, decode the 896 SSD anchors'
regressors (box centre/size plus six keypoints, scaled by 128 and offset by
the anchor centre), sigmoid the clipped logits, then *weighted* non-maximum
suppression (overlapping boxes are averaged, weighted by score, instead of
being dropped), and map the result back to source pixels. The anchor and
decoding options live in the model's manifest under ``postprocessing``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from emodesk.errors import ModelError
from emodesk.imaging import resize
from emodesk.inference.face_trust import DEFAULT_TRUST, FaceTrust
from emodesk.inference.face_verifier import FaceVerifier
from emodesk.inference.manifest import ModelManifest
from emodesk.inference.registry import find_model
from emodesk.inference.runtime import OnnxModel
from emodesk.machine import Device
from emodesk.readers import Fields
from emodesk.types import Box, FaceBox, iou


def _scale(min_scale: float, max_scale: float, index: int, n: int) -> float:
    if n == 1:
        return (min_scale + max_scale) / 2
    return min_scale + (max_scale - min_scale) * index / (n - 1)


def ssd_anchors(opts: Mapping[str, Any] | Fields) -> np.ndarray:
    """Anchors ``(A, 4)`` as normalised ``(x_center, y_center, w, h)``.

    A port of MediaPipe's ``SsdAnchorsCalculator``: layers that share a
    stride share one feature map, and each cell gets one anchor per
    (aspect ratio, scale) of those layers.
    """
    f = opts if isinstance(opts, Fields) else Fields(opts, "anchor options", ModelError)
    n = f.integer("num_layers", lo=1, hi=16)
    strides = [int(s) for s in f.numbers("strides", length=n, lo=1, hi=1024)]
    in_h, in_w = f.integer("input_size_height", lo=1, hi=4096), f.integer("input_size_width", lo=1, hi=4096)
    min_s, max_s = f.number("min_scale", lo=0.0, hi=10.0), f.number("max_scale", lo=0.0, hi=10.0)
    ratios_opt = f.numbers("aspect_ratios", [1.0], lo=1e-3, hi=1e3)
    if not 1 <= len(ratios_opt) <= 8:
        raise ModelError(f"{f.where}: aspect_ratios: expected 1 to 8 ratios, got {len(ratios_opt)}")
    interp = f.number("interpolated_scale_aspect_ratio", 1.0, lo=0.0, hi=1e3)
    fixed = f.boolean("fixed_anchor_size", True)
    off_x, off_y = (
        f.number("anchor_offset_x", 0.5, lo=0.0, hi=1.0),
        f.number("anchor_offset_y", 0.5, lo=0.0, hi=1.0),
    )
    reduce_lowest = f.boolean("reduce_boxes_in_lowest_layer", False)
    cells = sum(math.ceil(in_h / st) * math.ceil(in_w / st) for st in set(strides))
    if cells * (len(ratios_opt) + 3) * n > 1_000_000:
        raise ModelError(f"{f.where}: these anchor options make over a million anchors")
    out: list[np.ndarray] = []
    layer = 0
    while layer < n:
        ratios: list[float] = []
        scales: list[float] = []
        last = layer
        while last < n and strides[last] == strides[layer]:
            scale = _scale(min_s, max_s, last, n)
            if last == 0 and reduce_lowest:
                ratios += [1.0, 2.0, 0.5]
                scales += [0.1, scale, scale]
            else:
                for r in ratios_opt:
                    ratios.append(r)
                    scales.append(scale)
                if interp > 0:
                    nxt = 1.0 if last == n - 1 else _scale(min_s, max_s, last + 1, n)
                    ratios.append(interp)
                    scales.append(math.sqrt(scale * nxt))
            last += 1
        fh, fw = math.ceil(in_h / strides[layer]), math.ceil(in_w / strides[layer])
        ys, xs = np.meshgrid((np.arange(fh) + off_y) / fh, (np.arange(fw) + off_x) / fw, indexing="ij")
        k = len(ratios)
        r = np.sqrt(np.array(ratios))
        s = np.array(scales)
        wh = np.ones((k, 2)) if fixed else np.stack([s * r, s / r], axis=1)
        a = np.empty((fh, fw, k, 4))
        a[..., 0] = xs[..., None]
        a[..., 1] = ys[..., None]
        a[..., 2:] = wh
        out.append(a.reshape(-1, 4))
        layer = last
    return np.concatenate(out).astype(np.float32)


def weighted_nms(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's weighted NMS over ``boxes`` ``(n, 4)`` as (xmin, ymin, xmax, ymax).

    Take the best remaining detection; every remaining detection whose IoU
    with it exceeds the threshold (itself included) is merged into a
    score-weighted mean of boxes and keypoints, which keeps the best score.
    """
    order = np.argsort(-scores, kind="stable")
    areas = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    out_b: list[np.ndarray] = []
    out_k: list[np.ndarray] = []
    out_s: list[float] = []
    while order.size:
        top = order[0]
        b = boxes[order]
        iw = np.minimum(b[:, 2], boxes[top, 2]) - np.maximum(b[:, 0], boxes[top, 0])
        ih = np.minimum(b[:, 3], boxes[top, 3]) - np.maximum(b[:, 1], boxes[top, 1])
        inter = np.maximum(iw, 0) * np.maximum(ih, 0)
        union = areas[order] + areas[top] - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
        near = iou > iou_threshold
        near[0] = True
        members = order[near]
        w = scores[members][:, None]
        out_b.append((boxes[members] * w).sum(axis=0) / w.sum())
        out_k.append((keypoints[members] * w[:, :, None]).sum(axis=0) / w.sum())
        out_s.append(float(scores[top]))
        order = order[~near]
    if not out_s:
        return (
            np.zeros((0, 4), np.float32),
            np.zeros((0, *keypoints.shape[1:]), np.float32),
            np.zeros(0, np.float32),
        )
    return np.stack(out_b), np.stack(out_k), np.array(out_s, np.float32)


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = (
            f"shape {image.shape} dtype {image.dtype}"
            if isinstance(image, np.ndarray)
            else type(image).__name__
        )
        raise ValueError(f"image_bgr must be a BGR uint8 array of shape (H, W, 3), got {got}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image_bgr is empty: shape {image.shape}")


def _postprocessing(manifest: ModelManifest) -> tuple[Fields, Fields]:
    """The manifest's ``postprocessing`` anchors and decoding options."""
    post = manifest.fields("postprocessing")
    if not isinstance(post.raw("anchors", None), dict) or "decoding" not in post:
        raise ModelError(
            f"model {manifest.id}: manifest {manifest.path} lacks postprocessing.anchors/decoding; "
            "re-export it with emodesk/lab/convert/blazeface.py"
        )
    return post.obj("anchors"), post.obj("decoding")


ZOOM_TILE = 0.6  # the zoomed second look: four corner tiles, each 60 % of the frame's width and height


class FaceDetector:
    """Finds faces in BGR frames; boxes and keypoints come back in source pixels.

    Not thread-safe (it reuses one input buffer): like its ONNX session, each
    detector belongs to the one thread that calls it.

    ``trust`` (:mod:`emodesk.inference.face_trust`) drops detections whose
    score or keypoint layout is not a face's, in the whole frame and in each
    zoom tile, so a frame whose only box was on a jacket still gets its zoomed
    look; ``trust=None`` keeps every box the network gives at ``min_score``.
    ``verifier`` (:mod:`emodesk.inference.face_verifier`) then looks at the
    pixels of each box left, on the whole frame, and drops those it does not
    take for a face, again before the zoomed look is decided.
    """

    def __init__(
        self,
        model: OnnxModel,
        *,
        min_score: float = 0.5,
        iou_threshold: float = 0.3,
        zoom_when_empty: bool = True,
        trust: FaceTrust | None = DEFAULT_TRUST,
        verifier: FaceVerifier | None = None,
    ) -> None:
        man = model.manifest
        if man.modality != "face-detector":
            raise ModelError(f"model {man.id} is a {man.modality!r} model, not a face-detector")
        anchors, dec = _postprocessing(man)
        self.model = model
        self.min_score = float(min_score)
        self.iou_threshold = float(iou_threshold)
        self.zoom_when_empty = bool(zoom_when_empty)
        self.trust = trust
        self.verifier = verifier
        self.searched_tiles = self.searched_all_tiles = False
        pre = man.fields("preprocessing")
        w, h = (int(v) for v in pre.numbers("size", [128, 128], length=2, lo=1, hi=4096))
        self.input_size = (w, h)
        lo, hi = pre.numbers("range", [-1.0, 1.0], length=2, lo=-1e6, hi=1e6)
        self._mul, self._add = (hi - lo) / 255.0, lo
        lb = pre.raw("letterbox", {})
        self._pad_value = pre.obj("letterbox").number("pad_value", lo) if isinstance(lb, Mapping) else lo
        self.anchors = ssd_anchors(anchors)
        scales = [dec.number(k, lo=1e-6, hi=1e6) for k in ("x_scale", "y_scale", "w_scale", "h_scale")]
        self._scale = np.array(scales, np.float32)
        self._kp_offset = dec.integer("keypoint_coord_offset", 4, lo=0, hi=64)
        self._n_kp = dec.integer("num_keypoints", 6, lo=0, hi=64)
        self._clip = dec.number("score_clipping_thresh", 100.0, lo=0.0, hi=1e6)
        self._input = model.input_names[0]
        outs = {o.name: o.shape for o in model.session.get_outputs()}
        self._reg_name = "regressors" if "regressors" in outs else model.output_names[0]
        self._cls_name = "classificators" if "classificators" in outs else model.output_names[1]
        n_out = outs[self._reg_name][1]
        if isinstance(n_out, int) and n_out != len(self.anchors):
            raise ModelError(
                f"model {man.id}: {n_out} boxes out of the network but {len(self.anchors)} anchors "
                f"from its manifest {man.path.name}"
            )
        model.require_input_shape((None, 3, h, w), "preprocessing.size")
        self._buf = np.empty((h, w, 3), np.float32)

    @classmethod
    def load(
        cls, model_id: str = "face-detector-blazeface-short", *, device: Device = "auto"
    ) -> FaceDetector:
        """Load an installed detector by id (active model set first, then the shipped one)."""
        return cls(OnnxModel(find_model(model_id), device=device))

    def _letterbox(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The network input, and the (x, y) scale and padding from source to input pixels."""
        ih, iw = image.shape[:2]
        w, h = self.input_size
        s = min(w / iw, h / ih)
        nw, nh = max(1, round(iw * s)), max(1, round(ih * s))
        small = resize(image, (nw, nh))
        px, py = (w - nw) // 2, (h - nh) // 2
        buf = self._buf
        buf.fill(self._pad_value)
        # BGR → RGB by reversing the channel axis while scaling into the input range.
        np.multiply(small[:, :, ::-1], self._mul, out=buf[py : py + nh, px : px + nw], dtype=np.float32)
        buf[py : py + nh, px : px + nw] += self._add
        x = np.ascontiguousarray(buf.transpose(2, 0, 1)[None])
        # The exact scale per axis: rounding makes nw/iw and nh/ih differ slightly.
        return x, np.array([nw / iw, nh / ih]), np.array([px, py], np.float64)

    def detect(
        self, image_bgr: np.ndarray, *, zoom: bool | None = None, near: Box | None = None
    ) -> list[FaceBox]:
        """Faces in a BGR uint8 frame, largest first.

        The short-range network sees the frame shrunk to 128 px, so a face
        under about a quarter of the frame's width (a person a metre or more
        from a 640×480 camera) is often missed. With ``zoom_when_empty``, a
        frame where no face is found is searched again in four overlapping
        corner tiles, each :data:`ZOOM_TILE` of its width and height (the
        detector then sees faces 1/ZOOM_TILE times larger); what the tiles find
        is merged across their overlaps. Frames with a face found cost nothing
        more. ``zoom`` overrides ``zoom_when_empty`` for this call; ``near``
        (the box of a small face found a moment ago) searches one tile centred
        on it first, and the four only if that finds nothing. Afterwards
        ``searched_tiles`` says whether any tile was searched and
        ``searched_all_tiles`` whether the four were.
        """
        _check_image(image_bgr)
        self.searched_tiles = self.searched_all_tiles = False
        faces = self._verified(image_bgr, self._detect(image_bgr))
        if faces or not (self.zoom_when_empty if zoom is None else zoom):
            return faces
        self.searched_tiles = True
        ih, iw = image_bgr.shape[:2]
        th, tw = max(1, round(ih * ZOOM_TILE)), max(1, round(iw * ZOOM_TILE))
        if near is not None:
            cx, cy = near[0] + near[2] / 2, near[1] + near[3] / 2
            x0 = int(min(max(0, round(cx - tw / 2)), iw - tw))
            y0 = int(min(max(0, round(cy - th / 2)), ih - th))
            faces = self._verified(image_bgr, self._detect_in(image_bgr, x0, y0, tw, th))
            if faces:
                return faces
        self.searched_all_tiles = True
        found: list[FaceBox] = []
        for y0 in dict.fromkeys((0, ih - th)):
            for x0 in dict.fromkeys((0, iw - tw)):
                found += self._detect_in(image_bgr, x0, y0, tw, th)
        found = self._verified(image_bgr, found)
        kept: list[FaceBox] = []
        for f in sorted(found, key=lambda f: f.score, reverse=True):  # one face seen by two tiles
            if all(iou(f.box, k.box) <= self.iou_threshold for k in kept):
                kept.append(f)
        kept.sort(key=lambda f: f.area, reverse=True)
        return kept

    def _verified(self, image_bgr: np.ndarray, faces: list[FaceBox]) -> list[FaceBox]:
        return faces if self.verifier is None or not faces else self.verifier.keep(image_bgr, faces)

    def _detect_in(self, image_bgr: np.ndarray, x0: int, y0: int, w: int, h: int) -> list[FaceBox]:
        """Faces in the region ``(x0, y0, w, h)``, in the whole image's pixels."""
        tile = np.ascontiguousarray(image_bgr[y0 : y0 + h, x0 : x0 + w])
        off = np.array([x0, y0], np.float32)
        return [
            FaceBox(
                box=(f.box[0] + x0, f.box[1] + y0, f.box[2], f.box[3]),
                score=f.score,
                keypoints=None if f.keypoints is None else f.keypoints + off,
            )
            for f in self._detect(tile)
        ]

    def _detect(self, image_bgr: np.ndarray) -> list[FaceBox]:
        x, scale, pad = self._letterbox(image_bgr)
        out = self.model.session.run([self._reg_name, self._cls_name], {self._input: x})
        raw = out[0].reshape(-1, out[0].shape[-1])
        logits = out[1].reshape(-1)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -self._clip, self._clip)))
        keep = scores >= self.min_score
        if not keep.any():
            return []
        scores, r, a = scores[keep], raw[keep], self.anchors[keep]
        w_in, h_in = self.input_size
        # MediaPipe DecodeBoxes: centre/size scaled by x/y/w/h_scale, offset by the anchor.
        cx = r[:, 0] / self._scale[0] * a[:, 2] + a[:, 0]
        cy = r[:, 1] / self._scale[1] * a[:, 3] + a[:, 1]
        bw = r[:, 2] / self._scale[2] * a[:, 2]
        bh = r[:, 3] / self._scale[3] * a[:, 3]
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        k0 = self._kp_offset
        kp = r[:, k0 : k0 + 2 * self._n_kp].reshape(-1, self._n_kp, 2)
        kp = kp / self._scale[:2] * a[:, None, 2:] + a[:, None, :2]
        valid = (bw > 0) & (bh > 0)
        boxes, kp, scores = weighted_nms(boxes[valid], kp[valid], scores[valid], self.iou_threshold)
        # Normalised input coordinates → source pixels (undo the letterbox).
        ih, iw = image_bgr.shape[:2]
        size = np.array([w_in, h_in], np.float64)
        boxes = (boxes.reshape(-1, 2, 2) * size - pad) / scale
        boxes = boxes.reshape(-1, 4)
        kp = (kp * size - pad) / scale
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, iw)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, ih)
        kp[..., 0] = np.clip(kp[..., 0], 0, iw)
        kp[..., 1] = np.clip(kp[..., 1], 0, ih)
        faces = [
            FaceBox(
                box=(float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])),
                score=float(sc),
                keypoints=k.astype(np.float32),
            )
            for b, k, sc in zip(boxes, kp, scores, strict=True)
            if b[2] - b[0] >= 1 and b[3] - b[1] >= 1
        ]
        if self.trust is not None:
            faces = [f for f in faces if self.trust.accepts(f)]
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces
