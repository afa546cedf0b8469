"""``fusion.json``: which members are fused, with which weights (docs/formats.md, "Fusion").

The one home of the file: it is found (:func:`find_fusion_config`), read
(:func:`parse_fusion_json`, :func:`load_active_fusion`), watched for changes
(:func:`fusion_watch_paths`, :func:`fusion_file_stamp`: the window's file watcher asks these)
and written (:func:`fusion_json_document`, :func:`write_fusion_json`) here and nowhere else.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from emodesk.errors import ConfigError
from emodesk.fusion.fuse import RULES, WEIGHTED_SUM, Rule, Weight, fuse, weight_vector
from emodesk.inference.lock import check_locked, refresh_if_locked
from emodesk.inference.members import MEMBER_MODALITIES
from emodesk.inference.registry import installed_manifests
from emodesk.labels import LABELS
from emodesk.readers import Fields, read_json
from emodesk.resources import model_search_dirs

log = logging.getLogger(__name__)

VERSION = 2  # 2 added "rule" (docs/formats.md, "Fusion"); version 1 files are read as weighted sums


@dataclass(frozen=True)
class FusionConfig:
    """Weights of the installed members; ``members`` is the fusion's membership."""

    weights: Mapping[str, Weight]
    path: Path | None = None
    dropped: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)
    rule: Rule = WEIGHTED_SUM

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(self.weights)

    @classmethod
    def equal(cls, member_ids: list[str], *, warnings: tuple[str, ...] = ()) -> FusionConfig:
        return cls({m: 1.0 for m in member_ids}, warnings=warnings)

    def fuse(self, probs: Mapping[str, np.ndarray]) -> np.ndarray:
        """This config's rule over the members given in ``probs`` (one row)."""
        return fuse(probs, self.weights, self.rule)

    def scalar_weight(self, member: str) -> float:
        """A one-number summary for display (mean of a per-class vector)."""
        w = self.weights.get(member, 0.0)
        return float(np.mean(weight_vector(w)))


def parse_fusion_json(path: Path, installed: Mapping[str, str]) -> FusionConfig:
    """Parse ``path``; ``installed`` maps model id → sha256. Raises ConfigError if malformed."""
    if path.is_file():
        check_locked(path, error=ConfigError)
    f = read_json(path, what="fusion file", error=ConfigError)
    d = f.data
    version = f.integer("version", 1, lo=1)
    if version > VERSION:
        raise ConfigError(
            f"{path}: version {version} is newer than this emodesk reads ({VERSION}); update emodesk"
        )
    rule = _read_rule(f) if version >= 2 else WEIGHTED_SUM
    classes = f.texts("classes", list(LABELS))
    if list(classes) != list(LABELS):
        raise ConfigError(f"{path}: classes {classes[:10]} differ from the canonical {list(LABELS)}")
    members = f.array("members", max_len=256)
    weights_in = f.obj("weights")
    weights: dict[str, Weight] = {}
    dropped: list[str] = []
    warnings: list[str] = []
    for i, raw in enumerate(members):
        m = Fields(raw, f"{f.where}: members[{i}]", ConfigError)
        mid, sha = m.text("id"), m.text("sha256", "").lower()
        if mid not in weights_in:
            raise ConfigError(f"{path}: member {mid[:80]} has no weight")
        w = weights_in.raw(mid)
        if isinstance(w, list):
            vec = np.asarray(weights_in.numbers(mid, length=len(LABELS)), dtype=np.float64)
        else:
            vec = np.full(len(LABELS), weights_in.number(mid))
        if np.any(vec < 0):
            raise ConfigError(f"{path}: weight of {mid[:80]} must be finite and non-negative")
        if mid not in installed:
            dropped.append(mid)
            warnings.append(f"fusion member {mid[:80]} is not installed; fusing the rest")
            continue
        if sha and installed[mid] != sha:
            dropped.append(mid)
            warnings.append(
                f"fusion member {mid}: sha256 {sha[:12]}… in {path.name} differs from the "
                f"installed model's {installed[mid][:12]}…; dropped"
            )
            continue
        weights[mid] = float(w) if not isinstance(w, list) else vec
    for w_msg in warnings:
        log.warning(w_msg)
    return FusionConfig(weights, path, tuple(dropped), tuple(warnings), d, rule)


def _read_rule(f: Fields) -> Rule:
    r = f.obj("rule")
    name = r.text("name", choices=RULES)
    if name == "weighted-sum":
        return WEIGHTED_SUM
    bias = r.numbers("bias", length=len(LABELS), lo=-100.0, hi=100.0)
    return Rule.log_linear(bias, r.number("epsilon", lo=1e-12, hi=0.1))


