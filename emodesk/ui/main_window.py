"""The main window: live video with face boxes, per-modality bars, fused read-out, transcript.

A ~30 Hz QTimer pulls one ``LiveSnapshot`` from the pipeline and hands plain
data to the widgets; no frame or score ever arrives through a signal, so a
slow paint can only make the view skip frames, never queue them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QFileSystemWatcher, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QSplitter,
    QStatusBar,
    QVBoxLayout,
    QWidget,
)

from emodesk.types import ModalityScores, SlotStatus
from emodesk.ui.errors import ErrorReporter
from emodesk.ui.widgets import FusedHeadline, ProbabilityPanel, TranscriptView, VideoView
from emodesk.workers.live import LivePipeline
from emodesk.workers.snapshot import LiveSnapshot

REFRESH_MS = 33
DEMO_BANNER_NO_CAMERA = "Demo mode: no camera found — playing the demo clip through the real pipeline"
DEMO_BANNER = "Demo mode: playing the demo clip through the real pipeline"


def _fmt_ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.0f}"


def _mean_probs(scores: tuple[ModalityScores, ...]) -> np.ndarray:
    return np.mean([s.probs for s in scores], axis=0)


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
    ) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.setWindowTitle("emodesk — live emotion read-out")
        self.resize(1280, 780)
        self.reporter = reporter or ErrorReporter(self, log_path=log_path)
        self.last_snapshot: LiveSnapshot | None = None
        self.refreshes = 0

        central = QWidget()
        root = QVBoxLayout(central)
        root.setContentsMargins(6, 6, 6, 6)
        self.banner = QLabel(demo_banner or "")
        self.banner.setObjectName("demo-banner")
        self.banner.setStyleSheet(
            "QLabel { background: #fff3b0; color: #5c4400; border: 1px solid #e0c060;"
            " padding: 6px; font-weight: bold; }"
        )
        self.banner.setVisible(bool(demo_banner))
        self.notes = QLabel("")
        self.notes.setStyleSheet("QLabel { background: #e8f0fe; color: #1a3d7c; padding: 4px; }")
        self.notes.setWordWrap(True)
        self.notes.setVisible(False)
        root.addWidget(self.banner)
        root.addWidget(self.notes)

        self.video = VideoView()
        self.transcript = TranscriptView()
        self.transcript.setMinimumHeight(110)
        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.video)
        left.addWidget(self.transcript)
        left.setStretchFactor(0, 4)
        left.setStretchFactor(1, 1)

        right = QWidget()
        rlay = QVBoxLayout(right)
        rlay.setContentsMargins(0, 0, 0, 0)
        self.headline = FusedHeadline()
        rlay.addWidget(self.headline)
        grid = QGridLayout()
        self.fused_panel = ProbabilityPanel("Fused")
        self.face_panel = ProbabilityPanel("Face")
        self.voice_panel = ProbabilityPanel("Voice")
        self.text_panel = ProbabilityPanel("Words")
        grid.addWidget(self.fused_panel, 0, 0)
        grid.addWidget(self.face_panel, 0, 1)
        grid.addWidget(self.voice_panel, 1, 0)
        grid.addWidget(self.text_panel, 1, 1)
        rlay.addLayout(grid, 1)

        body = QHBoxLayout()
        body.addWidget(left, 3)
        body.addWidget(right, 2)
        root.addLayout(body, 1)
        self.setCentralWidget(central)

        bar = QStatusBar()
        self.source_label = QLabel()
        self.mic_label = QLabel()
        self.models_label = QLabel()
        self.provider_label = QLabel()
        self.perf_label = QLabel()
        for w in (self.source_label, self.mic_label, self.models_label, self.provider_label):
            # Long device names must not widen the window: let these labels shrink (and clip).
            w.setMinimumWidth(60)
            bar.addWidget(w)
        self.perf_label.setMinimumWidth(60)
        bar.addPermanentWidget(self.perf_label)
        self.setStatusBar(bar)

        pipeline.error.connect(self.reporter.report)
        pipeline.finished.connect(self._on_finished)
        self._watch_fusion()
        self._recording_controls(bar)
        self.timer = QTimer(self)
        self.timer.setInterval(refresh_ms)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self._closed = False

    # ------------------------------------------------------------- fusion weights

    def _watch_fusion(self) -> None:
        """Reload ``fusion.json`` when it changes on disk (``fusion optimize`` rewrites it), or on Ctrl+R."""
        from emodesk.fusion.config import fusion_watch_paths

        self.reload_fusion_action = QAction("Reload fusion weights", self)
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

    def _recording_controls(self, bar: QStatusBar) -> None:
        """Record (Ctrl+Shift+R) while the live view runs; 1–7 label, 0 clears; an always-visible REC."""
        self.rec_label = QLabel("")
        self.rec_label.setStyleSheet("QLabel { color: white; background: #c62828; padding: 2px 6px; }")
        self.rec_label.setVisible(False)
        bar.insertPermanentWidget(0, self.rec_label)
        self.record_action = QAction("Start recording", self)
        self.record_action.setShortcut(QKeySequence("Ctrl+Shift+R"))
        self.record_action.triggered.connect(self.toggle_recording)
        self.addAction(self.record_action)
        self.notes_action = QAction("Session notes…", self)
        self.notes_action.setShortcut(QKeySequence("Ctrl+Shift+N"))
        self.notes_action.triggered.connect(self.edit_notes)
        self.addAction(self.notes_action)
        self.sessions_action = QAction("Sessions…", self)  # README and docs/sessions.md advertise it
        self.sessions_action.setShortcut(QKeySequence("Ctrl+Shift+S"))
        self.sessions_action.triggered.connect(self.browse_sessions)
        self.addAction(self.sessions_action)
        from emodesk.labels import LABELS

        for key in range(len(LABELS) + 1):
            act = QAction(f"label {key}", self)
            act.setShortcut(QKeySequence(str(key)))
            act.triggered.connect(lambda _checked=False, k=key: self.label_hotkey(k))
            self.addAction(act)
        self.sessions_dir: Path | None = None  # default: <user data>/emodesk/sessions
        self.last_session: Path | None = None

    def toggle_recording(self) -> None:
        if self.pipeline.recorder is not None:
            self.last_session = self.pipeline.stop_recording()
            self.statusBar().showMessage(f"session saved: {self.last_session}", 15000)
            self.record_action.setText("Start recording")
        else:
            from emodesk.recording.writer import RecordingError
            from emodesk.resources import sessions_dir

            try:
                path = self.pipeline.start_recording(self.sessions_dir or sessions_dir())
            except RecordingError as e:
                self.reporter.report(str(e))
                return
            self.statusBar().showMessage(f"recording to {path}", 5000)
            self.record_action.setText("Stop recording")
        self._update_recording()

    def browse_sessions(self) -> None:
        from emodesk.resources import sessions_dir
        from emodesk.ui.sessions_dialog import SessionsDialog

        self.sessions_dialog = SessionsDialog(self.sessions_dir or sessions_dir(), self)
        self.sessions_dialog.show()

    def label_hotkey(self, key: int) -> None:
        rec = self.pipeline.recorder
        if rec is None:
            self.statusBar().showMessage("labels apply while recording: press Ctrl+Shift+R first", 4000)
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

    def _update_recording(self) -> None:
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
        self.video.set_frame(snap.frame, snap.face_tracks())
        if snap.frame is None:
            video = snap.status("video")
            self.video.set_placeholder(video.message if video is not None else "no video")
        self._update_face(snap)
        self._update_member(self.voice_panel, snap, "voice", snap.voice)
        self._update_member(self.text_panel, snap, "text", snap.text)
        self._update_fused(snap)
        self.transcript.set_transcripts(snap.transcripts, snap.partial, snap.transcript_version)
        self._update_status(snap)
        self._update_recording()

    def _update_face(self, snap: LiveSnapshot) -> None:
        st = snap.status("face")
        det = snap.status("face detector")
        if det is not None and not det.ok:
            self.face_panel.set_message(det.message)
        elif st is None or not st.ok:
            self.face_panel.set_message(st.message if st is not None else "no face model")
        elif snap.face is None:
            self.face_panel.set_message("waiting for frames…", st.message)
        else:
            probs = snap.main_face_probs()
            if probs is None:
                self.face_panel.set_message("no face in view", st.message)
            else:
                tracks = snap.face_tracks()
                self.face_panel.set_probs(probs, f"{st.message} · {len(tracks)} face(s), largest shown")

    def _update_member(
        self, panel: ProbabilityPanel, snap: LiveSnapshot, slot: str, scores: tuple[ModalityScores, ...]
    ) -> None:
        st = snap.status(slot)
        if st is None or not st.ok:
            panel.set_message(st.message if st is not None else "no model installed")
            return
        asr = snap.status("asr")
        if asr is not None and not asr.ok:
            panel.set_message(f"speech path unavailable: {asr.message}")
            return
        if not scores:
            panel.set_message("waiting for speech…", st.message)
            return
        newest = max(s.t1 or s.t for s in scores)
        age = "" if snap.t is None else f" · {max(0.0, snap.t - newest):.1f} s ago"
        doubted = [s for s in scores if not s.trusted]
        if doubted and len(doubted) == len(scores):  # no bars: they would read as a real score
            panel.set_message(f"last words not read for emotion: {doubted[0].reason}", age.lstrip(" ·"))
            return
        panel.set_probs(_mean_probs(scores), f"{', '.join(s.model for s in scores)}{age}")

    def _update_fused(self, snap: LiveSnapshot) -> None:
        f = snap.fused
        if f is None:
            self.headline.set_fused(None)
            self.fused_panel.set_message("no fresh scores to fuse")
        else:
            self.headline.set_fused(f.probs, f.members)
            track = f" · face #{f.track}" if f.track is not None else ""
            self.fused_panel.set_probs(f.probs, f"{len(f.members)} member(s){track}")

    def _update_status(self, snap: LiveSnapshot) -> None:
        video, audio = snap.status("video"), snap.status("audio")
        self._set(self.source_label, f"Source: {video.message if video else snap.source}")
        if audio is None:
            mic = "Audio: –"
        elif audio.state == "error":
            mic = f"Audio error: {audio.message}"
        else:
            mic = f"Audio: {audio.message}"
        self._set(self.mic_label, mic)
        marks = {"ok": "✓", "missing": "–", "error": "✗"}
        parts = [f"{s.slot} {marks[s.state]}" for s in snap.statuses if s.slot != "face detector"]
        self._set(self.models_label, "Models: " + " ".join(parts))
        providers = sorted(
            {s.provider.replace("ExecutionProvider", "").upper() for s in snap.statuses if s.provider}
        )
        self._set(self.provider_label, "EP: " + (", ".join(providers) or "–"))
        details = "\n".join(f"{s.slot}: {s.message}" for s in snap.statuses)
        if details != self.models_label.toolTip():  # why each model runs where it runs
            self.models_label.setToolTip(details)
            self.provider_label.setToolTip(details)
        st = snap.stats
        perf = (
            f"{st.capture_fps:.0f} fps · face {st.face_fps:.0f} fps "
            f"{_fmt_ms(st.face_latency_p50_ms)}/{_fmt_ms(st.face_latency_p95_ms)} ms · "
            f"drops {st.dropped_frames} · audio drops {st.audio_dropped + st.audio_overflows} · "
            f"transcript {_fmt_ms(st.transcript_delay_p50_ms)} ms"
        )
        if st.speech_lag_s is not None and st.speech_lag_s > 2.0:
            perf += f" · speech {st.speech_lag_s:.0f} s behind"
        if snap.ended:
            perf = "source ended · " + perf
        self._set(self.perf_label, perf)
        tip = (
            f"capture {st.capture_fps:.1f} fps, face {st.face_fps:.1f} fps\n"
            f"face latency (capture → scores) p50 {_fmt_ms(st.face_latency_p50_ms)} ms, "
            f"p95 {_fmt_ms(st.face_latency_p95_ms)} ms\n"
            f"frames captured {st.frames_captured}, scored {st.frames_scored}, "
            f"dropped before scoring {st.dropped_frames}\n"
            f"audio: source overflows {st.audio_overflows}, queue drops {st.audio_dropped}, "
            f"backlog {st.audio_backlog} chunks\n"
            f"transcript latency (utterance cut → text) p50 {_fmt_ms(st.transcript_latency_p50_ms)} ms, "
            f"p95 {_fmt_ms(st.transcript_latency_p95_ms)} ms over {st.utterances} utterance(s)\n"
            f"end of speech → text on screen p50 {_fmt_ms(st.transcript_delay_p50_ms)} ms, "
            f"p95 {_fmt_ms(st.transcript_delay_p95_ms)} ms"
        )
        if self.perf_label.toolTip() != tip:
            self.perf_label.setToolTip(tip)
        notes = list(snap.notes)
        if notes:
            self._set(self.notes, " · ".join(notes))
        if self.notes.isVisible() != bool(notes):
            self.notes.setVisible(bool(notes))
        self._set_tooltip(snap.statuses)

    def _set_tooltip(self, statuses: tuple[SlotStatus, ...]) -> None:
        tip = "\n".join(f"{s.slot}: {s.state} — {s.message}" for s in statuses)
        if self.models_label.toolTip() != tip:
            self.models_label.setToolTip(tip)

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
        self.shutdown()
        super().closeEvent(event)
