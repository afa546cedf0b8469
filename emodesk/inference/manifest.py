"""Model manifests (``X.json`` beside ``X.onnx``) and their load-time checks.

A model is refused when its sha256 or its input shapes disagree with the
manifest, with a message naming both (docs/formats.md, "Model manifests").
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emodesk.errors import ModelError
from emodesk.resources import sha256_file

MODALITIES = ("face", "voice", "text", "face-detector", "vad", "asr")
Dim = int | str | None


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[Dim, ...]
    dtype: str

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TensorSpec:
        return cls(str(d["name"]), tuple(d["shape"]), str(d.get("dtype", "float32")))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


#: ``preprocessing`` keys whose value is the name of a file beside the manifest that travels with it
COMPANION_KEYS = ("tokenizer", "encoder_graph")


@dataclass(frozen=True)
class ModelManifest:
    id: str
    modality: str
    file: str
    sha256: str
    inputs: tuple[TensorSpec, ...]
    path: Path
    labels: tuple[str, ...] | None = None
    preprocessing: Mapping[str, Any] = field(default_factory=dict)
    postprocessing: Mapping[str, Any] = field(default_factory=dict)
    source: Mapping[str, Any] = field(default_factory=dict)
    license: str = ""
    metrics: Mapping[str, Any] = field(default_factory=dict)
    requires: Mapping[str, Any] = field(default_factory=dict)
    outputs: tuple[TensorSpec, ...] = ()
    usage: str = ""
    """A restriction users must see, from the data it learned (e.g. "non-commercial use only")."""

    @property
    def model_path(self) -> Path:
        return self.path.parent / self.file

    @property
    def companion_paths(self) -> list[Path]:
        """Files beside the model that it needs, named in ``preprocessing`` under
        :data:`COMPANION_KEYS` (a text member's tokenizer, a voice member's encoder graph)."""
        return [
            self.path.parent / str(self.preprocessing[k]) for k in COMPANION_KEYS if k in self.preprocessing
        ]

    @classmethod
    def load(cls, json_path: Path | str) -> ModelManifest:
        """Parse and validate a manifest file; raise :class:`ModelError` naming the problem."""
        p = Path(json_path)
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelError(f"model manifest {p} not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelError(f"model manifest {p} is unreadable: {e}") from None
        if not isinstance(d, dict):
            raise ModelError(f"model manifest {p} must hold a JSON object, got {type(d).__name__}")
        missing = [k for k in ("id", "modality", "file", "sha256", "inputs") if k not in d]
        if missing:
            raise ModelError(f"model manifest {p} lacks required fields {missing}")
        try:
            labels = tuple(d["labels"]) if d.get("labels") else None
            return cls(
                id=str(d["id"]),
                modality=str(d["modality"]),
                file=str(d["file"]),
                sha256=str(d["sha256"]).lower(),
                inputs=tuple(TensorSpec.from_json(x) for x in d["inputs"]),
                outputs=tuple(TensorSpec.from_json(x) for x in d.get("outputs", [])),
                path=p.resolve(),
                labels=labels,
                preprocessing=dict(d.get("preprocessing", {})),
                postprocessing=dict(d.get("postprocessing") or {}),
                source=dict(d.get("source", {})),
                license=str(d.get("license", "")),
                metrics=dict(d.get("metrics", {})),
                requires=dict(d.get("requires", {})),
                usage=str(d.get("usage", "")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"model manifest {p} is malformed: {e}") from None

    def verify_file(self) -> None:
        """Check that the model file exists and its sha256 matches the manifest."""
        mp = self.model_path
        if not mp.is_file():
            raise ModelError(f"model {self.id}: file {mp} is missing (manifest {self.path})")
        actual = sha256_file(mp)
        if actual != self.sha256:
            raise ModelError(
                f"model {self.id}: {mp} has sha256 {actual[:16]}…, but its manifest "
                f"{self.path.name} says {self.sha256[:16]}…; the file is corrupt or was "
                "replaced — reinstall it or re-export the model"
            )

    def check_inputs(self, actual: Sequence[TensorSpec]) -> None:
        """Compare the session's inputs with the manifest's; symbolic dims match anything."""
        by_name = {t.name: t for t in actual}
        for want in self.inputs:
            got = by_name.get(want.name)
            if got is None:
                raise ModelError(
                    f"model {self.id}: manifest input {want.name!r} not in the model, "
                    f"which has inputs {sorted(by_name)}"
                )
            if not _shapes_match(want.shape, got.shape):
                raise ModelError(
                    f"model {self.id}: input {want.name!r} has shape {list(got.shape)} in "
                    f"{self.model_path.name} but {list(want.shape)} in its manifest"
                )


def _shapes_match(want: Sequence[Dim], got: Sequence[Dim]) -> bool:
    if len(want) != len(got):
        return False
    for w, g in zip(want, got, strict=True):
        if isinstance(w, int) and w >= 0 and isinstance(g, int) and w != g:
            return False
        if isinstance(w, int) and w >= 0 and not isinstance(g, int):
            return False
    return True


def write_manifest(json_path: Path, data: Mapping[str, Any]) -> None:
    """Write a manifest with the model file's sha256 filled in (used by export scripts)."""
    d = dict(data)
    d["sha256"] = sha256_file(json_path.parent / str(d["file"]))
    json_path.write_text(json.dumps(d, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
