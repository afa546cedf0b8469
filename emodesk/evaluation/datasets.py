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
- TESS (two speakers, ``manifest.csv``): extra *training* data only, never a
  test of speaker independence. **Rule:** val is every clip of a seeded 10 % of
  its 200 words (both speakers, all emotions), train the rest; it has no test
  split. ``group`` is the speaker.
- URDU (``manifest.csv``, four labels): a *cross-corpus check only*: its test
  split is all 400 clips, and it has no train or val split, so nothing can be
  trained or selected on it. ``group`` is the speaker.
- FER+ (``fer2013_to_ferplus.csv`` beside the FER-2013 folder): the FER-2013
  images of each split labelled by the majority of their ten crowd votes
  (``ferplus_majority_7``); images whose majority is contempt, unknown or not
  a face are left out. :func:`ferplus_votes` gives the vote distributions
  (soft targets) for training.

A manifest is a CSV with a header: ``path,label`` (images, audio) or
``text,label``; paths are relative to the CSV's folder; an optional ``group``
(or ``speaker``) column names the session a row belongs to (``eval voice``
scores each group as one session).
"""

from __future__ import annotations

import csv
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from emodesk.errors import InputError, LabelError
from emodesk.labels import LABELS, canonical_label
from emodesk.readers import open_csv

Split = Literal["train", "val", "test"]
DatasetKind = Literal["fer2013", "ravdess", "goemotions", "meld", "dair-ai", "tess", "urdu", "ferplus"]
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
TESS_VAL_FRACTION = 0.1
TESS_SPLIT_SEED = 0
FERPLUS_CSV = "fer2013_to_ferplus.csv"
#: the FER+ vote columns in our label order (contempt, unknown and NF are not among them)
FERPLUS_VOTES = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")


@dataclass(frozen=True)
class Row:
    """One labeled item: ``x`` is an absolute file path (face, voice) or the text itself."""

    x: str
    label: int
    group: str = ""


def earlier_in_group(rows: Sequence[Row], n: int) -> list[list[str]]:
    """For each row, the texts of at most ``n`` earlier rows of its group, most recent first: the
    dialogue so far, as a live session gives a text member the earlier transcripts of its stream.
    ``rows`` are in dialogue order; a row without a group has none."""
    out: list[list[str]] = []
    said: dict[str, list[str]] = {}
    for r in rows:
        before = said.setdefault(r.group, []) if r.group else []
        out.append(before[::-1][:n] if n > 0 else [])
        if r.group:
            before.append(r.x)
    return out


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
    if (f / FERPLUS_CSV).is_file():
        return "ferplus"
    if (f / "manifest.csv").is_file() and (f / "OAF").is_dir() and (f / "YAF").is_dir():
        return "tess"
    if (f / "manifest.csv").is_file() and f.name.lower() == "urdu":
        return "urdu"
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
            f"{f} is not a dataset folder this version knows (FER-2013, FER+, RAVDESS, TESS, URDU, "
            "GoEmotions, MELD, dair-ai emotion layouts; see ../shared/datasets/README.md); pass a "
            "manifest CSV"
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
        "tess": _tess,
        "urdu": _urdu,
        "ferplus": _ferplus,
    }
    try:
        rows = readers[kind](f, split, lab)
    except UnicodeDecodeError as e:
        raise InputError(f"{f} ({kind}): a file is not UTF-8 text (byte {e.start}): {e.reason}") from None
    except (csv.Error, KeyError, IndexError, ValueError) as e:
        raise InputError(
            f"{f} ({kind}): its files are not in the {kind} layout ({type(e).__name__}: {e}); "
            "see ../shared/datasets/README.md, or pass a manifest CSV"
        ) from None
    except OSError as e:
        raise InputError(f"{f} ({kind}): cannot read {e.filename}: {e.strerror or e}") from None
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


def _speaker_manifest(f: Path, lab: _Labeler) -> list[Row]:
    return load_manifest(
        f / "manifest.csv", column="path", label_map=lab.label_map, ignore_unknown=lab.ignore_unknown
    )


def _tess(f: Path, split: Split, lab: _Labeler) -> list[Row]:
    if split == "test":
        raise InputError(
            f"{f} (TESS) has no test split: two speakers cannot test speaker independence; it is "
            "extra training data (../shared/datasets/README.md)"
        )
    rows = _speaker_manifest(f, lab)
    words = sorted({_tess_word(r.x) for r in rows})
    random.Random(TESS_SPLIT_SEED).shuffle(words)
    val = set(words[: round(len(words) * TESS_VAL_FRACTION)])
    return [r for r in rows if (_tess_word(r.x) in val) == (split == "val")]


def _tess_word(path: str) -> str:
    """``OAF_back_angry.flac`` → ``back``: the word a TESS clip says."""
    parts = Path(path).stem.split("_")
    if len(parts) < 3:
        raise InputError(f"{path} is not a TESS file name (SPEAKER_word_emotion)")
    return "_".join(parts[1:-1])


def _urdu(f: Path, split: Split, lab: _Labeler) -> list[Row]:
    if split != "test":
        raise InputError(
            f"{f} (URDU) is a cross-corpus check only: it has no {split} split, so nothing is "
            "trained or selected on it (../shared/datasets/README.md)"
        )
    return _speaker_manifest(f, lab)


def _ferplus_records(f: Path, split: Split) -> list[dict[str, str]]:
    images = f.parent / "fer2013"
    if not (images / split).is_dir():
        raise InputError(f"{f}: FER+ labels the FER-2013 images, expected beside it in {images}")
    try:
        with open(f / FERPLUS_CSV, encoding="utf-8", newline="") as fh:
            return [rec for rec in csv.DictReader(fh) if rec["split"] == split]
    except (OSError, UnicodeDecodeError, KeyError, csv.Error) as e:
        raise InputError(f"{f / FERPLUS_CSV} is unreadable: {e}") from None


def _ferplus_path(f: Path, rec: Mapping[str, str]) -> str:
    return str((f.parent / "fer2013" / rec["split"] / rec["our_class"] / rec["our_file"]).resolve())


def _ferplus(f: Path, split: Split, lab: _Labeler) -> list[Row]:
    rows: list[Row] = []
    for i, rec in enumerate(_ferplus_records(f, split), start=2):
        name = rec.get("ferplus_majority_7", "").strip()
        if not name:
            continue  # contempt, unknown or not a face: left out (module docstring)
        y = lab(name, f"{f / FERPLUS_CSV}:{i}")
        if y is not None:
            rows.append(Row(_ferplus_path(f, rec), y))
    return rows


def ferplus_votes(
    folder: Path | str, split: Split, *, min_emotion_share: float = 0.5
) -> list[tuple[str, list[float]]]:
    """(image path, vote distribution over our seven labels) for every FER+ image of ``split`` whose
    votes are mostly emotions: at least ``min_emotion_share`` of its ten votes on one of the seven
    (not contempt, unknown or not-a-face). The soft targets of training on FER+."""
    f = Path(folder)
    out: list[tuple[str, list[float]]] = []
    for rec in _ferplus_records(f, split):
        try:
            votes = [float(rec[k] or 0) for k in FERPLUS_VOTES]
            total = sum(float(rec[k] or 0) for k in (*FERPLUS_VOTES, "contempt", "unknown", "NF"))
        except (KeyError, ValueError) as e:
            raise InputError(f"{f / FERPLUS_CSV}: bad vote cell: {e}") from None
        emotion = sum(votes)
        if total <= 0 or emotion / total < min_emotion_share:
            continue
        out.append((_ferplus_path(f, rec), [v / emotion for v in votes]))
    return out


def resolve_row_path(manifest: Path, line: int, value: str, check: bool, column: str = "file") -> str:
    """A manifest cell's path made absolute (relative to the CSV's folder); an error names the row."""
    if "\0" in value:
        raise InputError(f"{manifest}:{line}: {column} holds a NUL byte, which no file name can")
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
    rows: list[Row] = []
    with open_csv(p, what="manifest") as reader:
        fields = reader.header
        if column not in fields or "label" not in fields:
            raise InputError(f"manifest {p} must have the columns {column},label; it has {fields}")
        for i, rec in reader:
            value = rec[column]
            if column == "path":
                if not value.strip():
                    raise InputError(f"{p}:{i}: empty path")
                value = resolve_row_path(p, i, value, check_files)
            y = lab(rec["label"], f"{p}:{i}")
            if y is not None:
                rows.append(Row(value, y, rec.get("group") or rec.get("speaker", "")))
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
