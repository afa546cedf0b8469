"""Many inputs through ``analyze``, one after another in this process (``--engine local``).

:func:`run_one` is the unit of work every engine runs: one input to its ``ID.jsonl`` (streamed,
``ID.jsonl.partial`` until done) and the entry ``runs.jsonl`` gets for it. It never raises for a
bad input: a file that cannot be decoded, or a run that crashes, is an entry with ``status``
``failed`` and the error, and the next input goes on. :class:`RunBook` is what every engine's
driver does around it: it alone writes ``runs.jsonl``, skips what ``--resume`` finds done, and
reports progress; :func:`run_batch` is the local driver.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from emodesk.batch.inputs import BatchInput
from emodesk.batch.runs import input_sha256, model_set_identity
from emodesk.errors import EmodeskError
from emodesk.machine import Device
from emodesk.pipeline.model_cache import ModelCache
from emodesk.results.runs import RunIndex, done_before

log = logging.getLogger(__name__)


class Progress(Protocol):
    """What a driver tells the user: an input starts (with its media length, if known), its media
    time advances, it ends (with its entry)."""

    def start(self, inp: BatchInput, media_s: float | None) -> None: ...
    def advance(self, t: float) -> None: ...
    def end(self, entry: dict[str, Any]) -> None: ...


class _Quiet:
    def start(self, inp: BatchInput, media_s: float | None) -> None:
        pass

    def advance(self, t: float) -> None:
        pass

    def end(self, entry: dict[str, Any]) -> None:
        pass


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def media_length(inp: BatchInput) -> float | None:
    """The input's length in seconds, when its container says (for a progress bar only)."""
    from emodesk.capture.files import media_duration

    path = inp.path / "video.mp4" if inp.path.is_dir() else inp.path
    if inp.path.is_dir() and not path.is_file():
        path = inp.path / "audio.wav"
    return media_duration(path)  # None when unreadable: the run itself reports bad files


def run_one(
    inp: BatchInput,
    out_path: Path,
    *,
    device: Device = "auto",
    asr_model: str | None = None,
    progress: Callable[[float], None] | None = None,
    models: ModelCache | None = None,
) -> dict[str, Any]:
    """Analyze ``inp`` into ``out_path``; its ``runs.jsonl`` entry (without sha256 and model set).
    ``models``: the worker's loaded models, reused (fresh state per input)."""
    from emodesk.capture.sources import open_sources
    from emodesk.pipeline.analyze import analyze
    from emodesk.results.summary import EmotionTally

    entry: dict[str, Any] = {
        "id": inp.id,
        "input": str(inp.path),
        "output": out_path.name,
        "started": _now(),
    }
    t0 = time.monotonic()
    try:
        sources = open_sources(inp.spec, paced=False, use_mic=False)
        if sources.video is None and sources.audio is None:
            raise EmodeskError(f"{inp.path} has neither video nor audio")
        tally = EmotionTally()
        summary = analyze(
            sources,
            out_path,
            device=device,
            asr_model=asr_model,
            progress=progress,
            models=models,
            observe=tally.add,
        )
    except EmodeskError as e:
        return {**entry, "status": "failed", "error": str(e), "wall_s": round(time.monotonic() - t0, 3)}
    except Exception as e:  # one input's crash is that input's failure, never the run's
        log.debug("analyze of %s crashed", inp.path, exc_info=True)
        return {
            **entry,
            "status": "failed",
            "error": f"crashed: {type(e).__name__}: {e}",
            "wall_s": round(time.monotonic() - t0, 3),
        }
    broken = [s for s in summary.statuses if s.state == "error"]
    fusion = summary.fusion
    entry.update(
        {
            "status": "degraded" if broken else "ok",
            "error": "; ".join(f"{s.slot}: {s.message}" for s in broken) or None,
            "wall_s": round(time.monotonic() - t0, 3),
            "media_s": round(summary.media_seconds, 3),
            "records": summary.records,
            "frames": summary.frames,
            "frames_with_faces": summary.frames_with_faces,
            "tracks": summary.tracks,
            "utterances": summary.utterances,
            "face_fps": round(summary.face_fps, 2),
            "models": [{"slot": s.slot, "state": s.state, "message": s.message} for s in summary.statuses],
            "fusion": {
                "path": str(fusion.path) if fusion is not None and fusion.path is not None else None,
                "weights": {m: round(fusion.scalar_weight(m), 6) for m in fusion.members} if fusion else {},
                "rule": fusion.rule.name if fusion else None,
            },
            "emotions": tally.result(summary.media_seconds),
        }
    )
    return entry


def hash_or_none(inp: BatchInput) -> str | None:
    """The input's sha256, or None when it cannot be read (gone since the run started, no access)."""
    try:
        return input_sha256(inp.path)
    except OSError:
        return None


