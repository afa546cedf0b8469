"""The load ``emodesk bench --load`` generates: busy loops plus a memory- and disk-heavy process.

The point is a machine that is too busy (load average well above its cores),
reproducibly, so the speech path's load shedding is measured rather than
hoped for: six processes spinning on pure-Python loops, and one that holds
``hold_mb`` of memory while it compresses ``churn_gb`` of data through a file
on disk again and again (zlib, CPU + page cache + writes). Every process is
started with ``spawn`` (no Qt or model state is forked) and stopped, and its
file removed, when the ``with`` block ends, whatever happened inside.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from types import TracebackType
from typing import Any

BUSY_LOOPS = 6
CHURN_GB = 2.0
HOLD_MB = 512


def _busy(stop: MpEvent) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x = (x * 1_103_515_245 + 12_345) & 0xFFFFFFFF


def _churn(stop: MpEvent, folder: str, churn_gb: float, hold_mb: int) -> None:
    """Hold ``hold_mb`` of memory; compress ``churn_gb`` of it, 8 MB at a time, into a file; repeat."""
    import numpy as np

    rng = np.random.default_rng(0)
    # compressible but not trivially: small random integers (what a video or log file looks like to zlib)
    held = rng.integers(0, 16, size=hold_mb * 2**20, dtype=np.uint8)
    block = 8 * 2**20
    path = Path(folder) / "churn.z"
    while not stop.is_set():
        done = 0
        with path.open("wb") as f:
            comp = zlib.compressobj(6)
            while done < churn_gb * 2**30 and not stop.is_set():
                start = (done // block * block) % (held.size - block)
                f.write(comp.compress(held[start : start + block].tobytes()))
                done += block
            f.write(comp.flush())
            f.flush()
            os.fsync(f.fileno())
        path.unlink(missing_ok=True)


@dataclass
class LoadSamples:
    """The 1-minute load average, sampled once a second while the load ran."""

    samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, loadavg)

    def summary(self, since_s: float = 0.0) -> dict[str, Any]:
        vals = [v for t, v in self.samples if t >= since_s]
        if not vals:
            return {"mean": None, "max": None, "min": None, "n": 0}
        return {
            "mean": round(sum(vals) / len(vals), 2),
            "max": round(max(vals), 2),
            "min": round(min(vals), 2),
            "n": len(vals),
        }


class GeneratedLoad:
    """``with GeneratedLoad() as load:`` — the load runs inside the block; ``load.samples`` says how much."""

    def __init__(self, busy: int = BUSY_LOOPS, churn_gb: float = CHURN_GB, hold_mb: int = HOLD_MB) -> None:
        self.busy, self.churn_gb, self.hold_mb = busy, churn_gb, hold_mb
        self.samples = LoadSamples()
        self._ctx = mp.get_context("spawn")
        self._stop = self._ctx.Event()
        self._procs: list[Any] = []
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._sampler: threading.Thread | None = None
        self._done = threading.Event()
        self.started = 0.0

    def describe(self) -> dict[str, Any]:
        return {
            "busy_loops": self.busy,
            "churn": f"zlib-compressing {self.churn_gb:g} GB through a file on disk, again and again, "
            f"with {self.hold_mb} MB held in memory",
            "cores": os.cpu_count(),
        }

    def __enter__(self) -> GeneratedLoad:
        self._dir = tempfile.TemporaryDirectory(prefix="emodesk-load-")
        self.started = time.monotonic()
        for _ in range(self.busy):
            self._procs.append(self._ctx.Process(target=_busy, args=(self._stop,), daemon=True))
        churn_args = (self._stop, self._dir.name, self.churn_gb, self.hold_mb)
        self._procs.append(self._ctx.Process(target=_churn, args=churn_args, daemon=True))
        for p in self._procs:
            p.start()
        self._sampler = threading.Thread(target=self._sample, name="load-sampler", daemon=True)
        self._sampler.start()
        return self

    def wait_for(self, loadavg: float, timeout_s: float) -> float:
        """Block until the 1-minute load average reaches ``loadavg`` (or ``timeout_s`` passes);
        the load average then."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and os.getloadavg()[0] < loadavg:
            time.sleep(1.0)
        return os.getloadavg()[0]

    def _sample(self) -> None:
        while not self._done.wait(1.0):
            self.samples.samples.append((round(time.monotonic() - self.started, 1), os.getloadavg()[0]))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._done.set()
        for p in self._procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)
        if self._sampler is not None:
            self._sampler.join(5)
        if self._dir is not None:
            self._dir.cleanup()
