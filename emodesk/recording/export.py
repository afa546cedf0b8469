"""``emodesk sessions export``: a session's labeled data as the project's manifests.

Into ``OUT``: ``faces/*.png`` + ``faces.csv`` (``path,label,group``: face crops
every ``face_every`` seconds inside labeled spans, cut around the largest face
the live face path found, the way the live crop is cut), ``voice/*.wav`` +
``voice.csv`` (each final utterance with a label at its midpoint, 16 kHz mono),
``text.csv`` (``text,label,group``: its words) and ``paired.csv``
(``face_path,audio_path,text,label,text_context``: per labeled utterance, the face nearest
its midpoint, its audio, its words and the trusted transcripts before them that the live
app gives a context-reading text member — the paired format of ``emodesk fusion``).
``group`` is the session id, so folds split by session. Unlabeled time is left out.
"""

from __future__ import annotations

import bisect
import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emodesk import imaging, private
from emodesk.errors import InputError
from emodesk.fusion.paired import COLUMNS as PAIRED_COLUMNS
from emodesk.fusion.paired import CONTEXT_COLUMN
from emodesk.inference.utterance_scorers import MAX_CONTEXT, context_before
from emodesk.recording import files
from emodesk.recording.format import SAMPLE_RATE, read_session_json
from emodesk.recording.session import iter_video, read_audio, read_labels, read_records
from emodesk.recording.writer import labels_at

CROP_SCALE, CROP_SHIFT_Y, CROP_MAX = 1.2, -0.05, 160
FACE_NEAR_S = 0.25  # a face record this close in time to a sample counts
MIN_FACE_EVERY, MAX_FACE_EVERY = 0.02, 3600.0


@dataclass
class ExportSummary:
    faces: int = 0
    utterances: int = 0
    paired: int = 0
    out: Path | None = None


def _crop(image: np.ndarray, box: list[float]) -> np.ndarray:
    x, y, w, h = box
    # a box from a hostile or broken scores.jsonl can be any size: the crop never exceeds twice the
    # frame (a real face box lies inside it), so it cannot ask for terabytes
    limit = 2 * max(image.shape[:2])
    side = max(1, min(limit, round(max(w, h) * CROP_SCALE)))
    patch = imaging.crop_square(image, x + w / 2, y + h / 2 + CROP_SHIFT_Y * max(w, h), side)
    if side > CROP_MAX:
        patch = imaging.resize(patch, (CROP_MAX, CROP_MAX))
    return np.ascontiguousarray(patch)


