import numpy as np
import pytest

from emodesk.pipeline.tracking import FaceTracker
from emodesk.types import iou


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


def test_track_expires_after_max_age_and_its_id_after_the_reidentification_window():
    tr = FaceTracker(max_age_s=1.0, reid_s=3.0)
    (i,) = tr.update(0.0, [(0, 0, 50, 50)])
    (j,) = tr.update(0.5, [(0, 0, 50, 50)])
    assert i == j
    # unseen for 1.5 s (a head turn): no longer live, but the face coming back where it was is the
    # same person; one far away, or of another size, is not
    (k,) = tr.update(2.0, [(5, 3, 52, 52)])
    assert k == i
    tr.update(3.5, [])
    far, big = tr.update(4.8, [(300, 0, 50, 50), (0, 0, 120, 120)])
    assert i not in (far, big) and far != big
    # past max_age_s + reid_s unseen, the id is gone for good
    (m,) = tr.update(9.0, [(0, 0, 50, 50)])
    assert m not in (i, far, big)


def test_two_people_keep_their_ids_through_head_turns():
    tr = FaceTracker()
    a, b = (100.0, 100.0, 80.0, 80.0), (400.0, 110.0, 70.0, 70.0)
    ia, ib = tr.update(0.0, [a, b])
    t = 0.0
    for k in range(600):  # 20 s at 30 fps; each looks away for 2 s now and then
        t = k / 30
        seen = [box for box, hidden in ((a, 3 <= t % 7 < 5), (b, 5 <= t % 9 < 7)) if not hidden]
        tr.update(t, seen)
    assert sorted(tr.update(t + 1 / 30, [b, a])) == sorted([ia, ib])
    assert tr._next_id == 3  # no third identity was ever made


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


# ---- the face members' schedule ------------------------------------------------------------------


class _Det:
    def detect(self, image, *, zoom=None, near=None):  # one face, always in the same place
        from emodesk.types import FaceBox

        return [FaceBox((100.0, 80.0, 120.0, 120.0), 0.9)]


class _Scorer:
    def __init__(self, mid: str, hot: int) -> None:
        from types import SimpleNamespace

        self.model = SimpleNamespace(id=mid)
        self.hot = hot
        self.calls = 0

    def score(self, image, boxes):
        self.calls += 1
        p = np.full((len(boxes), 7), 0.01)
        p[:, self.hot] = 0.94
        return p


def test_cheapest_member_scores_every_frame_and_the_others_take_turns_carried_forward() -> None:
    from emodesk.pipeline.face_path import FacePipeline
    from emodesk.types import Frame

    a, b, c = _Scorer("a", 3), _Scorer("b", 5), _Scorer("c", 0)  # no model files: ordered by id
    pipe = FacePipeline(_Det(), [c, b, a])  # type: ignore[list-item]
    img = np.zeros((480, 640, 3), np.uint8)
    results = [pipe.process(Frame(t=i / 30, image=img, index=i)) for i in range(30)]
    assert a.calls == 30 and b.calls == 15 and c.calls == 15
    first = results[0]
    assert [s.model for s in first.faces] == ["a", "b"] and first.fresh == (True, True)  # c not scored yet
    for r in results[1:]:
        assert sorted(s.model for s in r.faces) == ["a", "b", "c"]  # every member seen on every frame
        fresh = {s.model: f for s, f in zip(r.faces, r.fresh, strict=True)}
        assert fresh["a"] and fresh["b"] != fresh["c"]
        stale = next(s for s in r.faces if not fresh[s.model])
        assert stale.t == pytest.approx(r.t - 1 / 30)  # carried with the time it was made
        assert [s.model for s in r.scored()] == [s.model for s, f in zip(r.faces, r.fresh, strict=True) if f]
    everyone = FacePipeline(_Det(), [a, b, c], rotate=False)  # type: ignore[list-item]
    r = everyone.process(Frame(t=0.0, image=img, index=0))
    assert len(r.scored()) == 3


def test_with_two_members_the_dearer_one_scores_every_other_frame() -> None:
    from emodesk.pipeline.face_path import FacePipeline
    from emodesk.types import Frame

    a, b = _Scorer("a", 3), _Scorer("b", 5)
    pipe = FacePipeline(_Det(), [b, a])  # type: ignore[list-item]
    img = np.zeros((480, 640, 3), np.uint8)
    results = [pipe.process(Frame(t=i / 30, image=img, index=i)) for i in range(30)]
    assert a.calls == 30 and b.calls == 15
    for i, r in enumerate(results):
        assert sorted(s.model for s in r.faces) == ["a", "b"]  # b carried forward on odd frames
        assert dict(zip((s.model for s in r.faces), r.fresh, strict=True)) == {"a": True, "b": i % 2 == 0}
    both = FacePipeline(_Det(), [a, b], rotate=False)  # type: ignore[list-item]
    assert len(both.process(Frame(t=0.0, image=img, index=0)).scored()) == 2


