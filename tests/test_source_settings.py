"""Switching the source while the window runs, and the Settings dialog and what it changes.

The picker is fed fake device lists (this machine has no camera or sound card;
tests/test_microphone.py drives a real virtual microphone); switching runs
real LivePipelines over real files with fake models, so each switch really
stops one set of threads and starts another.
"""

from __future__ import annotations

import threading
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox

from emodesk.capture.catalog import CameraInfo, MicInfo, media_info
from emodesk.capture.sources import demo_clip_path, open_sources
from emodesk.errors import DeviceError
from emodesk.fusion.config import FusionConfig
from emodesk.labels import LABELS
from emodesk.speech.asr import AsrChoice
from emodesk.types import SlotStatus
from emodesk.ui.errors import ErrorReporter
from emodesk.ui.main_window import MainWindow
from emodesk.ui.preferences import Preferences, Smoother, load_preferences, save_preferences
from emodesk.ui.settings import app_settings
from emodesk.ui.settings_dialog import SettingsDialog
from emodesk.ui.source_picker import SourceChoice, SourceDialog
from emodesk.workers.live import LivePipeline
from tests.support.live_fakes import SlowFace, fake_speech_loader

CAMS = [CameraInfo(0, "Integrated Camera"), CameraInfo(2, "USB Camera")]
MICS = [MicInfo(3, "Headset", 48000.0, 1), MicInfo(5, "Array", 16000.0, 4)]


def probe(cam: CameraInfo) -> CameraInfo:
    return CameraInfo(cam.index, cam.name, (640, 480), 30.0)


def wav(path: Path, seconds: float = 1.0) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.zeros(int(16000 * seconds), np.int16).tobytes())
    return path


def dialog(qtbot: object, current: SourceChoice | None, **kw: object) -> SourceDialog:
    args: dict[str, object] = {"cameras": lambda: CAMS, "probe": probe, "microphones": lambda: MICS}
    args.update(kw)
    d = SourceDialog(current, **args)  # type: ignore[arg-type]
    qtbot.addWidget(d)  # type: ignore[attr-defined]
    d.wait_for_probes()
    return d


def select(d: SourceDialog, startswith: str) -> None:
    rows = [i for i, text in enumerate(d.entries()) if text.startswith(startswith)]
    assert rows, (startswith, d.entries())
    d.videos.setCurrentRow(rows[0])


def pick_sound(d: SourceDialog, startswith: str) -> None:
    i = [k for k, text in enumerate(d.sounds()) if text.startswith(startswith)]
    assert i, (startswith, d.sounds())
    d.sound.setCurrentIndex(i[0])


# ------------------------------------------------------------------ the picker


def test_picker_shows_each_source_with_its_resolution_or_sample_rate(qtbot: object) -> None:
    d = dialog(qtbot, SourceChoice("camera:0"), current_size=(1280, 720))
    demo = media_info(demo_clip_path())
    assert demo.size == (640, 480) and demo.audio_rate == 16000 and demo.fps == pytest.approx(30.0)
    entries = d.entries()
    assert entries[0] == "Demo clip (640×480, 30 fps, 15 s, audio 16 kHz)"
    assert "Camera 0 — Integrated Camera (1280×720) — in use" in entries  # not reopened
    assert "Camera 2 — USB Camera (640×480, 30 fps)" in entries  # probed
    assert d.videos.currentItem().text().startswith("Camera 0")  # the running source is selected
    select(d, "Camera 2")
    assert d.sounds() == [
        "Default microphone",
        "Microphone 3: Headset (48 kHz, 1 ch)",
        "Microphone 5: Array (16 kHz, 4 ch)",
        "No sound (face only)",
    ]
    pick_sound(d, "Microphone 5")
    assert d.choice() == SourceChoice("camera:2", mic=5)
    pick_sound(d, "No sound")
    assert d.choice() == SourceChoice("camera:2", use_mic=False)
    select(d, "Demo clip")  # a file: its own sound, or a microphone with its picture
    assert d.sounds()[0] == "The file's own sound" and "No sound (face only)" not in d.sounds()
    assert d.choice() == SourceChoice("demo")
    pick_sound(d, "Microphone 3")
    assert d.choice() == SourceChoice("demo", mic=3)


