"""Load shedding on the speech path: when the audio waiting passes a bound, do less, visibly.

Live sources only (the window, ``record``, the paced bench): audio that comes in
real time must be transcribed in real time or the transcript falls further and
further behind. ``analyze`` and the unpaced bench never shed, so batch results do
not depend on CPU speed.

Two steps, once the models are loaded and the start-up backlog is cleared:

1. above ``light_s`` of audio waiting, optional work is off — partial
   transcripts, the second and later voice members, beam search on finals
   (greedy instead);
2. the queue holds at most ``bound_s``: audio arriving past it pushes the
   oldest waiting audio out (``BoundedChunkQueue.limit``), and the utterance it
   belonged to is dropped (its start is gone). The recognised text of that
   stretch is lost; a recording keeps every sample (written before this queue).

Synchronous and clock-free, like the rest of the pipeline: the worker feeds it
numbers, a test feeds it a script.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

BOUND_S = 3.0
LIGHT_S = 1.5


@dataclass
class ShedCounts:
    """What was skipped so far (shown in the status bar, written to ``session.json``)."""

    light_steps: int = 0  # worker steps run with optional work off
    partials_skipped: int = 0  # partial transcripts not made
    voice_scores_skipped: int = 0  # voice member scores not computed (second and later members)
    greedy_finals: int = 0  # final transcripts decoded greedily instead of with beam search
    drops: int = 0  # times waiting audio was dropped
    audio_dropped_s: float = 0.0  # seconds of audio never transcribed
    utterances_dropped: int = 0  # utterances open when their audio was dropped
    max_backlog_s: float = 0.0  # the most audio seen waiting before a step

    @property
    def any(self) -> bool:
        return bool(
            self.light_steps
            or self.partials_skipped
            or self.voice_scores_skipped
            or self.greedy_finals
            or self.drops
        )

    def as_record(self) -> dict[str, float | int]:
        d = asdict(self)
        d["audio_dropped_s"] = round(self.audio_dropped_s, 3)
        d["max_backlog_s"] = round(self.max_backlog_s, 3)
        return d

    def summary(self) -> str:
        """One line for the status bar: only what happened."""
        parts = []
        if self.drops:
            parts.append(f"{self.audio_dropped_s:.0f} s audio not transcribed")
        if self.utterances_dropped:
            parts.append(f"{self.utterances_dropped} utterance(s) cut")
        if self.voice_scores_skipped:
            parts.append(f"{self.voice_scores_skipped} voice score(s)")
        if self.partials_skipped:
            parts.append(f"{self.partials_skipped} partial(s)")
        if self.greedy_finals:
            parts.append(f"{self.greedy_finals} greedy final(s)")
        return ", ".join(parts)


class LoadShedder:
    """Decides, step by step, whether the speech path sheds its optional work; keeps the counts."""

    def __init__(self, bound_s: float = BOUND_S, light_s: float = LIGHT_S) -> None:
        if not 0 < light_s < bound_s:
            raise ValueError(f"need 0 < light_s < bound_s, got light_s={light_s}, bound_s={bound_s}")
        self.bound_s = float(bound_s)
        self.light_s = float(light_s)
        self.counts = ShedCounts()

    def step(self, backlog_s: float) -> bool:
        """True when a step that starts with ``backlog_s`` seconds of audio waiting runs light."""
        c = self.counts
        c.max_backlog_s = max(c.max_backlog_s, backlog_s)
        light = backlog_s > self.light_s
        c.light_steps += light
        return light


def delta(now: ShedCounts, before: ShedCounts) -> dict[str, float | int]:
    """What was skipped between two readings of the counts (a ``shed`` score record's fields)."""
    a, b = now.as_record(), before.as_record()
    out: dict[str, float | int] = {}
    for k, v in a.items():
        if k in ("max_backlog_s", "light_steps"):
            continue
        d = v - b[k]
        if d:
            out[k] = round(d, 3) if isinstance(d, float) else d
    return out
