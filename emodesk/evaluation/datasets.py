"""Labeled rows from data manifests and from the dataset folders of ``../shared/datasets``.

One reader for training (``emodesk train``) and evaluation (``emodesk eval``),
so both see the same splits and the same label rules (docs/formats.md,
"Manifests (data)"; the protocols in ``../shared/datasets/README.md``):

- FER-2013 ``{train,val,test}/<class>/*.png``.
- RAVDESS speaker-independent: train actors 01–18, val 19–20, test 21–24;
  calm → neutral. ``group`` is the actor, for speaker-grouped folds.
- GoEmotions (Ekman): train/dev/test TSV. **Rule:** rows with several labels
  are dropped (about 9 %); the README's test split is its single-label rows.
- MELD: the official train file is cut by *dialogue* into our train (90 %)
  and val (10 %, seeded), and the official dev file is our test split (the
  official test file is not in the shared data). ``group`` is the dialogue.
- dair-ai emotion: train/val/test; ``love`` is not one of our labels. **Rule:**
  rows labeled ``love`` are dropped unless ``--label-map love=happy`` says
  otherwise (love is closer to joy, but folding it in would teach that
  affection is happiness; dropping is the honest default).

A manifest is a CSV with a header: ``path,label`` (images, audio) or
``text,label``; paths are relative to the CSV's folder.
"""

from __future__ import annotations

import csv
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from emodesk.errors import InputError, LabelError
from emodesk.labels import LABELS, canonical_label

Split = Literal["train", "val", "test"]
DatasetKind = Literal["fer2013", "ravdess", "goemotions", "meld", "dair-ai"]
_RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "neutral",  # calm → neutral (docs/formats.md aliases)
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fear",
    "07": "disgust",
    "08": "surprise",
}
_RAVDESS_SPLITS: Mapping[str, range] = {
    "train": range(1, 19),
    "val": range(19, 21),
    "test": range(21, 25),
}
_RAVDESS_NAME = re.compile(r"^\d\d-\d\d-(\d\d)-\d\d-\d\d-\d\d-(\d\d)\.(flac|wav)$")
_GOEMOTIONS_IDS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
MELD_VAL_FRACTION = 0.1
MELD_SPLIT_SEED = 0


@dataclass(frozen=True)
class Row:
    """One labeled item: ``x`` is an absolute file path (face, voice) or the text itself."""

    x: str
    label: int
    group: str = ""


def parse_label_map(spec: str | None) -> dict[str, str]:
    """``"a=b,c=d"`` → ``{"a": "b", "c": "d"}`` (keys lower-cased); targets must be canonical labels."""
    out: dict[str, str] = {}
    if not spec:
        return out
    for part in spec.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise InputError(f"--label-map entry {part!r} is not of the form source=target")
        src, dst = (s.strip() for s in part.split("=", 1))
        canonical_label(dst)  # the target must be a label we know
        out[src.lower()] = dst.lower()
    return out


class _Labeler:
    """Label names → canonical indices, with the user's map and the ignore-unknown switch."""

    def __init__(self, label_map: Mapping[str, str] | None, ignore_unknown: bool) -> None:
        self.label_map = dict(label_map or {})
        self.ignore_unknown = ignore_unknown
        self.skipped: dict[str, int] = {}

    def __call__(self, name: str, where: str) -> int | None:
        try:
            return LABELS.index(canonical_label(name, self.label_map))
        except LabelError as e:
            if self.ignore_unknown:
                self.skipped[name] = self.skipped.get(name, 0) + 1
                return None
            raise LabelError(f"{where}: {e}") from None


def dataset_kind(folder: Path) -> DatasetKind | None:
    """Which shared-dataset layout ``folder`` has, or None."""
    f = Path(folder)
    if not f.is_dir():
        return None
    if all((f / s).is_dir() for s in ("train", "test")) and any((f / "test" / c).is_dir() for c in LABELS):
        return "fer2013"
    if any(f.glob("Actor_*")):
        return "ravdess"
    if (f / "test.tsv").is_file() and (f / "labels.txt").is_file():
        return "goemotions"
    if (f / "train_sent_emo.csv").is_file():
        return "meld"
    if (f / "test.txt").is_file() and (f / "train.txt").is_file():
        return "dair-ai"
    return None


