"""``emodesk fusion benchmark-ao``: the JSON of docs/formats.md, resumable runs, and one-line usage errors."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from emodesk.cli.fusion_cmd import main
from emodesk.lab.aquila_benchmark import run as bm

REPO = Path(__file__).resolve().parent.parent
TINY = ["--seeds", "2", "--iterations", "20", "--functions", "sphere,rastrigin"]
HAVE = {
    "mealpy": importlib.util.find_spec("mealpy") is not None,
    "de": importlib.util.find_spec("scipy") is not None,
}


def test_tiny_benchmark_writes_the_contract_json(tmp_path, capsys):
    out = tmp_path / "ao.json"
    md = tmp_path / "ao.md"
    assert main(["benchmark-ao", *TINY, "--json", str(out), "--markdown", str(md)]) == 0
    report = json.loads(out.read_text())
    assert list(report) == ["sphere", "rastrigin"]
    expected = {"emodesk", "emodesk-levy-ls"} | {k for k, ok in HAVE.items() if ok}
    for function, by_opt in report.items():
        assert set(by_opt) == expected, function
        for opt, entry in by_opt.items():
            assert set(entry) == {"median_fitness", "median_seconds", "iqr_fitness", "evaluations"}
            q25, q75 = entry["iqr_fitness"]
            assert q25 <= entry["median_fitness"] <= q75
            assert entry["median_seconds"] > 0
            assert entry["evaluations"] == 50 * 21, (function, opt)  # mealpy's real calls, DE's nfev
    table = capsys.readouterr().out
    assert "rastrigin" in table and "emodesk median" in table
    text = md.read_text()
    assert "emodesk fusion benchmark-ao --seeds 2 --iterations 20" in text
    assert "| function |" in text and "Machine:" in text


@pytest.mark.skipif(not HAVE["mealpy"], reason="mealpy is not installed (pip install -e '.[dev]')")
def test_mealpy_runs_quietly_at_the_same_budget(capfd):
    rec = bm.run_one("sphere", "mealpy", seed=0, iterations=10)
    assert rec.evaluations == 50 * 11
    captured = capfd.readouterr()
    assert "Epoch" not in captured.out + captured.err  # mealpy's logger is off


def test_de_budget_matches_the_reference_settings():
    assert bm.de_maxiter(500) == 166  # (166 + 1)·5·30 = 25,050
    assert bm.de_maxiter(20) == 6  # (6 + 1)·150 = 1,050


def test_a_killed_run_resumes_from_its_cache(tmp_path):
    cache = tmp_path / "runs.jsonl"
    args = [
        "benchmark-ao",
        *TINY,
        "--shifted",
        "--optimizers",
        "",
        "--variants",
        "none",
        "--cache",
        str(cache),
    ]
    assert main([*args, "--json", str(tmp_path / "a.json")]) == 0
    lines = cache.read_text().splitlines()
    assert len(lines) == 8  # 4 functions × 2 seeds × emodesk
    cache.write_text("\n".join(lines[:7]) + "\n" + lines[7][:20])  # killed while writing the last one
    assert main([*args, "--json", str(tmp_path / "b.json")]) == 0
    assert len(cache.read_text().splitlines()) == 9  # only the cut-off run was redone
    assert json.loads(cache.read_text().splitlines()[-1])["function"] == "rastrigin_shifted"
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert list(a) == ["sphere", "rastrigin", "sphere_shifted", "rastrigin_shifted"]
    for function in a:
        assert a[function]["emodesk"]["median_fitness"] == b[function]["emodesk"]["median_fitness"]


def test_missing_mealpy_is_skipped_with_a_reason_or_refused_when_asked_for(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mealpy", None)  # import mealpy now raises ImportError
    out = tmp_path / "ao.json"
    assert (
        main(["benchmark-ao", *TINY[:4], "--functions", "sphere", "--variants", "none", "--json", str(out)])
        == 0
    )
    err = capsys.readouterr().err
    assert "skipping mealpy" in err and "pip install -e '.[dev]'" in err
    assert "mealpy" not in json.loads(out.read_text())["sphere"]
    assert main(["benchmark-ao", "--optimizers", "mealpy", "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "mealpy" in err and ".[dev]" in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "needs a subcommand"),
        (["frobnicate"], "unknown fusion subcommand"),
        (["benchmark-ao"], "--json"),
        (["benchmark-ao", "--json", "x.json", "--functions", "sphere,nope"], "unknown function 'nope'"),
        (["benchmark-ao", "--json", "x.json", "--seeds", "0"], "--seeds must be at least 1"),
        (["benchmark-ao", "--json", "x.json", "--iterations", "ten"], "invalid int value"),
        (["benchmark-ao", "--json", "x.json", "--variants", "magic"], "unknown variant 'magic'"),
        (["benchmark-ao", "--json", "x.json", "--optimizers", "pso"], "unknown comparison optimizer 'pso'"),
        (["benchmark-ao", "--json", "/no/such/folder/x.json"], "does not exist"),
        (
            ["optimize", "--manifest", "m.csv", "--out", "f.json", "--nll-weight", "-0.1"],
            "--nll-weight must be non-negative",
        ),
        (["pair", "--face", "f", "--voice", "v", "--out", "p.csv", "--mix", "face=0.5,tail=0.5"], "'tail'"),
        (["pair", "--face", "f", "--voice", "v", "--out", "p.csv", "--mix", "lively"], "all or live"),
    ],
)
def test_bad_usage_exits_2_with_one_line(argv, needle, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("emodesk: ") and needle in err
    assert "Traceback" not in err and captured.out == ""


def test_help_exits_0(capsys):
    assert main(["benchmark-ao", "--help"]) == 0
    assert "--shifted" in capsys.readouterr().out


def test_the_module_runs_as_a_command_with_clean_errors():
    r = subprocess.run(
        [sys.executable, "-m", "emodesk.cli.fusion_cmd", "benchmark-ao", "--seeds", "-1", "--json", "x.json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["emodesk: --seeds must be at least 1, got -1"]


def test_emodesk_fusion_is_dispatched_by_the_top_level_cli(capsys):
    from emodesk.cli.main import main as emodesk_main

    assert emodesk_main(["fusion", "frobnicate"]) == 2
    assert "unknown fusion subcommand" in capsys.readouterr().err


def test_the_optimizer_and_the_command_import_neither_scipy_nor_mealpy():
    """numpy only in emodesk.fusion: the comparison packages load lazily, inside a benchmark run."""
    code = (
        "import sys\n"
        "import emodesk.fusion.optimize, emodesk.lab.aquila_benchmark.run, emodesk.cli.fusion_cmd\n"
        "from emodesk.lab.aquila_benchmark.cli import parser\n"
        "parser()\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('scipy', 'mealpy')]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr


def test_fusion_equal_gives_each_modality_the_same_total_weight(tmp_path, capsys):
    """``emodesk fusion equal`` (which replaced scripts/write_equal_fusion.py) over the shipped set:
    the window reads the file it writes without a warning."""
    from emodesk.fusion.config import parse_fusion_json
    from emodesk.inference.registry import installed_manifests

    out = tmp_path / "fusion.json"
    assert main(["equal", "--models", str(REPO / "models"), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    mods = {m["id"]: m["modality"] for m in doc["members"]}
    assert set(mods.values()) == {"face", "voice", "text"}
    for modality in ("face", "voice", "text"):
        total = sum(w for m, w in doc["weights"].items() if mods[m] == modality)
        assert total == pytest.approx(1.0), modality
    installed = {m.id: m.sha256 for m in installed_manifests([REPO / "models"]).values()}
    cfg = parse_fusion_json(out, installed)
    assert set(cfg.weights) == set(mods) and not cfg.warnings
    assert main(["equal", "--models", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "no such folder" in capsys.readouterr().err
