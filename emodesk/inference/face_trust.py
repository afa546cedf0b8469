"""Which BlazeFace detections to believe: a score floor and a keypoint layout a face can have.

BlazeFace (short range) fires on skin-toned cloth, wood and drawn faces a few
times a minute at its stock 0.5 score, and each such box gets an emotion
score. Two checks remove them (measured in
``emodesk/lab/studies/detector_trust``, where every bound below comes from):

1. **Score.** A detection needs :data:`TRUSTED_SCORE`, above the network's
   candidate threshold (``FaceDetector.min_score``, kept at MediaPipe's 0.5
   so weighted NMS averages the same boxes as before).
2. **Keypoint layout.** BlazeFace regresses six keypoints (eyes, nose tip,
   mouth centre, ears). In the face's own frame — x along the eye line from
   the right eye to the left, y perpendicular, pointing chin-wards, unit =
   the eye distance — a face has the mouth below the eyes and roughly
   centred, the nose between eyes and mouth, and the eyes a set fraction of
   the box apart. The bounds are the 0.1–99.9 % range of those measures on
   detected faces of the validation frames, widened by a quarter of that
   range; the roll bound is at least 45° (the study's faces roll ±15° only).

What it buys is measured, not assumed: the study's README has the numbers.
BlazeFace's keypoints on a false positive are laid out like a face's (the
regressor draws a face wherever it fires), so the layout check removes only
a few boxes; the score floor removes the weakest; most boxes on skin-toned
cloth and wood survive both. What removes them is a look at the pixels:
:mod:`emodesk.inference.face_verifier`, applied after this rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from emodesk.types import FaceBox

#: the score a detection needs to be trusted (the network's own floor is 0.5)
TRUSTED_SCORE = 0.55

RIGHT_EYE, LEFT_EYE, NOSE, MOUTH = 0, 1, 2, 3  # BlazeFace's keypoint order (the manifest's)


@dataclass(frozen=True)
class KeypointBounds:
    """Allowed ranges of the layout measures of :func:`layout` (inclusive)."""

    eye_width: tuple[float, float]  # eye distance / box width
    mouth_down: tuple[float, float]  # mouth below the eye line / eye distance
    mouth_side: tuple[float, float]  # mouth off the eyes' midpoint along the eye line / eye distance
    nose_down: tuple[float, float]  # nose below the eye line / the mouth's distance below it
    nose_side: tuple[float, float]  # nose off the eyes' midpoint along the eye line / eye distance
    roll_deg: tuple[float, float]  # the eye line's angle to the image's x axis


#: derived by ``python -m emodesk.lab.studies.detector_trust.measure`` (its results.json, "bounds")
KEYPOINT_BOUNDS = KeypointBounds(
    eye_width=(0.064, 0.608),
    mouth_down=(0.268, 2.661),
    mouth_side=(-1.014, 1.221),
    nose_down=(-0.511, 1.081),
    nose_side=(-1.898, 1.959),
    roll_deg=(-101.934, 96.574),
)


def layout(keypoints: np.ndarray, box_width: float) -> dict[str, float]:
    """The layout measures of six BlazeFace keypoints ``(6, 2)`` in source pixels."""
    kp = np.asarray(keypoints, np.float64)
    if kp.shape[0] < 4 or kp.shape[-1] != 2:
        raise ValueError(f"keypoints must have shape (6, 2) in BlazeFace's order, got {kp.shape}")
    v = kp[LEFT_EYE] - kp[RIGHT_EYE]
    d = float(np.hypot(*v))
    if d < 1e-6 or box_width <= 0:
        return {k: math.nan for k in KeypointBounds.__dataclass_fields__}
    ex = v / d
    ey = np.array([-ex[1], ex[0]])  # the eye line turned 90° towards the chin (image y points down)
    mid = (kp[LEFT_EYE] + kp[RIGHT_EYE]) / 2
    m, n = kp[MOUTH] - mid, kp[NOSE] - mid
    mouth_down = float(m @ ey)
    return {
        "eye_width": d / box_width,
        "mouth_down": mouth_down / d,
        "mouth_side": float(m @ ex) / d,
        "nose_down": float(n @ ey) / mouth_down if abs(mouth_down) > 1e-6 else math.nan,
        "nose_side": float(n @ ex) / d,
        "roll_deg": math.degrees(math.atan2(v[1], v[0])),
    }


@dataclass(frozen=True)
class FaceTrust:
    """The rule: a score floor and :class:`KeypointBounds`; ``accepts`` says whether a box is a face."""

    min_score: float = TRUSTED_SCORE
    bounds: KeypointBounds | None = KEYPOINT_BOUNDS

    def rejects(self, face: FaceBox) -> str | None:
        """Why ``face`` is not trusted (``"score"`` or the first measure out of bounds), or None."""
        if face.score < self.min_score:
            return "score"
        if self.bounds is None:
            return None
        if face.keypoints is None:
            return "keypoints"
        for name, value in layout(face.keypoints, face.box[2]).items():
            lo, hi = getattr(self.bounds, name)
            if not lo <= value <= hi:  # NaN fails too
                return name
        return None

    def accepts(self, face: FaceBox) -> bool:
        return self.rejects(face) is None


#: what the app's detector applies (``FaceDetector(trust=...)``)
DEFAULT_TRUST = FaceTrust()
