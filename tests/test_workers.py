"""The live worker threads with fake sources: frames flow, faces get scored, nothing leaks.

Real face models run here (they load in well under a second); the speech
path is a fake processor so these tests stay fast and independent of whisper.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from emodesk.capture.base import AudioSource
from emodesk.capture.clock import MonotonicClock
from emodesk.capture.fakes import ArrayAudioSource, ArrayVideoSource
from emodesk.capture.sources import SourceSet
from emodesk.fusion.config import FusionConfig
from emodesk.imaging import read_image
from emodesk.labels import LABELS, N_LABELS
from emodesk.types import SlotStatus, Transcript
from emodesk.workers import BoundedChunkQueue, LivePipeline, SpeechModels, running_workers
from emodesk.workers.stats import LatencyWindow, RateMeter
from tests.support.live_fakes import FailingAudio, FakeSpeech, SlowFace, VideoThatDies, fake_speech_loader

FACE_PNG = Path(__file__).resolve().parents[1] / "assets" / "face_astronaut.png"
FACE_MODEL = "face-resnet-s-ferplus"


@pytest.fixture(scope="module")
def face_frame() -> np.ndarray:
    img = read_image(FACE_PNG, gray=False)
    assert img is not None, f"cannot read {FACE_PNG}"
    canvas = np.full((480, 640, 3), 90, np.uint8)  # the face on a plain 640x480 frame
    canvas[100:356, 190:446] = img
    return canvas


def _sources(
    video: object | None, audio: object | None, clock: MonotonicClock, stop: threading.Event
) -> SourceSet:
    return SourceSet(video, audio, "fake sources", clock, stop)  # type: ignore[arg-type]


def _wait(cond: object, timeout: float, qtbot: object) -> None:
    qtbot.waitUntil(cond, timeout=int(timeout * 1000))  # type: ignore[attr-defined]


# ------------------------------------------------------------------ tests


def test_bounded_queue_drops_oldest_and_counts() -> None:
    q: BoundedChunkQueue[int] = BoundedChunkQueue(3)
    for i in range(5):
        assert q.put(i)
    assert q.dropped == 2 and len(q) == 3
    assert [q.get(0), q.get(0), q.get(0)] == [2, 3, 4]
    assert q.get(0.01) is None and not q.exhausted
    for i in range(3):
        q.put(10 + i)
    assert q.drain(2) == [10, 11] and q.drain(5) == [12] and q.drain(5) == []
    q.close()
    assert q.exhausted and not q.put(9) and q.get(0) is None


def test_meters() -> None:
    m = RateMeter(2.0, clock=lambda: 0.0)
    for i in range(31):
        m.tick(i / 30)
    assert m.rate(1.0) == pytest.approx(30.0, rel=0.05)
    assert m.rate(10.0) == 0.0  # nothing in the last two seconds
    lat = LatencyWindow(100)
    assert lat.percentiles_ms() is None
    for i in range(100):
        lat.add(i / 1000)
    p50, p95 = lat.percentiles_ms()  # type: ignore[misc]
    assert 45 < p50 < 55 and 90 < p95 < 99


def test_frames_flow_and_faces_get_scored(qtbot: object, face_frame: np.ndarray) -> None:
    clock, stop = MonotonicClock(), threading.Event()
    video = ArrayVideoSource(lambda i: face_frame, fps=30, paced=True, clock=clock, stop=stop)
    pipe = LivePipeline(
        _sources(video, None, clock, stop), device="cpu", fusion=FusionConfig.equal([FACE_MODEL])
    )
    pipe.start()
    try:
        _wait(lambda: pipe.snapshot().stats.frames_scored >= 15, 15, qtbot)
        snap = pipe.snapshot()
        assert snap.frame is not None and snap.frame.image.shape == (480, 640, 3)
        assert snap.face is not None and snap.face.faces, "no face found in the astronaut frame"
        ((_tid, (x, y, w, h), probs),) = snap.face_tracks()
        assert 150 < x + w / 2 < 490 and 60 < y + h / 2 < 400  # the box is on the pasted face
        assert probs.shape == (N_LABELS,) and probs.sum() == pytest.approx(1.0, abs=1e-6)
        assert snap.fused is not None and snap.fused.members == (FACE_MODEL,)
        assert snap.status("face") is not None and snap.status("face").ok  # type: ignore[union-attr]
        assert snap.status("voice").message == "no audio source"  # type: ignore[union-attr]
        _wait(lambda: pipe.snapshot().stats.face_latency_p95_ms is not None, 5, qtbot)
        st = pipe.snapshot().stats
        assert 10 < st.capture_fps < 45, st
        assert st.face_fps > 5 and 0 < st.face_latency_p50_ms <= st.face_latency_p95_ms < 1000  # type: ignore[operator]
    finally:
        assert pipe.stop(5.0)
    assert not pipe.running and not running_workers()
    assert video.opened is False  # closed by its owner thread


def test_slow_consumer_drops_stale_frames(qtbot: object, face_frame: np.ndarray) -> None:
    clock, stop = MonotonicClock(), threading.Event()
    frames = [face_frame] * 90
    video = ArrayVideoSource(frames, fps=30, paced=True, clock=clock, stop=stop)
    slow = SlowFace(0.1)  # 10 fps of scoring against 30 fps of frames
    pipe = LivePipeline(
        _sources(video, None, clock, stop),
        fusion=FusionConfig.equal([]),
        face_loader=lambda: (slow, [SlotStatus("face", "ok", "slow fake")]),
    )
    with qtbot.waitSignal(pipe.finished, timeout=15000):  # type: ignore[attr-defined]
        pipe.start()
    snap = pipe.snapshot()
    assert snap.ended and snap.stats.frames_captured == 90
    assert snap.stats.dropped_frames > 30, snap.stats  # most frames were stale before scoring
    assert len(slow.seen) + snap.stats.dropped_frames == 90  # every frame is either scored or counted
    assert slow.seen == sorted(slow.seen) and slow.seen[-1] == 89  # newest wins, in order, to the end
    assert pipe.stop()


def test_device_error_reaches_ui_and_the_rest_keeps_running(qtbot: object, face_frame: np.ndarray) -> None:
    clock, stop = MonotonicClock(), threading.Event()
    video = ArrayVideoSource(lambda i: face_frame, fps=30, paced=True, clock=clock, stop=stop)
    audio: AudioSource = FailingAudio()  # type: ignore[assignment]
    pipe = LivePipeline(
        _sources(video, audio, clock, stop),
        device="cpu",
        fusion=FusionConfig.equal([FACE_MODEL]),
        speech_loader=fake_speech_loader(),
    )
    errors: list[str] = []
    pipe.error.connect(errors.append)
    pipe.start()
    try:
        _wait(lambda: bool(errors), 10, qtbot)
        assert "broken microphone did not open" in errors[0]
        assert pipe.snapshot().status("audio").state == "error"  # type: ignore[union-attr]
        n = pipe.snapshot().stats.frames_scored
        _wait(lambda: pipe.snapshot().stats.frames_scored >= n + 10, 10, qtbot)  # video still scored
        assert pipe.snapshot().face is not None
        assert pipe.audio_worker is not None and not pipe.audio_worker.isRunning()
        assert len(errors) == 1
    finally:
        assert pipe.stop(5.0)
    assert not running_workers()


def test_camera_unplugged_mid_stream_keeps_audio_running(qtbot: object, face_frame: np.ndarray) -> None:
    clock, stop = MonotonicClock(), threading.Event()
    video = VideoThatDies([face_frame] * 100, 10, fps=30, paced=True, clock=clock, stop=stop)
    tone = (0.1 * np.sin(np.arange(16000 * 20) * 0.05)).astype(np.float32)
    audio = ArrayAudioSource(tone, paced=True, clock=clock, stop=stop)
    pipe = LivePipeline(
        _sources(video, audio, clock, stop),
        fusion=FusionConfig.equal([]),
        face_loader=lambda: (SlowFace(0.0), [SlotStatus("face", "ok", "fake")]),
        speech_loader=fake_speech_loader(),
    )
    errors: list[str] = []
    pipe.error.connect(errors.append)
    pipe.start()
    try:
        _wait(lambda: bool(errors), 10, qtbot)
        assert "unplugged" in errors[0]
        # the error is emitted before the worker's cleanup closes the source: wait for the close
        _wait(lambda: video.closed_in is not None, 5, qtbot)
        assert video.closed_in != threading.main_thread().name
        lines = len(pipe.snapshot().transcripts)
        _wait(lambda: len(pipe.snapshot().transcripts) >= lines + 2, 10, qtbot)  # speech goes on
    finally:
        assert pipe.stop(5.0)


def test_speech_results_reach_snapshot_and_fusion(qtbot: object) -> None:
    clock, stop = MonotonicClock(), threading.Event()
    noise = (0.05 * np.random.default_rng(0).standard_normal(16000 * 3)).astype(np.float32)
    audio = ArrayAudioSource(noise, paced=True, clock=clock, stop=stop)
    loaded: list[SpeechModels] = []
    pipe = LivePipeline(
        _sources(None, audio, clock, stop),
        speech_loader=fake_speech_loader(loaded),
        fusion=FusionConfig.equal(["fake-voice", "fake-text"]),
    )
    partials: list[Transcript] = []
    with qtbot.waitSignal(pipe.finished, timeout=15000):  # type: ignore[attr-defined]
        pipe.start()
        while pipe.running:
            snap = pipe.snapshot()
            if snap.partial is not None:
                partials.append(snap.partial)
            qtbot.wait(20)  # type: ignore[attr-defined]
    snap = pipe.snapshot()
    assert [t.text for t in snap.transcripts] == [f"line {i}" for i in range(1, 8)]  # 3 s / 0.4 s
    assert partials and all(p.partial for p in partials)
    assert {s.model for s in snap.voice} == {"fake-voice"} and {s.model for s in snap.text} == {"fake-text"}
    assert snap.stats.transcript_latency_p50_ms is not None and snap.stats.transcript_latency_p50_ms >= 5
    # End of utterance on the media clock → line published: paced audio keeps it small.
    assert snap.stats.transcript_delay_p95_ms is not None and 0 <= snap.stats.transcript_delay_p95_ms < 500
    assert snap.stats.audio_dropped == 0 and snap.stats.audio_overflows == 0
    fused = pipe.fused_at(snap.transcripts[-1].t1)
    assert fused is not None and set(fused.members) == {"fake-voice", "fake-text"}
    assert {LABELS[i] for i in np.argsort(fused.probs)[-2:]} == {"angry", "sad"}
    assert pipe.stop()


def test_speech_backlog_is_drained_in_batches_without_losing_lines(qtbot: object) -> None:
    clock, stop = MonotonicClock(), threading.Event()
    noise = (0.05 * np.random.default_rng(1).standard_normal(16000 * 21 // 10)).astype(np.float32)
    audio = ArrayAudioSource(noise, paced=True, clock=clock, stop=stop)
    loaded: list[SpeechModels] = []
    pipe = LivePipeline(
        _sources(None, audio, clock, stop),
        fusion=FusionConfig.equal([]),
        speech_loader=fake_speech_loader(loaded, delay=0.8),
    )
    with qtbot.waitSignal(pipe.finished, timeout=15000):  # type: ignore[attr-defined]
        pipe.start()
    speech = loaded[0].speech
    assert isinstance(speech, FakeSpeech) and speech.batches and max(speech.batches) >= 30  # 0.8 s backlog
    assert [t.text for t in pipe.snapshot().transcripts] == [f"line {i}" for i in range(1, 6)]  # 2.1 s/0.4 s
    assert pipe.snapshot().stats.audio_dropped == 0
    assert pipe.stop()


def test_speech_path_unavailable_stops_audio_capture(qtbot: object) -> None:
    clock, stop = MonotonicClock(), threading.Event()
    audio = ArrayAudioSource(np.zeros(16000 * 60, np.float32), paced=True, clock=clock, stop=stop)
    status = [SlotStatus("asr", "error", "ASR model tiny.en could not be loaded")]
    pipe = LivePipeline(
        _sources(None, audio, clock, stop),
        fusion=FusionConfig.equal([]),
        speech_loader=lambda: SpeechModels(None, statuses=status),
    )
    with qtbot.waitSignal(pipe.finished, timeout=5000):  # type: ignore[attr-defined]
        pipe.start()
    snap = pipe.snapshot()
    assert snap.status("asr").state == "error"  # type: ignore[union-attr]
    assert snap.stats.audio_dropped == 0  # the capture stopped instead of filling the queue
    assert pipe.stop()


def test_stop_joins_everything_quickly(qtbot: object, face_frame: np.ndarray) -> None:
    clock, stop = MonotonicClock(), threading.Event()
    video = ArrayVideoSource(lambda i: face_frame, fps=30, paced=True, clock=clock, stop=stop)
    audio = ArrayAudioSource(np.zeros(16000 * 600, np.float32), paced=True, clock=clock, stop=stop)
    pipe = LivePipeline(
        _sources(video, audio, clock, stop),
        device="cpu",
        fusion=FusionConfig.equal([FACE_MODEL]),
        speech_loader=fake_speech_loader(),
    )
    pipe.start()
    _wait(lambda: pipe.snapshot().stats.frames_scored > 5, 15, qtbot)
    assert len(pipe.workers) == 4 and all(w.isRunning() for w in pipe.workers)
    t0 = time.monotonic()
    assert pipe.stop(5.0)
    assert time.monotonic() - t0 < 2.0
    assert not any(w.isRunning() for w in pipe.workers) and not running_workers()
    assert stop.is_set() and pipe.stop()  # idempotent
