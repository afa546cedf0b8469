"""Shared test set-up: offscreen Qt, a private EMODESK_HOME, and no thread left running.

The thread check follows napari's ``_dangling_qthreads``: a test that leaves a
worker running would make the next test flaky and hide a shutdown bug, so it
fails here, naming the thread.
"""

from __future__ import annotations

import os
import shutil
import subprocess

# Must precede any Qt import (pytest-qt imports PySide6 when it loads, after conftest).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

THREAD_GRACE_S = 3.0

try:  # tqdm (via faster-whisper / huggingface_hub) starts a process-wide monitor thread on
    # first use that never ends; it only nudges progress bars, which tests do not show.
    import tqdm

    tqdm.tqdm.monitor_interval = 0
except ImportError:
    pass


@pytest.fixture(scope="module")
def shipped_models_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """For a module's module-scoped fixtures: only the shipped models (no developer's retrained
    set, no EMODESK_MODELS). Use it with ``pytestmark = pytest.mark.usefixtures(...)``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMODESK_HOME", str(tmp_path_factory.mktemp("home")))
        mp.delenv("EMODESK_MODELS", raising=False)
        yield


@pytest.fixture(autouse=True)
def emodesk_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ``EMODESK_HOME`` per test: no user model set, logs or settings leak in or out."""
    home = tmp_path_factory.mktemp("emodesk_home")
    monkeypatch.setenv("EMODESK_HOME", str(home))
    return home


def _track_qthreads(monkeypatch: pytest.MonkeyPatch) -> list[weakref.ref[Any]]:
    """Record every QThread started during the test (subclasses included)."""
    try:
        from PySide6.QtCore import QThread
    except ImportError:
        return []
    started: list[weakref.ref[Any]] = []
    original = QThread.start

    def start(self: QThread, *args: Any, **kwargs: Any) -> None:
        started.append(weakref.ref(self))
        original(self, *args, **kwargs)

    monkeypatch.setattr(QThread, "start", start)
    return started


def _running_qthreads(started: list[weakref.ref[Any]]) -> list[str]:
    out = []
    for ref in started:
        t = ref()
        try:
            if t is not None and t.isRunning():
                out.append(f"QThread {t.objectName() or type(t).__name__}")
        except RuntimeError:  # the C++ object is gone: not running
            continue
    return out


def _new_threads(before: set[threading.Thread]) -> list[str]:
    # A _DummyThread is a foreign (e.g. Qt) thread that once ran Python; Python never
    # forgets it, so it is judged by the QThread check instead.
    return [
        f"threading.Thread {t.name}{' (daemon)' if t.daemon else ''}"
        for t in threading.enumerate()
        if t not in before and t.is_alive() and not isinstance(t, threading._DummyThread)  # type: ignore[attr-defined]
    ]


@pytest.fixture(autouse=True)
def no_dangling_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail a test that leaves a QThread or a new threading.Thread running (after a short grace)."""
    before = set(threading.enumerate())
    started = _track_qthreads(monkeypatch)
    yield
    deadline = time.monotonic() + THREAD_GRACE_S
    while True:
        left = _running_qthreads(started) + _new_threads(before)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if left:
        pytest.fail(f"test left {len(left)} thread(s) running: {', '.join(left)}", pytrace=False)


@pytest.fixture
def x_screen() -> Iterator[str]:
    """A real X screen (Xvfb): Qt runs its xcb platform plugin, as on a user's desktop."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb; .ci/run installs it)")
    display = f":{100 + os.getpid() % 400}"
    proc = subprocess.Popen(
        ["Xvfb", display, "-screen", "0", "1366x900x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sock = Path(f"/tmp/.X11-unix/X{display[1:]}")
    deadline = time.monotonic() + 10
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not sock.exists():
        proc.kill()
        proc.wait(5)
        pytest.skip("Xvfb did not start")
    yield display
    proc.terminate()
    proc.wait(5)
