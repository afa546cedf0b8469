"""Defensive readers for the files users and other programs hand us: JSON and CSV.

Every JSON file the app reads (model manifests, ``fusion.json``, ``session.json``,
label and score lines, a converted ASR's config) goes through :func:`parse_json`
or :func:`read_json`: a size limit, a nesting limit and an integer-length limit
are checked before anything looks inside, ``NaN``/``Infinity`` are refused, and
values are then read through :class:`Fields`, whose typed getters say "expected
…, got …". A hostile or broken file is one message naming the file and the key,
never a traceback (issue "Nothing leaves, nothing breaks silently").

CSV files are opened by :func:`open_csv`: undecodable bytes and oversize fields
are one message naming the file and the line.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from emodesk.errors import EmodeskError, InputError

MAX_JSON_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 32
MAX_INT_DIGITS = 30
MAX_CSV_FIELD = 1 << 20

E = TypeVar("E", bound=EmodeskError)


class JsonRefused(ValueError):
    """A JSON text that is not valid JSON or breaks one of the limits (the message says which)."""


def _refuse_constant(name: str) -> NoReturn:
    raise JsonRefused(f"{name} is not a JSON number")


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise JsonRefused(f"an integer of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > 400:
        raise JsonRefused(f"a number written with {len(text)} characters")
    x = float(text)
    if not math.isfinite(x):
        raise JsonRefused(f"{text[:20]} overflows a float")
    return x


_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_tree(value: Any, limit: int) -> str | None:
    """Why ``value`` is refused: nesting deeper than ``limit`` containers, or a text holding an
    unpaired surrogate (valid JSON escapes, but no UTF-8 file or terminal can hold them); None if
    fine. Iterative: no recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, str):
            if _SURROGATE.search(v):
                return "it holds an unpaired surrogate escape (\\ud800-\\udfff), which is no text"
        elif isinstance(v, dict):
            if d > limit:
                return f"it nests deeper than {limit} levels"
            stack.extend((k, d) for k in v)
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            if d > limit:
                return f"it nests deeper than {limit} levels"
            stack.extend((x, d + 1) for x in v)
    return None


