"""Voice and text emotion members: the same ONNX scoring interface as the face path.

Until trained models are installed, these slots stay empty and the app says
"no model installed" — it never shows made-up scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emodesk.errors import ModelError
from emodesk.inference.manifest import ModelManifest
from emodesk.inference.runtime import OnnxModel
from emodesk.inference.voice_features import POOLINGS, RunningNormalizer, pool_frames
from emodesk.labels import LABELS, reorder_indices
from emodesk.machine import CUDA, Device
from emodesk.readers import Fields, check_number
from emodesk.resources import sha256_file

MAX_CONTEXT = 4  # earlier utterances a text model may read (manifest preprocessing "context")


def text_context(manifest: ModelManifest) -> int:
    """How many earlier utterances a text member reads: its manifest's ``preprocessing.context``."""
    return manifest.fields("preprocessing").integer("context", 0, lo=0, hi=MAX_CONTEXT)


#: an earlier transcript is context for a text member only if it ended at most this long before
#: the current utterance began: after a longer pause the conversation has likely moved on
CONTEXT_GAP_S = 30.0


def _softmax_if_needed(x: np.ndarray, already: bool) -> np.ndarray:
    if already:
        p = np.clip(x, 0.0, None)
        s = p.sum()
        return p / s if s > 0 else np.full_like(p, 1.0 / len(p))
    z = x - x.max()
    e = np.exp(z)
    return e / e.sum()


class _OnnxMember:
    modality = ""

    def __init__(self, model: OnnxModel) -> None:
        m = model.manifest
        if m.modality != self.modality:
            raise ModelError(f"model {m.id} has modality {m.modality!r}, expected {self.modality!r}")
        if not m.labels:
            raise ModelError(f"model {m.id}: its manifest names no output labels")
        self.model = model
        self.order = reorder_indices(m.labels)
        self.outputs_probs = (
            m.fields("preprocessing").text("output", "probs", choices=("probs", "logits")) == "probs"
        )
        self.label_bias = label_bias(m)

    @property
    def id(self) -> str:
        return self.model.id

    def _finish(self, out: Any) -> np.ndarray:
        raw = np.asarray(out, dtype=np.float64).reshape(-1)
        if raw.shape[0] != len(self.order):
            raise ModelError(f"model {self.id} returned {raw.shape[0]} outputs, expected {len(self.order)}")
        p = _softmax_if_needed(raw, self.outputs_probs)[self.order]
        if self.label_bias is None:
            return p
        q = p * self.label_bias
        return q / q.sum()


MAX_LABEL_BIAS = 10.0  # a log-prior offset beyond this is an error, not a prior


def label_bias(manifest: ModelManifest) -> np.ndarray | None:
    """``postprocessing.label_bias`` (label → log-prior offset) as factors in canonical order, or None.

    A member's probabilities are multiplied by ``exp(offset)`` per label and renormalised: a prior
    shift chosen on validation (``emodesk/lab/studies/voice_calm``), e.g. toward neutral.
    """
    post = Fields(manifest.postprocessing, f"model {manifest.id}: postprocessing", ModelError)
    bias = post.raw("label_bias", None)
    if not bias:
        return None
    if not isinstance(bias, dict):
        raise ModelError(f"model {manifest.id}: postprocessing.label_bias must map labels to numbers")
    out = np.ones(len(LABELS))
    for label, v in bias.items():
        if label not in LABELS:
            raise ModelError(
                f"model {manifest.id}: label_bias names {label!r}, not one of {', '.join(LABELS)}"
            )
        where = f"model {manifest.id}: label_bias[{label!r}]"
        b = check_number(v, where, ModelError, lo=-MAX_LABEL_BIAS, hi=MAX_LABEL_BIAS)
        out[LABELS.index(label)] = float(np.exp(b))
    return out


