"""The main window on the demo clip, through the real pipeline (face models + whisper tiny.en)."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtWidgets import QMessageBox

from emodesk.capture.clock import MonotonicClock
from emodesk.capture.fakes import ArrayAudioSource
from emodesk.capture.sources import SourceSet
from emodesk.errors import DeviceError
from emodesk.fusion.config import FusionConfig
from emodesk.labels import LABELS
from emodesk.resources import shipped_models_dir
from emodesk.ui.app import NO_MIC_NOTE, plan_launch, run_app
from emodesk.ui.errors import ErrorReporter
from emodesk.ui.main_window import DEMO_BANNER_NO_CAMERA, MainWindow
from emodesk.ui.widgets import bgr_to_qimage
from emodesk.workers import LivePipeline, running_workers
from tests.support.live_fakes import fake_speech_loader

SCREENSHOT = Path("/tmp/emodesk_window.png")


@pytest.fixture
def face_only_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A model set with the shipped face models only: voice and text are not installed."""
    out = tmp_path / "models"
    out.mkdir()
    for jp in shipped_models_dir().glob("*.json"):
        if jp.name == "fusion.json":
            continue
        m = json.loads(jp.read_text(encoding="utf-8"))
        if m.get("modality") in ("face", "face-detector", "face-verifier"):
            shutil.copy(jp, out / jp.name)
            shutil.copy(jp.parent / m["file"], out / m["file"])
    monkeypatch.setenv("EMODESK_MODELS", str(out))
    return out


def test_window_on_demo_clip(qtbot: object, face_only_models: Path) -> None:
    banner = plan_launch("demo", camera_present=lambda i: False).demo_banner
    pipe = LivePipeline.from_spec("demo", device="cpu")
    win = MainWindow(pipe, demo_banner=banner)
    qtbot.addWidget(win)  # type: ignore[attr-defined]
    win.show()
    pipe.start()
    wait = qtbot.waitUntil  # type: ignore[attr-defined]
    try:
        wait(lambda: win.video.frames_shown > 10, timeout=10000)
        wait(lambda: len(win.video.faces) == 1, timeout=10000)
        tid, (x, y, w, h), _label, _p = win.video.faces[0]
        assert tid is not None and w > 40 and h > 40 and 0 <= x < 640 and 0 <= y < 480
        face = win.face_panel
        wait(lambda: face.values() is not None, timeout=5000)
        first = face.values()
        wait(lambda: face.values() is not None and np.abs(face.values() - first).max() > 1e-6, timeout=5000)
        assert face.values().sum() == pytest.approx(1.0, abs=1e-3)  # type: ignore[union-attr]
        # Voice and words have no model here: a message, never bars.
        wait(lambda: win.voice_panel.message_text() != "loading…", timeout=15000)
        for panel in (win.voice_panel, win.text_panel):
            assert panel.message_text() == "no model installed" and panel.values() is None
        assert win.fused_panel.values() is not None and "%" in win.headline.label.text()
        assert win.banner.isVisible() and win.banner.text() == DEMO_BANNER_NO_CAMERA
        # The first sentence (1.0–2.9 s of the clip) comes back as a final transcript line.
        wait(lambda: len(win.transcript.lines) >= 1, timeout=20000)
        assert "happy" in win.transcript.lines[0].lower()
        assert "happy" in win.transcript.toPlainText().lower()
        snap = win.last_snapshot
        assert snap is not None and snap.demo
        assert snap.stats.face_latency_p95_ms is not None and snap.stats.transcript_latency_p50_ms is not None
        assert "EP: CPU" in win.provider_label.text() and "fps" in win.perf_label.text()
        assert "demo.mp4" in win.source_label.text()
        win.refresh()
        assert win.grab().save(str(SCREENSHOT))
    finally:
        win.close()
    assert not pipe.running and not running_workers()


def _fake_microphone_pipeline() -> LivePipeline:
    """A minute of noise as a paced microphone, and fake voice/text members (no video)."""
    clock, stop = MonotonicClock(), threading.Event()
    speechy = (0.05 * np.random.default_rng(2).standard_normal(16000 * 60)).astype(np.float32)
    audio = ArrayAudioSource(speechy, paced=True, clock=clock, stop=stop)
    return LivePipeline(
        SourceSet(None, audio, "fake microphone", clock, stop),
        fusion=FusionConfig.equal(["fake-voice", "fake-text"]),
        speech_loader=fake_speech_loader(),
    )


def test_window_shows_voice_and_words_bars_when_members_exist(qtbot: object) -> None:
    pipe = _fake_microphone_pipeline()
    win = MainWindow(pipe)
    qtbot.addWidget(win)  # type: ignore[attr-defined]
    win.show()
    pipe.start()
    try:
        qtbot.waitUntil(
            lambda: (
                win.voice_panel.values() is not None  # type: ignore[attr-defined]
                and win.text_panel.values() is not None
            ),
            timeout=5000,
        )
        assert LABELS[int(np.argmax(win.voice_panel.values()))] == "angry"  # type: ignore[arg-type]
        assert LABELS[int(np.argmax(win.text_panel.values()))] == "sad"  # type: ignore[arg-type]
        assert "fake-voice" in win.voice_panel.caption.text() and "ago" in win.voice_panel.caption.text()
        assert win.face_panel.message_text() == "no video source" and not win.banner.isVisible()
        assert win.transcript.lines and win.transcript.lines[0] == "line 1"
        assert win.fused_panel.values() is not None
    finally:
        win.close()
    assert not pipe.running


