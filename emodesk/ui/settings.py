"""The window's remembered state (size, splitters, timeline view) in one INI file.

``<user data dir>/emodesk/settings.ini`` (``EMODESK_HOME`` moves it, so tests
never touch a user's file); QSettings writes it atomically.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings

from emodesk.resources import user_data_dir


def settings_path() -> Path:
    return user_data_dir() / "settings.ini"


def app_settings() -> QSettings:
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return QSettings(str(path), QSettings.Format.IniFormat)


def read_int(s: QSettings, key: str, default: int, allowed: tuple[int, ...] | None = None) -> int:
    """An int setting; a missing, malformed or not-allowed value gives ``default`` (a hand-edited file
    never breaks the window)."""
    raw = s.value(key, default)
    try:
        v = int(raw)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default
    return v if allowed is None or v in allowed else default


def read_bool(s: QSettings, key: str, default: bool) -> bool:
    raw = s.value(key, default)
    if isinstance(raw, bool):
        return raw
    return str(raw).strip().lower() in ("1", "true", "yes", "on") if raw is not None else default
