"""Fuzz tests of every reader of files users hand the app (issue "Nothing leaves, nothing breaks
silently"): model manifests, a model set's lock, ``fusion.json``, each session command, the CSV
manifests.

The property is the same everywhere: whatever the bytes, the reader either works or raises one of
the project's own errors (:class:`~emodesk.errors.EmodeskError`, a message, exit 1 or 2), never a
traceback; and the session commands never lose a recording's media.

``EMODESK_FUZZ_EXAMPLES`` sets the examples per test (200 in the suite); the longer run of the
closing note is ``EMODESK_FUZZ_EXAMPLES=3000 EMODESK_FUZZ_RANDOM=1 pytest tests/test_fuzz_readers.py``
(``EMODESK_FUZZ_RANDOM=1``: fresh random inputs instead of the suite's fixed, repeatable ones).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emodesk.errors import EmodeskError
from emodesk.labels import LABELS

EXAMPLES = int(os.environ.get("EMODESK_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("EMODESK_FUZZ_RANDOM") != "1",
    database=None,
    suppress_health_check=list(HealthCheck),
)
SHIPPED = Path(__file__).resolve().parent.parent / "models"

# ----------------------------------------------------------------------------- strategies

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, 1, -1, 2, 7, 64, 1e308, -1e20, 0.5, 10**6])
    | st.text(max_size=20)
    | st.sampled_from(
        ["", "..", "../../x", "/etc/passwd", "happy", "abc", "probs", "logits", "gray", "\ud800x"]
    )
    | st.sampled_from([1e9, -1e9, 1e12, 2**63, -(2**63), 1e-300])
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=12,
)
#: hostile texts that are not (or not quite) JSON values of the right shape
hostile_texts = st.sampled_from(
    [
        "[" * 100_000 + "]" * 100_000,
        '{"a": ' * 5000 + "1" + "}" * 5000,
        "1" + "0" * 4400,
        '{"x": ' + "9" * 4400 + "}",
        '{"x": NaN}',
        '{"x": Infinity}',
        "[]",
        "null",
        '"text"',
        "",
        "\x00\xff",
        "{",
        b'{"id": "caf\xe9"}',  # not UTF-8
        b"\xff\xfe{\x00}\x00",
        '{"id": "\\ud800"}',
    ]
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside ``value`` (dict keys and list indices)."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:8]):
            yield from _paths(v, (*prefix, i))


def mutated(data: st.DataObject, doc: Any) -> bytes:
    """The bytes of ``doc`` as JSON with one hostile change: a value replaced, a key added or
    dropped, the whole file swapped for hostile bytes, or cut."""
    how = data.draw(st.sampled_from(["replace", "replace", "replace", "add", "drop", "hostile", "truncate"]))
    if how == "hostile":
        v = data.draw(hostile_texts)
        return v if isinstance(v, bytes) else v.encode("utf-8", "surrogatepass")
    text = json.dumps(doc).encode()
    if how == "truncate":
        return text[: data.draw(st.integers(0, max(0, len(text) - 1)))]
    doc = copy.deepcopy(doc)
    if how == "add":
        dicts = [p for p in _paths(doc) if isinstance(_at(doc, p), dict)]
        target = _at(doc, data.draw(st.sampled_from(dicts))) if dicts else None
        if isinstance(target, dict):
            key = data.draw(
                st.sampled_from(["repairs", "privacy", "box", "t0", "label_bias", "weights", "x"])
            )
            target[key] = data.draw(json_values)
        return json.dumps(doc).encode()
    paths = [p for p in _paths(doc) if p]
    if not paths:
        return text
    path = data.draw(st.sampled_from(paths))
    parent = _at(doc, path[:-1])
    if how == "drop" and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(json_values)
    return json.dumps(doc).encode()


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for k in path:
        doc = doc[k]
    return doc


@contextlib.contextmanager
def quiet() -> Iterator[io.StringIO]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        yield out


# ----------------------------------------------------------------------------- manifests


@pytest.fixture(scope="module")
def session_cache() -> Iterator[None]:
    """One real ONNX Runtime session per model file for the whole module: each example builds its
    member through the real loader, only the session of an unchanged file is reused."""
    import onnxruntime as ort

    real = ort.InferenceSession
    cache: dict[tuple[str, int], Any] = {}

    def cached(path: str, *a: Any, **kw: Any) -> Any:
        key = (os.path.realpath(path), os.stat(path).st_size)
        if key not in cache:
            cache[key] = real(path, *a, **kw)
        return cache[key]

    ort.InferenceSession = cached  # type: ignore[misc]
    try:
        yield
    finally:
        ort.InferenceSession = real  # type: ignore[misc]


_MANIFESTS = sorted(
    p.name
    for p in SHIPPED.glob("*.json")
    if p.name not in ("fusion.json", "lock.json") and "tokenizer" not in p.name
)


def _exercise_member(man: Any) -> None:
    """Load the member (or detector) ``man`` describes the way the app does, and score once."""
    from emodesk.inference.members import MEMBER_KINDS, load_member

    image = np.full((120, 160, 3), 128, np.uint8)
    if man.modality == "face-detector":
        from emodesk.inference.face_detector import FaceDetector
        from emodesk.inference.runtime import OnnxModel

        FaceDetector(OnnxModel(man)).detect(image)
        return
    if man.modality not in MEMBER_KINDS:
        return
    member = load_member(man)
    if man.modality == "face":
        member.score(image, [(40.0, 20.0, 60.0, 60.0)])  # type: ignore[call-arg]
    elif man.modality == "text":
        member.score("I am so happy to see you today")  # type: ignore[call-arg]


@pytest.mark.parametrize("name", _MANIFESTS)
def test_fuzzed_manifests_load_or_are_refused_with_a_message(
    name: str, tmp_path_factory: pytest.TempPathFactory, session_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emodesk.cli.main import main as cli
    from emodesk.inference.manifest import ModelManifest

    folder = tmp_path_factory.mktemp("models")
    for p in SHIPPED.iterdir():  # no lock.json: the parser itself is fuzzed, not the lock's refusal
        if p.name != "lock.json" and (p.suffix != ".json" or p.name.endswith(".tokenizer.json")):
            (folder / p.name).symlink_to(p)
    doc = json.loads((SHIPPED / name).read_text(encoding="utf-8"))
    monkeypatch.setenv("EMODESK_MODELS", str(folder))

    @FUZZ
    @given(st.data())
    def run(data: st.DataObject) -> None:
        (folder / name).write_bytes(mutated(data, doc))
        try:
            man = ModelManifest.load(folder / name)
            _exercise_member(man)
        except EmodeskError:
            pass
        with quiet():
            assert cli(["models"]) == 0  # a broken manifest is skipped with a warning, never fatal

    run()


def test_a_manifest_nesting_bomb_or_huge_integer_is_one_message(tmp_path: Path) -> None:
    from emodesk.errors import ModelError
    from emodesk.inference.manifest import ModelManifest

    for text, message in [
        ('{"id": ' + "[" * 50_000 + "]" * 50_000 + "}", "nests deeper than 32"),
        (
            '{"id": "x", "inputs": [], "file": "x.onnx", "modality": "face", "sha256": ' + "1" * 4400 + "}",
            "4400 digits",
        ),
    ]:
        p = tmp_path / "x.json"
        p.write_text(text, encoding="utf-8")
        with pytest.raises(ModelError, match=message):
            ModelManifest.load(p)


def test_a_manifest_cannot_point_its_checks_outside_its_folder(tmp_path: Path) -> None:
    from emodesk.errors import ModelError
    from emodesk.inference.manifest import ModelManifest

    doc = json.loads((SHIPPED / "face-resnet-s-ferplus.json").read_text(encoding="utf-8"))
    for key, value in [("file", "../../etc/passwd"), ("file", "/etc/passwd")]:
        p = tmp_path / "m.json"
        p.write_text(json.dumps({**doc, key: value}), encoding="utf-8")
        with pytest.raises(ModelError, match="expected a file name beside the manifest"):
            ModelManifest.load(p)


def test_fuzzed_locks_refuse_the_set_with_a_message(tmp_path_factory: pytest.TempPathFactory) -> None:
    from emodesk.inference.lock import verify_folder
    from emodesk.inference.manifest import ModelManifest

    folder = tmp_path_factory.mktemp("locked")
    for p in SHIPPED.glob("face-resnet-s-ferplus.*"):
        (folder / p.name).symlink_to(p)
    doc = json.loads((SHIPPED / "lock.json").read_text(encoding="utf-8"))
    doc["files"] = {k: v for k, v in doc["files"].items() if k.startswith("face-resnet-s-ferplus")}

    @FUZZ
    @given(st.data())
    def run(data: st.DataObject) -> None:
        (folder / "lock.json").write_bytes(mutated(data, doc))
        assert all(isinstance(line, str) for line in verify_folder(folder))
        try:
            ModelManifest.load(folder / "face-resnet-s-ferplus.json")
        except EmodeskError:
            pass

    run()


def test_a_manifest_size_that_disagrees_with_its_network_is_refused_at_load(tmp_path: Path) -> None:
    from emodesk.errors import ModelError
    from emodesk.inference.manifest import ModelManifest

    for p in SHIPPED.glob("face-resnet-s-ferplus.*"):
        (tmp_path / p.name).symlink_to(p)
    jp = tmp_path / "face-resnet-s-ferplus.json"
    doc = json.loads(jp.read_text(encoding="utf-8"))
    doc["preprocessing"]["size"] = [64, 64]  # the network takes 48 x 48
    jp.unlink()
    jp.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ModelError, match=r"give inputs of shape \['N', 1, 64, 64\], but .* takes"):
        _exercise_member(ModelManifest.load(jp))


# ----------------------------------------------------------------------------- fusion.json


def test_fuzzed_fusion_files_fall_back_to_equal_weights_with_a_warning(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from emodesk.errors import ConfigError
    from emodesk.fusion.config import load_fusion_config, parse_fusion_json
    from emodesk.fusion.fuse import fuse_population, weight_vector

    doc = json.loads((SHIPPED / "fusion.json").read_text(encoding="utf-8"))
    installed = {m["id"]: m["sha256"] for m in doc["members"]}
    modalities = {m["id"]: m["modality"] for m in doc["members"]}
    path = tmp_path_factory.mktemp("fusion") / "fusion.json"

    @FUZZ
    @given(st.data())
    def run(data: st.DataObject) -> None:
        path.write_bytes(mutated(data, doc))
        try:
            parse_fusion_json(path, installed)
        except ConfigError:
            pass
        cfg = load_fusion_config(path, installed, modalities)
        assert cfg.members, "the fused members never vanish: equal weights at worst"
        W = np.stack([weight_vector(cfg.weights[m]) for m in cfg.members])[None]
        P = np.full((len(cfg.members), 1, len(LABELS)), 1 / len(LABELS))
        out = fuse_population(P, W)
        assert out.shape == (1, 1, len(LABELS))

    run()


# ----------------------------------------------------------------------------- sessions


@pytest.fixture(scope="module")
def small_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.sessions import write_small_session

    return write_small_session(tmp_path_factory.mktemp("parent"))


_LABEL_LINE = st.fixed_dictionaries(
    {"t": json_values | st.floats(-5, 5)},
    optional={"label": json_values | st.sampled_from([*LABELS, None]), "source": json_values},
)


def _mutate_session(data: st.DataObject, folder: Path) -> None:
    """One hostile change to a session folder: session.json, a label line, a score line, or a file gone."""
    what = data.draw(
        st.sampled_from(["session", "session", "labels", "labels", "scores", "scores", "delete"])
    )
    if what == "session":
        doc = json.loads((folder / "session.json").read_text(encoding="utf-8"))
        (folder / "session.json").write_bytes(mutated(data, doc))
    elif what in ("labels", "scores"):
        p = folder / f"{what}.jsonl"
        lines = p.read_bytes().splitlines()
        k = data.draw(st.integers(0, len(lines)))
        if what == "labels" and data.draw(st.booleans()):
            new = json.dumps(data.draw(_LABEL_LINE)).encode()
        else:
            base = json.loads(lines[k % len(lines)]) if lines else {}
            new = mutated(data, base).replace(b"\n", b" ")
        lines[k : k + 1] = [new]
        p.write_bytes(b"\n".join(lines) + (b"\n" if data.draw(st.booleans()) else b""))
    else:
        name = data.draw(
            st.sampled_from(["session.json", "labels.jsonl", "scores.jsonl", "audio.wav", "video.mp4"])
        )
        (folder / name).unlink(missing_ok=True)


_COMMANDS = {
    "list": lambda f, d: ["list", str(f.parent)],
    "check": lambda f, d: ["check", str(f)],
    "repair": lambda f, d: ["repair", str(f)],
    "label": lambda f, d: [
        "label",
        str(f),
        d.draw(st.sampled_from(["happy", "none", "grumpy", "SAD"])),
        "--from",
        repr(d.draw(st.floats(allow_nan=True) | st.sampled_from([0.0, 0.5, -1e20]))),
        "--to",
        repr(d.draw(st.floats(allow_nan=True) | st.sampled_from([1.0, 1.5, 1e20]))),
    ],
    "export": lambda f, d: [
        "export",
        str(f),
        "--out",
        str(f.parent.parent / "export" / "a" / "b"),
        "--face-every",
        repr(d.draw(st.floats(allow_nan=True) | st.sampled_from([0.0, 0.5, 0.02, -1.0]))),
    ],
}


def _media(folder: Path) -> dict[str, int]:
    return {n: (folder / n).stat().st_size for n in ("video.mp4", "audio.wav") if (folder / n).exists()}


@pytest.mark.parametrize("command", list(_COMMANDS))
def test_fuzzed_sessions_give_every_session_command_a_message_and_lose_no_media(
    command: str, small_session: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from emodesk.cli.main import main as cli

    work = tmp_path_factory.mktemp(f"fuzz-{command}")

    @FUZZ
    @given(st.data())
    def run(data: st.DataObject) -> None:
        root = work / "case"
        shutil.rmtree(root, ignore_errors=True)
        folder = root / "parent" / small_session.name
        shutil.copytree(small_session, folder)
        _mutate_session(data, folder)
        media = _media(folder)
        before = {p.name: p.read_bytes() for p in folder.iterdir()}
        argv = _COMMANDS[command](folder, data)
        with quiet() as out:
            code = cli(["sessions", *argv])
        assert code in (0, 1, 2), out.getvalue()
        after = _media(folder)
        for name, size in media.items():  # repair may cut a torn last sample, nothing more
            assert name in after and size - after[name] <= 1, (name, out.getvalue())
        if command in ("check", "list"):
            assert {p.name: p.read_bytes() for p in folder.iterdir()} == before, "check never writes"
        if command == "repair" and code == 0:
            with quiet():
                assert cli(["sessions", "check", str(folder)]) == 0

    run()


# ----------------------------------------------------------------------------- CSV manifests

_CSV_CELLS = st.text(max_size=12) | st.sampled_from(["happy", "sad", "a.png", "x.wav", '"', "\x00", "grumpy"])
_CSV_TEXT = st.lists(st.lists(_CSV_CELLS, max_size=5), max_size=6).map(
    lambda rows: "\n".join(",".join(r) for r in rows)
)


@pytest.mark.parametrize("reader", ["path", "text", "paired"])
def test_fuzzed_csv_manifests_load_or_name_the_line(
    reader: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from emodesk.evaluation.datasets import load_manifest
    from emodesk.fusion.paired import load_paired_manifest

    p = tmp_path_factory.mktemp("csv") / "m.csv"
    header = {"path": "path,label,group", "text": "text,label", "paired": "face_path,audio_path,text,label"}[
        reader
    ]

    @FUZZ
    @given(st.booleans(), _CSV_TEXT, st.binary(max_size=40))
    def run(with_header: bool, body: str, noise: bytes) -> None:
        raw = (
            ((header + "\n") if with_header else "").encode() + body.encode("utf-8", "surrogatepass") + noise
        )
        p.write_bytes(raw)
        try:
            if reader == "paired":
                load_paired_manifest(p, check_files=False, ignore_unknown=True)
            else:
                load_manifest(p, column=reader, check_files=False)  # type: ignore[arg-type]
        except EmodeskError:
            pass

    run()


def test_a_csv_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    from emodesk.errors import InputError
    from emodesk.evaluation.datasets import load_manifest

    p = tmp_path / "m.csv"
    p.write_bytes(b"text,label\nfine,happy\ncaf\xe9,sad\n")
    with pytest.raises(InputError, match=r"not UTF-8 text \(byte b'\\xe9' on line 3\)"):
        load_manifest(p, column="text")