def load_split(
    folder: Path | str,
    split: Split,
    *,
    label_map: Mapping[str, str] | None = None,
    ignore_unknown: bool = False,
) -> list[Row]:
    """The rows of one split of a dataset folder (see the module docstring for the rules)."""
    f = Path(folder)
    kind = dataset_kind(f)
    if kind is None:
        raise InputError(
            f"{f} is not a dataset folder this version knows (FER-2013, RAVDESS, GoEmotions, "
            "MELD, dair-ai emotion layouts; see ../shared/datasets/README.md); pass a manifest CSV"
        )
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    lab = _Labeler(label_map, ignore_unknown)
    readers = {
        "fer2013": _fer,
        "ravdess": _ravdess,
        "goemotions": _goemotions,
        "meld": _meld,
        "dair-ai": _dair,
    }
    rows = readers[kind](f, split, lab)
    if not rows:
        raise InputError(f"{f} ({kind}) has no rows in its {split} split")
    return rows


def _fer(f: Path, split: Split, lab: _Labeler) -> list[Row]:
    rows: list[Row] = []
    for d in sorted((f / split).iterdir()) if (f / split).is_dir() else []:
        if not d.is_dir():
            continue
        y = lab(d.name, str(d))
        if y is None:
            continue
        rows += [
            Row(str(p.resolve()), y) for p in sorted(d.iterdir()) if p.suffix.lower() in (".png", ".jpg")
        ]
    return rows


def ravdess_label(name: str) -> tuple[str, int]:
    """(canonical label, actor number) from a RAVDESS file name ``03-01-EE-II-SS-RR-AA.flac``."""
    m = _RAVDESS_NAME.match(name)
    if not m or m.group(1) not in _RAVDESS_EMOTIONS:
        raise InputError(f"{name} is not a RAVDESS speech file name (03-01-EE-II-SS-RR-AA.flac)")
    return _RAVDESS_EMOTIONS[m.group(1)], int(m.group(2))


def _ravdess(f: Path, split: Split, lab: _Labeler) -> list[Row]:
    rows: list[Row] = []
    actors = _RAVDESS_SPLITS[split]
    for p in sorted(f.glob("Actor_*/*")):
        if p.suffix.lower() not in (".flac", ".wav"):
            continue
        name, actor = ravdess_label(p.name)
        if actor in actors:
            y = lab(name, str(p))
            if y is not None:
                rows.append(Row(str(p.resolve()), y, f"actor{actor:02d}"))
    return rows


