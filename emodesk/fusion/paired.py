"""Paired manifests, the data of the fusion search (docs/formats.md, "Manifests (data)").

A paired manifest is a CSV ``face_path,audio_path,text,label``: one labeled
moment seen by up to three modalities; any of the three may be empty (that
modality is missing, as it often is live). Paths are relative to the CSV's
folder; ``face_path`` is a face crop. Audio files in one folder are taken to
be one speaker's session: the voice member's running normalisation runs over
them together, as the live app runs it over one recording.

Until users record sessions, the only paired data is *pseudo*-paired:
:func:`make_pairs` draws, per label, one face, one utterance and one sentence
with that label from unimodal data (``emodesk fusion pair``).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emodesk.errors import InputError, LabelError
from emodesk.evaluation.datasets import Row, _Labeler, load_rows, resolve_row_path
from emodesk.labels import LABELS
from emodesk.readers import open_csv

COLUMNS = ("face_path", "audio_path", "text", "label")
INPUTS = ("face", "voice", "text")


@dataclass(frozen=True)
class PairedRow:
    """One labeled row; ``face`` and ``audio`` are absolute paths, None where missing."""

    face: str | None
    audio: str | None
    text: str | None
    label: int

    def get(self, modality: str) -> str | None:
        return {"face": self.face, "voice": self.audio, "text": self.text}[modality]


def load_paired_manifest(
    path: Path | str,
    *,
    label_map: Mapping[str, str] | None = None,
    ignore_unknown: bool = False,
    check_files: bool = True,
) -> list[PairedRow]:
    """The rows of a paired CSV; a malformed row raises :class:`InputError` naming its line."""
    p = Path(path)
    lab = _Labeler(label_map, ignore_unknown)
    rows: list[PairedRow] = []
    with open_csv(p, what="paired manifest") as reader:
        fields = reader.header
        if any(c not in fields for c in COLUMNS):
            raise InputError(
                f"paired manifest {p} must have the columns {','.join(COLUMNS)}; it has {fields}"
            )
        try:
            for i, rec in reader:
                paths: dict[str, str | None] = {}
                for col in ("face_path", "audio_path"):
                    value = rec[col].strip()
                    paths[col] = resolve_row_path(p, i, value, check_files, col) if value else None
                text = rec["text"].strip() or None
                if paths["face_path"] is None and paths["audio_path"] is None and text is None:
                    raise InputError(f"{p}:{i}: face_path, audio_path and text are all empty")
                if not rec["label"].strip():
                    raise InputError(f"{p}:{i}: empty label")
                y = lab(rec["label"], f"{p}:{i}")
                if y is not None:
                    rows.append(PairedRow(paths["face_path"], paths["audio_path"], text, y))
        except LabelError as e:
            raise InputError(str(e)) from None
    if not rows:
        raise InputError(f"paired manifest {p} has no usable rows")
    return rows


def make_pairs(
    inputs: Mapping[str, Sequence[Row]], *, per_label: int | None = None, seed: int = 0
) -> list[PairedRow]:
    """Pseudo-paired rows from unimodal rows (``inputs``: modality → rows, at least two).

    For each label present in every input: ``per_label`` rows (default: that
    label's smallest pool across the inputs), each modality drawn from its own
    pool of that label — without replacement until the pool is used up, then a
    fresh seeded permutation of it again. Rows come out in a seeded random order.
    """
    given = {m: list(r) for m, r in inputs.items() if r}
    if unknown := set(given) - set(INPUTS):
        raise ValueError(f"inputs must be among {INPUTS}, got {sorted(unknown)}")
    if len(given) < 2:
        raise InputError("pairing needs at least two of --face, --voice, --text")
    if per_label is not None and per_label < 1:
        raise InputError(f"--per-label must be at least 1, got {per_label}")
    rng = np.random.default_rng(seed)
    pools = {
        m: {y: [r for r in rows if r.label == y] for y in range(len(LABELS))} for m, rows in given.items()
    }
    labels = [y for y in range(len(LABELS)) if all(pools[m][y] for m in given)]
    if not labels:
        raise InputError("no label is present in every input; nothing to pair")
    out: list[PairedRow] = []
    for y in labels:
        n = per_label if per_label is not None else min(len(pools[m][y]) for m in given)
        drawn: dict[str, list[Row]] = {}
        for m in INPUTS:
            if m not in given:
                continue
            pool = pools[m][y]
            order = np.concatenate([rng.permutation(len(pool)) for _ in range(-(-n // len(pool)))])[:n]
            drawn[m] = [pool[i] for i in order]
        for k in range(n):
            face, voice, text = (drawn[m][k].x if m in drawn else None for m in INPUTS)
            out.append(PairedRow(face, voice, text, y))
    return [out[i] for i in rng.permutation(len(out))]


def load_unimodal(source: Path | str, modality: str, *, split: str = "test", **kw: object) -> list[Row]:
    """A unimodal manifest CSV or a dataset folder's ``split`` for one modality of :func:`make_pairs`."""
    column = "text" if modality == "text" else "path"
    return load_rows(source, column=column, split=split, **kw)  # type: ignore[arg-type]


def write_paired_manifest(rows: Sequence[PairedRow], out: Path | str) -> Path:
    """Write ``rows`` as a paired CSV with paths relative to its folder (atomically)."""
    o = Path(out)
    o.parent.mkdir(parents=True, exist_ok=True)
    base = o.parent.resolve()

    def rel(x: str | None) -> str:
        if x is None:
            return ""
        try:
            return Path(os.path.relpath(x, base)).as_posix()
        except ValueError:  # another drive on Windows: no relative path exists
            return Path(x).as_posix()

    tmp = o.with_name(f".{o.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([rel(r.face), rel(r.audio), r.text or "", LABELS[r.label]])
    os.replace(tmp, o)
    return o