class VoiceScorer(_OnnxMember):
    """Scores one utterance (16 kHz mono float32).

    Two input kinds (``preprocessing.input``):

    * ``"waveform"``: the model takes the raw audio, ``(1, n_samples)``.
    * ``"whisper_layers"``: the same kind of head over the states after the first
      ``blocks`` of the ASR's encoder, computed by the member's own weightless
      ``encoder_graph`` on the ASR's weights (:mod:`emodesk.speech.whisper_layers`);
      a second encoder pass per utterance, over the same window.
    * ``"whisper_encoder"``: the model is a head over pooled, session-normalised
      whisper encoder states (:mod:`emodesk.inference.voice_features`). The
      manifest's ``requires`` names the ASR model and the sha256 of its
      ``model.bin``: the live pipeline hands over the encoder pass it already ran
      for the transcript when the sha256 matches (``accepts``); otherwise the
      member loads its own encoder, and refuses (ModelError) if that one differs
      too — it is never fed another encoder's features.
    """

    modality = "voice"

    def __init__(self, model: OnnxModel, *, asr_device: Device = "auto") -> None:
        super().__init__(model)
        m = model.manifest
        pre = m.fields("preprocessing")
        self.kind = pre.text("input", "waveform")
        self.asr_device: Device = asr_device
        self._own_encoder: Any = None
        self._layers: Any = None
        self.normalizer: RunningNormalizer | None = None
        if self.kind == "waveform":
            return
        if self.kind not in ("whisper_encoder", "whisper_layers"):
            raise ModelError(
                f"voice model {self.id} expects input {self.kind!r}, which this emodesk version "
                "cannot compute; upgrade emodesk"
            )
        self.pooling = pre.text("pooling", "mean_std")
        if self.pooling not in POOLINGS:
            raise ModelError(f"voice model {self.id}: unknown pooling {self.pooling!r}")
        self.normalizer = RunningNormalizer.from_manifest(m.preprocessing, self.id)
        req = m.fields("requires")
        self.asr_model = req.text("asr_model", "")
        self.encoder_sha256 = req.text("encoder_sha256", "")
        if not self.asr_model or not self.encoder_sha256:
            raise ModelError(f"voice model {self.id}: requires must name asr_model and encoder_sha256")
        if self.kind == "whisper_layers":
            if "blocks" not in pre or "encoder_graph" not in pre:
                raise ModelError(f"voice model {self.id}: preprocessing must name encoder_graph and blocks")
            blocks = pre.numbers("blocks", lo=0, hi=64)
            if not blocks or any(b != int(b) for b in blocks):
                raise ModelError(
                    f"voice model {self.id}: preprocessing.blocks must list encoder block numbers"
                )
            self.blocks = tuple(int(b) for b in blocks)
            self.graph_path = m.path.parent / pre.text("encoder_graph")
            want = pre.text("encoder_graph_sha256", "")
            if not self.graph_path.is_file():
                raise ModelError(f"voice model {self.id}: its encoder graph {self.graph_path} is missing")
            if want and sha256_file(self.graph_path) != want:
                raise ModelError(
                    f"voice model {self.id}: {self.graph_path} does not match the sha256 in its manifest "
                    "(corrupt or replaced); reinstall the model"
                )
        width = m.inputs[0].shape[-1] if m.inputs and m.inputs[0].shape else None
        if isinstance(width, int) and width != self.normalizer.dim:
            raise ModelError(
                f"voice model {self.id} takes {width} features, its normalization has {self.normalizer.dim}"
            )

    @classmethod
    def load(cls, manifest: ModelManifest, *, device: Device = "auto") -> VoiceScorer:
        return cls(OnnxModel(manifest, device=device), asr_device=device)

    @property
    def uses_encoder(self) -> bool:
        """True if the member's input is the ASR's own encoder pass (it can share it)."""
        return self.kind == "whisper_encoder"

    @property
    def reads_mel(self) -> bool:
        """True if the member reuses the log-mel window of the ASR's encoder pass (``EncodedAudio.mel``)
        for encoder blocks of its own; it checks the window's shape itself."""
        return self.kind == "whisper_layers"

    def accepts(self, transcriber: Any) -> bool:
        """True if ``transcriber``'s encoder output is this member's input (same model.bin)."""
        return self.uses_encoder and getattr(transcriber, "encoder_sha256", None) == self.encoder_sha256

    def reset_session(self) -> None:
        """A new speaker or recording: forget the running normalisation statistics."""
        if self.normalizer is not None:
            self.normalizer.reset()

    def prepare(self) -> None:
        """Load this member's own encoder now (ModelError if it is not the one it was trained on)."""
        if self.uses_encoder:
            self._encoder()
        elif self.kind == "whisper_layers":
            self._encoder_layers()

    def _encoder_layers(self) -> Any:
        """The first encoder blocks on the ASR model's weights (``whisper_layers`` members)."""
        if self._layers is None:
            from emodesk.speech.asr import encoder_sha256, resolve_asr_model
            from emodesk.speech.whisper_layers import WhisperLayers

            folder = Path(resolve_asr_model(self.asr_model))
            if not (folder / "model.bin").is_file():
                raise ModelError(
                    f"voice model {self.id} reads the weights of ASR model {self.asr_model}, which is not "
                    "a local CTranslate2 folder; the voice member is disabled"
                )
            sha = encoder_sha256(folder)
            if sha != self.encoder_sha256:
                raise ModelError(
                    f"voice model {self.id} was trained on the encoder of ASR {self.asr_model} with "
                    f"sha256 {self.encoder_sha256[:12]}…, but {folder} has {sha[:12]}…; "
                    "the voice member is disabled"
                )
            device = "cuda" if self.model.provider == CUDA else "cpu"
            self._layers = WhisperLayers(self.graph_path, folder / "model.bin", self.blocks, device=device)
        return self._layers

    def _encoder(self) -> Any:
        """This member's own ASR encoder, loaded on first use (in the calling thread)."""
        if self._own_encoder is None:
            from emodesk.speech.asr import Transcriber

            enc = Transcriber(self.asr_model, device=self.asr_device, cpu_threads=1)
            if enc.encoder_sha256 != self.encoder_sha256:
                raise ModelError(
                    f"voice model {self.id} was trained on the encoder of ASR {self.asr_model} with "
                    f"sha256 {self.encoder_sha256[:12]}…, but {enc.model_path} has "
                    f"{enc.encoder_sha256[:12]}…; the voice member is disabled"
                )
            self._own_encoder = enc
        return self._own_encoder

    def features(self, audio: np.ndarray, *, encoded: Any = None) -> np.ndarray:
        """The head's input for one utterance; updates the session statistics."""
        assert self.normalizer is not None
        if self.kind == "whisper_layers":
            mel = getattr(encoded, "mel", None)  # the ASR's window, when it encoded this audio
            frames = self._encoder_layers().frames(np.asarray(audio, dtype=np.float32), mel=mel)
            return self.normalizer(pool_frames(frames, self.pooling))
        if encoded is None:
            encoded = self._encoder().encode(np.asarray(audio, dtype=np.float32))
        return self.normalizer(pool_frames(encoded.frames(), self.pooling))

    def score(self, audio: np.ndarray, *, encoded: Any = None) -> np.ndarray:
        """Probabilities in canonical order; ``encoded`` is an ``EncodedAudio`` of ``audio`` from an
        encoder this member ``accepts`` (the caller checks), else the member encodes itself; a member
        that ``reads_mel`` takes only its log-mel window."""
        if self.kind == "waveform":
            x = np.asarray(audio, dtype=np.float32).reshape(1, -1)
        else:
            x = self.features(audio, encoded=encoded).reshape(1, -1)
        out = self.model.run({self.model.input_names[0]: x})[0]
        return self._finish(out)


