"""``emodesk analyze … --engine ray [--address ADDR] [--workers N]``: the same per-input work as
the local engine, spread over Ray actors that load the models once each.

- **Ray is optional** (``pip install 'emodesk[scale]'``), imported only here, with a clear message
  when it is missing; the local engine never imports it and opens no socket.
- **Private by default**: usage statistics off (``RAY_USAGE_STATS_ENABLED=0``), no dashboard, and
  without ``--address`` a Ray of this run only, its node on 127.0.0.1 and shut down at the end.
  Ray 2.60 still binds its gRPC servers (raylet, GCS, workers) on every interface, whatever the
  node address (seen with ``ss -ltnp``), behind its token authentication: on a network you do
  not trust, firewall those ports or keep the local engine, which opens no socket. With
  ``--address`` the run joins that cluster (``ray start --head`` on one machine, ``ray start
  --address HEAD:6379`` on the others); every input path must then be readable on every node
  (shared storage).
- **The driver writes everything**: a worker analyzes into a temporary folder on its own node and
  returns the records' bytes; the driver writes ``ID.jsonl`` (through ``ID.jsonl.partial``, renamed
  when whole) and appends ``runs.jsonl``. A killed run resumes like the local one (``--resume``).
- **The same records as the local engine**: :func:`~emodesk.batch.local.run_one` on a
  :class:`~emodesk.pipeline.model_cache.ModelCache`, with ONNX Runtime and CTranslate2 pinned to one
  thread each; a worker gets the driver's OpenMP thread count (:func:`worker_env`), since Ray would
  set ``OMP_NUM_THREADS`` to 1 and CTranslate2's matrix products round differently with it (the
  transcripts' log-probabilities and the voice scores moved in the third decimal on an AVX2 CPU).
- **A worker that dies** (killed, out of memory) is replaced by a fresh one and its input retried
  once there; when that dies too the input is recorded as failed with the reason, and the run
  goes on (Ray restarts nothing itself: the retry is per input, whatever the worker's history).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emodesk import private
from emodesk.batch.inputs import BatchInput
from emodesk.batch.local import BatchResult, Progress, RunBook, run_one
from emodesk.errors import InputError
from emodesk.machine import Device

#: environment a worker needs to see the same models and data as the driver
PASSED_ENV = ("EMODESK_HOME", "EMODESK_MODELS", "EMODESK_DATA")
INSTALL_HINT = "pip install 'emodesk[scale]'"


def import_ray() -> Any:
    """Ray, with usage statistics off; :class:`InputError` saying how to install it when missing."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    try:
        import ray
    except ImportError:
        raise InputError(f"--engine ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def worker_env() -> dict[str, str]:
    """What a worker's environment takes from the driver's: the model and data folders, and the OpenMP
    thread count the driver's libraries run with (its ``OMP_NUM_THREADS``, or when unset the CPUs it
    may use, OpenMP's own default)."""
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    env["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS") or str(cpus or 1)
    return env


def start_ray(address: str | None, workers: int | None) -> Any:
    """Join the cluster at ``address``, or start a private one on loopback with ``workers`` CPUs."""
    import logging

    ray = import_ray()
    common: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "log_to_driver": False,
        "runtime_env": {"env_vars": worker_env()},
    }
    if address:
        try:
            ray.init(address=address, **common)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise InputError(f"--address {address}: cannot join the Ray cluster there ({e})") from None
    else:
        # address "local": a new Ray of this run even where one is running already (`ray start`)
        ray.init(
            address="local", num_cpus=workers or os.cpu_count() or 1, _node_ip_address="127.0.0.1", **common
        )
    return ray