def parse_json(text: str | bytes, *, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """The value of one JSON text; :class:`JsonRefused` (a ``ValueError``) for anything else."""
    if len(text) > max_bytes:
        raise JsonRefused(f"it is {len(text):,} bytes (at most {max_bytes:,})")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise JsonRefused(f"it is not UTF-8 (byte {e.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        value = json.loads(
            text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_refuse_constant
        )
    except RecursionError:
        raise JsonRefused(f"it nests deeper than {max_depth} levels") from None
    except JsonRefused:
        raise
    except json.JSONDecodeError as e:
        raise JsonRefused(f"it is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except ValueError as e:  # int() of a huge literal or other conversion limits
        raise JsonRefused(str(e)) from None
    why = _check_tree(value, max_depth)
    if why is not None:
        raise JsonRefused(why)
    return value


def read_json(
    path: Path | str,
    *,
    what: str,
    error: type[E] = InputError,  # type: ignore[assignment]
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_DEPTH,
) -> Fields:
    """The JSON object in ``path`` as :class:`Fields`; ``error`` (naming ``what`` and the file) when
    the file is missing, unreadable, too large, not UTF-8, not JSON, too deep or not an object."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise error(f"{what} {p} not found") from None
    except OSError as e:
        raise error(f"{what} {p} is unreadable: {e.strerror or e}") from None
    try:
        value = parse_json(data, max_bytes=max_bytes, max_depth=max_depth)
    except JsonRefused as e:
        raise error(f"{what} {p} is refused: {e}") from None
    if not isinstance(value, dict):
        raise error(f"{what} {p} must hold a JSON object, got {_kind(value)}")
    return Fields(value, f"{what} {p}", error)


MISSING: Any = object()


def read_jsonl_objects(
    path: Path | str, *, what: str, skip_cut_last: bool = False, max_line_bytes: int = 1 << 20
) -> list[dict[str, Any]]:
    """Every JSON object of a JSONL file, one per non-blank line; :class:`InputError` naming the
    file and line of the first that is not one (or that cannot be read at all). With
    ``skip_cut_last`` an unterminated last line (the one a kill cut off while it was written) is
    left out rather than refused."""
    out: list[dict[str, Any]] = []
    try:
        with open(path, "rb") as f:
            for i, line in enumerate(f, start=1):
                if skip_cut_last and not line.endswith(b"\n"):
                    break
                if not line.strip():
                    continue
                try:
                    obj = parse_json(line, max_bytes=max_line_bytes)
                except JsonRefused as e:
                    raise InputError(f"{path}:{i}: not {what}: {e}") from None
                if not isinstance(obj, dict):
                    raise InputError(f"{path}:{i}: not {what} (a JSON object)")
                out.append(obj)
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    return out


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return f"the number {v!r}"
    if isinstance(v, str):
        return f"the text {v[:40]!r}"
    if isinstance(v, list):
        return f"a list of {len(v)}"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


class Fields:
    """Typed reads from one JSON object; a missing key or a wrong type raises ``error`` saying
    where (``where`` and the key path), what was expected and what arrived."""

    def __init__(self, data: Mapping[str, Any], where: str, error: type[EmodeskError] = InputError) -> None:
        if not isinstance(data, Mapping):
            raise error(f"{where}: expected an object, got {_kind(data)}")
        self.data = data
        self.where = where
        self.error = error

    def fail(self, key: str, expected: str, got: Any) -> NoReturn:
        raise self.error(f"{self.where}: {key}: expected {expected}, got {_kind(got)}")

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = MISSING) -> Any:
        if key in self.data:
            return self.data[key]
        if default is MISSING:
            raise self.error(f"{self.where}: lacks the required field {key!r}")
        return default

    def text(self, key: str, default: Any = MISSING, *, choices: Sequence[str] | None = None) -> Any:
        v = self.raw(key, default)
        if v is default and default is not MISSING:
            return v
        if not isinstance(v, str):
            self.fail(key, "text", v)
        if choices is not None and v not in choices:
            raise self.error(f"{self.where}: {key}: expected one of {list(choices)}, got {v[:40]!r}")
        return v

    def number(
        self, key: str, default: Any = MISSING, *, lo: float | None = None, hi: float | None = None
    ) -> Any:
        v = self.raw(key, default)
        if v is default and default is not MISSING:
            return v
        return check_number(v, f"{self.where}: {key}", self.error, lo=lo, hi=hi)

    def integer(
        self, key: str, default: Any = MISSING, *, lo: int | None = None, hi: int | None = None
    ) -> Any:
        v = self.raw(key, default)
        if v is default and default is not MISSING:
            return v
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(key, "a whole number", v)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.error(f"{self.where}: {key}: expected a whole number in [{lo}, {hi}], got {v}")
        return v

    def boolean(self, key: str, default: Any = MISSING) -> Any:
        v = self.raw(key, default)
        if v is default and default is not MISSING:
            return v
        if not isinstance(v, bool):
            self.fail(key, "true or false", v)
        return v

    def array(self, key: str, default: Any = MISSING, *, max_len: int = 100_000) -> Any:
        v = self.raw(key, default)
        if v is default and default is not MISSING:
            return v
        if not isinstance(v, list):
            self.fail(key, "a list", v)
        if len(v) > max_len:
            raise self.error(f"{self.where}: {key}: expected at most {max_len} items, got {len(v)}")
        return v

    def numbers(
        self,
        key: str,
        default: Any = MISSING,
        *,
        length: int | None = None,
        lo: float | None = None,
        hi: float | None = None,
        max_len: int = 100_000,
    ) -> Any:
        """A list of finite numbers (of ``length`` items when given)."""
        v = self.raw(key, default)
        if v is default and default is not MISSING:
            return v
        if not isinstance(v, list) or (length is not None and len(v) != length):
            self.fail(key, f"a list of {length} numbers" if length else "a list of numbers", v)
        if len(v) > max_len:
            raise self.error(f"{self.where}: {key}: expected at most {max_len} numbers, got {len(v)}")
        return [
            check_number(x, f"{self.where}: {key}[{i}]", self.error, lo=lo, hi=hi) for i, x in enumerate(v)
        ]

    def texts(self, key: str, default: Any = MISSING) -> Any:
        v = self.raw(key, default)
        if v is default and default is not MISSING:
            return v
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            self.fail(key, "a list of texts", v)
        return v

    def obj(self, key: str, default: Any = MISSING) -> Fields:
        """The object at ``key`` (``default``: an empty one when absent, if given as ``{}``)."""
        v = self.raw(key, default)
        if v is None and default is not MISSING:
            v = default
        if not isinstance(v, Mapping):
            self.fail(key, "an object", v)
        return Fields(v, f"{self.where}: {key}", self.error)


def check_number(
    v: Any,
    where: str,
    error: type[EmodeskError] = InputError,
    *,
    lo: float | None = None,
    hi: float | None = None,
) -> float:
    """``v`` as a finite float in [lo, hi]; ``error`` saying what arrived otherwise."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise error(f"{where}: expected a number, got {_kind(v)}")
    x = float(v)
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        raise error(f"{where}: expected a number in [{lo}, {hi}], got {x:g}")
    return x


class CsvRows:
    """The rows of an open CSV with a header: ``header`` (stripped names); iterating yields
    ``(line, row)`` with the row's keys stripped and missing cells ``""``; a row with more
    cells than the header is an :class:`InputError` naming its line."""

    def __init__(self, reader: csv.DictReader[str], where: str) -> None:
        self._reader = reader
        self.where = where
        self.header = [c.strip() for c in (reader.fieldnames or [])]

    def __iter__(self) -> Iterator[tuple[int, dict[str, str]]]:
        for rec in self._reader:
            line = self._reader.line_num
            if None in rec:
                raise InputError(f"{self.where}:{line}: more fields than the header has ({len(self.header)})")
            yield (
                line,
                {k.strip(): (v if isinstance(v, str) else "") for k, v in rec.items() if isinstance(k, str)},
            )


@contextmanager
def open_csv(path: Path | str, *, what: str = "CSV file", delimiter: str = ",") -> Iterator[CsvRows]:
    """A CSV with a header, as :class:`CsvRows`; :class:`InputError` naming the file and line for
    bytes that are not UTF-8, a field over 1 MiB or any other CSV error, raised where it is met."""
    p = Path(path)
    try:
        fh = open(p, encoding="utf-8-sig", newline="")
    except OSError as e:
        raise InputError(f"cannot read {what} {p}: {e.strerror or e}") from None
    old = csv.field_size_limit(MAX_CSV_FIELD)
    reader: csv.DictReader[str] | None = None
    try:
        with fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            yield CsvRows(reader, str(p))
    except UnicodeDecodeError:
        raise InputError(
            f"{what} {p} is not UTF-8 text ({_first_bad_byte(p)}); save it as UTF-8 CSV"
        ) from None
    except csv.Error as e:
        line = reader.line_num if reader is not None else 0
        raise InputError(f"{what} {p} after line {line}: {e}") from None
    finally:
        csv.field_size_limit(old)


def _first_bad_byte(p: Path) -> str:
    """Where the first byte that is not UTF-8 sits in ``p``: "byte b'\\xff' on line 3"."""
    try:
        data = p.read_bytes()
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        return f"byte {data[e.start : e.start + 1]!r} on line {line}"
    except OSError as e:
        return e.strerror or str(e)
    return "its encoding changed while it was read"
