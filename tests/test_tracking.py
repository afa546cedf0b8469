import numpy as np

from emodesk.pipeline.tracking import FaceTracker, iou


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert abs(iou((0, 0, 10, 10), (5, 0, 10, 10)) - 50 / 150) < 1e-9


def test_ids_stay_with_moving_faces_and_new_faces_get_new_ids():
    tr = FaceTracker()
    a, b = [100.0, 100.0, 80.0, 80.0], [400.0, 120.0, 90.0, 90.0]
    first = tr.update(0.0, [tuple(a), tuple(b)])
    for k in range(1, 30):
        a[0] += 4
        b[0] -= 3
        # order of detections swaps every frame: ids must follow the boxes, not the order
        ids = tr.update(k / 30, [tuple(b), tuple(a)])
        assert ids == [first[1], first[0]]
    new = tr.update(1.0, [tuple(a), (10.0, 10.0, 50.0, 50.0)])
    assert new[0] == first[0] and new[1] not in first


def test_track_expires_after_max_age():
    tr = FaceTracker(max_age_s=1.0)
    (i,) = tr.update(0.0, [(0, 0, 50, 50)])
    (j,) = tr.update(0.5, [(0, 0, 50, 50)])
    assert i == j
    (k,) = tr.update(2.0, [(0, 0, 50, 50)])
    assert k != i


def test_smoothing_follows_media_time():
    tr = FaceTracker(smoothing_s=0.5)
    (i,) = tr.update(0.0, [(0, 0, 50, 50)])
    p0 = np.eye(7)[0]
    p1 = np.eye(7)[3]
    assert np.allclose(tr.smooth(i, "m", 0.0, p0), p0)
    s = tr.smooth(i, "m", 0.5, p1)
    assert np.isclose(s[3], 1 - np.exp(-1))  # one time constant
    assert np.isclose(s.sum(), 1.0)
    # a track unseen for a while catches up by its own elapsed time, not one frame's
    (j,) = tr.update(0.9, [(0, 0, 50, 50)])
    assert j == i
    s2 = tr.smooth(i, "m", 0.9, p0)
    assert np.isclose(s2[0], s[0] + (1 - np.exp(-0.8)) * (1 - s[0]))