def test_a_held_score_expires_after_hold_s() -> None:
    from emodesk.pipeline.face_path import FacePipeline
    from emodesk.types import Frame

    pipe = FacePipeline(_Det(), [_Scorer("a", 3), _Scorer("b", 5), _Scorer("c", 0)], hold_s=0.5)  # type: ignore[list-item]
    img = np.zeros((480, 640, 3), np.uint8)
    pipe.process(Frame(t=0.0, image=img, index=0))  # a, b
    pipe.process(Frame(t=0.1, image=img, index=1))  # a, c; b carried
    r = pipe.process(Frame(t=2.0, image=img, index=3))  # a, c; b's score is 1.9 s old: dropped
    assert sorted(s.model for s in r.faces) == ["a", "c"]


class _CountingDet:
    def __init__(self, faces: int = 1) -> None:
        self.calls = 0
        self.faces = faces

    def detect(self, image, *, zoom=None, near=None):
        from emodesk.types import FaceBox

        self.calls += 1
        return [FaceBox((100.0 + self.calls, 80.0, 120.0, 120.0), 0.9)][: self.faces]


def test_detector_boxes_serve_the_next_40_ms_of_media_time() -> None:
    from emodesk.pipeline.face_path import FacePipeline
    from emodesk.types import Frame

    img = np.zeros((480, 640, 3), np.uint8)
    det = _CountingDet()
    pipe = FacePipeline(det, [_Scorer("a", 3)])  # type: ignore[arg-type,list-item]
    results = [pipe.process(Frame(t=i / 30, image=img, index=i)) for i in range(30)]
    assert det.calls == pipe.detections == 15  # every other frame at 30 fps
    assert results[1].faces[0].box == results[0].faces[0].box  # frame 1 reuses frame 0's box
    assert results[2].faces[0].box != results[1].faces[0].box  # frame 2 detects again
    assert len({s.track for r in results for s in r.faces}) == 1  # one track throughout
    slow = _CountingDet()
    p15 = FacePipeline(slow, [_Scorer("a", 3)])  # type: ignore[arg-type,list-item]
    for i in range(10):
        p15.process(Frame(t=i / 15, image=img, index=i))
    assert slow.calls == 10  # at 15 fps the boxes are too old: every frame
    none = _CountingDet(faces=0)
    p0 = FacePipeline(none, [_Scorer("a", 3)])  # type: ignore[arg-type,list-item]
    for i in range(6):
        p0.process(Frame(t=i / 30, image=img, index=i))
    assert none.calls == 6  # no face yet: look on every frame
    back = _CountingDet()
    pb = FacePipeline(back, [_Scorer("a", 3)])  # type: ignore[arg-type,list-item]
    pb.process(Frame(t=5.0, image=img, index=150))
    pb.process(Frame(t=0.0, image=img, index=0))  # a looped source: time went backwards
    assert back.calls == 2
    every = _CountingDet()
    pe = FacePipeline(every, [_Scorer("a", 3)], reuse_boxes_s=0.0)  # type: ignore[arg-type,list-item]
    for i in range(6):
        pe.process(Frame(t=i / 30, image=img, index=i))
    assert every.calls == 6


class _ZoomDet:
    """A face too small for the whole-frame pass: only the zoomed look finds it (when there is one)."""

    def __init__(self, small_face: bool) -> None:
        self.small_face = small_face
        self.zooms: list[str] = []  # per call: "" (whole frame only), "near" or "all" (the four tiles)
        self.searched_tiles = self.searched_all_tiles = False

    def detect(self, image, *, zoom=None, near=None):
        from emodesk.types import FaceBox

        face = [FaceBox((300.0, 200.0, 50.0, 50.0), 0.8)] if self.small_face else []
        self.searched_tiles, self.searched_all_tiles = bool(zoom), bool(zoom) and not (near and face)
        self.zooms.append("" if not zoom else "near" if near and face else "all")
        return face if zoom else []


def test_zoomed_looks_every_quarter_second_in_an_empty_room_and_always_while_they_find_the_face() -> None:
    from emodesk.pipeline.face_path import FacePipeline
    from emodesk.types import Frame

    img = np.zeros((480, 640, 3), np.uint8)
    empty = _ZoomDet(small_face=False)
    pipe = FacePipeline(empty, [_Scorer("a", 0)])  # type: ignore[arg-type, list-item]
    for i in range(30):
        pipe.process(Frame(t=i / 30, image=img, index=i))
    assert len(empty.zooms) == 30  # no face: the detector runs on every frame
    assert [i for i, z in enumerate(empty.zooms) if z] == [0, 8, 16, 24]  # zoomed every 0.25 s
    assert {empty.zooms[i] for i in (0, 8, 16, 24)} == {"all"}

    far = _ZoomDet(small_face=True)
    pipe = FacePipeline(far, [_Scorer("a", 0)])  # type: ignore[arg-type, list-item]
    seen = [len(pipe.process(Frame(t=i / 30, image=img, index=i)).faces) for i in range(30)]
    assert seen == [1] * 30  # scored on every frame
    assert len(far.zooms) == 15 and all(far.zooms)  # every detection zooms while that is what finds it
    # near the face it found (one tile), and at all four tiles every 0.25 s: detections at frames 0, 2, …
    assert [2 * i for i, z in enumerate(far.zooms) if z == "all"] == [0, 8, 16, 24]
