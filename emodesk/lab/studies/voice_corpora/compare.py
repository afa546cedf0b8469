"""Does TESS help? Does augmentation? The voice head trained on four kinds of training data, every
one selected and judged by the same validation sets, before any test set is touched.

    python -m emodesk.lab.studies.voice_corpora.compare --cache build/voice/features-tinyen.npz \
        [--encoder-blocks 2] [--json emodesk/lab/studies/voice_corpora/results-tinyen.json]

The features are the ones ``emodesk train voice --data …/ravdess --data …/tess --augment 2``
cached (one encoder pass per clip and augmented copy). Training data:

- ``ravdess``: RAVDESS actors 01–18, clean;
- ``ravdess+tess``: and TESS's train words, clean;
- ``ravdess+aug``: RAVDESS with 2 augmented copies per clip (simulated rooms and devices);
- ``ravdess+tess+aug``: both corpora, both augmented.

Validation, the same for all four and the same rule as the trainer (mean UAR over the
speaker-independent val sets, each speaker or simulated session replayed live): RAVDESS actors
19–20, clean and augmented. TESS's val words (clean and augmented) are reported but do not judge:
its two speakers are the training speakers, so they reward remembering them. Also reported per
set: the share of neutral validation clips read as angry (``calm_as_angry``) and as any
high-arousal label.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


#: the trainer's own selection settings, for every study that compares voice heads on validation
def study_settings(seed: int) -> argparse.Namespace:
    return argparse.Namespace(
        epochs=200,
        prior_weights="5,10,20",
        views=8,
        weight_decay=1e-2,
        lr=1e-3,
        seed=seed,
        quiet=True,
        balance="corpora",
    )


def study_features(
    corpora: list[Any], asr_model: str, cache: Path, blocks: tuple[int, ...]
) -> tuple[list[Any], dict[str, list[Any]], dict[str, np.ndarray]]:
    """The training items (2 augmented copies), the val sets (1 augmented copy) and every item's
    pooled features by key, from ``cache`` (extracted there when missing)."""
    from emodesk.lab.train.voice import train as vt

    train_items, val_items = vt.training_sets(corpora, augment=2, augment_val=1, session_size=20)
    every = train_items + [it for items in val_items.values() for it in items]
    x, _ = vt.extract_features(
        [it.row for it in every],
        asr_model,
        cache,
        quiet=True,
        device="cpu",
        blocks=blocks,
        graph=cache.with_suffix(".encoder.onnx") if blocks else None,
        keys=[it.key for it in every],
        load=vt.ItemAudio(),
    )
    return train_items, val_items, dict(zip((it.key for it in every), x, strict=True))


def select_and_score(tr: Any, vals: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Select a head on ``vals`` by the trainer's rule, fit it on ``tr``, score every val set."""
    from emodesk.evaluation.metrics import compute_metrics
    from emodesk.lab.train.voice import train as vt

    best, _ = vt.select_on_val(tr, vals, vt.Prior.of(tr.x), args)
    head, prior = vt.fit_selected(tr, best, args)
    per: dict[str, Any] = {}
    for n, v in vals.items():
        z = vt.running_sessions(v.x, v.groups, prior, best["prior_weight"], args.seed)
        m = compute_metrics(v.y, vt.predict(head, z), bootstrap=0)
        misread = m.get("neutral_misread") or {}
        per[n] = {
            "accuracy": m["accuracy"],
            "uar": m["uar"],
            "calm_as_angry": misread.get("angry"),
            "calm_as_high_arousal": misread.get("high_arousal"),
        }
    return {
        "selected": {"prior_weight": best["prior_weight"], "epochs": best["epochs"]},
        "val_uar_mean": best["val_uar"],
        "per_set": per,
    }


def main(argv: list[str] | None = None) -> int:
    from emodesk.lab.train.voice import train as vt
    from emodesk.resources import datasets_dir

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--data", type=Path, default=None, help="the shared datasets folder")
    p.add_argument("--asr-model", default="tiny.en")
    p.add_argument("--encoder-blocks", default=None)
    p.add_argument("--json", type=Path)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    speech = (a.data or datasets_dir()) / "speech"
    corpora = vt.load_corpora([speech / "ravdess", speech / "tess"], None, a.seed)
    args = study_settings(a.seed)
    train_items, val_items, feats = study_features(
        corpora, a.asr_model, a.cache, vt.parse_blocks(a.encoder_blocks)
    )

    def split(items: list[vt.Item]) -> vt.Split:
        return vt.to_split(items, np.stack([feats[it.key] for it in items]))

    vals = {n: split(items) for n, items in val_items.items()}
    variants = {
        name: [it for it in train_items if it.corpus in names and (aug or not it.augmented)]
        for name, names, aug in (
            ("ravdess", ("ravdess",), False),
            ("ravdess+tess", ("ravdess", "tess"), False),
            ("ravdess+aug", ("ravdess",), True),
            ("ravdess+tess+aug", ("ravdess", "tess"), True),
        )
    }
    out: dict[str, Any] = {"sets": {n: len(v.y) for n, v in vals.items()}, "variants": {}}
    for name, items in variants.items():
        res = select_and_score(split(items), vals, args)
        out["variants"][name] = {"train_clips": len(items), **res}
        per = res["per_set"]
        print(
            f"{name:18s} mean val UAR {res['val_uar_mean']:.4f}  "
            + "  ".join(f"{n} {r['accuracy']:.3f}/{r['calm_as_angry']}" for n, r in per.items()),
            file=sys.stderr,
        )
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
