"""The CUDA library CTranslate2 opens at its first CUDA inference (cuBLAS, by name): found, loaded from
NVIDIA's pip wheel, or the CPU with the reason and the package to install — checked up front, not
discovered at the first utterance."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from emodesk.errors import InputError, ModelError


def test_the_installed_ctranslate2_opens_cublas_of_its_cuda_major() -> None:
    import ctranslate2

    from emodesk.machine import ctranslate2_cublas_major

    major = ctranslate2_cublas_major()
    cuda_wheel = sys.platform in ("linux", "win32") and platform.machine().lower() in ("x86_64", "amd64")
    if ctranslate2.__version__.startswith("4.") and cuda_wheel:
        assert major == 12  # the 4.x wheels for x86-64 Linux and Windows are built on CUDA 12
    else:  # macOS and Arm Linux wheels have no CUDA
        assert major is None or major >= 12


def _fake_cublas_wheel(root: Path, major: int) -> Path:
    """A site folder laid out as nvidia-cublas-cu12 installs it, with real shared libraries whose
    sonames are cuBLAS's (so a later dlopen by name finds what was loaded by path)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler to build stand-in shared libraries")
    lib = root / "nvidia" / "cublas" / "lib"
    lib.mkdir(parents=True)
    src = root / "f.c"
    src.write_text("int emodesk_fake_cublas(void) { return 42; }\n")
    for name in (f"libcublasLt.so.{major}", f"libcublas.so.{major}"):
        subprocess.run(
            [cc, "-shared", "-fPIC", f"-Wl,-soname,{name}", "-o", str(lib / name), str(src)], check=True
        )
    return root


PROBE = textwrap.dedent(
    """
    import ctypes, sys
    from emodesk.machine import ctranslate2_cublas_major, ctranslate2_cuda_missing
    why = ctranslate2_cuda_missing()
    print(why)
    if why is None:
        print(ctypes.CDLL(f"libcublas.so.{ctranslate2_cublas_major()}").emodesk_fake_cublas())
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="the shared-library names are Linux's")
def test_cublas_from_the_pip_wheel_is_loaded_so_ctranslate2_finds_it_by_name(tmp_path: Path) -> None:
    from emodesk.machine import ctranslate2_cublas_major

    major = ctranslate2_cublas_major()
    if major is None:
        pytest.skip("this CTranslate2 does not open cuBLAS by name")
    from emodesk.machine import _cublas_wheel_dirs

    if _cublas_wheel_dirs(major):
        pytest.skip(f"{_cublas_wheel_dirs(major)[0]} holds a real cuBLAS {major} wheel")
    probe = [sys.executable, "-c", PROBE]
    if subprocess.run([*probe[:2], f"import ctypes; ctypes.CDLL('libcublas.so.{major}')"]).returncode == 0:
        pytest.skip(f"this machine has a system cuBLAS {major}: the wheel would not be needed")
    without = subprocess.run(probe, capture_output=True, text=True, check=True).stdout
    assert f"cuBLAS {major} (libcublas.so.{major}), which is not installed here" in without
    assert f"pip install nvidia-cublas-cu{major}" in without
    site = _fake_cublas_wheel(tmp_path / "site", major)
    env_path = f"import sys; sys.path.insert(0, {str(site)!r})\n"
    found = subprocess.run(
        [sys.executable, "-c", env_path + PROBE], capture_output=True, text=True, check=True
    )
    assert found.stdout.split() == ["None", "42"], found.stdout + found.stderr


def test_a_missing_cublas_sends_auto_to_the_cpu_with_the_reason_and_refuses_cuda(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ctranslate2
    import onnxruntime

    from emodesk import machine
    from emodesk.speech import asr

    why = "CTranslate2 runs on CUDA through cuBLAS 12 (libcublas.so.12), which is not installed here"
    monkeypatch.setattr(asr, "_cuda_devices", lambda: 1)
    monkeypatch.setattr(asr, "ctranslate2_cuda_missing", lambda: why)
    t = asr.Transcriber(device="auto")
    assert t.device == "cpu"
    assert "1 CUDA device(s) visible to CTranslate2, but " + why + "; using the CPU" in t.reason
    with pytest.raises(ModelError, match="requested, but CTranslate2 runs on CUDA through cuBLAS 12"):
        asr.Transcriber(device="cuda")

    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 1)
    monkeypatch.setattr(machine, "ctranslate2_cuda_missing", lambda: why + ": pip install nvidia-cublas-cu12")
    with pytest.raises(InputError, match="pip install nvidia-cublas-cu12; --device auto runs the speech"):
        machine.require_device("cuda")
    machine.require_device("cuda", speech=False)
