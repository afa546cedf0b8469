"""What this machine has: its CPU and GPU (every timing the project records names them) and the
ONNX Runtime execution providers a model can run on here (CUDA when present, else the CPU)."""

from __future__ import annotations

import functools
import logging
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo`` on Linux), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    """The NVIDIA card's name (``nvidia-smi``), or None without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out else None


Device = Literal["auto", "cpu", "cuda"]
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class ProviderChoice:
    providers: tuple[str, ...]
    reason: str


@functools.cache
def _preload_cuda() -> None:
    """onnxruntime-gpu >= 1.21 can load CUDA/cuDNN from the nvidia-* wheels; do it once."""
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except (OSError, RuntimeError) as e:
            log.warning("onnxruntime.preload_dlls() failed: %s", e)


def choose_providers(device: Device = "auto") -> ProviderChoice:
    """Which execution providers to ask for, and why."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu":
        return ProviderChoice((CPU,), "CPU requested")
    if CUDA in available:
        _preload_cuda()
        return ProviderChoice((CUDA, CPU), "CUDA provider available")
    why = (
        "onnxruntime-gpu is not installed (pip install 'emodesk[gpu]')"
        if device == "auto"
        else "CUDA requested but onnxruntime has no CUDA provider; install 'emodesk[gpu]'"
    )
    return ProviderChoice((CPU,), why)


def require_device(device: str, *, speech: bool = True) -> None:
    """``InputError`` before any work when ``--device cuda`` cannot run on CUDA.

    ``auto`` falls back to the CPU and says so in the status lines; ``cuda`` is a demand, and a
    run that silently took the CPU instead would measure or process something else than asked.
    ``speech``: the run also transcribes (CTranslate2 must see a CUDA device too).
    """
    if device != "cuda":
        return
    import onnxruntime as ort

    from emodesk.errors import InputError

    if CUDA not in ort.get_available_providers():
        raise InputError(
            "--device cuda: ONNX Runtime has no CUDA provider here (install 'emodesk[gpu]' on a machine "
            "with an NVIDIA GPU); --device auto runs on the CPU instead"
        )
    if not speech:  # face and text run on ONNX Runtime only
        return
    try:
        import ctranslate2
    except ImportError:
        return
    if int(ctranslate2.get_cuda_device_count()) == 0:
        raise InputError(
            "--device cuda: CTranslate2 (the speech recogniser) sees no CUDA device; "
            "--device auto runs on the CPU instead"
        )