def _worker_class(ray: Any) -> Any:
    # no restarts by Ray: the driver replaces a dead worker and retries its input once itself, so
    # the promise is per input, not per worker lifetime
    @ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)
    class AnalyzeWorker:
        """One Ray actor: the models loaded once, each input on fresh state (``ModelCache``)."""

        def __init__(self, device: Device, asr_model: str | None) -> None:
            from emodesk.pipeline.model_cache import ModelCache

            self.device, self.asr_model = device, asr_model
            self.cache = ModelCache(device=device, asr_model=asr_model)

        def pid(self) -> int:
            return os.getpid()

        def run(self, iid: str, path: str, spec: str) -> tuple[dict[str, Any], bytes, bytes]:
            """(the entry, the finished records, the records of an input that failed midway)."""
            inp = BatchInput(iid, Path(path), spec)
            with tempfile.TemporaryDirectory(prefix="emodesk-ray-") as tmp:
                out = Path(tmp) / f"{iid}.jsonl"
                entry = run_one(inp, out, device=self.device, asr_model=self.asr_model, models=self.cache)
                partial = out.with_name(out.name + ".partial")
                done = out.read_bytes() if out.is_file() else b""
                cut = partial.read_bytes() if partial.is_file() else b""
            entry["worker"] = {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}
            return entry, done, cut

    return AnalyzeWorker


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".partial")
    with private.open_private(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RayEngine:
    """The driver: one in-flight input per worker, outputs written as each finishes."""

    def __init__(
        self,
        *,
        address: str | None = None,
        workers: int | None = None,
        device: Device = "auto",
        asr_model: str | None = None,
    ) -> None:
        self.ray = start_ray(address, workers)
        self.device, self.asr_model = device, asr_model
        cpus = max(1, int(self.ray.cluster_resources().get("CPU", 1)))
        if workers is not None and workers > cpus:
            self.ray.shutdown()
            raise InputError(f"--workers {workers}: the Ray cluster has {cpus} CPU(s), one per worker")
        n = workers or cpus
        self._cls = _worker_class(self.ray)
        self.workers = [self._new_worker() for _ in range(n)]

    def _new_worker(self) -> Any:
        return self._cls.remote(self.device, self.asr_model)

    def pids(self) -> list[int]:
        """The workers' process ids (a test kills one)."""
        return [int(p) for p in self.ray.get([w.pid.remote() for w in self.workers])]

    def shutdown(self) -> None:
        self.ray.shutdown()

    def run(
        self,
        inputs: Sequence[BatchInput],
        out_dir: Path,
        *,
        resume: bool = False,
        progress: Progress | None = None,
    ) -> BatchResult:
        ray = self.ray
        book = RunBook(
            out_dir, asr_model=self.asr_model, resume=resume, progress=progress, device=self.device
        )
        todo = book.plan(inputs)
        pending: dict[Any, tuple[int, BatchInput, str, float]] = {}  # ref -> (worker, input, sha, start)
        queue = list(reversed(todo))
        tries: dict[str, int] = {}

        def submit(k: int) -> None:
            inp, sha = queue.pop()
            tries[inp.id] = tries.get(inp.id, 0) + 1
            ref = self.workers[k].run.remote(inp.id, str(inp.path), inp.spec)
            pending[ref] = (k, inp, sha, time.monotonic())

        for k in range(len(self.workers)):
            if queue:
                submit(k)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            k, inp, sha, t0 = pending.pop(ref)
            out = book.output(inp)
            try:
                entry, done, cut = ray.get(ref)
            except ray.exceptions.RayError as e:  # the worker died, or the task itself broke
                ray.kill(self.workers[k], no_restart=True)  # a live one would keep its CPU
                self.workers[k] = self._new_worker()  # a fresh worker for the rest
                died = isinstance(e, ray.exceptions.RayActorError)
                if died and tries[inp.id] < 2:  # once more, on the fresh worker
                    queue.append((inp, sha))
                    submit(k)
                    continue
                reason = str(e).strip().splitlines()[0][:500] if str(e).strip() else type(e).__name__
                entry, done, cut = (
                    {
                        "id": inp.id,
                        "input": str(inp.path),
                        "output": out.name,
                        "status": "failed",
                        "error": f"the Ray worker failed ({type(e).__name__}): {reason}",
                        "wall_s": round(time.monotonic() - t0, 3),
                    },
                    b"",
                    b"",
                )
            if entry["status"] in ("ok", "degraded"):
                _write_atomic(out, done)
            elif cut:
                with private.open_private(out.with_name(out.name + ".partial"), "wb") as f:
                    f.write(cut)
            entry["tries"] = tries[inp.id]
            book.record(inp, entry, sha, "ray")
            if queue:
                submit(k)
        return book.result


def run_batch_ray(
    inputs: Sequence[BatchInput],
    out_dir: Path,
    *,
    address: str | None = None,
    workers: int | None = None,
    device: Device = "auto",
    asr_model: str | None = None,
    resume: bool = False,
    progress: Progress | None = None,
) -> BatchResult:
    engine = RayEngine(address=address, workers=workers, device=device, asr_model=asr_model)
    try:
        return engine.run(inputs, out_dir, resume=resume, progress=progress)
    finally:
        engine.shutdown()
