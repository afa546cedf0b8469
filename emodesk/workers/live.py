"""The live pipeline: sources, hand-over buffers and the four worker threads, wired once.

The GUI never receives frames or scores through signals; it calls
:meth:`LivePipeline.snapshot` on a ~30 Hz timer and gets one frozen
:class:`LiveSnapshot` of the newest state. Signals carry only rare events:
``status_changed`` (a model or device came up or failed), ``error(str)``
and ``finished`` (every source ended by itself).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from emodesk.capture.buffers import LatestSlot
from emodesk.capture.sources import SourceSet, open_sources
from emodesk.fusion.config import FusionConfig, load_active_fusion
from emodesk.fusion.state import LockedFusionState
from emodesk.machine import Device
from emodesk.pipeline.shedding import LoadShedder
from emodesk.types import (
    AudioChunk,
    FaceFrameResult,
    Frame,
    FusedScores,
    ModalityScores,
    SlotStatus,
    Transcript,
)
from emodesk.workers.base import Worker
from emodesk.workers.capture import AudioCaptureWorker, VideoCaptureWorker
from emodesk.workers.face import FaceLoader, FaceWorker, default_face_loader
from emodesk.workers.queues import BoundedChunkQueue
from emodesk.workers.snapshot import LiveSnapshot, LiveStats
from emodesk.workers.speech import SpeechLoader, SpeechWorker, default_speech_loader

if TYPE_CHECKING:
    from emodesk.recording.recorder import SessionRecorder

log = logging.getLogger(__name__)

AUDIO_QUEUE_CHUNKS = 1500  # 30 s of 20 ms chunks: covers model loading without drops


class LivePipeline(QObject):
    """Builds and runs one live session; ``start()``/``stop()`` from the GUI thread only."""

    status_changed = Signal()
    error = Signal(str)
    finished = Signal()

    def __init__(
        self,
        sources: SourceSet,
        *,
        device: Device = "auto",
        asr_model: str | None = None,
        language: str = "en",
        vad_threshold: float | None = None,
        face_loader: FaceLoader | None = None,
        speech_loader: SpeechLoader | None = None,
        fusion: FusionConfig | None = None,
        audio_queue_chunks: int = AUDIO_QUEUE_CHUNKS,
        shed_load: bool = True,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.sources = sources
        self.stop_event = sources.stop
        from emodesk.inference.registry import usage_notes

        self._usage_notes = tuple(usage_notes())  # e.g. a voice model only for non-commercial use
        self._fusion_config = fusion
        self.face_slot: LatestSlot[Frame] = LatestSlot()
        self.display_slot: LatestSlot[Frame] = LatestSlot()
        self.result_slot: LatestSlot[FaceFrameResult] = LatestSlot()
        self.audio_queue: BoundedChunkQueue[AudioChunk] = BoundedChunkQueue(
            audio_queue_chunks, weight=lambda c: c.duration
        )
        # a paced audio source (a device, a file played live) sheds speech work under load;
        # analyze and the unpaced bench do not use this class and never shed
        self.shed_load = shed_load
        self._face_loader = face_loader or default_face_loader(device)
        self._speech_loader = speech_loader or default_speech_loader(
            asr_model=asr_model, device=device, language=language, vad_threshold=vad_threshold
        )
        self._hub: LockedFusionState | None = None
        self._recorder: SessionRecorder | None = None
        self.video_worker: VideoCaptureWorker | None = None
        self.audio_worker: AudioCaptureWorker | None = None
        self.face_worker: FaceWorker | None = None
        self.speech_worker: SpeechWorker | None = None
        self._workers: list[Worker] = []
        self._errors: deque[str] = deque(maxlen=20)
        self._snap_lock = threading.Lock()
        self._last_frame: Frame | None = None
        self._started = False
        self._stopped = False
        self._finished_emitted = False
        self.started_wall = 0.0

    @classmethod
    def from_spec(
        cls,
        spec: str,
        *,
        audio: str | Path | None = None,
        mic: int | str | None = None,
        use_mic: bool = True,
        loop: bool = False,
        device: Device = "auto",
        asr_model: str | None = None,
        language: str = "en",
        vad_threshold: float | None = None,
        rotate_face_members: bool = True,
        reuse_face_boxes_s: float | None = None,
        parent: QObject | None = None,
    ) -> LivePipeline:
        """Paced sources for ``spec`` (path, ``camera[:N]``, ``demo``); InputError if unreadable."""
        sources = open_sources(spec, audio=audio, mic=mic, paced=True, loop=loop, use_mic=use_mic)
        face_loader = default_face_loader(
            device, rotate=rotate_face_members, reuse_boxes_s=reuse_face_boxes_s
        )
        return cls(
            sources,
            device=device,
            asr_model=asr_model,
            language=language,
            vad_threshold=vad_threshold,
            face_loader=face_loader,
            parent=parent,
        )

    # ------------------------------------------------------------ control

    @property
    def workers(self) -> list[Worker]:
        return list(self._workers)

    @property
    def running(self) -> bool:
        return any(w.isRunning() for w in self._workers)

    def start(self, *, record: dict[str, Any] | None = None) -> None:
        """Create and start the threads; every source and model is opened inside its thread.

        ``record``: keyword arguments of :meth:`start_recording`, to record from
        the very first frame and sample (the taps are in place before any
        thread starts).
        """
        if self._started:
            raise RuntimeError("LivePipeline.start() called twice; build a new pipeline")
        self._started = True
        self.started_wall = time.monotonic()
        if self._fusion_config is None:
            self._fusion_config = load_active_fusion()
        self._hub = LockedFusionState(self._fusion_config)
        src = self.sources
        if src.video is not None:
            self.video_worker = VideoCaptureWorker(
                src.video, [self.face_slot, self.display_slot], self.stop_event
            )
            self.face_worker = FaceWorker(
                self.face_slot,
                self.result_slot,
                self.stop_event,
                self._face_loader,
                on_result=self._on_face,
            )
            self._workers += [self.video_worker, self.face_worker]
        if src.audio is not None:
            self.audio_worker = AudioCaptureWorker(src.audio, self.audio_queue, self.stop_event)
            self.speech_worker = SpeechWorker(
                self.audio_queue,
                self.stop_event,
                self._speech_loader,
                on_score=self._on_score,
                on_transcript=self._on_transcript,
                to_wall=getattr(src.clock, "to_wall", None),
                shed=LoadShedder() if self.shed_load and src.audio.paced else None,
                on_shed=self._on_shed,
            )
            self._workers += [self.audio_worker, self.speech_worker]
        for w in self._workers:
            w.error.connect(self._on_error)
            w.statuses_changed.connect(self.status_changed)
            w.finished.connect(self._on_worker_finished)
        if record is not None:
            self.start_recording(**record)
        # Consumers first, so the model loads overlap with the sources opening.
        for w in sorted(self._workers, key=lambda w: isinstance(w, (VideoCaptureWorker, AudioCaptureWorker))):
            w.start()
        log.info(
            "live pipeline started: %s%s",
            src.description,
            f" + {src.audio.name}" if src.audio is not None else " (no audio)",
        )

    # ------------------------------------------------------------ recording

    def _on_face(self, result: FaceFrameResult) -> None:
        assert self._hub is not None
        self._hub.update_face(result)
        rec = self._recorder
        if rec is not None:
            rec.on_face(result)

    def _on_score(self, score: ModalityScores) -> None:
        assert self._hub is not None
        self._hub.update_score(score)
        rec = self._recorder
        if rec is not None:
            rec.on_score(score)

    def _on_shed(self, t: float, skipped: dict[str, float | int]) -> None:
        rec = self._recorder
        if rec is not None:
            rec.on_shed(t, skipped)

    def _on_transcript(self, tr: Transcript) -> None:
        rec = self._recorder
        if rec is not None:
            rec.on_transcript(tr)

    @property
    def recorder(self) -> SessionRecorder | None:
        return self._recorder

    def start_recording(
        self, parent: Path, *, privacy: str = "full", notes: str = "", label: str | None = None
    ) -> Path:
        """Record this session into a new folder under ``parent`` while the live view keeps running.

        Raises :class:`~emodesk.recording.writer.RecordingError` when the folder
        cannot be created; a later I/O error stops only the recording (see
        :meth:`recording_error`).
        """
        from emodesk.recording.recorder import SessionRecorder, live_session_meta
        from emodesk.recording.writer import SessionWriter

        if self._recorder is not None:
            raise RuntimeError("already recording; stop_recording() first")
        if not self._started:
            raise RuntimeError("start() the pipeline before recording")
        meta = live_session_meta(self.sources, self._fusion_config, notes=notes, privacy=privacy)
        writer = SessionWriter(parent, meta, on_error=self._recording_failed)
        assert self._hub is not None
        recorder = SessionRecorder(writer, self._hub.fused, privacy=privacy)
        t = self._media_time()
        path = writer.start(t)
        if label is not None:
            recorder.set_label(label, t or 0.0, source="start")
        self._recorder = recorder
        if self.video_worker is not None:
            self.video_worker.taps = (recorder.on_frame,)
        if self.audio_worker is not None:
            self.audio_worker.taps = (recorder.on_audio,)
        self.status_changed.emit()
        return path

    def stop_recording(self) -> Path | None:
        """Finish the recording (everything queued is written); the session folder, or None."""
        rec = self._recorder
        if rec is None:
            return None
        for w in (self.video_worker, self.audio_worker):
            if w is not None:
                w.taps = ()
        self._recorder = None
        path = rec.writer.stop(self._media_time())
        self.status_changed.emit()
        return path

    def _recording_failed(self, message: str) -> None:
        """Called from the writer thread: the recording stopped, the live view goes on."""
        self._errors.append(message)
        self.error.emit(message)

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Set the stop event, close every buffer and join every thread; False if one hung."""
        if self._stopped:
            return not self.running
        self.stop_recording()
        self._stopped = True
        self.stop_event.set()
        for s in (self.face_slot, self.display_slot, self.result_slot):
            s.close()
        self.audio_queue.close()
        deadline = time.monotonic() + timeout_s
        ok = True
        for w in self._workers:
            left_ms = max(1, int((deadline - time.monotonic()) * 1000))
            if not w.wait(left_ms):
                ok = False
                log.warning("%s thread did not stop within %.1f s; leaving it behind", w.role, timeout_s)
        if ok:
            log.info("live pipeline stopped; all %d threads joined", len(self._workers))
        return ok

    def _on_error(self, message: str) -> None:
        self._errors.append(message)
        self.error.emit(message)
        self.status_changed.emit()

    def _on_worker_finished(self) -> None:
        if self._stopped or self._finished_emitted or self.running:
            return
        self._finished_emitted = True
        log.info("every source ended")
        self.status_changed.emit()
        self.finished.emit()

    # ----------------------------------------------------------- snapshot

    def _media_time(self) -> float | None:
        """``clock.now()``, but only once a source has started the clock (reading it starts it)."""
        opened = any(w is not None and w.opened for w in (self.video_worker, self.audio_worker))
        return self.sources.clock.now() if opened else None

    def statuses(self) -> list[SlotStatus]:
        """Model slots: face detector, face, vad, asr, voice, text."""
        out: list[SlotStatus] = []
        if self.face_worker is not None:
            out += self.face_worker.statuses
        else:
            out.append(SlotStatus("face", "missing", "no video source"))
        if self.speech_worker is not None:
            out += self.speech_worker.statuses
        else:
            why = "no audio source" + (f" ({'; '.join(self.sources.notes)})" if self.sources.notes else "")
            out += [SlotStatus(s, "missing", why) for s in ("asr", "voice", "text")]
        return out

    def devices(self) -> list[SlotStatus]:
        """The video and audio source, each ok / missing / error."""
        out: list[SlotStatus] = []
        for slot, src, w in (
            ("video", self.sources.video, self.video_worker),
            ("audio", self.sources.audio, self.audio_worker),
        ):
            if src is None:
                out.append(SlotStatus(slot, "missing", f"no {slot} source"))
            elif w is not None and w.failed:
                out.append(SlotStatus(slot, "error", w.failed))
            elif w is not None and w.ended:
                out.append(SlotStatus(slot, "ok", f"{src.name} (ended)"))
            elif w is not None and w.opened:
                out.append(SlotStatus(slot, "ok", src.name))
            else:
                out.append(SlotStatus(slot, "missing", f"{src.name} (opening…)"))
        return out

    @property
    def notes(self) -> tuple[str, ...]:
        """What the window's notes line says: the sources' notes, then each model's usage restriction."""
        return tuple(self.sources.notes) + self._usage_notes

    @property
    def fusion_config(self) -> FusionConfig | None:
        return self._fusion_config

    def reload_fusion(self, config: FusionConfig | None = None) -> FusionConfig:
        """Swap the fusion weights while running (default: re-read the active ``fusion.json``).

        A malformed file never stops the session: :func:`load_active_fusion` falls back
        to equal weights and says why in the config's warnings.
        """
        if config is None:
            config = load_active_fusion()
        self._fusion_config = config
        if self._hub is not None:
            self._hub.set_config(config)
        return config

    def fused_at(self, t: float) -> FusedScores | None:
        """The fusion of the members fresh at media time ``t`` (None before start or when none is)."""
        return self._hub.fused(t) if self._hub is not None else None

    def snapshot(self) -> LiveSnapshot:
        """The newest state of everything, for the GUI timer; cheap and thread-safe."""
        with self._snap_lock:
            fresh = self.display_slot.take(0)
            if fresh is not None:
                self._last_frame = fresh
            frame = self._last_frame
        t = self._media_time()
        fused = self.fused_at(t) if t is not None else None
        finals: tuple[Transcript, ...] = ()
        partial: Transcript | None = None
        version = 0
        scores: dict[str, ModalityScores] = {}
        history: tuple[ModalityScores, ...] = ()
        if self.speech_worker is not None:
            finals, partial, version = self.speech_worker.transcripts()
            scores = self.speech_worker.latest_scores()
            history = self.speech_worker.score_history()
        return LiveSnapshot(
            frame=frame,
            face=self.result_slot.peek(),
            transcripts=finals,
            partial=partial,
            transcript_version=version,
            voice=tuple(s for s in scores.values() if s.kind == "voice"),
            text=tuple(s for s in scores.values() if s.kind == "text"),
            utterance_scores=history,
            fused=fused,
            statuses=tuple(self.statuses()),
            devices=tuple(self.devices()),
            stats=self._stats(t),
            source=self.sources.description,
            demo=self.sources.demo,
            notes=self.notes,
            errors=tuple(self._errors),
            running=self.running,
            ended=self._finished_emitted,
            t=t,
        )

    def _stats(self, t: float | None) -> LiveStats:
        vw, fw, aw, sw = self.video_worker, self.face_worker, self.audio_worker, self.speech_worker
        face_lat = fw.latency.percentiles_ms() if fw is not None else None
        tr_lat = sw.latency.percentiles_ms() if sw is not None else None
        tr_delay = sw.delay.percentiles_ms() if sw is not None else None
        sc_delay = sw.scores_delay.percentiles_ms() if sw is not None else None
        lag = None
        if sw is not None and sw.isRunning() and sw.loaded and t is not None:
            lag = max(0.0, t - sw.position) if sw.position is not None else None
        return LiveStats(
            capture_fps=vw.fps_meter.rate() if vw is not None else 0.0,
            face_fps=fw.fps_meter.rate() if fw is not None else 0.0,
            face_latency_p50_ms=face_lat[0] if face_lat else None,
            face_latency_p95_ms=face_lat[1] if face_lat else None,
            frames_captured=vw.frames if vw is not None else 0,
            frames_scored=fw.processed if fw is not None else 0,
            dropped_frames=self.face_slot.dropped if fw is not None and fw.loaded else 0,
            display_dropped=self.display_slot.dropped,
            audio_overflows=aw.overflows if aw is not None else 0,
            audio_dropped=self.audio_queue.dropped,
            audio_backlog=len(self.audio_queue),
            utterances=sw.utterances if sw is not None else 0,
            transcript_latency_p50_ms=tr_lat[0] if tr_lat else None,
            transcript_latency_p95_ms=tr_lat[1] if tr_lat else None,
            transcript_delay_p50_ms=tr_delay[0] if tr_delay else None,
            transcript_delay_p95_ms=tr_delay[1] if tr_delay else None,
            scores_delay_p50_ms=sc_delay[0] if sc_delay else None,
            scores_delay_p95_ms=sc_delay[1] if sc_delay else None,
            speech_lag_s=lag,
            speech_backlog_s=self.audio_queue.weight,
            shed=sw.shed_counts() if sw is not None else None,
            media_time=t,
            uptime_s=time.monotonic() - self.started_wall if self.started_wall else 0.0,
        )
