"""How much of an input's time each emotion took, from its records (docs/formats.md, "Emotion
summary"): what a newcomer asks first of a clip.

Every reading counts for the time it held, and no longer than :data:`HOLD_S`:

- **fused**: each fused row until the next one (the fusion emits one per media second and one
  after each utterance score); per track too, the rows that name one;
- **face**: each face track's frames until its next scored frame (the last for the track's frame
  interval), the members' mean per frame;
- **voice**, **text**: each utterance for its length, the members' mean (a transcript the
  recogniser doubts is counted apart as ``untrusted`` and left out of the text shares).

A label's share is its seconds over the modality's seconds; all seven labels are always listed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from emodesk.labels import LABELS, probs_vector

HOLD_S = 1.0


def _shares(seconds: np.ndarray) -> dict[str, Any]:
    total = float(seconds.sum())
    share = seconds / total if total > 0 else np.zeros(len(LABELS))
    top = LABELS[int(np.argmax(seconds))] if total > 0 else None
    return {
        "seconds": round(total, 3),
        "top": top,
        "share": {lab: round(float(s), 4) for lab, s in zip(LABELS, share, strict=True)},
    }


def _held(times: list[float], end: float | None, *, last: float | None = None) -> list[float]:
    """How long each reading at ``times`` (sorted) held: until the next, at most HOLD_S; the last
    one until ``end`` (the media's end), or for ``last`` seconds when given (a frame's interval)."""
    out = []
    for i, t in enumerate(times):
        if i + 1 < len(times):
            nxt = times[i + 1]
        elif last is not None:
            nxt = t + last
        else:
            nxt = end if end is not None and end > t else t + HOLD_S
        out.append(min(max(nxt - t, 0.0), HOLD_S))
    return out


class EmotionTally:
    """The emotion summary built record by record, as ``analyze`` writes them (:meth:`add`), so
    nobody reads the output again to learn it; :meth:`result` gives it."""

    def __init__(self) -> None:
        self._fused: list[tuple[float, Any, np.ndarray]] = []
        self._face: dict[Any, dict[float, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
        self._voice: dict[tuple[float, float], list[np.ndarray]] = defaultdict(list)
        self._text: dict[tuple[float, float], list[np.ndarray]] = defaultdict(list)
        self._untrusted: set[tuple[float, float]] = set()

    def add(self, r: Mapping[str, Any]) -> None:
        kind, v, t = r.get("kind"), probs_vector(r.get("probs")), r.get("t")
        if v is None or not isinstance(t, (int, float)) or isinstance(t, bool):
            return
        if kind == "fused":
            self._fused.append((float(t), r.get("track"), v))
        elif kind == "face":
            self._face[r.get("track")][float(t)].append(v)
        elif kind in ("voice", "text"):
            t0, t1 = r.get("t0"), r.get("t1")
            if not isinstance(t0, (int, float)) or not isinstance(t1, (int, float)) or t1 < t0:
                return
            span = (float(t0), float(t1))
            if kind == "text" and r.get("trusted") is False:
                self._untrusted.add(span)
                return
            (self._voice if kind == "voice" else self._text)[span].append(v)

    def result(self, media_end: float | None = None) -> dict[str, Any]:
        """The share of time per label, per modality, and per face track (fused and face)."""
        out: dict[str, Any] = {}
        fused = sorted(self._fused, key=lambda x: x[0])
        secs = np.zeros(len(LABELS))
        by_track: dict[Any, np.ndarray] = defaultdict(lambda: np.zeros(len(LABELS)))
        for (_t, track, v), held in zip(fused, _held([f[0] for f in fused], media_end), strict=True):
            k = int(np.argmax(v))
            secs[k] += held
            if track is not None:
                by_track[track][k] += held
        out["fused"] = {
            **_shares(secs),
            "by_track": {str(k): _shares(s) for k, s in sorted(by_track.items())},
        }

        secs = np.zeros(len(LABELS))
        tracks: dict[str, Any] = {}
        for track, frames in sorted(self._face.items(), key=lambda kv: str(kv[0])):
            times = sorted(frames)
            step = float(np.median(np.diff(times))) if len(times) > 1 else None  # the track's frame interval
            s = np.zeros(len(LABELS))
            for t, held in zip(times, _held(times, media_end, last=step), strict=True):
                s[int(np.argmax(np.mean(frames[t], axis=0)))] += held
            tracks[str(track)] = _shares(s)
            secs += s
        out["face"] = {**_shares(secs), "by_track": tracks}

        for kind, utts in (("voice", self._voice), ("text", self._text)):
            secs = np.zeros(len(LABELS))
            for (t0, t1), vs in utts.items():
                secs[int(np.argmax(np.mean(vs, axis=0)))] += t1 - t0
            out[kind] = {**_shares(secs), "utterances": len(utts)}
        out["text"]["untrusted"] = len(self._untrusted)
        return out


def emotion_summary(
    records: Iterable[Mapping[str, Any]], *, media_end: float | None = None
) -> dict[str, Any]:
    """The share of time per label, per modality, and per face track (fused and face)."""
    tally = EmotionTally()
    for r in records:
        tally.add(r)
    return tally.result(media_end)
