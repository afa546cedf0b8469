"""What the user chose in Settings, read from and written to the window's QSettings file.

Two kinds of setting, kept apart on purpose:

- **the speech path** (ASR model and language, VAD threshold): they change what is
  transcribed, so they apply when the sources (re)start and a recording made
  after the change says which model it used (``session.json`` ``models``);
- **the display** (staleness, smoothing): they change only what the window shows.
  The fusion, ``analyze`` and every record a recording writes keep the fusion's
  own cut-offs and raw scores, so a recording never depends on them.

The recording folder is where Record writes (default: ``<user data>/sessions``).
A malformed or out-of-range value in a hand-edited file reads as the default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings

from emodesk.fusion.state import DEFAULT_CUTOFFS
from emodesk.speech.segmenter import SegmenterConfig

VAD_RANGE = (0.1, 0.9)
STALE_RANGE = (0.2, 60.0)
SMOOTHING_RANGE = (0.0, 10.0)
DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class Preferences:
    asr_model: str | None = None  # None: the bundled tiny.en
    language: str = DEFAULT_LANGUAGE  # what the recogniser expects to hear
    vad_threshold: float = SegmenterConfig.threshold
    staleness: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_CUTOFFS))  # display only
    smoothing_s: float = 0.0  # display only: time constant of the shown fused probabilities
    recording_folder: str | None = None  # None: <user data>/sessions

    def speech_key(self) -> tuple[str | None, str, float]:
        """What a running speech path depends on: a change means restarting the sources."""
        return (self.asr_model, self.language, round(self.vad_threshold, 3))

    def sessions_dir(self) -> Path | None:
        return Path(self.recording_folder).expanduser() if self.recording_folder else None

    def with_staleness(self, kind: str, seconds: float) -> Preferences:
        return replace(self, staleness={**self.staleness, kind: seconds})


def _float(s: QSettings, key: str, default: float, lo: float, hi: float) -> float:
    raw = s.value(key, default)
    try:
        v = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) and lo <= v <= hi else default


def _text(s: QSettings, key: str) -> str | None:
    raw = s.value(key, "")
    text = str(raw).strip() if raw is not None else ""
    return text or None


def load_preferences(s: QSettings) -> Preferences:
    d = Preferences()
    language = (_text(s, "speech/language") or DEFAULT_LANGUAGE).lower()
    return Preferences(
        asr_model=_text(s, "speech/asr_model"),
        language=language if language.isalpha() and 2 <= len(language) <= 3 else DEFAULT_LANGUAGE,
        vad_threshold=_float(s, "speech/vad_threshold", d.vad_threshold, *VAD_RANGE),
        staleness={k: _float(s, f"display/stale_{k}_s", v, *STALE_RANGE) for k, v in DEFAULT_CUTOFFS.items()},
        smoothing_s=_float(s, "display/smoothing_s", d.smoothing_s, *SMOOTHING_RANGE),
        recording_folder=_text(s, "recording/folder"),
    )


def save_preferences(s: QSettings, p: Preferences) -> None:
    s.setValue("speech/asr_model", p.asr_model or "")
    s.setValue("speech/language", p.language)
    s.setValue("speech/vad_threshold", p.vad_threshold)
    for k, v in p.staleness.items():
        s.setValue(f"display/stale_{k}_s", v)
    s.setValue("display/smoothing_s", p.smoothing_s)
    s.setValue("recording/folder", p.recording_folder or "")
    s.sync()


class Smoother:
    """Exponential smoothing of the shown fused probabilities, in media time (display only).

    ``tau_s`` 0 passes values through; a jump back in media time (a looping file,
    a new source) or a gap of more than five time constants starts afresh instead
    of blending unrelated scores. A mean of distributions stays a distribution.
    """

    def __init__(self, tau_s: float = 0.0) -> None:
        self.tau_s = float(tau_s)
        self._t: float | None = None
        self._value: np.ndarray | None = None

    def reset(self) -> None:
        self._t, self._value = None, None

    def __call__(self, t: float, probs: np.ndarray | None) -> np.ndarray | None:
        if probs is None:
            self.reset()
            return None
        p = np.asarray(probs, dtype=np.float64)
        last, value = self._t, self._value
        if self.tau_s <= 0 or last is None or value is None or not 0 <= t - last <= 5 * self.tau_s:
            self._t, self._value = t, p.copy()
            return p
        a = 1.0 - math.exp(-(t - last) / self.tau_s)
        self._value = value + a * (p - value)
        self._t = t
        return self._value.copy()
