"""The shipped models still score what their manifests claim, on the held-out test split.

Needs ../shared/datasets (or $EMODESK_DATA); skips with the reason when absent.
"""

import cv2
import numpy as np
import pytest

from emodesk.evaluation.metrics import compute_metrics
from emodesk.inference.face_scorer import FaceExpressionScorer
from emodesk.inference.registry import find_model
from emodesk.labels import LABELS
from emodesk.resources import datasets_dir

pytestmark = [pytest.mark.needs_data, pytest.mark.slow]


def test_fer_model_matches_its_manifest_on_fer2013_test():
    test_dir = datasets_dir() / "faces" / "fer2013" / "test"
    if not test_dir.is_dir():
        pytest.skip(f"FER-2013 not found at {test_dir} (set EMODESK_DATA)")
    manifest = find_model("face-fer-minixception")
    claimed = manifest.metrics["fer2013-test"]
    scorer = FaceExpressionScorer.load("face-fer-minixception", device="cpu")
    images, labels = [], []
    for i, lab in enumerate(LABELS):
        for p in sorted((test_dir / lab).glob("*.png")):
            images.append(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE))
            labels.append(i)
    assert len(images) == claimed["n"] == 7178
    probs = np.concatenate([scorer.score_crops(images[i : i + 512]) for i in range(0, len(images), 512)])
    m = compute_metrics(labels, probs, bootstrap=0)
    assert m["accuracy"] == pytest.approx(claimed["accuracy"], abs=0.002)
    assert m["macro_f1"] == pytest.approx(claimed["macro_f1"], abs=0.002)