def rule_document(rule: Rule) -> dict[str, Any]:
    """``fusion.json``'s ``rule`` object."""
    if rule.name == "weighted-sum":
        return {"name": rule.name}
    return {"name": rule.name, "bias": [round(b, 6) for b in rule.bias], "epsilon": rule.epsilon}


def load_fusion_config(
    path: Path | None, installed: Mapping[str, str], modalities: Mapping[str, str]
) -> FusionConfig:
    """The active fusion config, never failing: a malformed file falls back to equal weights.

    ``modalities`` maps installed member ids (face/voice/text models) to their modality;
    without a ``fusion.json`` every installed member is fused with equal weights.
    """
    members = sorted(modalities)
    if path is None:
        return FusionConfig.equal(members)
    try:
        cfg = parse_fusion_json(path, installed)
    except ConfigError as e:
        msg = f"{e}; using equal weights"
        log.warning(msg)
        return FusionConfig.equal(members, warnings=(msg,))
    if not cfg.weights and members:
        msg = f"{path.name} fuses none of the installed members; using equal weights"
        log.warning(msg)
        return FusionConfig.equal(members, warnings=(*cfg.warnings, msg))
    extra = [m for m in members if m not in cfg.weights and m not in cfg.dropped]
    if extra:
        msg = f"installed models {extra} are not members of {path.name}; they are shown but not fused"
        log.info(msg)
        cfg = FusionConfig(cfg.weights, cfg.path, cfg.dropped, (*cfg.warnings, msg), cfg.raw, cfg.rule)
    return cfg


def find_fusion_config(dirs: Sequence[Path] | None = None) -> Path | None:
    """The active ``fusion.json``: the first model folder (active user set, then shipped) holding one."""
    for d in dirs if dirs is not None else model_search_dirs():
        p = d / "fusion.json"
        if p.is_file():
            return p
    return None


def load_active_fusion() -> FusionConfig:
    """The active ``fusion.json`` over the installed members (equal weights if absent or bad)."""
    ms = [m for m in installed_manifests().values() if m.modality in MEMBER_MODALITIES]
    return load_fusion_config(
        find_fusion_config(), {m.id: m.sha256 for m in ms}, {m.id: m.modality for m in ms}
    )


def fusion_watch_paths() -> list[Path]:
    """What a watcher of the active ``fusion.json`` watches: every model folder (a file replaced
    atomically, written then renamed, drops a watch on the file itself) and the file."""
    paths = [d for d in model_search_dirs() if d.is_dir()]
    current = find_fusion_config()
    return [*paths, current] if current is not None else paths


def fusion_file_stamp() -> tuple[str, int, int] | None:
    """Which ``fusion.json`` is active and its mtime and size: a different stamp means reload."""
    p = find_fusion_config()
    if p is None:
        return None
    try:
        st = p.stat()
    except OSError:
        return None
    return (str(p), st.st_mtime_ns, st.st_size)


def fusion_json_document(
    members: Sequence[tuple[str, str, str]],
    weights: Mapping[str, Weight | list[float]],
    *,
    optimizer: Mapping[str, Any],
    objective: Mapping[str, Any],
    data: Mapping[str, Any],
    rule: Rule = WEIGHTED_SUM,
) -> dict[str, Any]:
    """A ``fusion.json`` document: the one place its keys are written. ``members``: (id, sha256,
    modality) of each member, in weight order; ``rule`` how their weighted scores combine;
    ``optimizer``/``objective``/``data`` say how the weights were found and on what."""
    return {
        "version": VERSION,
        "classes": list(LABELS),
        "rule": rule_document(rule),
        "members": [{"id": m, "sha256": sha, "modality": mod} for m, sha, mod in members],
        "weights": {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in weights.items()},
        "optimizer": dict(optimizer),
        "objective": dict(objective),
        "data": dict(data),
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def equal_fusion_document(members: Sequence[tuple[str, str, str]]) -> dict[str, Any]:
    """``fusion.json`` with equal weights per modality, shared equally by its members: the baseline,
    and the fallback when no paired data is at hand (``emodesk fusion equal``)."""
    members = sorted(members)
    per_modality = {mod: sum(o[2] == mod for o in members) for _, _, mod in members}
    return fusion_json_document(
        members,
        {m: 1.0 / per_modality[mod] for m, _, mod in members},
        optimizer={"name": "equal-weights", "params": {}, "seed": None, "evaluations": 0},
        objective={"name": "none", "value": None},
        data={"manifest": None, "sha256": None, "rows": 0},
    )


def write_fusion_json(path: Path, doc: Mapping[str, Any]) -> None:
    """Write ``doc`` to ``path`` atomically (a temporary file, then a rename): a running window that
    watches it never reads half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    refresh_if_locked(path.parent, [path])
