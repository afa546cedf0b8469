"""Fine-tune the voice member on recorded sessions (``emodesk retrain``; needs the ``train`` extra).

The voice member is a linear head over the ASR's pooled whisper encoder
states with a running per-session normalisation (:mod:`emodesk.lab.train.voice.train`).
Fine-tuning re-fits that head, with the shipped member's selected settings
(prior weight, epochs, learning rate, weight decay), on the training sessions'
labeled utterances — each session one speaker's simulated live sessions — plus,
with ``base``, the rows of a base dataset (RAVDESS train actors). The result is
a member with the same id and encoder requirement, written to ``out_dir``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emodesk.evaluation.datasets import Row
from emodesk.inference.manifest import ManifestDraft, ModelManifest
from emodesk.lab.train.common import check_agreement, export_onnx, onnx_outputs
from emodesk.lab.train.voice.train import Prior, extract_features, fit_head, simulated_sessions
from emodesk.resources import sha256_file


def finetune_voice(
    member: ModelManifest,
    rows: Sequence[Row],
    out_dir: Path,
    *,
    base: Sequence[Row] = (),
    cache: Path,
    seed: int = 0,
    note: str = "",
) -> ModelManifest:
    """A re-fitted copy of ``member`` in ``out_dir`` (same id), trained on ``rows`` (+ ``base``)."""
    raw: dict[str, Any] = json.loads(member.path.read_text(encoding="utf-8"))
    req = raw.get("requires", {})
    pre = raw.get("preprocessing", {})
    if pre.get("input") not in ("whisper_encoder", "whisper_layers"):
        raise ValueError(f"{member.id} is not a whisper-encoder voice member; cannot fine-tune it here")
    blocks = tuple(int(b) for b in pre.get("blocks", ())) if pre["input"] == "whisper_layers" else ()
    out_dir.mkdir(parents=True, exist_ok=True)
    # the same weightless graph, rebuilt beside the new head (it is a function of the blocks only)
    graph = out_dir / str(pre["encoder_graph"]) if blocks else None
    src = raw.get("source", {})
    selected, settings = src.get("selected", {}), src.get("settings", {})
    weight = float(selected.get("prior_weight", pre["normalization"]["prior_weight"]))
    epochs = int(selected.get("epochs", 200))
    all_rows = [*base, *rows]
    x, sha = extract_features(
        list(all_rows),
        str(req.get("asr_model", "tiny.en")),
        cache,
        quiet=True,
        device="cpu",
        blocks=blocks,
        graph=graph,
    )
    if graph is not None and sha256_file(graph) != pre.get("encoder_graph_sha256"):
        raise ValueError(f"the rebuilt encoder graph of {member.id} differs from the shipped one")
    if req.get("encoder_sha256") and sha != req["encoder_sha256"]:
        raise ValueError(f"the ASR's encoder {sha[:12]}… is not the one {member.id} needs")
    y = np.array([r.label for r in all_rows], np.int64)
    groups = np.array([r.group or "session" for r in all_rows])
    prior = Prior.of(x)
    torch.manual_seed(seed)
    z, idx = simulated_sessions(
        x, groups, prior, weight, int(settings.get("views", 8)), np.random.default_rng(seed)
    )
    head = fit_head(
        z,
        y[idx],
        weight_decay=float(settings.get("weight_decay", 0.01)),
        lr=float(settings.get("lr", 1e-3)),
        epochs=epochs,
        seed=seed,
    )

    class WithSoftmax(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.inner(v), dim=-1)

    model = WithSoftmax(head).eval()
    out = out_dir / member.file
    example = torch.as_tensor(z[:4])
    export_onnx(
        model,
        [example],
        out,
        input_names=["features"],
        output_names=["probs"],
        dynamic_axes={"features": {0: "N"}, "probs": {0: "N"}},
    )
    with torch.no_grad():
        ref = model(torch.as_tensor(z[:64])).numpy()
    diff = check_agreement(ref, onnx_outputs(out, {"features": z[:64]}), atol=1e-5, what=str(out))
    draft = ManifestDraft.from_dict(raw)
    normalization = {
        **draft.preprocessing["normalization"],
        "prior_mean": [float(v) for v in prior.mean],
        "prior_std": [float(v) for v in prior.std],
    }
    source = {
        **src,
        "fine_tuned": {
            "from_sha256": member.sha256,
            "rows": len(rows),
            "base_rows": len(base),
            "note": note,
            "onnx_vs_torch_max_abs_diff": diff,
        },
    }
    return replace(
        draft,
        preprocessing={**draft.preprocessing, "normalization": normalization},
        source=source,
        metrics={},
    ).write(out)
