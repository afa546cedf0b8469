"""The import rules of docs/architecture.md: Qt only in ui/ and workers/, torch only in lab/, the floors."""

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "emodesk"
QT_OK = {"ui", "workers"}
TORCH_OK = {"lab"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _role(path: Path) -> str:
    rel = path.relative_to(PKG).parts
    return rel[0] if len(rel) > 1 else ""


def test_qt_and_torch_stay_in_their_packages():
    files = sorted(PKG.rglob("*.py"))
    assert len(files) > 20
    bad = []
    for f in files:
        names = _imports(f)
        role = _role(f)
        if names & {"PySide6", "PyQt5", "PyQt6", "shiboken6"} and role not in QT_OK:
            bad.append(f"{f.relative_to(PKG)} imports Qt")
        if "torch" in names and role not in TORCH_OK:
            bad.append(f"{f.relative_to(PKG)} imports torch")
    assert not bad, bad


def test_headless_paths_load_neither_qt_nor_torch():
    code = (
        "import sys\n"
        "import emodesk.cli.main, emodesk.pipeline.analyze, emodesk.pipeline.models\n"
        "import emodesk.capture.sources, emodesk.capture.microphone, emodesk.fusion\n"
        "import emodesk.inference.face_detector, emodesk.inference.face_scorer\n"
        "import emodesk.speech.processor\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'torch')]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_import_linter_contracts_hold():
    import shutil

    import pytest

    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    r = subprocess.run(
        [exe], capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parent.parent
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4 kept, 0 broken" in r.stdout


def _tool(name: str) -> str:
    import shutil

    import pytest

    exe = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(exe).exists():
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return exe


def test_ruff_clean():
    repo = Path(__file__).resolve().parent.parent
    r = subprocess.run(
        [_tool("ruff"), "check", "emodesk", "tests", "packaging"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=repo,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_clean():
    repo = Path(__file__).resolve().parent.parent
    r = subprocess.run([_tool("mypy"), "emodesk"], capture_output=True, text=True, timeout=600, cwd=repo)
    assert r.returncode == 0, r.stdout + r.stderr


def test_model_table_is_current():
    """models/README.md is what emodesk/lab/model_zoo/model_table.py makes from the shipped manifests."""
    r = subprocess.run(
        [sys.executable, "-m", "emodesk.lab.model_zoo.model_table", "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_without_the_lab_the_commands_that_need_it_say_what_to_install(monkeypatch, capsys):
    """The bundle and the wheel leave emodesk.lab out: train, retrain and benchmark-ao refuse in
    one line that names the source install, and exit non-zero."""
    import importlib

    real = importlib.import_module

    def without_lab(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("emodesk.lab"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib, "import_module", without_lab)
    from emodesk.cli.main import main

    for argv, code in (
        (["train", "face", "--out", "x.onnx"], 2),
        (["retrain", "--rollback"], 1),
        (["fusion", "benchmark-ao", "--json", "a.json"], 1),
    ):
        assert main(argv) == code, argv
        err = capsys.readouterr().err
        assert "part of emodesk's lab" in err and "pip install -e '.[train]'" in err, err
