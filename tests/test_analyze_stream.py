"""Streamed ``analyze``: records released as both paths settle are the records of the whole input."""

from __future__ import annotations

import numpy as np
import pytest

from emodesk.fusion.config import FusionConfig
from emodesk.pipeline.analyze import StreamMerger, merge_records
from emodesk.pipeline.utterance_path import UtteranceOutput
from emodesk.types import FaceFrameResult, ModalityScores, Transcript

MEMBERS = ["face-a", "voice-a", "text-a"]


def _probs(rng: np.random.Generator) -> np.ndarray:
    p = rng.random(7) + 0.01
    return (p / p.sum()).astype(np.float32)


def _faces(rng: np.random.Generator, n: int, fps: float = 15.0) -> list[FaceFrameResult]:
    out = []
    for i in range(n):
        t = round(i / fps, 4)
        k = int(rng.integers(0, 3))  # 0, 1 or 2 faces
        faces = tuple(
            ModalityScores("face", "face-a", t, _probs(rng), track=j, box=(10.0 * j, 0.0, 40.0, 40.0))
            for j in range(k)
        )
        out.append(FaceFrameResult(t=t, index=i, frame_size=(320, 240), faces=faces))
    return out


def _speech(rng: np.random.Generator, end: float) -> list[tuple[float, float]]:
    spans, t = [], 0.3
    while t < end - 1.0:
        t1 = t + float(rng.uniform(0.4, 2.5))
        spans.append((round(t, 4), round(min(t1, end), 4)))
        t = t1 + float(rng.uniform(0.2, 1.5))
    return spans


def _outputs(rng: np.random.Generator, spans: list[tuple[float, float]]) -> list[UtteranceOutput]:
    out = []
    for t0, t1 in spans:
        tr = Transcript(t0, t1, "words", trusted=bool(rng.random() < 0.8), reason="")
        scores = [ModalityScores("voice", "voice-a", t1, _probs(rng), t0=t0, t1=t1)]
        scores.append(ModalityScores("text", "text-a", t1, _probs(rng), t0=t0, t1=t1, trusted=tr.trusted))
        out.append(UtteranceOutput(transcripts=[tr], scores=scores))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_records_released_as_the_paths_settle_equal_the_whole_input_merged_at_once(seed: int) -> None:
    rng = np.random.default_rng(seed)
    fusion = FusionConfig.equal(MEMBERS)
    faces = _faces(rng, 150)  # 10 s at 15 fps
    end = faces[-1].t + float(rng.uniform(0.0, 1.5))
    spans = _speech(rng, end)
    steps = _outputs(rng, spans)
    whole = list(
        merge_records(
            faces,
            [tr for s in steps for tr in s.transcripts],
            [sc for s in steps for sc in s.scores],
            fusion,
            end,
        )
    )
    # the speech path posts each utterance when it ends plus a lag, settled at the next one's start
    merger = StreamMerger(fusion)
    got: list[dict] = []
    lag = float(rng.uniform(0.0, 3.0))  # how far the speech path runs behind the face path
    posted = 0
    for f in faces:
        merger.add_face(f)
        while posted < len(steps) and spans[posted][1] + lag <= f.t:
            merger.add_speech(steps[posted])
            posted += 1
        settled = spans[posted][0] if posted < len(steps) else max(0.0, f.t - lag)
        got += merger.release(min(f.t, settled))
        got += merger.release(min(f.t, settled))  # releasing twice adds nothing
    for s in steps[posted:]:
        merger.add_speech(s)
    got += merger.finish(end)
    assert got == whole
    kinds = {r["kind"] for r in got}
    assert kinds == {"face", "voice", "text", "transcript", "fused"}


def test_nothing_is_released_before_a_path_has_settled() -> None:
    rng = np.random.default_rng(0)
    merger = StreamMerger(FusionConfig.equal(MEMBERS))
    for f in _faces(rng, 30):
        merger.add_face(f)
    assert list(merger.release(-np.inf)) == [] and list(merger.release(np.inf)) == []
    early = list(merger.release(1.0))
    assert early and all(r["t"] < 1.0 for r in early)
    assert [r["t"] for r in early if r["kind"] == "fused"] == sorted(
        r["t"] for r in early if r["kind"] == "fused"
    )
