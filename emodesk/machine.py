"""What this machine has: its CPU and GPU (every timing the project records names them) and the
ONNX Runtime execution providers a model can run on here (CUDA when present, else the CPU)."""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import logging
import mmap
import os
import platform
import re
import shutil
import subprocess
import sys
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
    return (gpu_info() or {}).get("name")


def gpu_info() -> dict[str, str] | None:
    """The NVIDIA card's name, memory and driver version (``nvidia-smi``), or None without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    parts = [p.strip() for p in out.splitlines()[0].split(",")] if out else []
    return dict(zip(("name", "memory", "driver"), parts, strict=False)) if len(parts) == 3 else None


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
    missing = ctranslate2_cuda_missing()
    if missing:
        raise InputError(f"--device cuda: {missing}; --device auto runs the speech path on the CPU instead")


# CTranslate2's PyPI wheels link the CUDA runtime statically but open cuBLAS by name at the first
# CUDA inference (dlopen), not at import: a machine whose CUDA is another major version, or that has
# no CUDA toolkit at all, shows a CUDA device and then fails on the first utterance.
_CUBLAS_NAME = re.compile(rb"libcublas\.so\.(\d+)|cublas64_(\d+)\.dll")


@functools.cache
def ctranslate2_cublas_major() -> int | None:
    """The cuBLAS major version the installed CTranslate2 opens (read from its library), or None."""
    spec = importlib.util.find_spec("ctranslate2")
    if spec is None or not spec.submodule_search_locations:
        return None
    pkg = Path(next(iter(spec.submodule_search_locations)))
    libs = [
        *sorted(pkg.parent.glob("ctranslate2.libs/libctranslate2*")),
        *sorted(pkg.glob("ctranslate2*.dll")),
    ]
    for lib in libs:
        try:
            with lib.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                hit = _CUBLAS_NAME.search(m)  # type: ignore[call-overload]
                if hit:
                    g = 1 if hit.start(1) >= 0 else 2
                    return int(m[hit.start(g) : hit.end(g)])
        except (OSError, ValueError):
            continue
    return None


def _cublas_wheel_dirs(major: int) -> list[Path]:
    """Where NVIDIA's PyPI wheels put cuBLAS ``major`` under each ``sys.path`` entry: the
    per-component ``nvidia-cublas-cu12`` layout, and the consolidated ``nvidia/cu13`` one of 13+."""
    sub = ("nvidia/cublas/lib", "nvidia/cublas/bin") if major <= 12 else (f"nvidia/cu{major}/lib",)
    return [Path(p) / s for p in sys.path if p for s in sub if (Path(p) / s).is_dir()]


def cublas_pip_name(major: int) -> str:
    return f"nvidia-cublas-cu{major}" if major <= 12 else "nvidia-cublas"


def _load_library(name: str, *, global_: bool = False) -> None:
    """Load a shared library by name or path as the platform's loader would (OSError if it cannot):
    on Windows with the standard search order, ``PATH`` included (ctypes' default leaves it out)."""
    if sys.platform == "win32":
        ctypes.WinDLL(name, winmode=0)
    else:
        ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL if global_ else ctypes.DEFAULT_MODE)


_cublas_found = False  # once loaded, it stays loaded for the process


def ctranslate2_cuda_missing() -> str | None:
    """None when the cuBLAS CTranslate2 opens at its first CUDA inference can be loaded, else why not.

    The library is looked for as the loader would find it (system CUDA, ``LD_LIBRARY_PATH``,
    ``PATH`` on Windows), then in NVIDIA's pip wheels (``pip install nvidia-cublas-cu12``), which it
    loads by path and globally so that CTranslate2's own ``dlopen`` by name gets it: no
    ``LD_LIBRARY_PATH`` to set. Call before a CUDA ``WhisperModel`` runs. A success holds for the
    process; a failure is looked for again at the next call (a wheel installed meanwhile is found).
    CTranslate2 4.5–4.7 also open cuDNN 9, which this does not check: their first inference does
    (``Transcriber.warm_up``).
    """
    global _cublas_found
    if _cublas_found:
        return None
    major = ctranslate2_cublas_major()
    if major is None:
        return None  # not a build that opens cuBLAS by name (or not readable): let it try
    if sys.platform == "win32":
        names = [f"cublasLt64_{major}.dll", f"cublas64_{major}.dll"]
    else:
        names = [f"libcublasLt.so.{major}", f"libcublas.so.{major}"]
    try:
        _load_library(names[-1])
        _cublas_found = True
        return None
    except OSError:
        pass
    for folder in _cublas_wheel_dirs(major):
        if not all((folder / n).is_file() for n in names):
            continue
        try:
            if sys.platform == "win32":
                os.add_dll_directory(str(folder))
            for n in names:  # cublasLt first: cublas needs it
                _load_library(str(folder / n), global_=True)
            _load_library(names[-1])
        except OSError as e:
            return f"{names[-1]} in {folder} could not be loaded ({e})"
        log.info("CTranslate2's cuBLAS %d loaded from %s", major, folder)
        _cublas_found = True
        return None
    return (
        f"CTranslate2 runs on CUDA through cuBLAS {major} ({names[-1]}), which is not installed here: "
        f"pip install {cublas_pip_name(major)} (or 'emodesk[gpu]')"
    )