def export_session(folder: Path | str, out: Path | str, *, face_every: float = 0.5) -> ExportSummary:
    f, o = Path(folder), Path(out)
    if not MIN_FACE_EVERY <= face_every <= MAX_FACE_EVERY:  # NaN fails too
        raise InputError(
            f"--face-every must be between {MIN_FACE_EVERY} and {MAX_FACE_EVERY:g} seconds, got {face_every}"
        )
    try:
        doc = read_session_json(f)
    except (OSError, ValueError) as e:
        raise InputError(f"{f} is not a readable session ({e}); try emodesk sessions repair") from None
    sid = files.safe_name(str(doc.get("id", f.name)))
    changes = read_labels(f)
    if not any(c.get("label") for c in changes):
        raise InputError(
            f"{f} has no labels to export; label it first: emodesk sessions label "
            f"{f} LABEL --from S --to S|end (or keys 1–7 while recording in the window)"
        )
    records = read_records(f)
    faces = sorted(
        ((float(r["t"]), r["box"]) for r in records if r.get("kind") == "face" and r.get("box")),
        key=lambda x: x[0],
    )
    # the largest face per frame time
    best: dict[float, list[float]] = {}
    for t, box in faces:
        if t not in best or box[2] * box[3] > best[t][2] * best[t][3]:
            best[t] = box
    face_ts = sorted(best)
    utterances = [r for r in records if r.get("kind") == "transcript" and not r.get("partial")]
    end = max([float(r["t"]) for r in records] or [0.0])

    def face_near(t: float) -> float | None:
        i = bisect.bisect_left(face_ts, t)
        near = [face_ts[j] for j in (i - 1, i) if 0 <= j < len(face_ts)]
        if not near:
            return None
        ft = min(near, key=lambda x: abs(x - t))
        return ft if abs(ft - t) <= FACE_NEAR_S else None

    # which frame times we want: face samples every face_every seconds in labeled spans. The sample
    # times are a grid from the first label change; only grid points near a face record matter, so
    # they are found from the faces (at most a few per face): no loop runs over empty time, however
    # far apart the times in a hostile file are.
    wanted: dict[float, tuple[str, str]] = {}  # face record time → (label, purpose)
    lo = float(changes[0]["t"])
    grid: set[int] = set()
    for ft in face_ts:
        k0 = math.ceil((ft - FACE_NEAR_S - lo) / face_every)
        k1 = math.floor((ft + FACE_NEAR_S - lo) / face_every)
        grid.update(range(max(k0, 0), k1 + 1))
    for k in sorted(grid):
        t = lo + k * face_every
        if t > end:
            break
        lab = labels_at(changes, t)
        near = face_near(t) if lab else None
        if lab and near is not None:
            wanted.setdefault(near, (lab, "face"))
    utt_face: dict[int, float] = {}
    for k, u in enumerate(utterances):
        mid = (float(u["t0"]) + float(u["t1"])) / 2
        near = face_near(mid)
        if near is not None and labels_at(changes, mid):
            utt_face[k] = near
            wanted.setdefault(near, (str(labels_at(changes, mid)), "paired"))

    for sub in ("faces", "voice"):
        private.make_dirs(o / sub)
    summary = ExportSummary(out=o)
    saved: dict[float, str] = {}
    times = sorted(wanted)
    if times:
        privacy = doc.get("privacy") == "face-crops"
        j = 0
        for vt, image in iter_video(f):
            while j < len(times) and times[j] < vt - 0.02:
                j += 1  # no frame that close: skip this sample
            if j >= len(times):
                break
            if abs(times[j] - vt) <= 0.02:
                ft = times[j]
                crop = image if privacy else _crop(image, best[ft])
                name = f"faces/{sid}-{ft:09.3f}.png"
                private.restrict(imaging.write_png(o / name, crop))
                saved[ft] = name
                j += 1
    rows_faces = [(saved[ft], wanted[ft][0]) for ft in sorted(saved) if wanted[ft][1] == "face"]
    audio, a_start = read_audio(f)
    rows_voice: list[tuple[str, str]] = []
    rows_text: list[tuple[str, str]] = []
    rows_paired: list[tuple[str, str, str, str, str]] = []
    said: list[tuple[float, float, str]] = []  # trusted transcripts so far: a text member's context
    for k, u in enumerate(utterances):
        t0, t1 = float(u["t0"]), float(u["t1"])
        lab = labels_at(changes, (t0 + t1) / 2)
        # the words of a transcript the recogniser doubted are not training text, nor context
        text = str(u.get("text", "")).strip() if u.get("trusted", True) is not False else ""
        before = [w for _, w in context_before(said, t0)][:MAX_CONTEXT]
        if text:
            said.append((t0, t1, text))
        if not lab:
            continue
        audio_name = ""
        if a_start is not None:
            i0, i1 = max(0, round((t0 - a_start) * SAMPLE_RATE)), round((t1 - a_start) * SAMPLE_RATE)
            if i1 - i0 > SAMPLE_RATE // 10 and i1 <= len(audio):
                audio_name = f"voice/{sid}-{k:04d}.wav"
                files.write_wav(o / audio_name, audio[i0:i1])
                rows_voice.append((audio_name, lab))
        if text:
            rows_text.append((text, lab))
        face_name = saved.get(utt_face.get(k, -1.0), "")
        if sum(bool(x) for x in (face_name, audio_name, text)) >= 1:
            context = json.dumps(before, ensure_ascii=False) if text and before else ""
            rows_paired.append((face_name, audio_name, text, lab, context))
    _write_csv(o / "faces.csv", ("path", "label", "group"), [(*r, sid) for r in rows_faces])
    _write_csv(o / "voice.csv", ("path", "label", "group"), [(*r, sid) for r in rows_voice])
    _write_csv(o / "text.csv", ("text", "label", "group"), [(*r, sid) for r in rows_text])
    _write_csv(o / "paired.csv", (*PAIRED_COLUMNS, CONTEXT_COLUMN), rows_paired)
    summary.faces, summary.utterances, summary.paired = len(rows_faces), len(rows_voice), len(rows_paired)
    return summary


def _write_csv(path: Path, header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with private.open_private(tmp, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)
