"""Picking the picture and the sound while the window runs: cameras, files, microphones.

Each choice shows what the user chooses by (a camera's resolution and frame
rate, a file's size, length and audio, a microphone's sample rate). Cameras
are opened once, each in its own short-lived thread, to learn their figures;
the camera in use is not reopened (its figures come from the running source).
The dialog only returns a :class:`SourceChoice`: the window builds the new
pipeline and keeps the old one running if the new one cannot be built.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from emodesk.capture import catalog
from emodesk.capture.catalog import CameraInfo, MediaInfo, MicInfo
from emodesk.capture.sources import demo_clip_path, parse_camera
from emodesk.errors import EmodeskError

OWN_AUDIO = "own"  # the file's (or session's) own sound
DEFAULT_MIC = "default"  # the system's default input
NO_AUDIO = "none"

FILE_FILTER = (
    "Video or audio (*.mp4 *.mkv *.mov *.avi *.webm *.m4v *.wav *.mp3 *.flac *.ogg *.m4a *.opus);;"
    "Recorded session (session.json);;All files (*)"
)


@dataclass(frozen=True)
class SourceChoice:
    """What to open: ``spec`` as on the command line (``demo``, ``camera:N``, a path), and the sound."""

    spec: str
    mic: int | str | None = None  # an input device for the sound (a file's video with a microphone)
    use_mic: bool = True  # a camera: open a microphone at all
    audio: str | None = None  # ``--audio FILE``: the sound from another file

    def describe(self) -> str:
        cam = parse_camera(self.spec)
        what = "the demo clip" if self.spec == "demo" else (f"camera {cam}" if cam is not None else self.spec)
        if self.audio:
            return f"{what} with the sound of {Path(self.audio).name}"
        if self.mic is not None:
            return f"{what} with microphone {self.mic}"
        if cam is not None:
            return f"{what} with the default microphone" if self.use_mic else f"{what}, no sound"
        return what


@dataclass(frozen=True)
class _Entry:
    spec: str
    text: str
    kind: str  # "camera", "demo", "file"
    has_audio: bool = True
    own_audio_only: bool = False  # a session or an audio-only file: no other sound can be used


class SourceDialog(QDialog):
    """Modal picker; ``choice()`` after ``accept``. Device lists and probes are injectable (tests)."""

    def __init__(
        self,
        current: SourceChoice | None,
        parent: QWidget | None = None,
        *,
        cameras: Callable[[], list[CameraInfo]] = catalog.cameras,
        probe: Callable[[CameraInfo], CameraInfo] = catalog.probe_camera,
        microphones: Callable[[], list[MicInfo]] = catalog.microphones,
        media_info: Callable[[str | Path], MediaInfo] = catalog.media_info,
        current_size: tuple[int, int] | None = None,
        recording: bool = False,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Source — emodesk")
        self.setObjectName("source-dialog")
        self.current = current
        self._media_info = media_info
        self._probe = probe
        self._probed: dict[int, CameraInfo] = {}
        self._probe_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.videos = QListWidget()
        self.videos.setObjectName("source-videos")
        self.videos.setMinimumHeight(90)
        self.videos.currentRowChanged.connect(self._video_changed)
        pick_row = QHBoxLayout()
        pick_row.addWidget(self.videos, 1)
        self.file_button = QPushButton("File or session…")
        self.file_button.setToolTip("Play a video or audio file, or replay a recorded session, live")
        self.file_button.clicked.connect(self._choose_file)
        pick_row.addWidget(self.file_button, 0, Qt.AlignmentFlag.AlignTop)
        form.addRow("Picture:", pick_row)
        self.sound = QComboBox()
        self.sound.setObjectName("source-sound")
        self.sound.setMinimumContentsLength(30)
        form.addRow("Sound:", self.sound)
        lay.addLayout(form)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("QLabel { color: #8a4b00; }")
        lay.addWidget(self.note)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Switch")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay.addWidget(self.buttons)

        self._mics = microphones()
        self._entries: list[_Entry] = []
        try:
            demo = media_info(demo_clip_path())
            self._add(_Entry("demo", f"Demo clip ({_figures(demo)})", "demo", demo.has_audio))
        except EmodeskError as e:
            self._add(_Entry("demo", f"Demo clip (missing: {e})", "demo"))
        current_cam = parse_camera(current.spec) if current is not None else None
        for cam in cameras():
            if cam.index == current_cam:
                cam = CameraInfo(cam.index, cam.name, current_size, None)
                self._add(_Entry(cam.spec, cam.describe() + " — in use", "camera"))
                continue
            self._add(_Entry(cam.spec, cam.describe(pending="opening it to read its resolution…"), "camera"))
            self._start_probe(cam)
        if current is not None and current.spec != "demo" and current_cam is None:
            self._add_file(current.spec, select=False)
        self._probe_timer = QTimer(self)
        self._probe_timer.setInterval(150)
        self._probe_timer.timeout.connect(self._show_probes)
        if self._threads:
            self._probe_timer.start()
        self._select(current.spec if current is not None else "demo")
        if recording:
            self.note.setText(
                "Recording: stop the recording before switching, so the session keeps one source."
            )
            self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(False)

    # ----------------------------------------------------------- entries

    def _add(self, entry: _Entry) -> None:
        self._entries.append(entry)
        item = QListWidgetItem(entry.text)
        item.setToolTip(entry.text)
        self.videos.addItem(item)
        self._fit_list()

    def _fit_list(self) -> None:
        """Wide enough for the longest entry (up to 620 px; the tooltip has the rest)."""
        want = min(620, self.videos.sizeHintForColumn(0) + 2 * self.videos.frameWidth() + 8)
        if want > self.videos.minimumWidth():
            self.videos.setMinimumWidth(want)

    def _select(self, spec: str) -> None:
        for i, e in enumerate(self._entries):
            if e.spec == spec:
                self.videos.setCurrentRow(i)
                return
        if self._entries:
            self.videos.setCurrentRow(0)

    def add_file(self, path: str | Path) -> bool:
        """Add a file (or session folder) to the list and select it; False, with the reason shown, if
        it cannot be played (tests call this instead of the file dialog)."""
        return self._add_file(str(path), select=True)

    def _add_file(self, path: str, *, select: bool) -> bool:
        try:
            info = self._media_info(path)
        except EmodeskError as e:
            self.note.setText(str(e))
            return False
        spec = str(info.path)
        if spec not in [e.spec for e in self._entries]:
            own_only = info.kind == "session" or info.kind == "audio"
            self._add(_Entry(spec, info.describe(), "file", info.has_audio, own_only))
        if select:
            self._select(spec)
        return True

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Play a file or a recorded session", "", FILE_FILTER)
        if path:
            self.add_file(path)

    # ----------------------------------------------------------- camera probes

    def _start_probe(self, cam: CameraInfo) -> None:
        def run() -> None:
            try:
                info = self._probe(cam)
            except EmodeskError as e:  # a probe never takes the dialog down
                info = CameraInfo(cam.index, cam.name, error=str(e))
            with self._probe_lock:
                self._probed[cam.index] = info

        t = threading.Thread(target=run, name=f"probe-camera-{cam.index}", daemon=True)
        self._threads.append(t)
        t.start()

    def _show_probes(self) -> None:
        with self._probe_lock:
            done = dict(self._probed)
        for i, e in enumerate(self._entries):
            cam = parse_camera(e.spec) if e.kind == "camera" else None
            if cam is not None and cam in done:
                text = done[cam].describe()
                if self.videos.item(i).text() != text:
                    self.videos.item(i).setText(text)
                    self.videos.item(i).setToolTip(text)
                    self._entries[i] = _Entry(e.spec, text, "camera")
                    self._fit_list()
        if all(not t.is_alive() for t in self._threads):
            self._probe_timer.stop()

    def wait_for_probes(self, timeout_s: float = 10.0) -> None:
        """Join the probe threads and show their results (tests; closing the dialog does not wait)."""
        for t in self._threads:
            t.join(timeout_s)
        self._show_probes()

    # ----------------------------------------------------------- sound

    def _video_changed(self, row: int) -> None:
        if not 0 <= row < len(self._entries):
            return
        e = self._entries[row]
        self.sound.clear()
        if e.kind == "camera":
            self.sound.addItem("Default microphone", DEFAULT_MIC)
        elif e.has_audio:
            self.sound.addItem("The file's own sound", OWN_AUDIO)
        if not e.own_audio_only:
            for m in self._mics:
                self.sound.addItem(f"Microphone {m.describe()}", m.index)
        if e.kind == "camera" or not e.has_audio:
            self.sound.addItem("No sound (face only)", NO_AUDIO)
        if e.own_audio_only:
            self.sound.setToolTip("A session or an audio file plays its own sound")
        elif not self._mics:
            self.sound.setToolTip("No microphone found")
        else:
            self.sound.setToolTip("")
        cur = self.current
        if cur is not None and cur.spec == e.spec:
            want: object = cur.mic if cur.mic is not None else (DEFAULT_MIC if cur.use_mic else NO_AUDIO)
            if e.kind != "camera" and cur.mic is None:
                want = OWN_AUDIO
            i = self.sound.findData(want)
            if i >= 0:
                self.sound.setCurrentIndex(i)

    def entries(self) -> list[str]:
        """The picture choices as shown (tests, accessibility)."""
        return [self.videos.item(i).text() for i in range(self.videos.count())]

    def sounds(self) -> list[str]:
        return [self.sound.itemText(i) for i in range(self.sound.count())]

    def choice(self) -> SourceChoice | None:
        row = self.videos.currentRow()
        if not 0 <= row < len(self._entries):
            return None
        e = self._entries[row]
        sound = self.sound.currentData()
        if e.kind == "camera":
            if sound == NO_AUDIO:
                return SourceChoice(e.spec, use_mic=False)
            return SourceChoice(e.spec, mic=None if sound == DEFAULT_MIC else sound)
        if isinstance(sound, int):
            return SourceChoice(e.spec, mic=sound)
        return SourceChoice(e.spec)


def _figures(info: MediaInfo) -> str:
    return info.describe().split(" (", 1)[1].rstrip(")")
