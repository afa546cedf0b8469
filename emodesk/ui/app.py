"""Starting the desktop app: pick the sources, build the pipeline, show the window, shut down cleanly."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from emodesk.capture.sources import (
    camera_available,
    microphone_available,
    parse_camera,
    require_named_microphone,
)
from emodesk.errors import DeviceError, EmodeskError, InputError
from emodesk.machine import Device

log = logging.getLogger(__name__)

NO_MIC_NOTE = "No microphone found: running without audio (no transcript, voice or words scores)"


@dataclass(frozen=True)
class LaunchPlan:
    """What ``run_app`` will open, decided before any thread starts."""

    spec: str
    use_mic: bool
    demo_banner: str | None
    notes: tuple[str, ...] = ()


def plan_launch(
    source: str | None,
    *,
    audio: str | Path | None = None,
    mic: int | str | None = None,
    demo_if_no_camera: bool = True,
    camera_present: Callable[[int], bool] = camera_available,
    mic_present: Callable[[int | str | None], bool] = microphone_available,
) -> LaunchPlan:
    """Camera 0 when there is one, else the demo clip; no microphone means no audio, said aloud."""
    from emodesk.ui.main_window import DEMO_BANNER, DEMO_BANNER_NO_CAMERA

    notes: list[str] = []
    banner: str | None = None
    spec = source
    if spec is None:
        if camera_present(0):
            spec = "camera"
        elif demo_if_no_camera:
            spec, banner = "demo", DEMO_BANNER_NO_CAMERA
        else:
            raise DeviceError("no camera found; pass a video file, or `demo` to play the demo clip")
    elif spec == "demo":
        banner = DEMO_BANNER if camera_present(0) else DEMO_BANNER_NO_CAMERA
    use_mic = True
    if audio is None:
        require_named_microphone(mic, mic_present)
    if parse_camera(spec) is not None and audio is None and not mic_present(mic):
        use_mic = False
        notes.append(NO_MIC_NOTE)
    return LaunchPlan(spec, use_mic, banner, tuple(notes))


def _qt_message(mode: object, context: object, message: str) -> None:
    """Qt's own warnings go to the log file, not the user's terminal (stderr stays one line)."""
    from PySide6.QtCore import QtMsgType

    if mode in (QtMsgType.QtCriticalMsg, QtMsgType.QtFatalMsg):
        level = logging.WARNING
    elif mode == QtMsgType.QtWarningMsg:
        level = logging.INFO
    else:
        level = logging.DEBUG
    logging.getLogger("qt").log(level, "%s", message)


NO_DISPLAY = (
    "no display found (DISPLAY and WAYLAND_DISPLAY are unset): the window has nowhere to open. "
    "Start emodesk from a desktop session, use `emodesk analyze` or `emodesk record` for headless work, "
    "or set QT_QPA_PLATFORM=offscreen to run the window invisibly (with --quit-after)"
)


def no_display() -> bool:
    """True on Linux without an X or Wayland display, unless a Qt platform was asked for explicitly."""
    return (
        sys.platform.startswith("linux")
        and not os.environ.get("QT_QPA_PLATFORM")
        and not os.environ.get("DISPLAY")
        and not os.environ.get("WAYLAND_DISPLAY")
    )


def _prepare_qt(*, offscreen_if_headless: bool = False) -> None:
    """Settings that must precede the QApplication; a headless box gets the offscreen platform
    only where that is asked for (the self-test renders the window without showing it)."""
    from PySide6.QtCore import QCoreApplication, Qt, qInstallMessageHandler
    from PySide6.QtGui import QGuiApplication

    if offscreen_if_headless and no_display():
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    qInstallMessageHandler(_qt_message)
    if QCoreApplication.instance() is None:
        QCoreApplication.setAttribute(Qt.ApplicationAttribute.AA_ShareOpenGLContexts)
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)


def run_app(
    source: str | None,
    *,
    audio: str | Path | None = None,
    mic: int | str | None = None,
    asr_model: str | None = None,
    device: Device = "auto",
    demo_if_no_camera: bool = True,
    quit_after: float | None = None,
    screenshot: str | Path | None = None,
) -> int:
    """Run the window until it is closed (or ``quit_after`` seconds pass); returns an exit status.

    0: closed normally; 1: a worker thread would not stop; 2: unusable input
    (a missing file, no camera and demo mode off) or no display to show the
    window on (an invisible window would run until killed). ``screenshot``
    saves the window to that PNG just before a ``quit_after`` close.
    """
    from emodesk.ui.errors import remove_logging, setup_logging
    from emodesk.ui.qt_compat import check_qt

    check_qt()
    if no_display():
        print(f"emodesk: {NO_DISPLAY}", file=sys.stderr)
        return 2
    log_path = setup_logging()
    _prepare_qt()
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    from emodesk.ui.main_window import MainWindow
    from emodesk.workers.live import LivePipeline

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("emodesk")
    app.setStyle("Fusion")
    interactive = quit_after is None
    from emodesk.ui.preferences import Preferences, load_preferences
    from emodesk.ui.settings import app_settings
    from emodesk.ui.source_picker import SourceChoice

    def build(choice: SourceChoice, prefs: Preferences) -> LivePipeline:
        """The pipeline for a source and the Settings (``--asr-model`` wins over the saved recogniser)."""
        return LivePipeline.from_spec(
            choice.spec,
            audio=choice.audio,
            mic=choice.mic,
            use_mic=choice.use_mic,
            device=device,
            asr_model=asr_model if asr_model is not None else prefs.asr_model,
            language=prefs.language,
            vad_threshold=prefs.vad_threshold,
        )

    try:
        try:
            plan = plan_launch(source, audio=audio, mic=mic, demo_if_no_camera=demo_if_no_camera)
            choice = SourceChoice(
                plan.spec, mic=mic, use_mic=plan.use_mic, audio=str(audio) if audio else None
            )
            pipeline = build(choice, load_preferences(app_settings()))
        except (InputError, DeviceError) as e:
            log.info("cannot start: %s", e)  # the log file; stderr gets the one line below
            print(f"emodesk: {e}", file=sys.stderr)
            if interactive and QApplication.platformName() != "offscreen":  # nobody could close it
                QMessageBox.critical(None, "emodesk", str(e))
            return 2
        pipeline.sources.notes.extend(n for n in plan.notes if n not in pipeline.sources.notes)
        if pipeline.sources.audio is None and not plan.notes:
            pipeline.sources.notes.append(f"{pipeline.sources.description} has no audio track: face only")
        window = MainWindow(
            pipeline,
            demo_banner=plan.demo_banner,
            log_path=log_path,
            source=choice,
            pipeline_factory=build,
            asr_locked=asr_model,
        )
        window.show()
        pipeline.start()
        log.info("emodesk started on %s (log: %s)", pipeline.sources.description, log_path)
        if quit_after is not None:

            def finish() -> None:
                if screenshot is not None:
                    window.refresh()
                    if not window.grab().save(str(screenshot)):
                        log.warning("could not save the screenshot to %s", screenshot)
                window.close()

            QTimer.singleShot(int(quit_after * 1000), finish)
        try:
            app.exec()
        finally:
            joined = window.shutdown()
        return 0 if joined else 1
    except EmodeskError as e:
        log.info("emodesk failed: %s", e)
        print(f"emodesk: {e}", file=sys.stderr)
        return 1
    finally:
        remove_logging()


def self_test_window() -> str:
    """Build the real window over the demo clip (not started), render it once, close it.

    Catches what a broken bundle misses: Qt's platform plugin, fonts, the widgets.
    """
    from emodesk.ui.qt_compat import check_qt

    check_qt()
    _prepare_qt(offscreen_if_headless=True)
    from PySide6.QtWidgets import QApplication

    from emodesk.ui.main_window import DEMO_BANNER, MainWindow
    from emodesk.workers.live import LivePipeline

    app = QApplication.instance() or QApplication(sys.argv[:1])
    pipeline = LivePipeline.from_spec("demo")
    window = MainWindow(pipeline, demo_banner=DEMO_BANNER)
    try:
        window.show()
        window.refresh()
        app.processEvents()
        image = window.grab()
        if image.isNull() or image.width() < 100:
            raise EmodeskError("the window rendered nothing")
        return f"Qt platform {QApplication.platformName()}, window {image.width()}×{image.height()}"
    finally:
        window.close()
        window.shutdown()