def _goemotions(f: Path, split: Split, lab: _Labeler) -> list[Row]:
    names = [ln.strip() for ln in (f / "labels.txt").read_text(encoding="utf-8").splitlines() if ln.strip()]
    file = f / {"train": "train.tsv", "val": "dev.tsv", "test": "test.tsv"}[split]
    rows: list[Row] = []
    with open(file, encoding="utf-8", newline="") as fh:
        for i, rec in enumerate(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            if len(rec) < 2:
                raise InputError(f"{file}:{i}: expected text<TAB>label ids, got {rec!r}")
            ids = [s for s in rec[1].split(",") if s.strip()]
            if len(ids) != 1:
                continue  # several labels: dropped (module docstring)
            y = lab(names[int(ids[0])], f"{file}:{i}")
            if y is not None:
                rows.append(Row(rec[0], y, rec[2] if len(rec) > 2 else ""))
    return rows


def clean_meld_text(text: str) -> str:
    """Undo MELD's mis-encoded punctuation (``’`` for ’, …) so the tokenizer sees words."""
    try:
        fixed = text.encode("cp1252").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        fixed = text
    for bad, good in (("\u2019", "'"), ("\u2018", "'"), ("\u201c", '"'), ("\u201d", '"'), ("\u2026", "...")):
        fixed = fixed.replace(bad, good)
    fixed = fixed.replace("\x92", "'").replace("\x97", "-").replace("\x85", "...")
    return " ".join(fixed.split())


def _meld(f: Path, split: Split, lab: _Labeler) -> list[Row]:
    file = f / ("dev_sent_emo.csv" if split == "test" else "train_sent_emo.csv")
    rows: list[Row] = []
    with open(file, encoding="utf-8", newline="") as fh:
        for i, rec in enumerate(csv.DictReader(fh), start=2):
            y = lab(rec["Emotion"], f"{file}:{i}")
            if y is not None:
                rows.append(Row(clean_meld_text(rec["Utterance"]), y, f"dialogue{rec['Dialogue_ID']}"))
    if split == "test":
        return rows
    dialogues = sorted({r.group for r in rows})
    random.Random(MELD_SPLIT_SEED).shuffle(dialogues)
    val = set(dialogues[: round(len(dialogues) * MELD_VAL_FRACTION)])
    return [r for r in rows if (r.group in val) == (split == "val")]


def _dair(f: Path, split: Split, lab: _Labeler) -> list[Row]:
    file = f / f"{split}.txt"
    rows: list[Row] = []
    for i, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        text, _, name = line.rpartition(";")
        if name.strip() == "love" and "love" not in lab.label_map:
            continue  # dropped by default (module docstring)
        y = lab(name, f"{file}:{i}")
        if y is not None:
            rows.append(Row(text, y))
    return rows


def resolve_row_path(manifest: Path, line: int, value: str, check: bool, column: str = "file") -> str:
    """A manifest cell's path made absolute (relative to the CSV's folder); an error names the row."""
    fp = Path(value.strip())
    fp = fp if fp.is_absolute() else manifest.parent / fp
    if check and not fp.is_file():
        raise InputError(f"{manifest}:{line}: {column} {value.strip()} not found (looked at {fp})")
    return str(fp.resolve())


def load_manifest(
    path: Path | str,
    *,
    column: Literal["path", "text"],
    label_map: Mapping[str, str] | None = None,
    ignore_unknown: bool = False,
    check_files: bool = True,
) -> list[Row]:
    """Rows of a ``path,label`` or ``text,label`` CSV; errors name the row."""
    p = Path(path)
    lab = _Labeler(label_map, ignore_unknown)
    try:
        fh = open(p, encoding="utf-8-sig", newline="")
    except OSError as e:
        raise InputError(f"cannot read manifest {p}: {e.strerror or e}") from None
    rows: list[Row] = []
    with fh:
        reader = csv.DictReader(fh)
        fields = [c.strip() for c in reader.fieldnames or []]
        if column not in fields or "label" not in fields:
            raise InputError(f"manifest {p} must have the columns {column},label; it has {fields}")
        for i, rec in enumerate(reader, start=2):
            rec = {k.strip(): (v or "") for k, v in rec.items() if k is not None}
            value = rec[column]
            if column == "path":
                if not value.strip():
                    raise InputError(f"{p}:{i}: empty path")
                value = resolve_row_path(p, i, value, check_files)
            y = lab(rec["label"], f"{p}:{i}")
            if y is not None:
                rows.append(Row(value, y, rec.get("group", "")))
    if not rows:
        raise InputError(f"manifest {p} has no usable rows")
    return rows


def load_rows(
    source: Path | str,
    *,
    column: Literal["path", "text"],
    split: Split = "test",
    label_map: Mapping[str, str] | None = None,
    ignore_unknown: bool = False,
) -> list[Row]:
    """A manifest CSV, or a dataset folder's ``split`` (``eval`` takes the test split)."""
    s = Path(source)
    if s.is_dir():
        return load_split(s, split, label_map=label_map, ignore_unknown=ignore_unknown)
    return load_manifest(s, column=column, label_map=label_map, ignore_unknown=ignore_unknown)
