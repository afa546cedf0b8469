"""What every subcommand module shares: one-line usage errors and the exit status convention.

Exit status (CONTRACTS.md, "Command-line conventions"): 0 success, 1 the work
failed, 2 bad usage or unreadable input — with one line on stderr, never a
traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from emodesk.errors import ConfigError, EmodeskError, InputError


class UsageError(Exception):
    """Bad arguments: reported on one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (raised, not printed with the usage)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


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
