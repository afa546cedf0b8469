"""Streaming Silero VAD (v6, the ONNX file faster-whisper ships).

Why our own wrapper: faster-whisper only offers a whole-file VAD, and its
batched helper zeroes the last 64 samples of the final window. A live
segmenter needs one probability per 32 ms window with the LSTM state and the
64-sample context carried between calls; a batch run over a file must give
exactly the same numbers so offline analysis matches live use.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from emodesk.errors import ModelError

SAMPLE_RATE = 16000
WINDOW = 512  # new samples per model call at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous window the v6 model sees in front
_STATE_SHAPE = (1, 1, 128)
_BATCH = 10000  # windows per session.run in probs(); bounds peak memory


def default_vad_path() -> Path:
    """The Silero v6 ONNX bundled with faster-whisper (no download needed)."""
    try:
        from faster_whisper.utils import get_assets_path
    except ImportError as e:
        raise ModelError(
            "faster-whisper is not installed, so the Silero VAD model it ships is "
            "missing; install faster-whisper or pass the path of silero_vad_v6.onnx"
        ) from e
    return Path(get_assets_path()) / "silero_vad_v6.onnx"


class SileroVad:
    """Speech probability of consecutive 512-sample windows of 16 kHz audio.

    The ONNX Runtime session is created in the constructor, so construct the
    object in the thread that will call it (one session, one owner thread).
    """

    sample_rate: int = SAMPLE_RATE
    window_samples: int = WINDOW

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path) if path is not None else default_vad_path()
        if not self.path.is_file():
            raise ModelError(
                f"Silero VAD model not found at {self.path}; expected the "
                "silero_vad_v6.onnx file shipped with faster-whisper "
                "(reinstall faster-whisper or pass its path)"
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own untyped errors  # noqa: BLE001
            raise ModelError(
                f"Silero VAD model {self.path} could not be loaded by ONNX Runtime "
                f"(corrupt or not an ONNX file?): {e}"
            ) from None
        names = {i.name: tuple(i.shape) for i in self._session.get_inputs()}
        want = {"input": CONTEXT + WINDOW, "h": None, "c": None}
        if set(names) != set(want) or names["input"][-1] != CONTEXT + WINDOW:
            raise ModelError(
                f"{self.path} is not Silero VAD v6: expected inputs input[seq, "
                f"{CONTEXT + WINDOW}], h, c; got {names}"
            )
        self.provider = "CPUExecutionProvider"
        self.reset()

    def reset(self) -> None:
        """Forget the stream: zero LSTM state and context (after a gap or a new source)."""
        self._h = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)

    def __call__(self, window: np.ndarray) -> float:
        """Probability that this window (the next 512 samples of the stream) is speech."""
        w = np.asarray(window, dtype=np.float32)
        if w.shape != (WINDOW,):
            raise ValueError(
                f"SileroVad window must be a 1-D array of {WINDOW} samples at "
                f"{SAMPLE_RATE} Hz, but got shape {w.shape}"
            )
        x = np.concatenate([self._context, w])[None, :]
        out, self._h, self._c = self._session.run(None, {"input": x, "h": self._h, "c": self._c})
        self._context = w[-CONTEXT:].copy()
        return float(np.asarray(out).reshape(-1)[0])

    def probs(self, audio: np.ndarray) -> np.ndarray:
        """Per-window probabilities of a whole 16 kHz signal, from a fresh state.

        Identical to ``reset()`` followed by one ``__call__`` per window (the
        model treats the batch axis as time and carries h/c along it); the
        tail is zero-padded to a whole window. The streaming state is left
        untouched.
        """
        a = np.asarray(audio, dtype=np.float32)
        if a.ndim != 1:
            raise ValueError(f"SileroVad.probs expects mono 1-D audio, got shape {a.shape}")
        n = -(-a.shape[0] // WINDOW)
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        padded = np.zeros(n * WINDOW, dtype=np.float32)
        padded[: a.shape[0]] = a
        windows = padded.reshape(n, WINDOW)
        context = np.zeros((n, CONTEXT), dtype=np.float32)
        context[1:] = windows[:-1, -CONTEXT:]
        batch = np.concatenate([context, windows], axis=1)
        h = np.zeros(_STATE_SHAPE, dtype=np.float32)
        c = np.zeros(_STATE_SHAPE, dtype=np.float32)
        outs: list[np.ndarray] = []
        for i in range(0, n, _BATCH):
            out, h, c = self._session.run(None, {"input": batch[i : i + _BATCH], "h": h, "c": c})
            outs.append(np.asarray(out, dtype=np.float32).reshape(-1))
        return np.concatenate(outs)