def unreadable_entry(inp: BatchInput, out: Path, ident: dict[str, Any]) -> dict[str, Any]:
    why = "it is gone" if not inp.path.exists() else "no permission, or a read error"
    return {
        "id": inp.id,
        "input": str(inp.path),
        "output": out.name,
        "status": "failed",
        "error": f"cannot read {inp.path}: {why}",
        "sha256": None,
        "model_set": ident,
        "started": _now(),
    }


def set_aside_stale(entry: dict[str, Any], out: Path) -> None:
    """An input that failed now keeps no output of an earlier run under its current name: that
    file is renamed ``ID.jsonl.previous`` (nothing is deleted), so every ``ID.jsonl`` in the folder
    belongs to its latest ``ok`` or ``degraded`` line."""
    if entry.get("status") != "failed" or not out.is_file():
        return
    previous = out.with_name(out.name + ".previous")
    os.replace(out, previous)
    entry["previous_output"] = previous.name


def skipped_entry(inp: BatchInput, out: Path, sha: str, ident: dict[str, Any]) -> dict[str, Any]:
    """The ``runs.jsonl`` line of an input ``--resume`` found done."""
    return {
        "id": inp.id,
        "input": str(inp.path),
        "output": out.name,
        "status": "skipped",
        "reason": "done before with the same input and model set (--resume)",
        "sha256": sha,
        "model_set": ident,
        "started": _now(),
    }


@dataclass
class BatchResult:
    entries: list[dict[str, Any]] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for e in self.entries if e["status"] == status)

    @property
    def exit_status(self) -> int:
        """0 when every input succeeded (or was done before), 1 when any failed or ran degraded."""
        return 1 if any(e["status"] in ("failed", "degraded") for e in self.entries) else 0


class RunBook:
    """What every engine's driver does around the work itself: the index of the output folder,
    which inputs ``--resume`` finds done or cannot read (:meth:`plan`), and each finished input's
    line (:meth:`record`), appended by the driver alone."""

    def __init__(
        self,
        out_dir: Path,
        *,
        asr_model: str | None,
        resume: bool,
        progress: Progress | None,
        device: Device = "auto",
    ) -> None:
        from emodesk import private

        private.make_dirs(out_dir)
        self.out_dir = out_dir
        self.index = RunIndex(out_dir)
        self.ident = model_set_identity(asr_model, device)
        self.latest = self.index.latest() if resume else {}
        self.resume = resume
        self.bar = progress or _Quiet()
        self.result = BatchResult()

    def output(self, inp: BatchInput) -> Path:
        return self.out_dir / f"{inp.id}.jsonl"

    def plan(self, inputs: Sequence[BatchInput]) -> list[tuple[BatchInput, str]]:
        """The inputs to run, with their sha256; the unreadable ones and those done before are
        recorded here and left out."""
        todo = []
        key = self.ident["key"]
        for inp in inputs:
            out = self.output(inp)
            sha = hash_or_none(inp)
            if sha is None:
                self._append(unreadable_entry(inp, out, self.ident), out)
            elif self.resume and done_before(
                self.latest.get(inp.id), input_sha256=sha, model_key=key, output=out
            ):
                self._append(skipped_entry(inp, out, sha, self.ident), out)
            else:
                todo.append((inp, sha))
        return todo

    def record(self, inp: BatchInput, entry: dict[str, Any], sha: str, engine: str) -> None:
        """The line of an input that ran (on ``engine``)."""
        entry["sha256"], entry["model_set"], entry["engine"] = sha, self.ident, engine
        self._append(entry, self.output(inp))

    def _append(self, entry: dict[str, Any], out: Path) -> None:
        set_aside_stale(entry, out)
        self.index.append(entry)
        self.bar.end(entry)
        self.result.entries.append(entry)


def run_batch(
    inputs: Sequence[BatchInput],
    out_dir: Path,
    *,
    device: Device = "auto",
    asr_model: str | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    runner: Callable[..., dict[str, Any]] = run_one,
    models: ModelCache | None = None,
) -> BatchResult:
    """Every input into ``out_dir`` (``ID.jsonl`` each, ``runs.jsonl`` the index), one at a time,
    on models loaded once (``models``, or a new :class:`ModelCache`)."""
    book = RunBook(out_dir, asr_model=asr_model, resume=resume, progress=progress, device=device)
    cache = models if models is not None else ModelCache(device=device, asr_model=asr_model)
    for inp, sha in book.plan(inputs):
        book.bar.start(inp, media_length(inp))
        entry = runner(
            inp, book.output(inp), device=device, asr_model=asr_model, progress=book.bar.advance, models=cache
        )
        book.record(inp, entry, sha, "local")
    return book.result
