"""Paired manifests, the data of the fusion search (docs/formats.md, "Manifests (data)").

A paired manifest is a CSV ``face_path,audio_path,text,label``: one labeled
moment seen by up to three modalities; any of the three may be empty (that
modality is missing, as it often is live). Paths are relative to the CSV's
folder; ``face_path`` is a face crop. Audio files in one folder are taken to
be one speaker's session: the voice member's running normalisation runs over
them together, as the live app runs it over one recording.

Until users record sessions, the only paired data is *pseudo*-paired:
:func:`make_pairs` draws, per label, one face, one utterance and one sentence
with that label from unimodal data (``emodesk fusion pair``), and
:func:`apply_mix` then blanks modalities so rows have the presence patterns of
live moments in given proportions (:data:`LIVE_MIX`).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emodesk.errors import InputError, LabelError
from emodesk.evaluation.datasets import Row, _Labeler, earlier_in_group, load_rows, resolve_row_path
from emodesk.inference.utterance_scorers import MAX_CONTEXT  # earlier utterances kept per row
from emodesk.labels import LABELS
from emodesk.readers import open_csv

COLUMNS = ("face_path", "audio_path", "text", "label")
CONTEXT_COLUMN = "text_context"  # optional: JSON list of the earlier utterances, most recent first
INPUTS = ("face", "voice", "text")


@dataclass(frozen=True)
class PairedRow:
    """One labeled row; ``face`` and ``audio`` are absolute paths, None where missing.
    ``text_context``: the utterances said before ``text`` in the same stream (dialogue), most recent
    first, for a text member that reads context."""

    face: str | None
    audio: str | None
    text: str | None
    label: int
    text_context: tuple[str, ...] = ()

    def get(self, modality: str) -> str | None:
        return {"face": self.face, "voice": self.audio, "text": self.text}[modality]


LIVE_MIX: dict[str, float] = {
    "face+voice+text": 0.50,
    "face+voice": 0.10,
    "voice+text": 0.15,
    "face": 0.20,
    "voice": 0.05,
}
"""The presence patterns of a live moment, in assumed proportions (docs/formats.md, "Manifests
(data)"): all three; speech whose transcript is untrusted or empty (face and voice); speech with no
face found (turned away, out of frame, occluded); silence (the face alone); speech with neither a
face nor a trusted transcript. Text comes from the voice's transcript, so face with text but no
voice does not occur live. The proportions are a stated assumption, not a measurement; per-pattern
results are reported beside the mix so any other mix can be weighed from them."""
MIXES = {"all": {"face+voice+text": 1.0}, "live": LIVE_MIX}


def parse_mix(value: str | Mapping[str, float]) -> dict[str, float]:
    """A presence mix: a name of :data:`MIXES` or ``PATTERN=FRACTION,…`` (patterns like ``face+voice``),
    fractions non-negative and summing to 1."""
    if isinstance(value, str):
        if value in MIXES:
            return dict(MIXES[value])
        mix: dict[str, float] = {}
        for part in value.split(","):
            pattern, eq, number = part.partition("=")
            if not eq:
                raise InputError(
                    f"--mix {value!r}: expected {' or '.join(MIXES)} or PATTERN=FRACTION,… "
                    "(for example face+voice+text=0.6,face=0.4)"
                )
            try:
                mix[pattern.strip()] = float(number)
            except ValueError:
                raise InputError(f"--mix: {number!r} is not a number") from None
    else:
        mix = dict(value)
    out: dict[str, float] = {}
    for pattern, frac in mix.items():
        mods = [m.strip() for m in pattern.split("+")]
        if not mods or any(m not in INPUTS for m in mods) or len(set(mods)) != len(mods):
            raise InputError(f"--mix: {pattern!r} is not a '+'-joined set of {', '.join(INPUTS)}")
        if not (frac >= 0 and np.isfinite(frac)):
            raise InputError(f"--mix: the fraction of {pattern} must be a non-negative number, got {frac}")
        key = "+".join(m for m in INPUTS if m in mods)
        if key in out:
            raise InputError(f"--mix names {key} twice")
        out[key] = float(frac)
    if abs(sum(out.values()) - 1.0) > 1e-6:
        raise InputError(f"--mix fractions must sum to 1, they sum to {sum(out.values()):g}")
    return out


def pattern_of(row: PairedRow) -> str:
    """The row's presence pattern, ``face+voice+text`` or a part of it."""
    return "+".join(m for m in INPUTS if row.get(m) is not None)


def apply_mix(rows: Sequence[PairedRow], mix: Mapping[str, float], *, seed: int = 0) -> list[PairedRow]:
    """``rows`` with modalities blanked so their presence patterns follow ``mix``, label by label.

    Within each label, the rows (in their order) are dealt to the patterns by largest remainder,
    in a seeded random order, so every label gets the mix's proportions; a row keeps only the
    modalities of its pattern. A pattern needing a modality that no row of the label has is an error.
    """
    mix = parse_mix(mix)
    rng = np.random.default_rng(seed)
    patterns = [p for p, f in mix.items() if f > 0]
    fracs = np.array([mix[p] for p in patterns])
    fracs = fracs / fracs.sum()  # parse_mix allows 1 ± 1e-6; the counts below must add up exactly
    out = list(rows)
    for y in sorted({r.label for r in rows}):
        idx = [i for i, r in enumerate(rows) if r.label == y]
        want = fracs * len(idx)
        counts = np.minimum(np.floor(want).astype(int), len(idx))
        # equal remainders are broken at random (a generator of their own, so the dealing below is
        # the same whatever the ties), not always toward the first pattern of the mix
        ties = np.random.default_rng([seed, y, 1]).random(len(patterns))
        for k in np.lexsort((ties, -(want - counts)))[: len(idx) - counts.sum()]:
            counts[k] += 1
        assigned = np.repeat(np.arange(len(patterns)), counts)[rng.permutation(len(idx))]
        for i, k in zip(idx, assigned, strict=True):
            keep = set(patterns[k].split("+"))
            r = rows[i]
            if any(r.get(m) is None for m in keep):
                raise InputError(f"--mix: pattern {patterns[k]} needs a modality the {LABELS[y]} rows lack")
            out[i] = PairedRow(
                r.face if "face" in keep else None,
                r.audio if "voice" in keep else None,
                r.text if "text" in keep else None,
                r.label,
                r.text_context if "text" in keep else (),
            )
    return out


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
                context = _read_context(rec.get(CONTEXT_COLUMN) or "", f"{p}:{i}") if text else ()
                if y is not None:
                    rows.append(PairedRow(paths["face_path"], paths["audio_path"], text, y, context))
        except LabelError as e:
            raise InputError(str(e)) from None
    if not rows:
        raise InputError(f"paired manifest {p} has no usable rows")
    return rows


def _read_context(cell: str, where: str) -> tuple[str, ...]:
    """A ``text_context`` cell: empty, or a JSON list of strings (most recent first)."""
    if not cell.strip():
        return ()
    try:
        value = json.loads(cell)
    except ValueError:
        value = None
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise InputError(f"{where}: {CONTEXT_COLUMN} must be a JSON list of strings, got {cell[:60]!r}")
    return tuple(value[:MAX_CONTEXT])


def make_pairs(
    inputs: Mapping[str, Sequence[Row]], *, per_label: int | None = None, seed: int = 0
) -> list[PairedRow]:
    """Pseudo-paired rows from unimodal rows (``inputs``: modality → rows, at least two).

    For each label present in every input: ``per_label`` rows (default: that
    label's smallest pool across the inputs), each modality drawn from its own
    pool of that label — without replacement until the pool is used up, then a
    fresh seeded permutation of it again. Rows come out in a seeded random order. A text row drawn
    from a dialogue (rows with a ``group``, in dialogue order) brings the dialogue's earlier
    utterances as its ``text_context``.
    """
    given = {m: list(r) for m, r in inputs.items() if r}
    if unknown := set(given) - set(INPUTS):
        raise ValueError(f"inputs must be among {INPUTS}, got {sorted(unknown)}")
    if len(given) < 2:
        raise InputError("pairing needs at least two of --face, --voice, --text")
    if per_label is not None and per_label < 1:
        raise InputError(f"--per-label must be at least 1, got {per_label}")
    rng = np.random.default_rng(seed)
    context: dict[int, tuple[str, ...]] = {}
    if "text" in given:
        rows = given["text"]
        context = {id(r): tuple(c) for r, c in zip(rows, earlier_in_group(rows, MAX_CONTEXT), strict=True)}
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
            ctx = context.get(id(drawn["text"][k]), ()) if "text" in drawn else ()
            out.append(PairedRow(face, voice, text, y, ctx))
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
    with_context = any(r.text_context for r in rows)
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow((*COLUMNS, CONTEXT_COLUMN) if with_context else COLUMNS)
        for r in rows:
            cells = [rel(r.face), rel(r.audio), r.text or "", LABELS[r.label]]
            if with_context:
                cells.append(json.dumps(list(r.text_context), ensure_ascii=False) if r.text_context else "")
            w.writerow(cells)
    os.replace(tmp, o)
    return o
