"""Cut a live audio stream into utterances with a streaming VAD.

Why streaming and sample-counted: the app must end an utterance within a few
hundred milliseconds of the speaker stopping (the end-of-utterance →
transcript budget is 1.0 s p95, and the silence we wait for counts toward
it), and every time must be media time so a file analysed offline gives the
same cuts as the same audio heard live. Times are counted in samples from the
``t0`` of the first chunk after a (re)start; a chunk whose ``t0`` does not
continue the stream ends any open utterance and restarts the count.

The end-of-speech logic follows Silero's ``get_speech_timestamps`` (start at
``threshold``, end after ``min_silence_s`` below ``neg_threshold``, force-split
long speech at the last pause), rewritten to run one window at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from emodesk.types import AudioChunk, Utterance


class VoiceActivity(Protocol):
    """What the segmenter needs from a VAD (``SileroVad``, or a test fake)."""

    sample_rate: int
    window_samples: int

    def reset(self) -> None: ...

    def __call__(self, window: np.ndarray) -> float: ...


@dataclass
class SegmenterConfig:
    """When speech starts and ends, in media seconds.

    ``min_silence_s`` = 0.4: the silence we wait for is part of the
    end-of-speech → transcript budget (1.0 s p95). A speech end is declared
    0.4 s (+ ≤ 32 ms of VAD window, + the chunk) after the last voiced
    window, and tiny.en then needs ~0.23–0.28 s for a 2–4 s utterance on
    one core (``asr.py``), so the budget holds with ~0.25 s to spare for a
    CPU shared with the face path (measured: p95 0.72–0.81 s end of speech
    → final transcript, 2-core machine). Pauses inside a spoken sentence
    (commas, breaths) are mostly 0.15–0.35 s, so 0.3 s would split more
    sentences in two for 0.1 s saved, and 0.5 s would eat the spare time.
    ``speech_pad_s`` 0.2 keeps soft word onsets and endings that Silero
    scores below threshold; ``partial_interval_s`` 1.0 gives live text
    about once a second without starving the final (partials are skipped
    during a pause, when the final is imminent).
    """

    threshold: float = 0.5
    neg_threshold: float = 0.35
    min_silence_s: float = 0.4
    speech_pad_s: float = 0.2
    min_speech_s: float = 0.25
    max_utterance_s: float = 15.0
    partial_interval_s: float | None = 1.0
    max_gap_s: float = 0.1
    """A chunk whose ``t0`` is off the expected time by more than this is a discontinuity."""
    split_pause_s: float = 0.1
    """A pause at least this long is where an over-long utterance is split."""

    def __post_init__(self) -> None:
        if not 0.0 < self.neg_threshold <= self.threshold < 1.0:
            raise ValueError(
                "SegmenterConfig needs 0 < neg_threshold <= threshold < 1, got "
                f"neg_threshold={self.neg_threshold}, threshold={self.threshold}"
            )
        for name in ("min_silence_s", "max_utterance_s", "max_gap_s", "split_pause_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SegmenterConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("speech_pad_s", "min_speech_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"SegmenterConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.partial_interval_s is not None and self.partial_interval_s <= 0:
            raise ValueError(
                f"SegmenterConfig.partial_interval_s must be > 0 or None, got {self.partial_interval_s}"
            )
        if self.max_utterance_s <= 2 * self.speech_pad_s + self.min_speech_s:
            raise ValueError(
                f"SegmenterConfig.max_utterance_s ({self.max_utterance_s}) must exceed "
                "2 * speech_pad_s + min_speech_s"
            )


class UtteranceSegmenter:
    """Turns ``AudioChunk``s into ``Utterance``s; synchronous, no threads.

    Memory is bounded: while idle it keeps only the pre-roll pad (plus a
    window); while someone speaks, only the current utterance (at most
    ``max_utterance_s``). ``wall`` stamps ``Utterance.wall_end`` (the moment
    the utterance was emitted) for latency measurement only; it never
    decides anything.
    """

    def __init__(
        self,
        vad: VoiceActivity,
        config: SegmenterConfig | None = None,
        *,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        self.vad = vad
        self.config = config if config is not None else SegmenterConfig()
        self._wall = wall
        self.sample_rate = int(vad.sample_rate)
        self._win = int(vad.window_samples)
        sr = self.sample_rate
        cfg = self.config
        self._pad = round(cfg.speech_pad_s * sr)
        self._min_silence = round(cfg.min_silence_s * sr)
        self._min_speech = round(cfg.min_speech_s * sr)
        self._max_len = round(cfg.max_utterance_s * sr)
        self._split_pause = round(cfg.split_pause_s * sr)
        self._partial = None if cfg.partial_interval_s is None else round(cfg.partial_interval_s * sr)
        self._reset_stream()

    # ----------------------------------------------------------------- state

    def _reset_stream(self) -> None:
        self._origin: float | None = None  # media time of sample index 0
        self._pos = 0  # index of the next sample the VAD will see
        self._pending = np.zeros(0, dtype=np.float32)  # < one window, not yet seen by the VAD
        self._buf: list[np.ndarray] = []  # consecutive samples starting at _buf_start
        self._buf_start = 0
        self._buf_len = 0
        self._floor = 0  # end of the last emitted utterance: utterances never overlap
        self._triggered = False
        self._utt_start = 0
        self._speech_start = 0
        self._temp_end: int | None = None  # start of the current pause, if in one
        self._pause_end: int | None = None  # latest pause ≥ split_pause_s ...
        self._resume: int | None = None  # ... and where speech resumed after it
        self._last_partial = 0
        self._partials = 0

    def reset(self) -> None:
        """Drop everything (open utterance included) and restart the VAD."""
        self.vad.reset()
        self._reset_stream()

    @property
    def buffered_samples(self) -> int:
        """Samples held right now; bounded by the pad while idle, by the utterance while not."""
        return self._buf_len + int(self._pending.shape[0])

    @property
    def in_speech(self) -> bool:
        return self._triggered

    @property
    def settled_t(self) -> float | None:
        """Media time before which no utterance still to come can end (None before the first chunk):
        the start of the open utterance, or, while idle, the earliest start the next one can take
        (the pre-roll pad before the next sample the VAD judges). What a consumer merging the
        speech path's output with other streams in media time may release up to."""
        if self._origin is None:
            return None
        first = self._utt_start if self._triggered else max(self._pos - self._pad, self._floor, 0)
        return self._origin + first / self.sample_rate

    # ------------------------------------------------------------------- API

    def push(self, chunk: AudioChunk) -> list[Utterance]:
        """Feed the next chunk (any length); returns utterances ended or snapshotted by it."""
        x = np.asarray(chunk.samples, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"AudioChunk.samples must be mono 1-D, but got shape {x.shape}")
        if chunk.sample_rate != self.sample_rate:
            raise ValueError(
                f"UtteranceSegmenter expects {self.sample_rate} Hz audio, but the chunk at "
                f"t0={chunk.t0:.3f} s is {chunk.sample_rate} Hz; resample it first"
            )
        out: list[Utterance] = []
        if self._origin is not None:
            expected = self._origin + (self._pos + self._pending.shape[0]) / self.sample_rate
            if abs(chunk.t0 - expected) > self.config.max_gap_s:
                out += self._end_stream()
        if self._origin is None:
            self._origin = float(chunk.t0)
        if x.shape[0] == 0:
            return out
        data = np.concatenate([self._pending, x]) if self._pending.shape[0] else x
        n = data.shape[0] // self._win
        for i in range(n):
            out += self._step(data[i * self._win : (i + 1) * self._win])
        self._pending = data[n * self._win :].copy()
        return out

    def flush(self) -> list[Utterance]:
        """End of stream: finish any open utterance and start afresh."""
        return self._end_stream()

    # ------------------------------------------------------------- internals

    def _step(self, w: np.ndarray) -> list[Utterance]:
        cfg = self.config
        start = self._pos
        end = start + self._win
        p = float(self.vad(w))
        self._append(w)
        self._pos = end
        if not self._triggered:
            if p >= cfg.threshold:
                self._triggered = True
                self._speech_start = start
                self._utt_start = max(start - self._pad, self._floor, self._buf_start)
                self._temp_end = self._pause_end = self._resume = None
                self._last_partial = start
                self._partials = 0
            else:
                self._trim_idle()
            return []

        if p >= cfg.threshold:
            if self._temp_end is not None:
                if self._pause_end is not None and (self._resume is None or self._resume < self._pause_end):
                    self._resume = start
                self._temp_end = None
        elif p < cfg.neg_threshold:
            if self._temp_end is None:
                self._temp_end = start
            if end - self._temp_end >= self._split_pause:
                self._pause_end = self._temp_end
            if end - self._temp_end >= self._min_silence:
                return self._finish(self._temp_end, end)

        if end + self._win - self._utt_start > self._max_len:  # next window would overflow
            return self._force_cut(end)
        if (
            self._partial is not None
            and self._temp_end is None  # a partial now would only delay the final
            and end - self._last_partial >= self._partial
        ):
            self._last_partial = end
            self._partials += 1
            return [self._make(self._utt_start, end, final=False)]
        return []

    def _finish(self, speech_end: int, available: int) -> list[Utterance]:
        """Speech ended at ``speech_end``; emit it (padded) unless it was a blip."""
        stop = min(speech_end + self._pad, available)
        out: list[Utterance] = []
        if speech_end - self._speech_start >= self._min_speech or self._partials:
            out.append(self._make(self._utt_start, stop, final=True))
            self._release(stop)
        self._triggered = False
        self._temp_end = self._pause_end = self._resume = None
        self._partials = 0
        return out

    def _force_cut(self, end: int) -> list[Utterance]:
        """The utterance reached max_utterance_s: split at the latest pause if any."""
        if self._temp_end is not None:  # in a pause right now: end here
            return self._finish(self._temp_end, end)
        half = self._utt_start + self._max_len // 2
        if self._pause_end is not None and self._resume is not None and self._resume > self._pause_end:
            cut = self._pause_end + min(self._pad, (self._resume - self._pause_end) // 2)
            next_speech = self._resume
        else:
            cut = next_speech = end
        if cut < half:  # a pause near the start would leave the rest as long: cut hard
            cut = next_speech = end
        out = [self._make(self._utt_start, cut, final=True)]
        self._release(cut)
        self._utt_start = cut
        self._speech_start = next_speech
        self._pause_end = self._resume = None
        self._last_partial = cut
        self._partials = 0
        return out

    def _end_stream(self) -> list[Utterance]:
        """Close an open utterance with what arrived (gap, or end of stream), then reset."""
        out: list[Utterance] = []
        if self._triggered and self._origin is not None:
            if self._pending.shape[0]:
                self._append(self._pending)  # audio the VAD never judged: still part of it
            available = self._buf_start + self._buf_len
            speech_end = self._temp_end if self._temp_end is not None else available
            out = self._finish(speech_end, available)
        self.reset()
        return out

    def _make(self, a: int, b: int, *, final: bool) -> Utterance:
        assert self._origin is not None
        audio = self._slice(a, b)
        sr = self.sample_rate
        return Utterance(
            t0=self._origin + a / sr,
            t1=self._origin + b / sr,
            audio=audio,
            final=final,
            sample_rate=sr,
            wall_end=self._wall(),
        )

    def _append(self, w: np.ndarray) -> None:
        self._buf.append(w)
        self._buf_len += int(w.shape[0])

    def _joined(self) -> np.ndarray:
        if len(self._buf) != 1:
            self._buf = [np.concatenate(self._buf) if self._buf else np.zeros(0, np.float32)]
        return self._buf[0]

    def _slice(self, a: int, b: int) -> np.ndarray:
        full = self._joined()
        return full[a - self._buf_start : b - self._buf_start].copy()

    def _release(self, stop: int) -> None:
        """Forget samples before ``stop`` (the end of what was just emitted)."""
        full = self._joined()
        keep = full[stop - self._buf_start :]
        self._buf = [keep]
        self._buf_start = stop
        self._buf_len = int(keep.shape[0])
        self._floor = stop

    def _trim_idle(self) -> None:
        """Idle: keep just the pre-roll (pad + the current window)."""
        need = self._pad + self._win
        while len(self._buf) > 1 and self._buf_len - self._buf[0].shape[0] >= need:
            first = self._buf.pop(0)
            self._buf_len -= int(first.shape[0])
            self._buf_start += int(first.shape[0])
        if len(self._buf) == 1 and self._buf_len > need + self._win:
            drop = self._buf_len - need
            self._buf[0] = self._buf[0][drop:]
            self._buf_len -= drop
            self._buf_start += drop