def test_picker_adds_files_and_sessions_and_says_why_one_cannot_play(qtbot: object, tmp_path: Path) -> None:
    d = dialog(qtbot, SourceChoice("demo"))
    assert not d.add_file(tmp_path / "missing.mp4")
    assert "no such file" in d.note.text()
    (tmp_path / "notes.txt").write_text("not a video", encoding="utf-8")
    assert not d.add_file(tmp_path / "notes.txt")
    assert "FFmpeg" in d.note.text() or "neither" in d.note.text()
    assert d.add_file(wav(tmp_path / "talk.wav", 2.0))
    assert d.videos.currentItem().text() == "Audio file talk.wav (2 s, audio 16 kHz)"
    assert d.sounds() == ["The file's own sound"]  # an audio file plays its own sound
    assert d.choice() == SourceChoice(str(tmp_path / "talk.wav"))
    session = tmp_path / "s1"
    session.mkdir()
    (session / "session.json").write_text("{}", encoding="utf-8")
    wav(session / "audio.wav", 3.0)
    assert d.add_file(session / "session.json")  # the file dialog picks the session.json
    assert d.videos.currentItem().text().startswith("Session s1 (3 s, audio 16 kHz)")
    assert d.sounds() == ["The file's own sound"]
    assert d.choice() == SourceChoice(str(session))


def test_picker_reports_a_camera_that_will_not_open_and_is_locked_while_recording(qtbot: object) -> None:
    def busy(cam: CameraInfo) -> CameraInfo:
        raise DeviceError(f"camera {cam.index} did not open; is another program using it?")

    d = dialog(qtbot, SourceChoice("demo"), probe=busy, recording=True, microphones=lambda: [])
    assert any("Camera 2 — USB Camera (cannot open: camera 2 did not open" in e for e in d.entries())
    assert not d.buttons.button(QDialogButtonBox.StandardButton.Ok).isEnabled()
    assert "stop the recording" in d.note.text()
    select(d, "Camera 0")
    assert d.sounds() == ["Default microphone", "No sound (face only)"]  # no microphone listed


def test_media_info_reads_a_video_without_sound(tmp_path: Path) -> None:
    import av

    path = tmp_path / "silent.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for _ in range(10):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    info = media_info(path)
    assert (info.kind, info.size, info.has_audio) == ("video", (64, 48), False)
    assert info.describe().startswith("File silent.mp4 (64×48, 10 fps") and "no audio" in info.describe()


# ------------------------------------------------------------------ switching


class Factory:
    """Real paced sources for a choice (files via ``open_sources``), fake models; counts builds."""

    def __init__(self) -> None:
        self.built: list[tuple[SourceChoice, Preferences]] = []

    def __call__(self, choice: SourceChoice, prefs: Preferences) -> LivePipeline:
        sources = open_sources(choice.spec, mic=choice.mic, paced=True, loop=True)
        self.built.append((choice, prefs))
        return LivePipeline(
            sources,
            face_loader=lambda: (SlowFace(0.0), [SlotStatus("face", "ok", "fake")]),
            speech_loader=fake_speech_loader(),  # type: ignore[arg-type]
            fusion=FusionConfig.equal(["fake-voice", "fake-text"]),
        )


@pytest.fixture
def running(qtbot: object, tmp_path: Path) -> Iterator[tuple[MainWindow, Factory, list[str]]]:
    factory = Factory()
    shown: list[str] = []
    first = SourceChoice(str(wav(tmp_path / "first.wav", 30.0)))
    pipe = factory(first, Preferences())
    reporter = ErrorReporter(dialogs=False)
    reporter.shown.connect(shown.append)
    win = MainWindow(pipe, reporter, refresh_ms=50, source=first, pipeline_factory=factory)
    qtbot.addWidget(win)  # type: ignore[attr-defined]
    win.show()
    pipe.start()
    yield win, factory, shown
    win.close()
    assert not win.pipeline.running


