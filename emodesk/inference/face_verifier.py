"""A second look at each detection: a small network that says whether the box holds a face.

BlazeFace fires on skin-toned cloth, wood grain and drawn faces, with scores
and keypoint layouts a real face also has (``face_trust``'s study), so no rule
on its own outputs separates them. The verifier looks at the pixels instead:
the box's square with some context around it, in grey (the face members'
training faces are grey, and skin colour is what the false positives share
with faces), :data:`SIZE` px, standardised, through a few convolutions
(``emodesk/lab/train/face/verifier.py`` trains it on generated scenes; the
detector_trust study measures it). Its manifest's ``postprocessing.threshold``
is the face probability a box needs, chosen on validation frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emodesk.errors import ModelError
from emodesk.imaging import crop_square, resize, to_gray
from emodesk.inference.runtime import OnnxModel
from emodesk.types import Box, FaceBox

MODALITY = "face-verifier"
SIZE = 32  # px, the network's input side
CONTEXT = 1.4  # the crop's side over the box's longer side


def crop(image_bgr: np.ndarray, box: Box, size: int = SIZE, context: float = CONTEXT) -> np.ndarray:
    """The standardised grey square (``size`` × ``size``, float32) the verifier sees for ``box``.

    Parts of the square outside the frame repeat the frame's edge, so a face at
    the border looks like a face, not like a face beside a black bar; a square
    wholly outside the frame is flat (zeros).
    """
    x, y, w, h = box
    s = max(2, round(context * max(w, h)))
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = round(cx - s / 2), round(cy - s / 2)
    ih, iw = image_bgr.shape[:2]
    if x0 >= iw or y0 >= ih or x0 + s <= 0 or y0 + s <= 0:
        return np.zeros((size, size), np.float32)
    grey = to_gray(np.ascontiguousarray(crop_square(image_bgr, cx, cy, s)))
    out = resize(grey, (size, size)).astype(np.float32)
    out -= out.mean()
    out /= out.std() + 4.0  # flat patches stay flat instead of amplifying noise
    return out


class FaceVerifier:
    """Face probabilities for detections; ``keep`` drops those under the manifest's threshold."""

    def __init__(self, model: OnnxModel, *, threshold: float | None = None) -> None:
        man = model.manifest
        if man.modality != MODALITY:
            raise ModelError(f"model {man.id} is a {man.modality!r} model, not a {MODALITY}")
        pre, post = man.fields("preprocessing"), man.fields("postprocessing")
        self.size = int(pre.numbers("size", [SIZE, SIZE], length=2, lo=8, hi=1024)[0])
        self.context = pre.number("context", CONTEXT, lo=1.0, hi=4.0)
        if threshold is None and "threshold" not in post:
            raise ModelError(f"manifest of {man.id} has no postprocessing.threshold")
        self.threshold = (
            float(threshold) if threshold is not None else post.number("threshold", lo=0.0, hi=1.0)
        )
        self.model = model
        model.require_input_shape((None, 1, self.size, self.size), "preprocessing.size")
        self._input = model.input_names[0]
        self._output = model.output_names[0]

    def probabilities(self, image_bgr: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
        """The face probability of each box (in ``image_bgr``'s pixels), one network call."""
        if not boxes:
            return np.zeros(0, np.float32)
        return self.of_crops(np.stack([crop(image_bgr, b, self.size, self.context) for b in boxes]))

    def of_crops(self, crops: np.ndarray, batch: int = 512) -> np.ndarray:
        """The face probability of crops ``(n, size, size)`` already cut by :func:`crop`."""
        x = np.asarray(crops, np.float32)
        if len(x) == 0:
            return np.zeros(0, np.float32)
        out = [
            np.asarray(self.model.session.run([self._output], {self._input: x[i : i + batch, None]})[0])
            for i in range(0, len(x), batch)
        ]
        return np.concatenate(out).astype(np.float32).reshape(len(x))

    def keep(self, image_bgr: np.ndarray, faces: list[FaceBox]) -> list[FaceBox]:
        """The faces whose face probability reaches the threshold, in their order."""
        if not faces:
            return faces
        p = self.probabilities(image_bgr, [f.box for f in faces])
        return [f for f, q in zip(faces, p, strict=True) if q >= self.threshold]


def installed_verifier(device: str = "auto") -> FaceVerifier | None:
    """The first installed face verifier in the model search order (the active set before the
    shipped one), or None when none is installed. One that is installed but cannot load raises:
    a detector that silently lost its check would put boxes on jackets again.
    """
    from emodesk.inference.registry import installed_manifests

    found = [m for m in installed_manifests().values() if m.modality == MODALITY]
    if not found:
        return None
    return FaceVerifier(OnnxModel(found[0], device=device))  # type: ignore[arg-type]
