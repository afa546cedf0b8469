"""What the GUI timer gets from the live pipeline: one frozen picture of the newest state.

Qt-free on purpose, so a headless script (or a test) can read a snapshot the
same way the window does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emodesk.pipeline.shedding import ShedCounts
from emodesk.types import FaceFrameResult, Frame, FusedScores, ModalityScores, SlotStatus, Transcript


@dataclass(frozen=True)
class LiveStats:
    """Throughput, latency and loss counters; None where nothing was measured yet."""

    capture_fps: float
    face_fps: float
    face_latency_p50_ms: float | None
    face_latency_p95_ms: float | None
    frames_captured: int
    frames_scored: int
    dropped_frames: int  # frames the face path never saw (its latest-wins slot overwrote them)
    display_dropped: int  # frames the display timer never showed
    audio_overflows: int  # overflows counted by the audio source (device ring, PortAudio)
    audio_dropped: int  # chunks the bounded speech queue dropped
    audio_backlog: int  # chunks waiting for the speech thread
    utterances: int
    transcript_latency_p50_ms: float | None  # utterance cut by the VAD → final transcript
    transcript_latency_p95_ms: float | None
    transcript_delay_p50_ms: float | None  # end of the utterance (media clock) → final transcript
    transcript_delay_p95_ms: float | None
    scores_delay_p50_ms: float | None  # end of the utterance → the later of its voice and text scores
    scores_delay_p95_ms: float | None
    speech_lag_s: float | None  # how far the speech thread is behind the audio source
    speech_backlog_s: float  # seconds of audio waiting for the speech thread now
    shed: ShedCounts | None  # what load shedding skipped so far (None: this path never sheds)
    media_time: float | None
    uptime_s: float


@dataclass(frozen=True)
class LiveSnapshot:
    """The newest frame, scores, transcript and status; read-only, safe to keep."""

    frame: Frame | None
    face: FaceFrameResult | None
    transcripts: tuple[Transcript, ...]  # final lines, oldest first (bounded history)
    partial: Transcript | None  # the utterance still being spoken, if any
    transcript_version: int  # changes whenever transcripts or scores change
    voice: tuple[ModalityScores, ...]  # newest score per voice member
    text: tuple[ModalityScores, ...]  # newest score per text member
    utterance_scores: tuple[ModalityScores, ...]  # voice and text scores of recent utterances, oldest first
    fused: FusedScores | None  # fusion of the members fresh at media time ``t``
    statuses: tuple[SlotStatus, ...]  # model slots: face detector, face, vad, asr, voice, text
    devices: tuple[SlotStatus, ...]  # "video" and "audio" sources
    stats: LiveStats
    source: str
    demo: bool
    notes: tuple[str, ...]
    errors: tuple[str, ...]
    running: bool
    ended: bool  # every source ended by itself (a finite file played out)
    t: float | None  # media time of this snapshot (None before a source opened)

    def status(self, slot: str) -> SlotStatus | None:
        """The status of one slot (``face``, ``voice``, ``text``, ``asr``, ``video``…), if known."""
        for s in (*self.statuses, *self.devices):
            if s.slot == slot:
                return s
        return None

    def face_tracks(self) -> list[tuple[int | None, tuple[float, float, float, float], np.ndarray]]:
        """One entry per tracked face: (track id, box, smoothed probs averaged over face models)."""
        res = self.face
        if res is None:
            return []
        by_track: dict[int | None, tuple[tuple[float, float, float, float], list[np.ndarray]]] = {}
        for i, s in enumerate(res.faces):
            if s.box is None:
                continue
            p = res.smoothed[i] if i < len(res.smoothed) else s.probs
            _, ps = by_track.setdefault(s.track, (s.box, []))
            ps.append(np.asarray(p, dtype=np.float64))
        return [(tid, box, np.mean(ps, axis=0)) for tid, (box, ps) in by_track.items()]

    def main_face_probs(self) -> np.ndarray | None:
        """Smoothed probs of the largest face (the one fusion uses), or None without a face."""
        tracks = self.face_tracks()
        if not tracks:
            return None
        _, _, p = max(tracks, key=lambda x: x[1][2] * x[1][3])
        return p
