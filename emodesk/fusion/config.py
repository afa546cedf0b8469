"""``fusion.json``: which members are fused, with which weights (docs/formats.md, "Fusion")."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emodesk.errors import ConfigError
from emodesk.fusion.fuse import Weight, weight_vector
from emodesk.labels import LABELS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FusionConfig:
    """Weights of the installed members; ``members`` is the fusion's membership."""

    weights: Mapping[str, Weight]
    path: Path | None = None
    dropped: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(self.weights)

    @classmethod
    def equal(cls, member_ids: list[str], *, warnings: tuple[str, ...] = ()) -> FusionConfig:
        return cls({m: 1.0 for m in member_ids}, warnings=warnings)

    def scalar_weight(self, member: str) -> float:
        """A one-number summary for display (mean of a per-class vector)."""
        w = self.weights.get(member, 0.0)
        return float(np.mean(weight_vector(w)))


def parse_fusion_json(path: Path, installed: Mapping[str, str]) -> FusionConfig:
    """Parse ``path``; ``installed`` maps model id → sha256. Raises ConfigError if malformed."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not readable JSON: {e}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path} must hold a JSON object, got {type(d).__name__}")
    try:
        classes = d.get("classes", list(LABELS))
        if list(classes) != list(LABELS):
            raise ConfigError(f"{path}: classes {classes} differ from the canonical {list(LABELS)}")
        members = d["members"]
        weights_in = d["weights"]
        if not isinstance(members, list) or not isinstance(weights_in, dict):
            raise ConfigError(f"{path}: 'members' must be a list and 'weights' an object")
        weights: dict[str, Weight] = {}
        dropped: list[str] = []
        warnings: list[str] = []
        for m in members:
            mid, sha = str(m["id"]), str(m.get("sha256", "")).lower()
            if mid not in weights_in:
                raise ConfigError(f"{path}: member {mid} has no weight")
            w = weights_in[mid]
            try:
                vec = weight_vector(w)
            except ValueError as e:
                raise ConfigError(f"{path}: weight of {mid}: {e}") from None
            if not np.all(np.isfinite(vec)) or np.any(vec < 0):
                raise ConfigError(f"{path}: weight of {mid} must be finite and non-negative")
            if mid not in installed:
                dropped.append(mid)
                warnings.append(f"fusion member {mid} is not installed; fusing the rest")
                continue
            if sha and installed[mid] != sha:
                dropped.append(mid)
                warnings.append(
                    f"fusion member {mid}: sha256 {sha[:12]}… in {path.name} differs from the "
                    f"installed model's {installed[mid][:12]}…; dropped"
                )
                continue
            weights[mid] = float(w) if isinstance(w, (int, float)) else vec
    except (KeyError, TypeError) as e:
        raise ConfigError(f"{path} is malformed: missing or wrong field {e}") from None
    for w_msg in warnings:
        log.warning(w_msg)
    return FusionConfig(weights, path, tuple(dropped), tuple(warnings), d)


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
    extra = [m for m in members if m not in cfg.weights and m not in cfg.dropped]
    if extra:
        msg = f"installed models {extra} are not members of {path.name}; they are shown but not fused"
        log.info(msg)
        cfg = FusionConfig(cfg.weights, cfg.path, cfg.dropped, (*cfg.warnings, msg), cfg.raw)
    return cfg
