"""Load shedding on the live speech path: bounded backlog, skipped work counted, shown and recorded.

A fake recogniser that needs 0.9 s for every 0.4 s utterance falls behind
by design; the live path must then shed (and the same run without shedding
shows the backlog it prevents).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from emodesk.capture.clock import MonotonicClock
from emodesk.capture.fakes import ArrayAudioSource
from emodesk.capture.sources import SourceSet
from emodesk.fusion.config import FusionConfig
from emodesk.pipeline.shedding import LoadShedder, ShedCounts, delta
from emodesk.types import AudioChunk, SlotStatus
from emodesk.workers import LivePipeline, running_workers
from emodesk.workers.queues import BoundedChunkQueue
from emodesk.workers.speech import SpeechModels
from tests.support.live_fakes import FakeSpeech, FakeTextMember, FakeVoiceMember


def chunk(t0: float, s: float = 0.02) -> AudioChunk:
    return AudioChunk(t0, np.zeros(round(16000 * s), np.float32))


def test_a_weight_limited_queue_never_holds_more_than_its_limit_and_counts_what_it_shed() -> None:
    q: BoundedChunkQueue[AudioChunk] = BoundedChunkQueue(1000, weight=lambda c: c.duration)
    for k in range(100):  # 2 s, no limit yet
        q.put(chunk(k * 0.02))
    assert q.weight == pytest.approx(2.0) and q.shed == 0
    q.limit(0.5)  # applies at once, oldest first
    assert q.weight == pytest.approx(0.5) and q.shed == 75 and q.shed_weight == pytest.approx(1.5)
    first = q.get()
    assert first is not None and first.t0 == pytest.approx(1.5)
    for k in range(100, 200):
        q.put(chunk(k * 0.02))
        assert q.weight <= 0.5 + 1e-9
    assert len(q.drain(1000)) == 25 and q.weight == 0.0 and q.dropped == 0  # shed is not "lost"
    with pytest.raises(ValueError, match="weight function"):
        BoundedChunkQueue[int](10).limit(1.0)


def test_shedder_runs_light_past_its_threshold_and_keeps_the_largest_backlog() -> None:
    s = LoadShedder(bound_s=3.0, light_s=1.5)
    assert [s.step(b) for b in (0.1, 1.6, 2.9, 0.5)] == [False, True, True, False]
    assert s.counts.light_steps == 2 and s.counts.max_backlog_s == pytest.approx(2.9)
    with pytest.raises(ValueError):
        LoadShedder(bound_s=1.0, light_s=2.0)
    before = ShedCounts(partials_skipped=2)
    now = ShedCounts(partials_skipped=5, audio_dropped_s=1.25, drops=1, light_steps=9, max_backlog_s=3)
    assert delta(now, before) == {"partials_skipped": 3, "audio_dropped_s": 1.25, "drops": 1}
    assert "1 s audio not transcribed" in now.summary() and "3 partial" not in now.summary()


def _slow_pipeline(shed_load: bool, seconds: float = 40.0) -> tuple[LivePipeline, list[FakeSpeech]]:
    clock, stop = MonotonicClock(), threading.Event()
    noise = (0.05 * np.random.default_rng(3).standard_normal(int(16000 * seconds))).astype(np.float32)
    audio = ArrayAudioSource(noise, paced=True, clock=clock, stop=stop)
    made: list[FakeSpeech] = []

    def load() -> SpeechModels:
        sp = FakeSpeech(utt_s=0.4, final_s=0.9)  # 0.9 s of "recognition" per 0.4 s of speech
        made.append(sp)
        return SpeechModels(
            sp,
            [FakeVoiceMember("fake-voice", "angry"), FakeVoiceMember("fake-voice-2", "fear")],
            [FakeTextMember("fake-text", "sad")],
            [
                SlotStatus("asr", "ok", "fake"),
                SlotStatus("voice", "ok", "fake"),
                SlotStatus("text", "ok", "f"),
            ],
        )

    pipe = LivePipeline(
        SourceSet(None, audio, "fake microphone", clock, stop),
        fusion=FusionConfig.equal(["fake-voice", "fake-voice-2", "fake-text"]),
        speech_loader=load,
        shed_load=shed_load,
    )
    return pipe, made


def _run(pipe: LivePipeline, seconds: float) -> tuple[list[float], list[float]]:
    """Every 50 ms for ``seconds``: the audio waiting in the queue, and how far the speech path is
    behind the source (media time now minus the end of the audio it has processed)."""
    from PySide6.QtCore import QCoreApplication

    backlog, lag = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        backlog.append(pipe.audio_queue.weight)
        sw, now = pipe.speech_worker, pipe.sources.clock.now()
        if sw is not None and sw.position is not None:
            lag.append(now - sw.position)
        time.sleep(0.05)
    return backlog, lag


def test_a_slow_recogniser_sheds_work_keeps_the_backlog_bounded_and_the_recording_says_so(
    qtbot: object, tmp_path: Path
) -> None:
    from emodesk.recording.session import read_records

    pipe, made = _slow_pipeline(shed_load=True)
    pipe.start(record={"parent": tmp_path})
    try:
        backlog, lag = _run(pipe, 9.0)
        snap = pipe.snapshot()
    finally:
        session = pipe.stop_recording()
        pipe.stop()
    assert not running_workers()
    shed = snap.stats.shed
    assert shed is not None and shed.drops > 0 and shed.audio_dropped_s > 1.0
    assert max(backlog) <= 3.0 + 0.03  # the bound (+ one chunk in flight), sampled throughout
    assert shed.max_backlog_s <= 3.0 + 0.03
    assert shed.voice_scores_skipped > 0 and shed.partials_skipped > 0  # optional work went first
    assert shed.utterances_dropped == made[0].dropped_open > 0
    assert snap.stats.utterances > 0  # still transcribing, just not everything
    assert max(lag) < 3.0 + 0.2 + 0.9 + 0.3  # the bound + one short step + one "recognition"
    # the recording keeps every sample, and says what the live path skipped
    assert session is not None
    records = [r for r in read_records(session) if r.get("kind") == "shed"]
    assert records and sum(r.get("drops", 0) for r in records) >= 1
    stats = json.loads((session / "session.json").read_text())["stats"]["shed"]
    assert stats["audio_dropped_s"] > 0 and stats["voice_scores_skipped"] > 0


def test_without_shedding_the_same_recogniser_falls_further_and_further_behind(qtbot: object) -> None:
    """The control: what the bound prevents (so the test above can fail)."""
    pipe, _ = _slow_pipeline(shed_load=False)
    pipe.start()
    try:
        _, lag = _run(pipe, 8.0)
        snap = pipe.snapshot()
    finally:
        pipe.stop()
    assert snap.stats.shed is None and pipe.audio_queue.shed == 0
    assert max(lag) > 4.7 and max(lag[len(lag) // 2 :]) > max(lag[: len(lag) // 2]) + 1.0  # growing