def context_before(said: Sequence[tuple[float, float, str]], t0: float) -> list[tuple[float, str]]:
    """The earlier trusted transcripts ``said`` (``(t0, t1, words)`` in time order) that are context
    for an utterance starting at ``t0``: most recent first, while each ended within
    :data:`CONTEXT_GAP_S` of the utterance after it, as ``(t0, words)``. The live utterance path
    and session export (its paired rows) both use it."""
    out: list[tuple[float, str]] = []
    start = t0
    for s0, s1, words in reversed(said):
        if start - s1 > CONTEXT_GAP_S:
            break
        out.append((s0, words))
        start = s0
    return out


def encode_with_context(
    tokenizer: Any,
    text: str,
    context: Sequence[str],
    *,
    n_context: int,
    max_current: int,
    max_length: int,
) -> tuple[list[int], list[int], int]:
    """Token ids, token types and how many of ``context`` were read: ``[CLS] current [SEP] previous
    [SEP] the one before [SEP]`` for the first ``n_context`` of ``context`` (earlier utterances, most
    recent first), types 0 then 1. With ``n_context`` > 0 the current utterance is always cut to
    ``max_current`` tokens, and context is added while the whole fits ``max_length`` (the oldest goes
    first). ``tokenizer`` is a ``tokenizers.Tokenizer`` truncating at ``max_length``. The app
    (:class:`TextScorer`) and the trainer (``emodesk train text --context``) both encode with this."""
    enc = tokenizer.encode(text)
    ids = list(enc.ids)
    if not n_context:
        return ids, list(enc.type_ids), 0
    if len(ids) > max_current:  # with or without context: the model was trained so
        ids = [*ids[: max_current - 1], ids[-1]]
    types = [0] * len(ids)
    sep, read = ids[-1], 0
    for previous in list(context)[:n_context]:
        seg = [*tokenizer.encode(previous).ids[1:]]  # … [SEP], its [CLS] dropped
        if len(ids) + len(seg) > max_length:
            room = max_length - len(ids)
            if room < 2:
                break
            seg = [*seg[: room - 1], sep]
        ids += seg
        types += [1] * len(seg)
        read += 1
    return ids, types, read