def test_switching_stops_the_old_threads_and_shows_only_the_new_source(
    qtbot: object, running: tuple[MainWindow, Factory, list[str]]
) -> None:
    win, factory, _ = running
    old = win.pipeline
    qtbot.waitUntil(lambda: win.last_snapshot is not None and win.last_snapshot.t is not None)  # type: ignore[attr-defined]
    qtbot.waitUntil(lambda: len(win.timeline.traces["fused"]) > 0, timeout=5000)  # type: ignore[attr-defined]
    assert win.face_panel.message_text() == "no video source"
    demo = SourceChoice("demo")
    assert win.switch_source(demo)
    assert not old.running and win.pipeline is not old and win.source == demo
    assert len(win.timeline.traces["fused"]) == 0  # nothing of the old clock stays on screen
    assert win.banner.isVisible() and "Demo mode" in win.banner.text()
    qtbot.waitUntil(lambda: win.video.aspect is not None, timeout=10000)  # type: ignore[attr-defined]
    assert win.video.aspect == pytest.approx(640 / 480)
    assert "demo.mp4" in win.source_label.text()
    assert [c for c, _ in factory.built] == [factory.built[0][0], demo]


def test_a_source_that_cannot_be_built_leaves_the_running_one_alone(
    qtbot: object, running: tuple[MainWindow, Factory, list[str]], tmp_path: Path
) -> None:
    win, _, shown = running
    before = win.pipeline
    assert not win.switch_source(SourceChoice(str(tmp_path / "gone.mp4")))
    assert win.pipeline is before and before.running
    assert shown and "cannot switch to" in shown[-1] and "does not exist" in shown[-1]


def test_switching_is_refused_while_recording_and_the_session_is_kept(
    qtbot: object, running: tuple[MainWindow, Factory, list[str]], tmp_path: Path
) -> None:
    win, factory, _ = running
    win.sessions_dir = tmp_path / "sessions"
    win.toggle_recording()
    qtbot.wait(300)  # type: ignore[attr-defined]
    pipe = win.pipeline
    assert pipe.recorder is not None
    assert not win.switch_source(SourceChoice("demo"))
    assert win.pipeline is pipe and pipe.recorder is not None and len(factory.built) == 1
    assert "stop the recording" in win.statusBar().currentMessage()
    win.toggle_recording()
    assert win.last_session is not None and (win.last_session / "session.json").is_file()


def test_ctrl_o_opens_the_picker_on_the_running_source_and_its_switch_button_switches(
    qtbot: object, running: tuple[MainWindow, Factory, list[str]], tmp_path: Path
) -> None:
    from PySide6.QtWidgets import QApplication

    win, factory, _ = running
    win.windowHandle().requestActivate()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=3000)  # type: ignore[attr-defined]
    qtbot.keyClick(win, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)  # type: ignore[attr-defined]
    picker = win.picker
    qtbot.waitUntil(picker.isVisible, timeout=3000)  # type: ignore[attr-defined]
    assert picker.videos.currentItem().text().startswith("Audio file first.wav (30 s")
    select(picker, "Demo clip")
    picker.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    assert win.source == SourceChoice("demo") and factory.built[-1][0] == SourceChoice("demo")
    qtbot.keyClick(win, Qt.Key.Key_Comma, Qt.KeyboardModifier.ControlModifier)  # type: ignore[attr-defined]
    qtbot.waitUntil(win.settings_window.isVisible, timeout=3000)  # type: ignore[attr-defined]
    win.settings_window.reject()


# ------------------------------------------------------------------ settings


