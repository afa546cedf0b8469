"""PyInstaller runtime hook: make sounddevice load the PortAudio the bundle carries (Linux).

sounddevice finds PortAudio with ``ctypes.util.find_library("portaudio")``,
which on Linux asks ``ldconfig`` about the *system* and ignores the bundle, so
a machine without ``libportaudio2`` would have no audio at all. PyInstaller
patches that lookup on Windows only (and the Windows/macOS wheels carry their
own copy in ``_sounddevice_data``), so on Linux we point it at our copy.
"""


def _pyi_rthook() -> None:
    import ctypes.util
    import os
    import sys

    if not sys.platform.startswith("linux"):
        return
    bundled = os.path.join(sys._MEIPASS, "libportaudio.so.2")  # type: ignore[attr-defined]
    if not os.path.isfile(bundled):
        return
    system_find_library = ctypes.util.find_library

    def find_library(name: str) -> str | None:
        if name == "portaudio":
            return bundled
        return system_find_library(name)

    ctypes.util.find_library = find_library


_pyi_rthook()
del _pyi_rthook