def test_run_app_demo_quits_cleanly(tmp_path: Path, emodesk_home: Path) -> None:
    shot = tmp_path / "app.png"
    assert run_app("demo", device="cpu", quit_after=2.5, screenshot=shot) == 0
    assert shot.is_file() and shot.stat().st_size > 10_000
    log_text = (emodesk_home / "logs" / "emodesk.log").read_text(encoding="utf-8")
    assert "live pipeline stopped; all 4 threads joined" in log_text


def test_run_app_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    assert run_app(str(tmp_path / "nope.mp4"), quit_after=0.1) == 2


def test_plan_launch_demo_and_no_microphone() -> None:
    plan = plan_launch(None, camera_present=lambda i: False)
    assert plan.spec == "demo" and plan.demo_banner == DEMO_BANNER_NO_CAMERA
    plan = plan_launch(None, camera_present=lambda i: True, mic_present=lambda m: False)
    assert plan.spec == "camera" and not plan.use_mic and plan.notes == (NO_MIC_NOTE,)
    assert plan.demo_banner is None


def test_plan_launch_refuses_a_named_microphone_that_is_not_there() -> None:
    """A named --mic is never dropped quietly: with a camera or with a file, exit 2 saying why."""
    for source in (None, "demo", "camera"):
        with pytest.raises(DeviceError, match="--mic Blue Yeti: no such microphone"):
            plan_launch(source, mic="Blue Yeti", camera_present=lambda i: True, mic_present=lambda m: False)
    plan = plan_launch("demo", mic="Blue Yeti", camera_present=lambda i: False, mic_present=lambda m: True)
    assert plan.use_mic and plan.spec == "demo"


def test_bgr_frame_colours_survive_conversion() -> None:
    img = np.zeros((2, 3, 3), np.uint8)
    img[0, 0] = (255, 0, 0)  # BGR blue
    img[1, 2] = (0, 0, 255)  # BGR red
    q = bgr_to_qimage(img)
    assert (q.width(), q.height()) == (3, 2)
    assert q.pixelColor(0, 0).blue() == 255 and q.pixelColor(0, 0).red() == 0
    assert q.pixelColor(2, 1).red() == 255 and q.pixelColor(2, 1).blue() == 0


def test_error_dialogs_one_at_a_time_and_throttled(qtbot: object, caplog: pytest.LogCaptureFixture) -> None:
    rep = ErrorReporter(None, throttle_s=60)
    shown: list[str] = []
    rep.shown.connect(shown.append)
    with caplog.at_level(logging.ERROR):
        rep.report("camera 0 stopped delivering frames")
        rep.report("camera 0 stopped delivering frames")  # throttled
        rep.report("microphone did not open")  # waits for the first dialog
    assert shown == ["camera 0 stopped delivering frames"] and rep.dialog_open
    assert rep.suppressed == 1
    assert sum("camera 0 stopped" in r.getMessage() for r in caplog.records) == 2  # all logged
    assert rep.dialog is not None and rep.dialog.text() == shown[0]
    rep.dialog.button(QMessageBox.StandardButton.Ok).click()  # the user dismisses it
    qtbot.waitUntil(lambda: len(shown) == 2, timeout=2000)  # type: ignore[attr-defined]
    assert shown[1] == "microphone did not open" and rep.dialog is not None
    rep.close_dialog()  # window shutdown: closes it and forgets the rest
    assert not rep.dialog_open


def test_fusion_weights_reload_while_running_when_the_file_changes(qtbot: object, emodesk_home: Path) -> None:
    """fusion optimize writes fusion.json into the active set: the running window picks it up, no restart."""
    from emodesk.inference.registry import installed_manifests

    active = emodesk_home / "models" / "v1"
    active.mkdir(parents=True)
    (emodesk_home / "models" / "active").write_text("v1")
    ms = installed_manifests()
    voice = next(m for m in ms.values() if m.modality == "voice")
    text = next(m for m in ms.values() if m.modality == "text")
    clock, stop = MonotonicClock(), threading.Event()
    audio = ArrayAudioSource(np.zeros(16000 * 30, np.float32), paced=True, clock=clock, stop=stop)
    pipe = LivePipeline(
        SourceSet(None, audio, "fake microphone", clock, stop), speech_loader=fake_speech_loader()
    )
    win = MainWindow(pipe)
    qtbot.addWidget(win)  # type: ignore[attr-defined]
    pipe.start()
    try:
        before = pipe.fusion_config
        assert before is not None and before.path != active / "fusion.json"
        doc = {
            "version": 1,
            "classes": list(LABELS),
            "members": [
                {"id": voice.id, "sha256": voice.sha256, "modality": "voice"},
                {"id": text.id, "sha256": text.sha256, "modality": "text"},
            ],
            "weights": {voice.id: 0.25, text.id: 0.75},
        }
        tmp = active / ".fusion.json.tmp"
        tmp.write_text(json.dumps(doc))
        tmp.replace(active / "fusion.json")  # atomically, as fusion optimize writes it
        qtbot.waitUntil(  # type: ignore[attr-defined]
            lambda: pipe.fusion_config is not None and pipe.fusion_config.path == active / "fusion.json",
            timeout=5000,
        )
        assert dict(pipe.fusion_config.weights) == {voice.id: 0.25, text.id: 0.75}  # type: ignore[union-attr]
        assert "reloaded" in win.statusBar().currentMessage()
        # A broken file keeps the session running on equal weights and says so.
        (active / "fusion.json").write_text("{ not json")
        qtbot.waitUntil(lambda: "using equal weights" in win.statusBar().currentMessage(), timeout=5000)  # type: ignore[attr-defined]
        assert pipe.running and pipe.fusion_config is not None and pipe.fusion_config.path is None
    finally:
        win.close()
    assert not pipe.running


