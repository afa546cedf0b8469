"""Facial-expression scores for detected faces, in canonical label order.

The manifest says how the network wants its input (colour, size, value
range) and how a detector's box becomes the crop it was trained on
(``preprocessing.crop``: a square ``scale`` times the box's longer side,
shifted by ``shift_x``/``shift_y`` box sides, borders replicated). Outputs are
remapped from the model's label order to ``emodesk.labels.LABELS``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emodesk import imaging
from emodesk.errors import LabelError, ModelError
from emodesk.inference.registry import find_model
from emodesk.inference.runtime import OnnxModel
from emodesk.labels import N_LABELS, reorder_indices
from emodesk.machine import Device
from emodesk.types import FaceBox

BoxLike = FaceBox | Sequence[float]


def _box_xywh(box: BoxLike) -> tuple[float, float, float, float]:
    b = box.box if isinstance(box, FaceBox) else tuple(box)
    if len(b) != 4:
        raise ValueError(f"a face box must be (x, y, w, h), got {b!r}")
    x, y, w, h = (float(v) for v in b)
    return x, y, w, h


def _check_image(image: np.ndarray, what: str) -> None:
    ok = (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3)))
    )
    if not ok:
        got = (
            f"shape {image.shape} dtype {image.dtype}"
            if isinstance(image, np.ndarray)
            else type(image).__name__
        )
        raise ValueError(f"{what} must be a uint8 BGR (H, W, 3) or gray (H, W) array, got {got}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{what} is empty: shape {image.shape}")


class FaceExpressionScorer:
    """Scores face crops with a face-expression model; rows are canonical-order probabilities."""

    def __init__(self, model: OnnxModel) -> None:
        man = model.manifest
        if man.modality != "face":
            raise ModelError(f"model {man.id} is a {man.modality!r} model, not a face-expression model")
        if not man.labels:
            raise ModelError(f"model {man.id}: its manifest {man.path.name} declares no output labels")
        try:
            self.reorder = reorder_indices(man.labels)
        except LabelError as e:
            raise ModelError(f"model {man.id}: {e}") from None
        pre = man.fields("preprocessing")
        self.model = model
        self.color = pre.text("color", "gray", choices=("gray", "rgb", "bgr"))
        w, h = (int(v) for v in pre.numbers("size", [64, 64], length=2, lo=1, hi=4096))
        self.size = (w, h)
        lo, hi = pre.numbers("range", [0.0, 1.0], length=2, lo=-1e6, hi=1e6)
        self._mul, self._add = (hi - lo) / 255.0, lo
        crop = pre.obj("crop", {})
        self.crop_scale = crop.number("scale", 1.0, lo=0.1, hi=10.0)
        self.shift = (
            crop.number("shift_x", 0.0, lo=-1.0, hi=1.0),
            crop.number("shift_y", 0.0, lo=-1.0, hi=1.0),
        )
        self._input = model.input_names[0]
        self._channels = 1 if self.color == "gray" else 3
        want = man.inputs[0].shape if man.inputs else ()
        if len(want) == 4 and isinstance(want[1], int) and want[1] != self._channels:
            raise ModelError(
                f"model {man.id}: preprocessing.color {self.color!r} needs {self._channels} channel(s) "
                f"but its input {man.inputs[0].name!r} has shape {list(want)}"
            )
        model.require_input_shape((None, self._channels, h, w), "preprocessing.color and .size")

    @classmethod
    def load(
        cls, model_id: str = "face-resnet-s-ferplus", *, device: Device = "auto"
    ) -> FaceExpressionScorer:
        """Load an installed face-expression model by id."""
        return cls(OnnxModel(find_model(model_id), device=device))

    @property
    def id(self) -> str:
        return self.model.id

    def crop(self, image_bgr: np.ndarray, box: BoxLike, *, resize: bool = True) -> np.ndarray:
        """The square crop around ``box`` that the model expects, replicating pixels past the borders.

        With ``resize`` (the default) the crop comes back at the model's
        input size, ready for :meth:`score_crops`; channels are the image's.
        """
        _check_image(image_bgr, "image_bgr")
        x, y, w, h = _box_xywh(box)
        if not (w > 0 and h > 0):
            raise ValueError(f"face box must have positive width and height, got {(x, y, w, h)}")
        side_box = max(w, h)
        side = max(1, round(side_box * self.crop_scale))
        cx = x + w / 2 + self.shift[0] * side_box
        cy = y + h / 2 + self.shift[1] * side_box
        patch = imaging.crop_square(image_bgr, cx, cy, side)
        if not resize:
            return np.ascontiguousarray(patch)
        return self._resize(patch)

    def _resize(self, img: np.ndarray) -> np.ndarray:
        w, h = self.size
        if img.shape[1] == w and img.shape[0] == h:
            return img
        return imaging.resize(img, (w, h))

    def _to_input(self, crop: np.ndarray) -> np.ndarray:
        """One crop as (C, H, W) uint8 in the model's colour order and size."""
        if crop.ndim == 3 and crop.shape[2] == 1:
            crop = crop[:, :, 0]
        if self.color == "gray":
            img = imaging.to_gray(crop)
            return self._resize(img)[None]
        img = imaging.gray_to_bgr(crop)
        if self.color == "rgb":
            img = img[:, :, ::-1]
        return self._resize(np.ascontiguousarray(img)).transpose(2, 0, 1)

    def score_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities ``(N, 7)`` in canonical order for face crops (BGR or gray), in one batch."""
        if len(crops) == 0:
            return np.zeros((0, N_LABELS), np.float32)
        w, h = self.size
        x = np.empty((len(crops), self._channels, h, w), np.float32)
        for i, c in enumerate(crops):
            _check_image(c, f"crop {i}")
            x[i] = self._to_input(c)
        x *= self._mul
        x += self._add
        raw = self.model.session.run(None, {self._input: x})[0]
        if raw.ndim != 2 or raw.shape[1] != len(self.reorder):
            raise ModelError(f"model {self.id}: output shape {raw.shape}, expected (N, {len(self.reorder)})")
        return np.ascontiguousarray(raw[:, self.reorder], dtype=np.float32)

    def score(self, image_bgr: np.ndarray, boxes: Sequence[BoxLike]) -> np.ndarray:
        """Probabilities ``(N, 7)`` for each face box in ``image_bgr``; ``(0, 7)`` when there are none."""
        _check_image(image_bgr, "image_bgr")
        if len(boxes) == 0:
            return np.zeros((0, N_LABELS), np.float32)
        # Unresized crops: a gray model's crop turns gray before it is resized (a third of the work).
        return self.score_crops([self.crop(image_bgr, b, resize=False) for b in boxes])
