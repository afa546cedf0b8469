"""The first blocks of the ASR's whisper encoder, run by ONNX Runtime on the ASR's own weights.

Why: CTranslate2 returns only the encoder's last layer, and emotion lives
lower down. On RAVDESS (actor-group CV over actors 01–20) the states after
tiny.en's second block classify emotion about five points better than the
final output (``emodesk/lab/studies/voice_layers/study.py``). A voice member of kind
``whisper_layers`` (:class:`emodesk.inference.utterance_scorers.VoiceScorer`)
pools these states instead.

The network is a small ONNX graph that ships with the member (a few kB: no
weights); its weights are graph inputs, read here from the ASR's CTranslate2
``model.bin`` — the file the app already has, verified by the sha256 the
member names. Linear weights go through CTranslate2's int8 rule
(:func:`emodesk.speech.ct2_int8.quantize_variable`, then back to float32), so
the float16 source folder and the bundle's int8 copy give identical weights,
and so identical features; convolutions, layer norms and position encodings
are used as stored. The graph is built by ``emodesk.lab.train.voice.whisper_graph``.

Input: the log-mel window ``Transcriber.encode`` uses (the utterance plus 2 s,
at least 10 s, zero-padded); output: the states of the utterance's own frames
(50 per second) after each requested block.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emodesk.errors import ModelError
from emodesk.speech.asr import context_frames, log_mel_window, n_valid_frames

MEL_INPUT = "mel"
#: the external-data file name the graph's weights point to; never read (the weights come from model.bin)
EXTERNAL_LOCATION = "model.bin (CTranslate2, read by emodesk.speech.whisper_layers)"


def block_output(block: int) -> str:
    """Graph output name of the residual stream after transformer block ``block`` (1-based)."""
    return f"block_{block}"


#: graph input → ``model.bin`` variable, for the stem and (prefixed ``b{i}_``) for every block; the
#: graph's input names, their order and the builder's shapes all come from these two tables
_STEM = {
    "conv1_w": "encoder/conv1/weight",
    "conv1_b": "encoder/conv1/bias",
    "conv2_w": "encoder/conv2/weight",
    "conv2_b": "encoder/conv2/bias",
    "pos": "encoder/position_encodings/encodings",
}
_BLOCK = {
    "ln1_g": "self_attention/layer_norm/gamma",
    "ln1_b": "self_attention/layer_norm/beta",
    "qkv_w": "self_attention/linear_0/weight",
    "qkv_b": "self_attention/linear_0/bias",
    "out_w": "self_attention/linear_1/weight",
    "out_b": "self_attention/linear_1/bias",
    "ln2_g": "ffn/layer_norm/gamma",
    "ln2_b": "ffn/layer_norm/beta",
    "fc1_w": "ffn/linear_0/weight",
    "fc1_b": "ffn/linear_0/bias",
    "fc2_w": "ffn/linear_1/weight",
    "fc2_b": "ffn/linear_1/bias",
}


def _sources(n_blocks: int) -> dict[str, str]:
    """Graph input names of the weights, in a fixed order, each with its ``model.bin`` variable."""
    out = dict(_STEM)
    for i in range(n_blocks):
        out |= {f"b{i}_{part}": f"encoder/layer_{i}/{src}" for part, src in _BLOCK.items()}
    return out


def encoder_weights(model_bin: Path, n_blocks: int) -> tuple[dict[str, np.ndarray], int]:
    """Float32 graph inputs for the first ``n_blocks`` blocks of ``model_bin``'s encoder, and its head count.

    Linear weights are CTranslate2-int8 values (quantized here when the file
    holds float weights) and transposed to (in, out) for MatMul.
    """
    from emodesk.speech.ct2_int8 import quantizable, quantize_variable, read_model_bin

    _, _, _, variables, _ = read_model_bin(model_bin)
    by_name = {v.name: v for v in variables if v.name.startswith("encoder/")}
    if "encoder/num_heads" not in by_name:
        raise ModelError(f"{model_bin} is not a whisper model (no encoder/num_heads)")
    nh = by_name["encoder/num_heads"]
    heads = int(np.frombuffer(nh.data, dtype=np.dtype(nh.dtype).newbyteorder("<"))[0])

    def array(name: str) -> np.ndarray:
        v = by_name.get(name)
        if v is None:
            raise ModelError(f"{model_bin} has no variable {name}: fewer than {n_blocks} encoder blocks?")
        if v.dtype != "int8" and quantizable(v):
            q, s = quantize_variable(v)
        elif v.dtype == "int8":
            q, s = v, by_name[name + "_scale"]
        else:
            return (
                np.frombuffer(v.data, np.dtype(v.dtype).newbyteorder("<")).astype(np.float32).reshape(v.shape)
            )
        qa = np.frombuffer(q.data, np.int8).astype(np.float32).reshape(q.shape)
        sa = np.frombuffer(s.data, np.dtype("<f4")).astype(np.float32)
        return (qa / sa.reshape((-1,) + (1,) * (qa.ndim - 1))).astype(np.float32)

    out: dict[str, np.ndarray] = {}
    for n, src in _sources(n_blocks).items():
        a = array(src)
        linear = n.startswith("b") and n.endswith("_w")  # (out, in) in model.bin, (in, out) for MatMul
        out[n] = np.ascontiguousarray(a.T if linear else a, dtype=np.float32)
    return out, heads


class WhisperLayers:
    """States after given encoder blocks for one utterance; create in the thread that uses it."""

    def __init__(
        self,
        graph: Path,
        model_bin: Path,
        blocks: tuple[int, ...],
        *,
        device: str = "auto",
        threads: int = 1,
        min_context_s: float | None = 10.0,
    ) -> None:
        import onnxruntime as ort
        from faster_whisper.feature_extractor import FeatureExtractor

        from emodesk.machine import choose_providers

        if not blocks or min(blocks) < 1:
            raise ModelError(f"encoder blocks must be ≥ 1, got {blocks}")
        self.blocks = tuple(blocks)
        self.min_context_s = min_context_s
        weights, _ = encoder_weights(model_bin, max(self.blocks))
        choice = choose_providers(device)  # type: ignore[arg-type]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        names = list(weights)
        values = [ort.OrtValue.ortvalue_from_numpy(weights[n]) for n in names]
        opts.add_external_initializers(names, values)
        try:
            self.session = ort.InferenceSession(
                str(graph), sess_options=opts, providers=list(choice.providers)
            )
        except Exception as e:  # onnxruntime raises its own untyped errors  # noqa: BLE001
            raise ModelError(
                f"ONNX Runtime could not load the encoder graph {graph} with the weights of {model_bin} "
                f"({max(self.blocks)} blocks): {e}"
            ) from None
        self.provider = self.session.get_providers()[0]
        outputs = {o.name for o in self.session.get_outputs()}
        missing = [block_output(b) for b in self.blocks if block_output(b) not in outputs]
        if missing:
            raise ModelError(f"encoder graph {graph} has no output {', '.join(missing)}")
        self._outputs = [block_output(b) for b in self.blocks]
        self._extractor = FeatureExtractor()
        self.width = int(weights["conv1_b"].shape[0])

    def states(self, mel: np.ndarray) -> list[np.ndarray]:
        """``(1, 80, T)`` log-mel → one ``(T/2, d)`` array per requested block."""
        outs = self.session.run(self._outputs, {MEL_INPUT: np.ascontiguousarray(mel, dtype=np.float32)})
        return [np.asarray(o, dtype=np.float32)[0] for o in outs]

    def frames(self, audio: np.ndarray, *, mel: np.ndarray | None = None) -> np.ndarray:
        """``(n_valid, d · len(blocks))`` float32: the utterance's own frames, blocks side by side.

        ``mel``: the log-mel window the ASR already computed for this audio
        (``EncodedAudio.mel``); used when it is the window this computes itself
        (same mel bands and frames), which saves the feature extraction.
        """
        a = np.asarray(audio, dtype=np.float32).reshape(-1)
        if a.shape[0] == 0:
            raise ValueError("an empty utterance has no encoder frames")
        want = (self._extractor.mel_filters.shape[0], context_frames(a.shape[0], self.min_context_s))
        if mel is None or mel.shape != want:
            mel = log_mel_window(a, self._extractor, want[1])
        n = n_valid_frames(a.shape[0], want[1])
        return np.concatenate([s[:n] for s in self.states(mel[None])], axis=1)
