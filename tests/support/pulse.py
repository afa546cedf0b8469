"""A private PulseAudio daemon that gives PortAudio a real, working microphone.

Why: the machines that run our tests have no sound card, yet the microphone
path (PortAudio callback → ring → 16 kHz chunks) is exactly what breaks on a
user's machine. A PulseAudio null sink is a real audio device: whatever
``paplay`` writes to it comes out of its monitor in real time, paced by the
system clock. We remap that monitor into an ordinary source (``emodesk_mic``),
make it the default source, and let PortAudio reach it through ALSA's pulse
plugin, so ``sounddevice`` records what the test plays. A silent low-latency
player keeps the sink rendering in small steps, as a live sound card does.

The daemon is private (its own HOME, runtime dir and socket under a temporary
folder), anonymous (no cookie), runs in the foreground as our child, and is
always stopped on exit. PortAudio scans devices once, when it is initialised,
so :func:`virtual_microphone` re-initialises it after pointing the
environment at the daemon, and again after restoring the environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SINK = "emodesk_sink"
SOURCE = "emodesk_mic"
ALSA_DEVICE = "emodesk_mic"  # the ALSA pcm (and so the PortAudio device) for SOURCE

# pcm.!default / ctl.!default: the ALSA default goes through PulseAudio (and so to
# its default source, SOURCE). pcm.emodesk_mic: a named device PortAudio lists, so
# a test can pick the virtual microphone by name as a user picks theirs.
ASOUNDRC = f"""\
pcm.!default {{
    type pulse
    hint {{ show on description "PulseAudio default (emodesk test daemon)" }}
}}
ctl.!default {{
    type pulse
}}
pcm.{ALSA_DEVICE} {{
    type pulse
    device {SOURCE}
    hint {{ show on description "emodesk virtual microphone (PulseAudio null sink monitor)" }}
}}
"""


class PulseUnavailable(RuntimeError):
    """The virtual microphone cannot be set up here; the message says why (a skip reason)."""


@dataclass
class VirtualMicrophone:
    """A running private daemon: play into :data:`SINK`, record from :data:`SOURCE`."""

    root: Path
    env: dict[str, str]
    daemon: subprocess.Popen[bytes]
    players: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def log(self) -> str:
        """The daemon's log so far (for assertion messages)."""
        p = self.root / "pulseaudio.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def pactl(self, *args: str) -> str:
        out = subprocess.run(
            ["pactl", *args], env=self.env, capture_output=True, text=True, timeout=10, check=True
        )
        return out.stdout

    def play(self, wav: str | Path) -> subprocess.Popen[bytes]:
        """Start playing ``wav`` into the null sink (returns at once; wait() on the result)."""
        p = subprocess.Popen(
            ["paplay", f"--device={SINK}", str(wav)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.players.append(p)
        return p


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """Mono float audio in [-1, 1] as 16-bit PCM (stdlib only)."""
    pcm = (np.clip(np.asarray(audio, dtype=np.float64), -1.0, 1.0) * 32767).astype("<i2")
    path = Path(path)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())
    return path


def _sounddevice() -> Any:
    try:
        import sounddevice as sd
    except (ImportError, OSError) as e:
        raise PulseUnavailable(f"sounddevice/PortAudio is not usable: {e}") from None
    return sd


def _rescan_portaudio(sd: Any) -> None:
    """Terminate and re-initialise PortAudio so it enumerates devices anew.

    PortAudio is reference counted: terminate as often as it was initialised,
    then initialise as often again, so other holders keep their count.
    """
    n = max(1, int(sd._initialized))
    for _ in range(int(sd._initialized)):
        sd._terminate()
    for _ in range(n):
        sd._initialize()


def _stop(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
    if p.stderr is not None:
        p.stderr.close()


def _keep_sink_prompt(mic: VirtualMicrophone, deadline: float) -> None:
    """Make the null sink render in 20 ms steps from now on, like a live sound card.

    With nothing playing, a null sink renders 2 s blocks, so its monitor (our
    microphone) delivers nothing for up to 2 s after a recorder connects, and
    what a recorder asked for only takes effect at the next block. A silent
    low-latency player keeps the sink's requested latency at 20 ms; a suspend
    and resume then restarts its timer under that latency.
    """
    with open("/dev/zero", "rb") as zero:  # endless silence; the child keeps its own descriptor
        keeper = subprocess.Popen(
            ["pacat", "--playback", f"--device={SINK}", "--raw", "--format=s16le", "--rate=48000",
             "--channels=1", "--latency-msec=20", "--client-name=emodesk-keeper"],
            env=mic.env, stdin=zero, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    mic.players.append(keeper)
    while "emodesk-keeper" not in mic.pactl("list", "sink-inputs"):
        if keeper.poll() is not None or time.monotonic() > deadline:
            raise PulseUnavailable(f"pacat could not play into {SINK}: {mic.log[-2000:]}")
        time.sleep(0.02)
    mic.pactl("suspend-sink", SINK, "1")
    mic.pactl("suspend-sink", SINK, "0")


@contextmanager
def virtual_microphone(
    null_sink_rate: int = 48000, start_timeout_s: float = 10.0
) -> Iterator[VirtualMicrophone]:
    """Run a private PulseAudio daemon with a null sink and a virtual microphone.

    While inside, ``os.environ`` points PulseAudio clients and ALSA at the daemon
    and PortAudio has been re-scanned; on exit the players and the daemon are
    stopped, the environment is restored and PortAudio is re-scanned again.
    Raises :class:`PulseUnavailable` when something this needs is missing.
    """
    for exe in ("pulseaudio", "pactl", "paplay", "pacat"):
        if shutil.which(exe) is None:
            raise PulseUnavailable(f"`{exe}` not installed (apt install pulseaudio pulseaudio-utils)")
    sd = _sounddevice()

    # A short path: the socket path must fit sockaddr_un (108 bytes).
    root = Path(tempfile.mkdtemp(prefix="emodesk-pulse-"))
    home, runtime = root / "home", root / "run"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    sock = runtime / "native"
    (home / ".asoundrc").write_text(ASOUNDRC)
    env_overrides = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "PULSE_RUNTIME_PATH": str(runtime),
        "PULSE_STATE_PATH": str(root / "state"),
        "PULSE_SERVER": f"unix:{sock}",
    }
    env = {k: v for k, v in os.environ.items() if k not in ("PULSE_COOKIE", "PULSE_SINK", "PULSE_SOURCE")}
    env.update(env_overrides)
    cmd = [
        "pulseaudio",
        "-n",  # no default.pa: only the modules below
        "--daemonize=no",
        "--exit-idle-time=-1",
        "--disallow-exit",
        "--disallow-module-loading=no",
        "--use-pid-file=no",
        "--high-priority=no",
        "--realtime=no",
        "--log-target=stderr",
        "-L", f"module-native-protocol-unix socket={sock} auth-anonymous=1",
        "-L", f"module-null-sink sink_name={SINK} rate={int(null_sink_rate)}"
              f" sink_properties=device.description=emodesk_test_sink",
        "-L", f"module-remap-source master={SINK}.monitor source_name={SOURCE}"
              f" source_properties=device.description=emodesk_virtual_microphone",
    ]  # fmt: skip
    with open(root / "pulseaudio.log", "wb") as log:  # the child keeps its own descriptor
        daemon = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    mic = VirtualMicrophone(root=root, env=env, daemon=daemon)
    saved = {k: os.environ.get(k) for k in (*env_overrides, "PULSE_COOKIE", "PULSE_SINK", "PULSE_SOURCE")}
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if daemon.poll() is not None:
                raise PulseUnavailable(f"pulseaudio exited with {daemon.returncode}: {mic.log[-2000:]}")
            ready = subprocess.run(["pactl", "info"], env=env, capture_output=True, timeout=10)
            if ready.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise PulseUnavailable(
                    f"pulseaudio did not answer within {start_timeout_s} s: {mic.log[-2000:]}"
                )
            time.sleep(0.1)
        mic.pactl("set-default-sink", SINK)
        mic.pactl("set-default-source", SOURCE)
        _keep_sink_prompt(mic, deadline)

        for k in ("PULSE_COOKIE", "PULSE_SINK", "PULSE_SOURCE"):
            os.environ.pop(k, None)
        os.environ.update(env_overrides)
        _rescan_portaudio(sd)
        names = [d["name"] for d in sd.query_devices()]
        if ALSA_DEVICE not in names:
            raise PulseUnavailable(
                f"PortAudio does not see the PulseAudio ALSA device {ALSA_DEVICE!r} "
                f"(is libasound2-plugins installed?); it sees {names}"
            )
        yield mic
    finally:
        for p in mic.players:
            _stop(p)
        _stop(daemon)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        try:
            _rescan_portaudio(sd)  # forget the devices of the daemon we just stopped
        finally:
            shutil.rmtree(root, ignore_errors=True)
