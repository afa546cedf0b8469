"""Settings: the recogniser, the voice detector, what the window calls stale, smoothing, where to record.

Returns a :class:`~emodesk.ui.preferences.Preferences`; the window persists it
(QSettings) and applies it. The dialog says which settings restart the speech
path and which change only the display (a recording never depends on those).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from emodesk.fusion.state import DEFAULT_CUTOFFS
from emodesk.speech.asr import DEFAULT_ASR_MODEL, AsrChoice, asr_choices
from emodesk.ui.preferences import SMOOTHING_RANGE, STALE_RANGE, VAD_RANGE, Preferences

#: Whisper's language codes most asked for; any other two-letter code can be typed.
LANGUAGES = (
    ("en", "English"),
    ("de", "German"),
    ("es", "Spanish"),
    ("fr", "French"),
    ("it", "Italian"),
    ("pt", "Portuguese"),
    ("nl", "Dutch"),
    ("pl", "Polish"),
    ("ru", "Russian"),
    ("tr", "Turkish"),
    ("ar", "Arabic"),
    ("hi", "Hindi"),
    ("ur", "Urdu"),
    ("zh", "Chinese"),
    ("ja", "Japanese"),
    ("ko", "Korean"),
)
CUSTOM = "__folder__"
KIND_NAMES = {"face": "Face", "voice": "Voice", "text": "Words"}


class SettingsDialog(QDialog):
    """``preferences()`` after ``accept``; ``asr_locked`` names the ``--asr-model`` the command line set."""

    def __init__(
        self,
        prefs: Preferences,
        parent: QWidget | None = None,
        *,
        choices: Callable[[], list[AsrChoice]] = asr_choices,
        asr_locked: str | None = None,
        default_folder: Path | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings — emodesk")
        self.setObjectName("settings-dialog")
        self._prefs = prefs
        self._choices = {c.spec: c for c in choices()}
        lay = QVBoxLayout(self)

        speech = QGroupBox("Speech (restarts the speech path)")
        sf = QFormLayout(speech)
        self.asr = QComboBox()
        self.asr.setObjectName("settings-asr")
        for c in self._choices.values():
            self.asr.addItem(c.description, c.spec)
            if not c.available:
                item = self.asr.model().item(self.asr.count() - 1)  # type: ignore[attr-defined]
                item.setEnabled(False)
        self.asr.addItem("A faster-whisper model folder…", CUSTOM)
        self.asr_folder = QLineEdit()
        self.asr_folder.setPlaceholderText("folder with model.bin, config.json, tokenizer.json")
        current = prefs.asr_model or DEFAULT_ASR_MODEL
        if current in self._choices:
            self.asr.setCurrentIndex(self.asr.findData(current))
        else:
            self.asr.setCurrentIndex(self.asr.findData(CUSTOM))
            self.asr_folder.setText(current)
        if asr_locked is not None:
            self.asr.setEnabled(False)
            self.asr_folder.setEnabled(False)
            self.asr.setToolTip(f"set by --asr-model {asr_locked} for this run")
        sf.addRow("Recogniser:", self.asr)
        sf.addRow("", self.asr_folder)
        self.language = QComboBox()
        self.language.setObjectName("settings-language")
        self.language.setEditable(True)
        for code, name in LANGUAGES:
            self.language.addItem(f"{code} — {name}", code)
        i = self.language.findData(prefs.language)
        if i >= 0:
            self.language.setCurrentIndex(i)
        else:
            self.language.setEditText(prefs.language)
        sf.addRow("Language spoken:", self.language)
        self.vad = _spin(VAD_RANGE, prefs.vad_threshold, 0.05, 2, "")
        self.vad.setObjectName("settings-vad")
        self.vad.setToolTip(
            "Speech probability above which the voice detector hears speech (Silero VAD, default 0.50). "
            "Higher: fewer noises taken for speech, soft speech missed; lower: the opposite."
        )
        sf.addRow("Voice detector threshold:", self.vad)
        self.asr.currentIndexChanged.connect(self._sync_speech)
        lay.addWidget(speech)

        display = QGroupBox("Display only (recordings, analyze and the fusion keep their own rules)")
        df = QFormLayout(display)
        self.stale: dict[str, QDoubleSpinBox] = {}
        for kind, default in DEFAULT_CUTOFFS.items():
            box = _spin(STALE_RANGE, prefs.staleness.get(kind, default), 0.5, 1, " s")
            box.setObjectName(f"settings-stale-{kind}")
            box.setToolTip(
                f"Grey out the {KIND_NAMES[kind]} panel when its newest score is older than this "
                f"(media time; the fusion uses {default:g} s)"
            )
            self.stale[kind] = box
            df.addRow(f"{KIND_NAMES[kind]} greys out after:", box)
        self.smoothing = _spin(SMOOTHING_RANGE, prefs.smoothing_s, 0.25, 2, " s")
        self.smoothing.setObjectName("settings-smoothing")
        self.smoothing.setSpecialValueText("off")
        self.smoothing.setToolTip(
            "Time constant of the smoothing of the shown fused read-out and its timeline line; "
            "off shows each fused score as computed"
        )
        df.addRow("Smooth the fused read-out:", self.smoothing)
        lay.addWidget(display)

        rec = QGroupBox("Recording")
        rf = QFormLayout(rec)
        row = QHBoxLayout()
        self.folder = QLineEdit(prefs.recording_folder or "")
        self.folder.setObjectName("settings-folder")
        self.folder.setPlaceholderText(str(default_folder) if default_folder else "the default folder")
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._choose_folder)
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        rf.addRow("Sessions folder:", row)
        lay.addWidget(rec)

        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("QLabel { color: #8a4b00; }")
        lay.addWidget(self.note)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.RestoreDefaults
        )
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(self.restore_defaults)
        lay.addWidget(buttons)
        self._sync_speech()

    def _sync_speech(self) -> None:
        spec = self.asr.currentData()
        custom = spec == CUSTOM
        self.asr_folder.setVisible(custom)
        choice = self._choices.get(str(spec))
        english_only = choice is not None and not choice.multilingual
        if english_only:
            self.language.setCurrentIndex(self.language.findData("en"))
        self.language.setEnabled(not english_only)
        self.language.setToolTip(
            f"{choice.spec} understands English only"
            if english_only and choice is not None
            else "The language the person speaks; the recogniser marks other languages as unsure"
        )

    def _choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Record sessions into", self.folder.text() or "")
        if path:
            self.folder.setText(path)

    def restore_defaults(self) -> None:
        d = Preferences()
        self.asr.setCurrentIndex(max(0, self.asr.findData(DEFAULT_ASR_MODEL)))
        self.asr_folder.clear()
        self.language.setCurrentIndex(self.language.findData(d.language))
        self.vad.setValue(d.vad_threshold)
        for kind, box in self.stale.items():
            box.setValue(d.staleness[kind])
        self.smoothing.setValue(d.smoothing_s)
        self.folder.clear()

    def _language(self) -> str:
        data = self.language.currentData()
        text = self.language.currentText().strip()
        if data is not None and self.language.itemText(self.language.currentIndex()) == text:
            return str(data)
        return text.split(" ", 1)[0].lower()

    def problem(self) -> str | None:
        """Why the values cannot be used (shown under the form), or None."""
        lang = self._language()
        if not (lang.isalpha() and 2 <= len(lang) <= 3):
            return f"language {lang!r}: give a two- or three-letter code such as en, de or ur"
        if self.asr.currentData() == CUSTOM:
            folder = Path(self.asr_folder.text().strip()).expanduser()
            missing = [
                f for f in ("model.bin", "config.json", "tokenizer.json") if not (folder / f).is_file()
            ]
            if not self.asr_folder.text().strip() or missing:
                return f"recogniser folder {folder}: missing {', '.join(missing) or 'the folder'}"
        folder_text = self.folder.text().strip()
        if folder_text:
            p = Path(folder_text).expanduser()
            if p.exists() and not p.is_dir():
                return f"sessions folder {p} is a file"
        return None

    def _accept(self) -> None:
        why = self.problem()
        if why is not None:
            self.note.setText(why)
            return
        self.accept()

    def preferences(self) -> Preferences:
        spec = self.asr.currentData()
        if not self.asr.isEnabled():
            asr = self._prefs.asr_model
        elif spec == CUSTOM:
            asr = self.asr_folder.text().strip() or None
        else:
            asr = None if spec == DEFAULT_ASR_MODEL else str(spec)
        return Preferences(
            asr_model=asr,
            language=self._language(),
            vad_threshold=round(self.vad.value(), 3),
            staleness={k: round(b.value(), 3) for k, b in self.stale.items()},
            smoothing_s=round(self.smoothing.value(), 3),
            recording_folder=self.folder.text().strip() or None,
        )


def _spin(rng: tuple[float, float], value: float, step: float, decimals: int, suffix: str) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(*rng)
    box.setDecimals(decimals)
    box.setSingleStep(step)
    box.setSuffix(suffix)
    box.setValue(value)
    return box