def test_preferences_round_trip_and_a_hand_broken_file_reads_as_defaults() -> None:
    s = app_settings()
    p = Preferences(
        asr_model="base",
        language="de",
        vad_threshold=0.6,
        staleness={"face": 2.0, "voice": 5.0, "text": 20.0},
        smoothing_s=1.5,
        recording_folder="/data/study",
    )
    save_preferences(s, p)
    assert load_preferences(app_settings()) == p
    for key, bad in (
        ("speech/vad_threshold", "loud"),
        ("display/stale_face_s", -3),
        ("display/smoothing_s", "nan"),
        ("speech/language", "en-GB!"),
    ):
        s.setValue(key, bad)
    s.sync()
    q = load_preferences(app_settings())
    d = Preferences()
    assert (q.vad_threshold, q.staleness["face"], q.smoothing_s, q.language) == (
        d.vad_threshold,
        d.staleness["face"],
        d.smoothing_s,
        d.language,
    )
    assert q.staleness["voice"] == 5.0 and q.asr_model == "base"  # the good values survive


def test_smoother_follows_media_time_and_starts_afresh_after_a_jump() -> None:
    a, b = np.eye(7)[LABELS.index("happy")], np.eye(7)[LABELS.index("sad")]
    off = Smoother(0.0)
    assert np.array_equal(off(0.0, a), a) and np.array_equal(off(0.1, b), b)  # type: ignore[arg-type]
    sm = Smoother(1.0)
    sm(0.0, a)
    half = sm(np.log(2.0), b)  # one half-life later
    assert (
        half is not None
        and half[LABELS.index("sad")] == pytest.approx(0.5)
        and half.sum() == pytest.approx(1)
    )
    assert np.array_equal(sm(0.2, b), b)  # type: ignore[arg-type]  # media time went back (a looping file): no blending
    assert np.array_equal(sm(9.0, a), a)  # type: ignore[arg-type]  # a gap of more than five time constants


CHOICES = [
    AsrChoice("tiny.en", "tiny.en — English only", True, False),
    AsrChoice("base", "base — multilingual", True, True),
]


def test_settings_dialog_edits_validates_and_restores_defaults(qtbot: object, tmp_path: Path) -> None:
    d = SettingsDialog(Preferences(), choices=lambda: CHOICES)
    qtbot.addWidget(d)  # type: ignore[attr-defined]
    assert not d.language.isEnabled()  # tiny.en: English only
    d.asr.setCurrentIndex(d.asr.findData("base"))
    assert d.language.isEnabled()
    d.language.setCurrentIndex(d.language.findData("ur"))
    d.vad.setValue(0.65)
    d.stale["face"].setValue(3.0)
    d.smoothing.setValue(0.75)
    d.folder.setText(str(tmp_path / "study"))
    assert d.problem() is None
    p = d.preferences()
    assert (p.asr_model, p.language, p.vad_threshold, p.staleness["face"], p.smoothing_s) == (
        "base",
        "ur",
        0.65,
        3.0,
        0.75,
    )
    assert p.sessions_dir() == tmp_path / "study"
    d.asr.setCurrentIndex(d.asr.findData("__folder__"))
    d.asr_folder.setText(str(tmp_path))
    assert d.problem() is not None and "model.bin" in d.problem()  # type: ignore[operator]
    for f in ("model.bin", "config.json", "tokenizer.json"):
        (tmp_path / f).write_text("x", encoding="utf-8")
    assert d.problem() is None and d.preferences().asr_model == str(tmp_path)
    d.language.setEditText("english please")
    assert "two- or three-letter" in (d.problem() or "")
    d.restore_defaults()
    assert d.preferences() == Preferences()
    locked = SettingsDialog(Preferences(asr_model="base"), choices=lambda: CHOICES, asr_locked="tiny.en")
    qtbot.addWidget(locked)  # type: ignore[attr-defined]
    assert not locked.asr.isEnabled() and "--asr-model tiny.en" in locked.asr.toolTip()