def test_record_from_the_window_with_label_hotkeys_while_the_view_keeps_running(
    qtbot: object, emodesk_home: Path
) -> None:
    from emodesk.recording.session import check_session, read_audio, read_labels

    pipe = _fake_microphone_pipeline()
    win = MainWindow(pipe)
    qtbot.addWidget(win)  # type: ignore[attr-defined]
    win.show()
    pipe.start()
    try:
        win.label_hotkey(4)  # not recording: only a hint
        assert "while recording" in win.statusBar().currentMessage()
        win.record_action.trigger()
        assert pipe.recorder is not None
        qtbot.waitUntil(lambda: win.rec_label.isVisible() and "REC" in win.rec_label.text(), timeout=3000)  # type: ignore[attr-defined]
        win.label_hotkey(4)  # 4 = happy (canonical order)
        assert "happy" in win.rec_label.text()
        qtbot.wait(600)  # type: ignore[attr-defined]
        win.label_hotkey(0)
        win.record_action.trigger()
        assert pipe.recorder is None and not win.rec_label.isVisible() and pipe.running
        session = win.last_session
        assert session is not None and session.parent == emodesk_home / "sessions"
        assert check_session(session).ok
        assert [c["label"] for c in read_labels(session)] == ["happy", None]
        assert len(read_audio(session)[0]) > 16000 * 0.5
        n = win.refreshes
        qtbot.waitUntil(lambda: win.refreshes > n + 3, timeout=2000)  # type: ignore[attr-defined]
        # Ctrl+Shift+S (advertised in the README) opens the sessions browser on the same folder
        from PySide6.QtGui import QKeySequence

        assert win.sessions_action.shortcut() == QKeySequence("Ctrl+Shift+S")
        win.sessions_action.trigger()
        qtbot.waitUntil(lambda: win.sessions_dialog.isVisible(), timeout=2000)  # type: ignore[attr-defined]
        win.sessions_dialog.close()
    finally:
        win.close()
    assert not pipe.running


def test_sessions_browser_lists_replays_repairs_and_deletes(
    qtbot: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtWidgets import QMessageBox

    from emodesk.recording.format import read_session_json, write_session_json
    from emodesk.recording.writer import SessionMeta, SessionWriter
    from emodesk.ui import sessions_dialog as sd

    paths = []
    for k in range(2):
        w = SessionWriter(tmp_path, SessionMeta(source="test", notes=f"note {k}"))
        p = w.start(0.0)
        w.add_audio(np.zeros(16000, np.float32), 0.0)
        w.stop(1.0)
        paths.append(p)
    doc = read_session_json(paths[0])
    write_session_json(paths[0], {**doc, "state": "recording"})  # as a killed recording leaves it
    dlg = sd.SessionsDialog(tmp_path)
    qtbot.addWidget(dlg)  # type: ignore[attr-defined]
    assert dlg.table.rowCount() == 2
    row = {r.path: i for i, r in enumerate(dlg.reports)}  # rows are sorted by folder name
    killed, fine = row[paths[0]], row[paths[1]]
    assert "never closed" in dlg.table.item(killed, 7).text() and dlg.table.item(fine, 6).text() == "note 1"
    launched: list[list[str]] = []
    monkeypatch.setattr(sd.subprocess, "Popen", lambda cmd: launched.append(cmd))
    monkeypatch.setattr(sd.QMessageBox, "information", lambda *a, **k: None)
    dlg.table.selectRow(killed)
    dlg.replay()
    assert launched and launched[0][-1] == str(paths[0])
    dlg.repair()
    row = {r.path: i for i, r in enumerate(dlg.reports)}
    assert (
        read_session_json(paths[0])["state"] == "repaired" and dlg.table.item(row[paths[0]], 7).text() == ""
    )
    monkeypatch.setattr(sd.QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    dlg.table.selectRow(row[paths[1]])
    dlg.delete()
    assert not paths[1].exists() and dlg.table.rowCount() == 1
