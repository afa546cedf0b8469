import itertools

import numpy as np
import pytest

from emodesk.capture.clock import ManualClock, MonotonicClock
from emodesk.capture.files import AudioFileSource, VideoFileSource
from emodesk.capture.sources import open_sources, parse_camera
from emodesk.capture.webcam import CameraSource
from emodesk.errors import DeviceError, InputError
from tests.support.media import DEMO_CLIP


def _drain_video(src):
    src.open()
    try:
        out = []
        while (f := src.read()) is not None:
            out.append(f)
        return out
    finally:
        src.close()


def test_video_file_times_are_media_times():
    frames = _drain_video(VideoFileSource(DEMO_CLIP))
    assert len(frames) > 300
    assert frames[0].t == 0.0
    assert np.isclose(frames[30].t, 1.0)
    assert frames[0].image.shape == (480, 640, 3)


def test_audio_track_of_video_at_16k_in_chunks():
    src = AudioFileSource(DEMO_CLIP, chunk_s=0.5)
    src.open()
    chunks = []
    while (c := src.read()) is not None:
        chunks.append(c)
    src.close()
    assert src.ended
    assert all(c.sample_rate == 16000 for c in chunks)
    assert np.isclose(chunks[1].t0, 0.5)
    total = sum(len(c.samples) for c in chunks) / 16000
    assert 14.0 < total < 15.5
    assert np.max(np.abs(np.concatenate([c.samples for c in chunks]))) > 0.05  # speech, not silence


def test_looping_audio_follows_the_video_period():
    src = AudioFileSource(DEMO_CLIP, chunk_s=0.5, loop=True, loop_period=10.0)
    src.open()
    ts = [src.read().t0 for _ in range(45)]
    src.close()
    assert ts[20] == pytest.approx(10.0)  # second pass starts exactly at the period
    assert all(b > a for a, b in itertools.pairwise(ts))


def test_paced_source_waits_for_the_clock():
    clock = MonotonicClock()
    src = VideoFileSource(DEMO_CLIP, paced=True, clock=clock)
    src.open()
    try:
        for _ in range(10):
            f = src.read()
        assert clock.now() >= f.t - 0.005
        assert clock.now() < 1.0
    finally:
        src.close()


def test_looping_video_keeps_time_increasing():
    clock = ManualClock()
    src = VideoFileSource(DEMO_CLIP, paced=True, clock=clock, loop=True)
    src.open()
    try:
        n = src.frame_count
        ts = [src.read().t for _ in range(n + 5)]
    finally:
        src.close()
    assert ts[n] == pytest.approx(n / 30.0)
    assert np.all(np.diff(ts) > 0)


def test_missing_and_unreadable_inputs_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        open_sources(str(tmp_path / "nope.mp4"), paced=False)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(InputError):
        open_sources(str(junk), paced=False)
    bad_audio = tmp_path / "bad.wav"
    bad_audio.write_bytes(b"RIFF0000WAVEjunk")
    src = AudioFileSource(bad_audio)
    with pytest.raises(InputError):
        src.open()


def test_camera_source_spec_and_missing_camera():
    assert parse_camera("camera") == 0
    assert parse_camera("camera:3") == 3
    assert parse_camera("clip.mp4") is None
    with pytest.raises(InputError):
        parse_camera("camera:x")
    cam = CameraSource(57)
    with pytest.raises(DeviceError, match="camera 57"):
        cam.open()


def test_open_sources_for_video_with_audio_and_audio_only(tmp_path):
    s = open_sources(str(DEMO_CLIP), paced=False)
    assert s.video is not None and s.audio is not None
    s = open_sources("demo", paced=True)
    assert s.demo and s.video is not None and s.audio is not None
    from emodesk.capture.synthesis import write_wav

    wav = tmp_path / "a.wav"
    write_wav(wav, np.zeros(16000, np.float32), 16000)
    s = open_sources(str(wav), paced=False)
    assert s.video is None and s.audio is not None


def test_camera_source_reads_through_ffmpeg_and_tries_the_next_format(monkeypatch, tmp_path):
    """The camera path minus FFmpeg's device demuxer: a clip stands in for /dev/videoN."""
    from emodesk.capture import webcam

    tried = []

    def candidates(index, size):
        bad = tmp_path / "not-a-camera"
        bad.write_bytes(b"\0" * 64)
        tried.append(size)
        return [
            (str(bad), "rawvideo", {"video_size": "nonsense"}),  # refused by FFmpeg: the next one is tried
            (str(DEMO_CLIP), None, {}),
        ]

    monkeypatch.setattr(webcam, "camera_present", lambda index=0: True)
    monkeypatch.setattr(webcam, "_candidates", candidates)
    clock = ManualClock()
    cam = CameraSource(2, clock=clock, size=(640, 480))
    cam.open()
    try:
        assert tried == [(640, 480)] and cam.size == (640, 480) and cam.fps == 30.0
        assert "demo.mp4" in cam.opened_with and cam.open_seconds >= 0
        frames = []
        for k in range(5):
            clock.t = 0.1 * k
            frames.append(cam.read())
        assert [f.index for f in frames] == [0, 1, 2, 3, 4]
        assert [f.t for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])  # the shared clock's time
        assert frames[0].image.shape == (480, 640, 3) and frames[0].image.dtype == np.uint8
    finally:
        cam.close()


def test_camera_that_opens_nowhere_says_what_was_tried(monkeypatch, tmp_path):
    from emodesk.capture import webcam

    bad = tmp_path / "x"
    bad.write_bytes(b"\0" * 64)
    monkeypatch.setattr(webcam, "camera_present", lambda index=0: True)
    monkeypatch.setattr(webcam, "_candidates", lambda i, s: [(str(bad), "rawvideo", {"video_size": "bad"})])
    with pytest.raises(DeviceError, match=r"camera 0 did not open.*video_size"):
        CameraSource(0).open()


def test_a_named_microphone_with_a_video_file_gives_the_files_picture_and_the_microphones_sound():
    """Issue 24: `emodesk FILE --mic NAME` silently ignored the microphone."""
    from emodesk.capture.microphone import MicrophoneSource

    s = open_sources(str(DEMO_CLIP), mic="2", paced=True)
    assert isinstance(s.video, VideoFileSource)
    assert isinstance(s.audio, MicrophoneSource)  # not the clip's own track
    assert "with microphone 2" in s.description
    s = open_sources("demo", mic="USB", paced=True)
    assert isinstance(s.audio, MicrophoneSource) and s.demo


def test_a_named_microphone_that_cannot_be_used_is_refused_never_ignored(tmp_path):
    wav = tmp_path / "a.wav"
    import soundfile as sf

    sf.write(wav, np.zeros(1600, np.float32), 16000)
    cases = [
        (dict(spec=str(DEMO_CLIP), audio=str(wav)), "both give the audio"),
        (dict(spec=str(DEMO_CLIP), paced=False), "a microphone is live"),
        (dict(spec=str(wav)), "--mic given with an audio-only SOURCE"),
    ]
    for kw, msg in cases:
        kw.setdefault("paced", True)
        with pytest.raises(InputError, match=msg):
            open_sources(kw.pop("spec"), mic="1", **kw)