def test_display_settings_apply_at_once_and_speech_settings_restart_the_speech_path(
    qtbot: object, running: tuple[MainWindow, Factory, list[str]], tmp_path: Path
) -> None:
    win, factory, _ = running
    first = win.pipeline
    display = Preferences(staleness={"face": 4.0, "voice": 2.0, "text": 2.0}, smoothing_s=2.0)
    win.apply_preferences(display)
    assert win.pipeline is first and len(factory.built) == 1  # display only: nothing restarted
    assert win.staleness["voice"] == 2.0 and win.smoother.tau_s == 2.0
    assert load_preferences(app_settings()) == display  # persisted
    qtbot.waitUntil(lambda: win.fused_panel.values() is not None, timeout=5000)  # type: ignore[attr-defined]
    assert "smoothed 2 s" in win.fused_panel.caption.text()
    speech = Preferences(vad_threshold=0.7, smoothing_s=2.0, recording_folder=str(tmp_path / "rec"))
    win.apply_preferences(speech)
    assert win.pipeline is not first and not first.running
    assert factory.built[-1] == (win.source, speech)  # the same source, the new settings
    assert win.sessions_dir == tmp_path / "rec"


def test_the_vad_threshold_and_language_reach_the_real_speech_path() -> None:
    from emodesk.pipeline.models import load_speech_processor

    speech, statuses = load_speech_processor(device="cpu", vad_threshold=0.7)
    assert speech is not None, statuses
    cfg = speech.segmenter.config
    assert (cfg.threshold, cfg.neg_threshold) == (0.7, pytest.approx(0.55))
    with pytest.raises(ValueError, match="vad_threshold"):
        load_speech_processor(device="cpu", vad_threshold=1.5)
    none, statuses = load_speech_processor(device="cpu", language="de")
    assert none is None and "English only" in statuses[-1].message


def test_threads_of_a_camera_probe_end(qtbot: object) -> None:
    gate = threading.Event()

    def slow(cam: CameraInfo) -> CameraInfo:
        gate.wait(2.0)
        return probe(cam)

    d = SourceDialog(None, cameras=lambda: CAMS, probe=slow, microphones=lambda: MICS)
    qtbot.addWidget(d)  # type: ignore[attr-defined]
    assert sum("opening it to read its resolution" in e for e in d.entries()) == 2
    gate.set()
    qtbot.waitUntil(lambda: all("640×480" in e for e in d.entries() if e.startswith("Camera")))  # type: ignore[attr-defined]


def test_the_sessions_browser_opens_any_folder_and_remembers_it(qtbot: object, tmp_path: Path) -> None:
    from emodesk.recording.writer import SessionMeta, SessionWriter
    from emodesk.ui.sessions_dialog import SessionsDialog, recent_folders

    def record(parent: Path) -> Path:
        w = SessionWriter(parent, SessionMeta(source="synthetic"))
        path = w.start(0.0)
        w.add_audio(np.zeros(16000, np.float32), 0.0)
        w.stop(1.0)
        return path

    default, study = tmp_path / "default", tmp_path / "study-out"
    default.mkdir()
    made = record(study)  # e.g. emodesk record --out study-out
    s = app_settings()
    d = SessionsDialog(default, settings=s)
    qtbot.addWidget(d)  # type: ignore[attr-defined]
    assert d.table.rowCount() == 0
    d.open_folder(study)
    assert d.table.rowCount() == 1 and d.table.item(0, 0).text() == made.name
    assert "study-out" in d.windowTitle()
    assert recent_folders(app_settings())[:2] == [study, default]
    again = SessionsDialog(default, settings=app_settings())  # the next time, the folder is offered
    qtbot.addWidget(again)  # type: ignore[attr-defined]
    offered = [again.folders.itemData(i) for i in range(again.folders.count())]
    assert offered == [str(default), str(study)]
    again.folders.setCurrentIndex(1)
    assert again.table.rowCount() == 1
