"""Model manifests (``X.json`` beside ``X.onnx``): the one validating reader, the typed builder,
and their load-time checks.

A model is refused when its sha256 or its input shapes disagree with the
manifest, with a message naming both (docs/formats.md, "Model manifests").
Every exporter (the lab's trainers, converters and retraining) writes through
:class:`ManifestDraft`, so the keys are spelled in one place and a draft the app
would refuse fails when it is written, not when the app loads it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emodesk.errors import ModelError
from emodesk.inference.lock import check_locked, refresh_if_locked
from emodesk.readers import MISSING, Fields, read_json
from emodesk.resources import sha256_file

MODALITIES = ("face", "voice", "text", "face-detector", "face-verifier", "vad", "asr")
Dim = int | str | None
_SHA256 = re.compile(r"[0-9a-f]{64}")


def plain_file_name(name: str, where: str) -> str:
    """``name`` when it names a file in the manifest's own folder (no folder part, not ``..``);
    a manifest is a file anyone can edit, and it must not point a check at files elsewhere."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ModelError(f"{where}: expected a file name beside the manifest, got {name[:80]!r}")
    return name


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[Dim, ...]
    dtype: str

    @classmethod
    def from_fields(cls, f: Fields, key: str, default: Any = None) -> list[TensorSpec]:
        """The tensors listed under ``key``, every field type-checked."""
        out = []
        for i, x in enumerate(f.array(key, default if default is not None else MISSING, max_len=64)):
            t = Fields(x, f"{f.where}: {key}[{i}]", f.error)
            shape = t.array("shape", max_len=16)
            for d in shape:
                if not (d is None or isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool))):
                    t.fail("shape", "dimensions that are whole numbers, names or null", d)
            out.append(cls(t.text("name"), tuple(shape), t.text("dtype", "float32")))
        return out

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
        """Parse and validate a manifest file; raise :class:`ModelError` naming the problem
        (through :mod:`emodesk.readers`: size, nesting and number limits, then every field's type)."""
        p = Path(json_path)
        if p.is_file():
            check_locked(p)
        f = read_json(p, what="model manifest", error=ModelError)
        missing = [k for k in ("id", "modality", "file", "sha256", "inputs") if k not in f]
        if missing:
            raise ModelError(f"model manifest {p} lacks required fields {missing}")
        sha = f.text("sha256").lower()
        if not _SHA256.fullmatch(sha):
            raise ModelError(f"model manifest {p}: sha256: expected 64 hex digits, got {sha[:70]!r}")
        pre = f.obj("preprocessing", {})
        for k in COMPANION_KEYS:
            if k in pre:
                name = plain_file_name(pre.text(k), f"model manifest {p}: preprocessing: {k}")
                if (p.parent / name).is_file():
                    check_locked(p.parent / name)
        labels = f.texts("labels", None)
        return cls(
            id=f.text("id"),
            modality=f.text("modality"),
            file=plain_file_name(f.text("file"), f"model manifest {p}: file"),
            sha256=sha,
            inputs=tuple(TensorSpec.from_fields(f, "inputs")),
            outputs=tuple(TensorSpec.from_fields(f, "outputs", [])),
            path=p.resolve(),
            labels=tuple(labels) if labels else None,
            preprocessing=dict(pre.data),
            postprocessing=dict(f.obj("postprocessing", {}).data),
            source=dict(f.obj("source", {}).data),
            license=f.text("license", ""),
            metrics=dict(f.obj("metrics", {}).data),
            requires=dict(f.obj("requires", {}).data),
            usage=f.text("usage", ""),
        )

    def fields(self, section: str) -> Fields:
        """``preprocessing``, ``postprocessing`` or ``requires`` for typed reads that fail with a
        :class:`ModelError` naming this model and the key."""
        data = {
            "preprocessing": self.preprocessing,
            "postprocessing": self.postprocessing,
            "requires": self.requires,
        }[section]
        return Fields(data, f"model {self.id} ({self.path.name}): {section}", ModelError)

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


@dataclass(frozen=True)
class ManifestDraft:
    """A manifest before it is written. ``file`` and ``sha256`` are not fields: :meth:`write` takes
    them from the model file itself; ``id`` defaults to the file's stem, ``created`` to now."""

    modality: str
    inputs: Sequence[Mapping[str, Any]] = ()
    outputs: Sequence[Mapping[str, Any]] = ()
    id: str | None = None
    labels: Sequence[str] | None = None
    preprocessing: Mapping[str, Any] = field(default_factory=dict)
    postprocessing: Mapping[str, Any] | None = None
    requires: Mapping[str, Any] = field(default_factory=dict)
    source: Mapping[str, Any] = field(default_factory=dict)
    usage: str = ""
    license: str = ""
    license_text: str | None = None
    """The full text of a license that asks to travel with the weights (MIT, for example)."""
    metrics: Mapping[str, Any] = field(default_factory=dict)
    created: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ManifestDraft:
        """A draft of an existing manifest's JSON, to edit with :func:`dataclasses.replace`; a key
        this project does not know is refused rather than dropped."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known - {"file", "sha256"})
        if unknown:
            raise ModelError(f"manifest {d.get('id', '?')}: unknown keys {unknown}")
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def from_file(cls, json_path: Path) -> ManifestDraft:
        return cls.from_dict(read_json(json_path, what="model manifest", error=ModelError).data)

    def document(self, model_path: Path) -> dict[str, Any]:
        """The manifest's JSON object for ``model_path`` (keys in a fixed order)."""
        d: dict[str, Any] = {
            "id": self.id or model_path.stem,
            "modality": self.modality,
            "file": model_path.name,
            "sha256": sha256_file(model_path),
            "inputs": [dict(x) for x in self.inputs],
        }
        if self.outputs:
            d["outputs"] = [dict(x) for x in self.outputs]
        d["preprocessing"] = dict(self.preprocessing)
        if self.postprocessing is not None:
            d["postprocessing"] = dict(self.postprocessing)
        if self.labels is not None:
            d["labels"] = list(self.labels)
        d["requires"] = dict(self.requires)
        d["source"] = dict(self.source)
        if self.usage:
            d["usage"] = self.usage
        d["license"] = self.license
        if self.license_text is not None:
            d["license_text"] = self.license_text
        d["metrics"] = dict(self.metrics)
        d["created"] = self.created or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return d

    def write(self, model_path: Path) -> ModelManifest:
        """``X.json`` beside ``model_path`` (``X.onnx``), read back through :meth:`ModelManifest.load`
        and checked against the file, so a manifest the app would refuse is never left behind."""
        if self.modality not in MODALITIES:
            raise ModelError(
                f"manifest of {model_path.name}: modality {self.modality!r} is not one of {MODALITIES}"
            )
        if not self.inputs:
            raise ModelError(f"manifest of {model_path.name}: it must name the model's inputs")
        json_path = model_path.with_suffix(".json")
        doc = self.document(model_path)
        json_path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        companions = [
            model_path.parent / str(self.preprocessing[k]) for k in COMPANION_KEYS if k in self.preprocessing
        ]
        refresh_if_locked(model_path.parent, [model_path, json_path, *(c for c in companions if c.is_file())])
        written = ModelManifest.load(json_path)
        written.verify_file()
        return written
