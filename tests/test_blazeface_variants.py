"""The BlazeFace converter's two variants: anchors, the resize op of the reference, the export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emodesk.inference.face_detector import ssd_anchors
from emodesk.lab.convert.blazeface import VARIANTS, TfliteReference


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_each_variants_anchor_options_make_as_many_anchors_as_its_network_has_boxes(name):
    v = VARIANTS[name]
    a = ssd_anchors(v.anchors)
    assert len(a) == v.n_anchors == v.decoding()["num_boxes"]
    assert v.anchors["input_size_height"] == v.size
    # every anchor centre lies inside the input; fixed anchor size: unit width and height
    assert (a[:, :2] > 0).all() and (a[:, :2] < 1).all()
    assert np.allclose(a[:, 2:], 1.0)


def test_full_range_anchors_are_one_48x48_grid_in_row_major_order():
    a = ssd_anchors(VARIANTS["full"].anchors)
    assert np.allclose(a[0, :2], [0.5 / 48, 0.5 / 48])
    assert np.allclose(a[1, :2], [1.5 / 48, 0.5 / 48])  # x moves first
    assert np.allclose(a[48, :2], [0.5 / 48, 1.5 / 48])


def test_the_references_half_pixel_bilinear_resize_matches_opencvs():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 6, 6, 5))
    got = TfliteReference._resize_bilinear(x, [12, 12], align=False, half=True)
    want = np.stack(
        [cv2.resize(x[0, :, :, c], (12, 12), interpolation=cv2.INTER_LINEAR) for c in range(5)], -1
    )
    assert np.allclose(got[0], want, atol=1e-9)


def test_the_references_align_corners_resize_keeps_the_corner_values():
    x = np.arange(2 * 3 * 1, dtype=np.float64).reshape(1, 2, 3, 1)
    got = TfliteReference._resize_bilinear(x, [3, 5], align=True, half=False)
    assert got[0, 0, 0, 0] == x[0, 0, 0, 0] and got[0, -1, -1, 0] == x[0, -1, -1, 0]
    assert np.isclose(got[0, 1, 2, 0], x[0].mean())  # the centre is the mean of the 2×3 grid's centre


def test_the_shipped_short_range_manifest_is_what_the_short_variant_writes():
    import json

    repo = Path(__file__).resolve().parents[1]
    man = json.loads((repo / "models" / "face-detector-blazeface-short.json").read_text())
    v = VARIANTS["short"]
    assert man["postprocessing"]["anchors"] == v.anchors
    assert man["postprocessing"]["decoding"] == v.decoding()
    assert man["inputs"][0]["shape"] == [1, 3, v.size, v.size]
