"""One typed hierarchy for every error emodesk raises on purpose.

Messages say what was expected, what arrived, and what to do next.
"""

from __future__ import annotations


class EmodeskError(Exception):
    """Base class of every error emodesk raises deliberately."""


class InputError(EmodeskError):
    """A file, argument or data row the user gave us is missing or unreadable."""


class DeviceError(EmodeskError):
    """A camera or microphone is missing, busy, or refuses to open."""


class ModelError(EmodeskError):
    """A model file is missing, corrupt, or does not match its manifest."""


class LabelError(InputError):
    """A label is not one of the canonical seven or their aliases."""


class ConfigError(EmodeskError):
    """A configuration file (e.g. fusion.json) is malformed."""
