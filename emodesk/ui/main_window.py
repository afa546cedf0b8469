"""The main window: live video with face boxes, per-modality bars, a rolling timeline, the transcript.

A ~30 Hz QTimer pulls one ``LiveSnapshot`` from the pipeline and hands plain
data to the widgets; no frame or score ever arrives through a signal, so a
slow paint can only make the view skip frames, never queue them.

Layout (top to bottom): menu bar and toolbar (record, the seven labels with
their keys, sessions); the demo banner and one line of notes; a splitter of
video | read-out over the timeline over the transcript; the status bar, whose
every counter has a tooltip that says what it counts. The window opens at a
size that fits its screen and remembers its size and splitters (QSettings).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QByteArray, QFileSystemWatcher, QRect, Qt, QTimer
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QColor,
    QGuiApplication,
    QIcon,
    QKeySequence,
    QPainter,
    QPixmap,
    QResizeEvent,
)
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QGridLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QSplitter,
    QStatusBar,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from emodesk.labels import LABELS
from emodesk.types import ModalityScores
from emodesk.ui.errors import ErrorReporter
from emodesk.ui.live_timeline import SERIES_NAMES, WINDOWS_S, LiveTimeline, Utterance
from emodesk.ui.preferences import Preferences, Smoother, load_preferences, save_preferences
from emodesk.ui.render.strips import LABEL_COLORS
from emodesk.ui.settings import app_settings, read_bool, read_int
from emodesk.ui.source_picker import SourceChoice, SourceDialog
from emodesk.ui.widgets import (
    ElidedLabel,
    FusedHeadline,
    ProbabilityPanel,
    TranscriptView,
    VideoView,
)
from emodesk.workers.live import LivePipeline
from emodesk.workers.snapshot import LiveSnapshot

log = logging.getLogger(__name__)

REFRESH_MS = 33
PipelineFactory = Callable[[SourceChoice, Preferences], LivePipeline]
DEMO_BANNER_NO_CAMERA = "Demo mode: no camera found — playing the demo clip through the real pipeline"
DEMO_BANNER = "Demo mode: playing the demo clip through the real pipeline"
DEFAULT_SIZE = (1280, 800)
SCREEN_SHARE = 0.92  # the largest share of the screen's free area the window opens at

TIPS = {
    "source": "Where the picture comes from (camera, file or the demo clip).",
    "audio": "Where the sound comes from (microphone or the file's audio track).",
    "fps": "Frames per second delivered by the video source.",
    "face": "Frames per second scored by the face models, and the median / 95th-percentile time from "
    "capture to scores.",
    "skipped": "Frames the face models never saw because a newer frame arrived first (the newest frame "
    "always wins). Normal when the models are slower than the camera; the video itself is not affected.",
    "audio_lost": "Audio the speech path lost: chunks the device overran plus chunks dropped from the full "
    "speech queue. Should stay 0.",
    "transcript": "Median time from the end of an utterance to its text on screen (waiting for the "
    "pause, recognition, emotion scoring).",
    "lag": "How far the speech path is behind the audio (seconds of audio waiting).",
    "shed": "Under load the speech path sheds work instead of falling behind: past 1.5 s of audio "
    "waiting it skips partial transcripts, the second voice member and beam search; it never lets "
    "more than 3 s wait, dropping the oldest audio (its words are not transcribed; a recording keeps "
    "every sample and notes what was skipped).",
}


def _fmt_ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.0f}"


def _mean_probs(scores: tuple[ModalityScores, ...]) -> np.ndarray:
    return np.mean([s.probs for s in scores], axis=0)


def _swatch(color: str, text: str = "") -> QIcon:
    """A colour square, with ``text`` (a label's key) written in it."""
    pm = QPixmap(18, 18)
    pm.fill(QColor(color))
    if text:
        p = QPainter(pm)
        font = p.font()
        font.setPixelSize(13)
        font.setBold(True)
        p.setFont(font)
        dark = QColor(color).lightness() > 150
        p.setPen(QColor("#000" if dark else "#fff"))
        p.drawText(pm.rect(), Qt.AlignmentFlag.AlignCenter, text)
        p.end()
    return QIcon(pm)


def fit_to_screen(avail: QRect, wanted: tuple[int, int] = DEFAULT_SIZE) -> QRect:
    """The window's first geometry: ``wanted`` shrunk to fit ``SCREEN_SHARE`` of the free area, centred."""
    w = min(wanted[0], int(avail.width() * SCREEN_SHARE))
    h = min(wanted[1], int(avail.height() * SCREEN_SHARE))
    return QRect(avail.x() + (avail.width() - w) // 2, avail.y() + (avail.height() - h) // 2, w, h)


class MainWindow(QMainWindow):
    """Shows one ``LivePipeline``; closing the window stops it and joins its threads."""

    def __init__(
        self,
        pipeline: LivePipeline,
        reporter: ErrorReporter | None = None,
        *,
        demo_banner: str | None = None,
        refresh_ms: int = REFRESH_MS,
        log_path: Path | None = None,
        source: SourceChoice | None = None,
        pipeline_factory: PipelineFactory | None = None,
        asr_locked: str | None = None,
    ) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.source = source  # what the pipeline was opened on (None: not switchable)
        self.pipeline_factory = pipeline_factory  # builds the pipeline for another source or settings
        self.asr_locked = asr_locked  # --asr-model given on the command line: Settings leaves it alone
        self.switches = 0
        self._speech_restart_pending = False
        self.setWindowTitle("emodesk — live emotion read-out")
        self.setObjectName("emodesk-main")
        self.reporter = reporter or ErrorReporter(self, log_path=log_path)
        self.log_path = log_path
        self.last_snapshot: LiveSnapshot | None = None
        self.shown_fused: np.ndarray | None = None  # the fused probabilities on screen (smoothed or not)
        self.refreshes = 0
        self.settings = app_settings()
        self.prefs = load_preferences(self.settings)
        self.staleness = dict(self.prefs.staleness)  # media seconds; the fusion's own rule by default
        self.smoother = Smoother(self.prefs.smoothing_s)  # display only
        self._auto_split = True  # fit the video pane to the picture until the user drags the splitter

        central = QWidget()
        root = QVBoxLayout(central)
        root.setContentsMargins(4, 4, 4, 2)
        root.setSpacing(3)
        self.banner = QLabel(demo_banner or "")
        self.banner.setObjectName("demo-banner")
        self.banner.setStyleSheet(
            "QLabel { background: #fff3b0; color: #5c4400; border: 1px solid #e0c060;"
            " padding: 3px; font-weight: bold; }"
        )
        self.banner.setVisible(bool(demo_banner))
        self.notes = ElidedLabel("")
        self.notes.setObjectName("notes")
        self.notes.setStyleSheet("QLabel { background: #e8f0fe; color: #1a3d7c; padding: 2px 4px; }")
        root.addWidget(self.banner)
        root.addWidget(self.notes)

        self.video = VideoView()
        self.video.setMinimumSize(160, 120)
        right = QWidget()
        right.setMinimumWidth(270)
        rlay = QVBoxLayout(right)
        rlay.setContentsMargins(0, 0, 0, 0)
        rlay.setSpacing(2)
        self.headline = FusedHeadline()
        rlay.addWidget(self.headline)
        grid = QGridLayout()
        grid.setSpacing(3)
        self.fused_panel = ProbabilityPanel("Fused")
        self.face_panel = ProbabilityPanel("Face")
        self.voice_panel = ProbabilityPanel("Voice")
        self.text_panel = ProbabilityPanel("Words")
        grid.addWidget(self.fused_panel, 0, 0)
        grid.addWidget(self.face_panel, 0, 1)
        grid.addWidget(self.voice_panel, 1, 0)
        grid.addWidget(self.text_panel, 1, 1)
        for i in range(2):
            grid.setRowStretch(i, 1)
            grid.setColumnStretch(i, 1)
        rlay.addLayout(grid, 1)

        self.top_split = QSplitter(Qt.Orientation.Horizontal)
        self.top_split.setObjectName("top-split")
        self.top_split.setChildrenCollapsible(False)
        self.top_split.addWidget(self.video)
        self.top_split.addWidget(right)
        self.top_split.setStretchFactor(0, 3)
        self.top_split.setStretchFactor(1, 2)
        self.top_split.splitterMoved.connect(self._user_split)

        self.timeline = LiveTimeline(read_int(self.settings, "timeline/window_s", 60, WINDOWS_S))
        timeline_box = QWidget()
        tlay = QVBoxLayout(timeline_box)
        tlay.setContentsMargins(0, 0, 0, 0)
        tlay.setSpacing(0)
        tlay.addLayout(self._timeline_controls())
        tlay.addWidget(self.timeline, 1)
        timeline_box.setMinimumHeight(84)

        self.transcript = TranscriptView()
        self.transcript.setMinimumHeight(44)
        self.main_split = QSplitter(Qt.Orientation.Vertical)
        self.main_split.setObjectName("main-split")
        self.main_split.setChildrenCollapsible(False)
        self.main_split.addWidget(self.top_split)
        self.main_split.addWidget(timeline_box)
        self.main_split.addWidget(self.transcript)
        self.main_split.setStretchFactor(0, 5)
        self.main_split.setStretchFactor(1, 2)
        self.main_split.setStretchFactor(2, 1)
        root.addWidget(self.main_split, 1)
        self.setCentralWidget(central)

        self._status_bar()
        self._connect(pipeline)
        self._watch_fusion()
        self._recording_controls()
        self._source_controls()
        self._menus_and_toolbar()
        self._restore_layout()
        self._update_notes(pipeline.notes)  # known before the first frame: the line never pops in later
        self.timer = QTimer(self)
        self.timer.setInterval(refresh_ms)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self._closed = False

    # ------------------------------------------------------------- layout

    def _timeline_controls(self) -> QHBoxLayout:
        row = QHBoxLayout()
        row.setContentsMargins(2, 0, 2, 0)
        row.setSpacing(8)
        title = QLabel("<b>Timeline</b>")
        row.addWidget(title)
        self.window_box = QComboBox()
        self.window_box.setToolTip("How much history the timeline shows (media time)")
        for s in WINDOWS_S:
            self.window_box.addItem(f"last {s} s", s)
        self.window_box.setCurrentIndex(WINDOWS_S.index(int(self.timeline.window_s)))
        self.window_box.currentIndexChanged.connect(self._window_chosen)
        row.addWidget(self.window_box)
        self.series_boxes: dict[str, QCheckBox] = {}
        for name in ("face", "voice", "text"):
            box = QCheckBox(SERIES_NAMES[name])
            box.setToolTip(f"Also draw the {SERIES_NAMES[name]} scores (thin lines) under the fused ones")
            on = read_bool(self.settings, f"timeline/show_{name}", False)
            box.setChecked(on)
            self.timeline.set_shown(name, on)
            box.toggled.connect(lambda checked, n=name: self._series_toggled(n, checked))
            self.series_boxes[name] = box
            row.addWidget(box)
        row.addStretch(1)
        legend = QLabel(" ".join(f'<span style="color:{LABEL_COLORS[lab]}">■</span>{lab}' for lab in LABELS))
        legend.setToolTip(
            "Line colours: one per label; solid fused, dashed face, dotted voice, dash-dot words"
        )
        legend.setStyleSheet("color: #555;")
        legend.setMinimumWidth(10)
        row.addWidget(legend)
        return row

    def _window_chosen(self, index: int) -> None:
        seconds = int(self.window_box.itemData(index))
        self.timeline.set_window(seconds)
        self.settings.setValue("timeline/window_s", seconds)

    def _series_toggled(self, name: str, checked: bool) -> None:
        self.timeline.set_shown(name, checked)
        self.settings.setValue(f"timeline/show_{name}", checked)

    def _user_split(self, _pos: int, _index: int) -> None:
        self._auto_split = False

    def _restore_layout(self) -> None:
        """The saved size and splitters when they fit this screen, else a size that does."""
        screen = self.screen() or QGuiApplication.primaryScreen()
        avail = screen.availableGeometry() if screen is not None else QRect(0, 0, *DEFAULT_SIZE)
        geom = self.settings.value("window/geometry")
        restored = isinstance(geom, QByteArray) and self.restoreGeometry(geom)
        if restored:
            g = self.frameGeometry()
            if g.width() > avail.width() or g.height() > avail.height():
                restored = False  # saved on a larger screen
        if not restored:
            self.setGeometry(fit_to_screen(avail))
        for split, key in ((self.main_split, "window/main_split"), (self.top_split, "window/top_split")):
            state = self.settings.value(key)
            if isinstance(state, QByteArray) and split.restoreState(state):
                if split is self.top_split:
                    self._auto_split = False

    def save_layout(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/main_split", self.main_split.saveState())
        if not self._auto_split:
            self.settings.setValue("window/top_split", self.top_split.saveState())
        self.settings.sync()

    def reset_layout(self) -> None:
        """Forget the saved size and splitters and fit the window to its screen again."""
        for key in ("window/geometry", "window/main_split", "window/top_split"):
            self.settings.remove(key)
        self._auto_split = True
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is not None:
            self.setGeometry(fit_to_screen(screen.availableGeometry()))
        self._fit_video_pane()

    def _fit_video_pane(self) -> None:
        """Give the video pane the width its picture needs at the pane's height (no side bars)."""
        if not self._auto_split or self.video.aspect is None:
            return
        total = self.top_split.width() - self.top_split.handleWidth()
        want = int(self.top_split.height() * self.video.aspect)
        panes = self.top_split.widget(1)
        right_min = panes.minimumWidth() if panes is not None else 0
        left = max(self.video.minimumWidth(), min(want, total - right_min, int(total * 0.62)))
        if abs(self.top_split.sizes()[0] - left) > 2:
            self.top_split.setSizes([left, total - left])

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_toolbar()
        QTimer.singleShot(0, self._fit_video_pane)

    # ------------------------------------------------------------- status bar

    def _status_bar(self) -> None:
        bar = QStatusBar()
        bar.setSizeGripEnabled(True)
        self.source_label = ElidedLabel()
        self.mic_label = ElidedLabel()
        self.models_label = ElidedLabel()
        self.provider_label: QLabel = QLabel()
        for w, stretch in ((self.source_label, 2), (self.mic_label, 2), (self.models_label, 2)):
            bar.addWidget(w, stretch)
        bar.addWidget(self.provider_label)
        self.perf_label = QLabel()
        self.skipped_label = QLabel()
        self.audio_lost_label = QLabel()
        self.transcript_label = QLabel()
        self.lag_label = QLabel()
        self.lag_label.setStyleSheet("QLabel { color: #b36b00; }")
        self.lag_label.setVisible(False)
        self.shed_label = QLabel()
        self.shed_label.setStyleSheet("QLabel { color: #b36b00; }")
        self.shed_label.setVisible(False)
        self.rec_label = QLabel("")  # ● REC 00:12 · happy, while recording
        self.rec_label.setStyleSheet("QLabel { color: white; background: #c62828; padding: 2px 6px; }")
        self.rec_label.setVisible(False)
        bar.addPermanentWidget(self.rec_label)
        counters = (self.perf_label, self.skipped_label, self.audio_lost_label, self.transcript_label)
        for label in (*counters, self.lag_label, self.shed_label):
            bar.addPermanentWidget(label)
        self.setStatusBar(bar)

    # ------------------------------------------------------------- menus and toolbar

    def _menus_and_toolbar(self) -> None:
        mb = self.menuBar()
        session = mb.addMenu("&Session")
        session.addAction(self.source_action)
        session.addSeparator()
        session.addAction(self.record_action)
        labels = session.addMenu("&Label")
        for act in self.label_actions:
            labels.addAction(act)
        session.addAction(self.notes_action)
        session.addAction(self.sessions_action)
        session.addSeparator()
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        session.addAction(quit_action)
        view = mb.addMenu("&View")
        view.addAction(self.reload_fusion_action)
        view.addAction(self.settings_action)
        reset = QAction("Reset window layout", self)
        reset.triggered.connect(self.reset_layout)
        view.addAction(reset)
        help_menu = mb.addMenu("&Help")
        self.about_action = QAction("&About emodesk and its models…", self)
        self.about_action.setShortcut(QKeySequence("F1"))
        self.about_action.triggered.connect(self.show_about)
        self.addAction(self.about_action)
        help_menu.addAction(self.about_action)

        tb = QToolBar("Session")
        tb.setObjectName("session-toolbar")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        tb.addAction(self.source_action)
        tb.addAction(self.record_action)
        tb.addSeparator()
        for act in self.label_actions:
            tb.addAction(act)
        tb.addSeparator()
        tb.addAction(self.sessions_action)
        self.toolbar = tb
        self.addToolBar(tb)
        self._toolbar_full_width = tb.sizeHint().width()

    def _fit_toolbar(self) -> None:
        """Label buttons show their key in the icon and their name beside it; on a window too narrow
        for every name, the keys alone (names in the tooltips), so no button hides behind "»"."""
        narrow = self.width() < self._toolbar_full_width + 12
        style = (
            Qt.ToolButtonStyle.ToolButtonIconOnly if narrow else Qt.ToolButtonStyle.ToolButtonTextBesideIcon
        )
        for act in self.label_actions:
            for w in act.associatedObjects():
                if isinstance(w, QToolButton) and w.toolButtonStyle() != style:
                    w.setToolButtonStyle(style)

    def show_about(self) -> None:
        from emodesk.inference.registry import installed_manifests
        from emodesk.ui.about import AboutDialog, about_html

        snap = self.last_snapshot
        statuses = snap.statuses if snap is not None else ()
        text = about_html(
            list(installed_manifests().values()), self.pipeline.fusion_config, statuses, self.log_path
        )
        self.about_dialog = AboutDialog(text, self)
        self.about_dialog.show()

    # ------------------------------------------------------------- sources and settings

    def _connect(self, pipeline: LivePipeline) -> None:
        pipeline.error.connect(self.reporter.report)
        pipeline.finished.connect(self._on_finished)

    def _source_controls(self) -> None:
        self.source_action = QAction("S&ource…", self)
        self.source_action.setShortcut(QKeySequence("Ctrl+O"))
        self.source_action.setToolTip(
            "Switch the camera, microphone or file while running (Ctrl+O)"
            if self.pipeline_factory is not None
            else "This window was started on a fixed source"
        )
        self.source_action.setEnabled(self.pipeline_factory is not None)
        self.source_action.triggered.connect(self.pick_source)
        self.addAction(self.source_action)
        self.settings_action = QAction("Se&ttings…", self)
        self.settings_action.setShortcut(QKeySequence("Ctrl+,"))
        self.settings_action.setToolTip("Recogniser, voice detector, staleness, smoothing, sessions folder")
        self.settings_action.triggered.connect(self.show_settings)
        self.addAction(self.settings_action)

    def source_dialog(self, **kwargs: object) -> SourceDialog:
        """The source picker over the running source (not shown; ``pick_source`` shows it)."""
        frame = self.last_snapshot.frame if self.last_snapshot is not None else None
        size = (int(frame.image.shape[1]), int(frame.image.shape[0])) if frame is not None else None
        return SourceDialog(
            self.source,
            self,
            current_size=size,
            recording=self.pipeline.recorder is not None,
            **kwargs,  # type: ignore[arg-type]
        )

    def pick_source(self) -> None:
        """Show the source picker (window-modal, the live view keeps running behind it)."""
        dialog = self.source_dialog()
        self.picker = dialog
        dialog.accepted.connect(lambda: self._source_chosen(dialog))
        dialog.open()

    def _source_chosen(self, dialog: SourceDialog) -> None:
        choice = dialog.choice()
        if choice is not None and choice != self.source:
            self.switch_source(choice)

    def switch_source(self, choice: SourceChoice, *, reason: str = "") -> bool:
        """Stop the running pipeline and start one on ``choice`` (keeping the models' settings).

        Refused while recording (a session keeps one source). The new pipeline is
        built before the old one stops: a file that cannot be played is reported
        and the running source goes on, so nothing is lost.
        """
        from emodesk.errors import DeviceError, InputError

        if self.pipeline_factory is None:
            self.statusBar().showMessage("this window was started on a fixed source", 5000)
            return False
        if self.pipeline.recorder is not None:
            self.statusBar().showMessage("stop the recording before switching the source", 6000)
            return False
        try:
            new = self.pipeline_factory(choice, self.prefs)
        except (InputError, DeviceError) as e:
            self.reporter.report(f"cannot switch to {choice.describe()}: {e}", level=logging.WARNING)
            return False
        old = self.pipeline
        old.error.disconnect(self.reporter.report)
        old.finished.disconnect(self._on_finished)
        joined = old.stop()
        if not joined:
            log.warning("a worker of the previous source did not stop in time")
        self.pipeline = new
        self.source = choice
        self.switches += 1
        self._connect(new)
        self._reset_views()
        if choice.spec == "demo":
            self.banner.setText(DEMO_BANNER)
            self.banner.setVisible(True)
        elif self.banner.isVisible():
            self.banner.setVisible(False)
        self._update_notes(new.notes)
        new.start()
        log.info("switched to %s%s", choice.describe(), f" ({reason})" if reason else "")
        self.statusBar().showMessage(
            f"now showing {choice.describe()}{f' ({reason})' if reason else ''}", 6000
        )
        return True

    def _reset_views(self) -> None:
        """A new source starts its own media clock: no score of the old one stays on screen."""
        self.last_snapshot = None
        self.smoother.reset()
        self.timeline.clear()
        self.video.set_frame(None, ())
        self.video.set_placeholder("opening the source…")
        self.transcript.set_transcripts((), None, -1, scores=())
        self._auto_split = self._auto_split or self.settings.value("window/top_split") is None

    def settings_dialog(self) -> QDialog:
        from emodesk.resources import sessions_dir
        from emodesk.ui.settings_dialog import SettingsDialog

        return SettingsDialog(self.prefs, self, asr_locked=self.asr_locked, default_folder=sessions_dir())

    def show_settings(self) -> None:
        from emodesk.ui.settings_dialog import SettingsDialog

        dialog = self.settings_dialog()
        assert isinstance(dialog, SettingsDialog)
        self.settings_window = dialog
        dialog.accepted.connect(lambda: self.apply_preferences(dialog.preferences()))
        dialog.open()

    def apply_preferences(self, prefs: Preferences) -> None:
        """Persist ``prefs``; the display ones apply at once, the speech ones restart the speech path
        on the same source (after the recording, if one is running)."""
        before = self.prefs
        self.prefs = prefs
        save_preferences(self.settings, prefs)
        self.staleness = dict(prefs.staleness)
        self.smoother = Smoother(prefs.smoothing_s)
        self.sessions_dir = prefs.sessions_dir()
        if prefs.speech_key() == before.speech_key():
            self.statusBar().showMessage("settings saved", 4000)
            return
        if self.source is None or self.pipeline_factory is None:
            self.statusBar().showMessage("speech settings saved: they apply at the next start", 8000)
        elif self.pipeline.recorder is not None:
            self._speech_restart_pending = True
            self.statusBar().showMessage("speech settings saved: they apply when this recording stops", 8000)
        else:
            self.switch_source(self.source, reason="new speech settings")

    # ------------------------------------------------------------- fusion weights

    def _watch_fusion(self) -> None:
        """Reload ``fusion.json`` when it changes on disk (``fusion optimize`` rewrites it), or on Ctrl+R."""
        from emodesk.fusion.config import fusion_watch_paths

        self.reload_fusion_action = QAction("&Reload fusion weights", self)
        self.reload_fusion_action.setShortcut(QKeySequence("Ctrl+R"))
        self.reload_fusion_action.triggered.connect(self.reload_fusion)
        self.addAction(self.reload_fusion_action)
        self._fusion_watcher = QFileSystemWatcher(self)
        # The folders too: a file replaced atomically (write, then rename) drops a file watch.
        paths = [str(p) for p in fusion_watch_paths()]
        if paths:
            self._fusion_watcher.addPaths(paths)
        self._fusion_debounce = QTimer(self)
        self._fusion_debounce.setSingleShot(True)
        self._fusion_debounce.setInterval(300)
        self._fusion_debounce.timeout.connect(self._fusion_file_changed)
        self._fusion_watcher.fileChanged.connect(lambda _p: self._fusion_debounce.start())
        self._fusion_watcher.directoryChanged.connect(lambda _p: self._fusion_debounce.start())
        self._fusion_stamp = self._fusion_file_stamp()

    @staticmethod
    def _fusion_file_stamp() -> tuple[str, int, int] | None:
        from emodesk.fusion.config import fusion_file_stamp

        return fusion_file_stamp()

    def _fusion_file_changed(self) -> None:
        stamp = self._fusion_file_stamp()
        if stamp != self._fusion_stamp:
            self.reload_fusion()
        if stamp is not None and stamp[0] not in self._fusion_watcher.files():
            self._fusion_watcher.addPath(stamp[0])

    def reload_fusion(self) -> None:
        """Re-read the active ``fusion.json`` into the running pipeline and say what happened."""
        cfg = self.pipeline.reload_fusion()
        self._fusion_stamp = self._fusion_file_stamp()
        where = cfg.path.name if cfg.path is not None else "equal weights (no fusion.json)"
        msg = f"fusion weights reloaded: {where}, {len(cfg.weights)} member(s)"
        if cfg.warnings:
            msg += " — " + "; ".join(cfg.warnings)
        self.statusBar().showMessage(msg, 10000)

    # ------------------------------------------------------------- recording

    def _recording_controls(self) -> None:
        """Record (Ctrl+Shift+R) while the live view runs; 1–7 label, 0 clears; an always-visible REC."""
        self.record_action = QAction(_swatch("#c62828"), "Record", self)
        self.record_action.setShortcut(QKeySequence("Ctrl+Shift+R"))
        self.record_action.setToolTip("Start recording a session (Ctrl+Shift+R)")
        self.record_action.triggered.connect(self.toggle_recording)
        self.addAction(self.record_action)
        self.notes_action = QAction("Session &notes…", self)
        self.notes_action.setShortcut(QKeySequence("Ctrl+Shift+N"))
        self.notes_action.triggered.connect(self.edit_notes)
        self.addAction(self.notes_action)
        self.sessions_action = QAction("&Sessions…", self)  # README and docs/sessions.md advertise it
        self.sessions_action.setShortcut(QKeySequence("Ctrl+Shift+S"))
        self.sessions_action.setToolTip("Browse, replay, label and repair recorded sessions (Ctrl+Shift+S)")
        self.sessions_action.triggered.connect(self.browse_sessions)
        self.addAction(self.sessions_action)
        self.label_group = QActionGroup(self)
        self.label_group.setExclusive(True)
        self.label_actions: list[QAction] = []
        for key in [*range(1, len(LABELS) + 1), 0]:
            name = LABELS[key - 1] if key else "none"
            act = QAction(_swatch(LABEL_COLORS.get(name, "#dddddd"), str(key)), name, self)
            act.setShortcut(QKeySequence(str(key)))
            act.setCheckable(True)
            act.setToolTip(
                f"Label the recording from now on: {name} (key {key})"
                if key
                else "Clear the label from now on (key 0)"
            )
            act.setData(key)
            act.triggered.connect(lambda _checked=False, k=key: self.label_hotkey(k))
            self.label_group.addAction(act)
            self.addAction(act)
            self.label_actions.append(act)
        self.sessions_dir = self.prefs.sessions_dir()  # None: <user data>/emodesk/sessions
        self.last_session: Path | None = None

    def toggle_recording(self) -> None:
        if self.pipeline.recorder is not None:
            self.last_session = self.pipeline.stop_recording()
            self.statusBar().showMessage(f"session saved: {self.last_session}", 15000)
            self.record_action.setText("Record")
            self.record_action.setToolTip("Start recording a session (Ctrl+Shift+R)")
            if self._speech_restart_pending and self.source is not None:
                self._speech_restart_pending = False
                self.switch_source(self.source, reason="new speech settings")
                self.statusBar().showMessage(
                    f"session saved: {self.last_session}; speech path restarted with the new settings", 15000
                )
        else:
            from emodesk.recording.writer import RecordingError
            from emodesk.resources import sessions_dir

            try:
                path = self.pipeline.start_recording(self.sessions_dir or sessions_dir())
            except RecordingError as e:
                self.reporter.report(str(e))
                return
            self.statusBar().showMessage(f"recording to {path}", 5000)
            self.record_action.setText("Stop")
            self.record_action.setToolTip(f"Stop recording (Ctrl+Shift+R); recording to {path}")
        self._update_recording()

    def browse_sessions(self) -> None:
        from emodesk.resources import sessions_dir
        from emodesk.ui.sessions_dialog import SessionsDialog

        self.sessions_dialog = SessionsDialog(
            self.sessions_dir or sessions_dir(), self, settings=self.settings
        )
        self.sessions_dialog.show()

    def label_hotkey(self, key: int) -> None:
        rec = self.pipeline.recorder
        if rec is None:
            self.statusBar().showMessage("labels apply while recording: press Ctrl+Shift+R first", 4000)
            self._sync_label_buttons()
            return
        t = (
            self.last_snapshot.t
            if self.last_snapshot is not None and self.last_snapshot.t is not None
            else 0.0
        )
        label = rec.hotkey(key, t)
        self.statusBar().showMessage(f"label: {label or 'none'} from {t:.1f} s", 3000)
        self._update_recording()

    def edit_notes(self) -> None:
        rec = self.pipeline.recorder
        if rec is None:
            self.statusBar().showMessage("notes belong to a recording: start one first", 4000)
            return
        text, ok = QInputDialog.getMultiLineText(self, "Session notes", "Notes:", rec.writer.meta.notes)
        if ok:
            rec.writer.set_notes(text)

    def _sync_label_buttons(self) -> None:
        """The checked label button is the label in force (none checked while not recording)."""
        rec = self.pipeline.recorder
        current = None if rec is None else (LABELS.index(rec.label) + 1 if rec.label in LABELS else 0)
        for act in self.label_actions:
            on = current is not None and act.data() == current
            if act.isChecked() != on:
                act.setChecked(on)
        if current is None and self.label_group.checkedAction() is not None:
            self.label_group.setExclusive(False)
            for act in self.label_actions:
                act.setChecked(False)
            self.label_group.setExclusive(True)

    def _update_recording(self) -> None:
        self._sync_label_buttons()
        rec = self.pipeline.recorder
        if rec is None:
            if self.rec_label.isVisible():
                self.rec_label.setVisible(False)
            return
        w = rec.writer
        secs = w.stats.audio_samples / 16000 if w.stats.audio_samples else w.stats.frames / 30
        text = f"● REC {int(secs) // 60:02d}:{int(secs) % 60:02d} · {rec.label or 'no label'}"
        dropped = w.stats.dropped_frames + w.stats.dropped_records
        if dropped:
            text += f" · {dropped} dropped"
        self._set(self.rec_label, text)
        if not self.rec_label.isVisible():
            self.rec_label.setVisible(True)

    # ------------------------------------------------------------- update

    def refresh(self) -> None:
        """Pull the newest state and show it (the 30 Hz timer's slot)."""
        snap = self.pipeline.snapshot()
        self.last_snapshot = snap
        self.refreshes += 1
        had_picture = self.video.aspect is not None
        self.video.set_frame(snap.frame, snap.face_tracks())
        if not had_picture and self.video.aspect is not None:
            self._fit_video_pane()
        if snap.frame is None:
            video = snap.status("video")
            self.video.set_placeholder(video.message if video is not None else "no video")
        face = self._update_face(snap)
        voice = self._update_member(self.voice_panel, snap, "voice", snap.voice)
        text = self._update_member(self.text_panel, snap, "text", snap.text)
        self._update_fused(snap, {"face": face, "voice": voice, "words": text})
        self.transcript.set_transcripts(
            snap.transcripts, snap.partial, snap.transcript_version, scores=snap.utterance_scores
        )
        self._update_timeline(snap)
        self._update_status(snap)
        self._update_recording()

    def _update_timeline(self, snap: LiveSnapshot) -> None:
        if snap.t is None:
            return
        rec = self.pipeline.recorder

        def fresh(panel: ProbabilityPanel) -> np.ndarray | None:
            return panel.values() if panel.stale_reason is None else None

        self.timeline.append(
            snap.t,
            self.shown_fused if snap.fused is not None else None,
            fresh(self.face_panel),
            fresh(self.voice_panel),
            fresh(self.text_panel),
            recording=rec is not None,
            label=rec.label if rec is not None else None,
        )
        if snap.transcripts:
            self.timeline.add_utterances(Utterance(t.t0, t.t1, t.text, t.trusted) for t in snap.transcripts)

    def _age(self, snap: LiveSnapshot, t: float) -> float:
        return 0.0 if snap.t is None else max(0.0, snap.t - t)

    def _stale(self, kind: str, age: float, snap: LiveSnapshot) -> str | None:
        """Why scores of this age are no longer fused (None while fresh)."""
        limit = self.staleness[kind]
        if age <= limit:
            return None
        src = snap.status("video" if kind == "face" else "audio")
        ended = " — the source ended" if src is not None and src.message.endswith("(ended)") else ""
        return f"stale: {age:.1f} s old (fused up to {limit:g} s){ended}"

    def _update_face(self, snap: LiveSnapshot) -> str:
        """Show the face panel; returns its state in one word for the fused caption."""
        st = snap.status("face")
        det = snap.status("face detector")
        panel = self.face_panel
        if det is not None and not det.ok:
            panel.set_message(det.message)
            return "detector failed"
        if st is None or not st.ok:
            panel.set_message(st.message if st is not None else "no face model")
            return "no model" if st is None or st.state == "missing" else "failed"
        models = f"{len(st.models)} model(s)" if st.models else ""
        panel.caption.set_tooltip(", ".join(st.models) or st.message)
        if snap.face is None:
            panel.set_message("waiting for frames…", models)
            return "waiting"
        age = self._age(snap, snap.face.t)
        probs = snap.main_face_probs()
        if probs is None:
            panel.set_message("no face in view", f"{models} · {age:.1f} s ago")
            return "no face"
        n = len(snap.face_tracks())
        who = f"{n} faces, largest shown" if n > 1 else "1 face"
        stale = self._stale("face", age, snap)
        panel.set_probs(probs, f"{who} · {age:.1f} s ago", stale=stale)
        return "stale" if stale else "ok"

    def _update_member(
        self, panel: ProbabilityPanel, snap: LiveSnapshot, slot: str, scores: tuple[ModalityScores, ...]
    ) -> str:
        st = snap.status(slot)
        if st is None or not st.ok:
            panel.set_message(st.message if st is not None else "no model installed")
            return "no model" if st is None or st.state == "missing" else "failed"
        panel.caption.set_tooltip(", ".join(st.models) or st.message)
        asr = snap.status("asr")
        if asr is not None and not asr.ok:
            panel.set_message(f"speech path unavailable: {asr.message}")
            return "no speech path"
        if not scores:
            panel.set_message("waiting for speech…", f"{len(st.models)} model(s)" if st.models else "")
            return "no speech yet"
        newest = max(s.t1 or s.t for s in scores)
        age = self._age(snap, newest)
        doubted = [s for s in scores if not s.trusted]
        if doubted and len(doubted) == len(scores):  # no bars: they would read as a real score
            panel.set_message(f"last words not read for emotion: {doubted[0].reason}", f"{age:.1f} s ago")
            return "unsure"
        stale = self._stale(slot, age, snap)
        names = ", ".join(s.model for s in scores)
        panel.set_probs(_mean_probs(scores), f"{names} · {age:.1f} s ago", stale=stale)
        return "stale" if stale else "ok"

    def _update_fused(self, snap: LiveSnapshot, states: dict[str, str]) -> None:
        f = snap.fused
        why = ", ".join(f"{k} {v}" for k, v in states.items() if v != "ok")
        if f is None:
            self.smoother.reset()
            self.shown_fused = None
            self.headline.set_fused(None)
            self.fused_panel.set_message("nothing fresh to fuse", why)
            return
        kinds = self._member_kinds(snap)
        mods = [kinds.get(m, "") for m in f.members]
        probs = self.smoother(snap.t if snap.t is not None else f.t, f.probs)
        assert probs is not None
        self.shown_fused = probs
        self.headline.set_fused(probs, f.members, f.weights, [m for m in mods if m])
        track = f" · face #{f.track}" if f.track is not None else ""
        left_out = f" · left out: {why}" if why else ""
        smooth = f" · smoothed {self.smoother.tau_s:g} s" if self.smoother.tau_s > 0 else ""
        self.fused_panel.set_probs(probs, f"{len(f.members)} member(s){track}{left_out}{smooth}")
        self.fused_panel.caption.set_tooltip(
            "\n".join(f"{m}: weight {f.weights[m]:.3f}" if m in f.weights else m for m in f.members)
        )

    @staticmethod
    def _member_kinds(snap: LiveSnapshot) -> dict[str, str]:
        out: dict[str, str] = {s.model: s.kind for s in (*snap.voice, *snap.text)}
        if snap.face is not None:
            out.update({s.model: "face" for s in snap.face.faces})
        for st in snap.statuses:
            if st.slot in ("face", "voice", "text"):
                out.update({m: st.slot for m in st.models})
        return out

    def _update_status(self, snap: LiveSnapshot) -> None:
        video, audio = snap.status("video"), snap.status("audio")
        self.source_label.setText(f"Source: {video.message if video else snap.source}")
        if audio is None:
            mic = "Audio: –"
        elif audio.state == "error":
            mic = f"Audio error: {audio.message}"
        else:
            mic = f"Audio: {audio.message}"
        self.mic_label.setText(mic)
        marks = {"ok": "✓", "missing": "–", "error": "✗"}
        parts = [f"{s.slot} {marks[s.state]}" for s in snap.statuses if s.slot != "face detector"]
        self.models_label.setText("Models: " + " ".join(parts))
        self.models_label.set_tooltip("\n".join(f"{s.slot}: {s.state} — {s.message}" for s in snap.statuses))
        providers = sorted(
            {s.provider.replace("ExecutionProvider", "").upper() for s in snap.statuses if s.provider}
        )
        self._set(self.provider_label, "EP: " + (", ".join(providers) or "–"))
        # where each model runs and why (a missing GPU package): said once, here and in About
        ep_tip = "Where the models run (execution provider):\n" + "\n".join(
            f"{s.slot}: {s.message}" for s in snap.statuses if s.provider or "onnxruntime" in s.message
        )
        if self.provider_label.toolTip() != ep_tip:
            self.provider_label.setToolTip(ep_tip)
        st = snap.stats
        self._set(
            self.perf_label,
            f"{st.capture_fps:.0f} fps · face {st.face_fps:.0f} fps "
            f"{_fmt_ms(st.face_latency_p50_ms)}/{_fmt_ms(st.face_latency_p95_ms)} ms",
        )
        self._tip(
            self.perf_label,
            f"{TIPS['fps']}\n{TIPS['face']}\ncaptured {st.frames_captured}, scored {st.frames_scored}; "
            f"capture {st.capture_fps:.1f} fps, face {st.face_fps:.1f} fps, latency p50 "
            f"{_fmt_ms(st.face_latency_p50_ms)} ms, p95 {_fmt_ms(st.face_latency_p95_ms)} ms",
        )
        self._set(self.skipped_label, f"skipped {st.dropped_frames}")
        self._tip(
            self.skipped_label, f"{TIPS['skipped']}\n{st.dropped_frames} of {st.frames_captured} frames"
        )
        lost = st.audio_dropped + st.audio_overflows
        self._set(self.audio_lost_label, f"audio lost {lost}")
        self._tip(
            self.audio_lost_label,
            f"{TIPS['audio_lost']}\ndevice overruns {st.audio_overflows}, queue drops {st.audio_dropped}, "
            f"waiting now {st.audio_backlog} chunk(s)",
        )
        self._set(self.transcript_label, f"text {_fmt_ms(st.transcript_delay_p50_ms)} ms")
        delay = f"p50 {_fmt_ms(st.transcript_delay_p50_ms)} ms, p95 {_fmt_ms(st.transcript_delay_p95_ms)} ms"
        asr = f"p50 {_fmt_ms(st.transcript_latency_p50_ms)}, p95 {_fmt_ms(st.transcript_latency_p95_ms)} ms"
        self._tip(
            self.transcript_label,
            f"{TIPS['transcript']}\nend of speech → text on screen {delay} over {st.utterances} "
            f"utterance(s); recognition alone {asr}",
        )
        behind = st.speech_lag_s is not None and st.speech_lag_s > 2.0
        if behind:
            self._set(self.lag_label, f"speech {st.speech_lag_s:.0f} s behind")
            self._tip(self.lag_label, TIPS["lag"])
        if self.lag_label.isVisible() != behind:
            self.lag_label.setVisible(behind)
        shed = st.shed
        shedding = shed is not None and shed.any
        if shed is not None and shedding:
            short = f"shed {shed.audio_dropped_s:.0f} s audio" if shed.drops else "shedding optional work"
            self._set(self.shed_label, short)
            self._tip(
                self.shed_label,
                f"{TIPS['shed']}\n{shed.summary()}\nnow waiting {st.speech_backlog_s:.1f} s, at most "
                f"{shed.max_backlog_s:.1f} s; "
                f"skipped so far: {shed.partials_skipped} partial(s), {shed.voice_scores_skipped} voice "
                f"score(s), {shed.greedy_finals} greedy final(s), {shed.audio_dropped_s:.1f} s of audio in "
                f"{shed.drops} drop(s), {shed.utterances_dropped} utterance(s) cut",
            )
        if self.shed_label.isVisible() != shedding:
            self.shed_label.setVisible(shedding)
        if snap.ended and "source ended" not in self.perf_label.text():
            self._set(self.perf_label, "source ended · " + self.perf_label.text())
        self._update_notes(snap.notes)

    def _update_notes(self, notes: tuple[str, ...]) -> None:
        """One line, restrictions of the model set grouped (never wraps: the layout does not move)."""
        groups: dict[str, list[str]] = {}
        plain: list[str] = []
        for note in notes:
            model, sep, usage = note.partition(": ")
            if sep and " " not in model:
                groups.setdefault(usage, []).append(model)
            else:
                plain.append(note)
        items = plain + [f"{usage} ({', '.join(models)})" for usage, models in groups.items()]
        self.notes.setText(" · ".join(items))
        self.notes.set_tooltip("\n".join(items) or None)
        if self.notes.isVisible() != bool(items):
            self.notes.setVisible(bool(items))

    @staticmethod
    def _tip(w: QWidget, text: str) -> None:
        if w.toolTip() != text:
            w.setToolTip(text)

    @staticmethod
    def _set(label: QLabel, text: str) -> None:
        if label.text() != text:
            label.setText(text)

    def _on_finished(self) -> None:
        self.statusBar().showMessage("every source ended", 5000)

    # ----------------------------------------------------------- shutdown

    def shutdown(self) -> bool:
        """Stop the timer and the pipeline (joins every thread); safe to call twice."""
        if self._closed:
            return True
        self._closed = True
        self.timer.stop()
        self.reporter.close_dialog()
        return self.pipeline.stop()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_layout()
        self.shutdown()
        super().closeEvent(event)