class TextScorer(_OnnxMember):
    """Scores a transcript. Preprocessing names a ``tokenizer`` JSON file beside the model."""

    modality = "text"

    def __init__(self, model: OnnxModel) -> None:
        super().__init__(model)
        from tokenizers import Tokenizer

        pre = model.manifest.fields("preprocessing")
        tok_file = pre.text("tokenizer", "")
        if not tok_file:
            raise ModelError(f"text model {self.id}: manifest preprocessing lacks 'tokenizer'")
        path = model.manifest.path.parent / tok_file
        try:
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises plain Exception  # noqa: BLE001
            raise ModelError(f"text model {self.id}: cannot load tokenizer {path}: {e}") from None
        self.max_length = pre.integer("max_length", 128, lo=2, hi=8192)
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        # earlier utterances of the same stream the model reads after the current one (token type 1)
        self.context = text_context(model.manifest)
        self.max_current = pre.integer("max_current", self.max_length, lo=2, hi=self.max_length)
        if self.context and "token_type_ids" not in model.input_names:
            raise ModelError(
                f"text model {self.id}: its manifest asks for {self.context} utterances of context, but the "
                "model has no token_type_ids input to tell them from the current one"
            )

    @classmethod
    def load(cls, manifest: ModelManifest, *, device: Device = "auto") -> TextScorer:
        return cls(OnnxModel(manifest, device=device))

    def encode(self, text: str, context: Sequence[str] = ()) -> tuple[list[int], list[int]]:
        """Token ids and token types of ``text`` and, for a model that reads context, the first
        ``self.context`` of ``context`` (earlier utterances, most recent first): ``[CLS] current
        [SEP] previous [SEP] the one before [SEP]``, types 0 then 1, the current utterance cut to
        ``max_current`` tokens and the whole to ``max_length`` (the oldest context goes first)."""
        ids, types, _ = self._encode(text, context)
        return ids, types

    def _encode(self, text: str, context: Sequence[str]) -> tuple[list[int], list[int], int]:
        return encode_with_context(
            self.tokenizer,
            text,
            context,
            n_context=self.context,
            max_current=self.max_current,
            max_length=self.max_length,
        )

    def score(self, text: str, context: Sequence[str] = ()) -> np.ndarray:
        """Probabilities of one transcript; ``context``: earlier utterances of the same stream, most
        recent first (read only by a model whose manifest asks for context)."""
        return self.score_read(text, context)[0]

    def score_read(self, text: str, context: Sequence[str] = ()) -> tuple[np.ndarray, int]:
        """:meth:`score` and how many of ``context`` the model read (fewer when they did not fit)."""
        ids, types, read = self._encode(text, context)
        feeds = self._feeds(
            np.asarray([ids], np.int64), np.ones((1, len(ids)), np.int64), np.asarray([types], np.int64)
        )
        return self._finish(self.model.run(feeds)[0]), read

    def score_many(self, texts: Sequence[str], contexts: Sequence[Sequence[str]] | None = None) -> np.ndarray:
        """``(len(texts), 7)``: :meth:`score` of each transcript (with ``contexts[i]``), in one call
        padded to the longest — the batched pass a GPU gains from; the live path scores one at a time."""
        if contexts is not None and len(contexts) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(contexts)} contexts")
        enc = [self._encode(t, contexts[i] if contexts is not None else ()) for i, t in enumerate(texts)]
        if not enc:
            return np.zeros((0, len(self.order)))
        width = max(len(e[0]) for e in enc)
        ids = np.full((len(enc), width), self.tokenizer.token_to_id("[PAD]") or 0, np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for i, (row_ids, row_types, _) in enumerate(enc):
            ids[i, : len(row_ids)] = row_ids
            mask[i, : len(row_ids)] = 1
            types[i, : len(row_types)] = row_types
        out = np.asarray(self.model.run(self._feeds(ids, mask, types))[0])
        return np.stack([self._finish(row) for row in out])

    def _feeds(self, ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> dict[str, np.ndarray]:
        feeds: dict[str, np.ndarray] = {}
        for name in self.model.input_names:
            if name == "input_ids":
                feeds[name] = ids
            elif name == "attention_mask":
                feeds[name] = mask
            elif name == "token_type_ids":
                feeds[name] = types
            else:
                raise ModelError(f"text model {self.id} has an input {name!r} this version cannot fill")
        return feeds
