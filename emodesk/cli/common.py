"""What every subcommand module shares: one-line usage errors and the exit status convention.

Exit status (docs/formats.md, "Command-line conventions"): 0 success, 1 the work
failed, 2 bad usage or unreadable input — with one line on stderr, never a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import NoReturn

from emodesk.errors import ConfigError, EmodeskError, InputError


class UsageError(Exception):
    """Bad arguments: reported on one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (raised, not printed with the usage)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def lab_module(name: str, what: str) -> ModuleType:
    """``emodesk.lab.<name>``, the one way the app reaches the lab (an import-linter contract keeps
    every other import out). The bundle and the wheel leave the lab out, and its training code
    needs the ``train`` extra: either is an :class:`EmodeskError` that says ``what`` needs a source
    install."""
    try:
        return importlib.import_module(f"emodesk.lab.{name}")
    except ModuleNotFoundError as e:
        if e.name is None or not e.name.startswith("emodesk.lab"):
            raise EmodeskError(
                f"{what} runs from a source install with the train extra (pip install -e '.[train]'): {e}"
            ) from None
        raise EmodeskError(
            f"{what} is part of emodesk's lab, which this installation leaves out: "
            "run it from a source install (pip install -e '.[train]')"
        ) from None


DOWNLOAD_ASR_HELP = (
    "let faster-whisper download an --asr-model NAME that is not installed (uses the network; "
    "without it such a name is refused)"
)


_download_set_here = False


def allow_asr_download(allowed: bool) -> None:
    """``--download-asr``: the one way a run may fetch a model (``emodesk.speech.asr._fetch``).

    Without the flag, a permission an earlier command of this process gave is taken back; one
    the user set in the environment themselves is theirs and stays.
    """
    global _download_set_here
    from emodesk.speech.asr import ALLOW_DOWNLOAD_ENV

    if allowed:
        if os.environ.get(ALLOW_DOWNLOAD_ENV) != "1":
            os.environ[ALLOW_DOWNLOAD_ENV] = "1"
            _download_set_here = True
    elif _download_set_here:
        os.environ.pop(ALLOW_DOWNLOAD_ENV, None)
        _download_set_here = False


def fail(code: int, msg: str) -> int:
    print(f"emodesk: {msg}", file=sys.stderr)
    return code


def guarded(run: Callable[[Sequence[str]], int], argv: Sequence[str], name: str) -> int:
    """``run(argv)`` with the exit status convention applied to whatever it raises."""
    try:
        return run(argv)
    except UsageError as e:
        return fail(2, str(e))
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    except (InputError, ConfigError) as e:  # unreadable or malformed input
        return fail(2, str(e))
    except EmodeskError as e:
        return fail(1, str(e))
    except OSError as e:
        return fail(1, f"{name}: {e}")
    except KeyboardInterrupt:
        return 130
