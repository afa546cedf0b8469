"""``analyze --engine ray``: a real local Ray and a two-node local cluster, a worker killed midway;
the records equal the local engine's."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from emodesk.cli.main import main
from emodesk.resources import assets_dir

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="the scale extra (pip install 'emodesk[scale]') is not installed")
DEMO = assets_dir() / "demo.mp4"


def _runs(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "runs.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def local_records(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The demo clip's records from the local engine, the reference every Ray run must equal."""
    out = tmp_path_factory.mktemp("local") / "demo.jsonl"
    assert main(["analyze", str(DEMO), "--out", str(out)]) == 0
    return out.read_bytes()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_private_local_ray_gives_the_local_engines_records(tmp_path: Path, local_records: bytes) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(DEMO, src / name)
    (src / "broken.mp4").write_bytes(b"\x00not a video" * 300)
    out = tmp_path / "out"
    assert main(["analyze", str(src), "--out", str(out), "--engine", "ray", "--workers", "2"]) == 1
    runs = {e["id"]: e for e in _runs(out)}
    assert {k: e["status"] for k, e in runs.items()} == {"a": "ok", "b": "ok", "broken": "failed"}
    assert all(e["engine"] == "ray" for e in runs.values()) and "broken.mp4" in runs["broken"]["error"]
    assert (out / "a.jsonl").read_bytes() == local_records == (out / "b.jsonl").read_bytes()
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0" and not ray.is_initialized()  # shut down after
    assert not _port_open(8265)  # no dashboard
    # --resume works the same with either engine: nothing done twice
    again = ["analyze", str(src), "--out", str(out), "--engine", "ray", "--resume", "--workers", "1"]
    assert main(again) == 1
    assert [(e["id"], e["status"]) for e in _runs(out)[3:]] == [
        ("a", "skipped"),
        ("b", "skipped"),
        ("broken", "failed"),
    ]


def test_two_nodes_and_a_worker_killed_midway_lose_nothing(tmp_path: Path, local_records: bytes) -> None:
    from ray.cluster_utils import Cluster

    from emodesk.batch.inputs import expand_inputs
    from emodesk.batch.ray_engine import RayEngine

    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        shutil.copy(DEMO, src / f"c{i}.mp4")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)  # a second raylet: another node of the same cluster
    cluster.wait_for_nodes()
    engine: RayEngine | None = None
    try:
        engine = RayEngine(address=cluster.address, workers=2)
        pids = engine.pids()
        assert len(set(pids)) == 2
        out = tmp_path / "out"
        inputs = expand_inputs([str(src)])
        runner = threading.Thread(target=lambda: engine.run(inputs, out))
        runner.start()
        time.sleep(2.0)  # both workers are loading models or analyzing their first input
        os.kill(pids[0], signal.SIGKILL)
        runner.join(300)
        assert not runner.is_alive()
        entries = _runs(out)
        assert sorted(e["id"] for e in entries) == ["c0", "c1", "c2", "c3"]
        assert all(e["status"] == "ok" for e in entries), [(e["id"], e.get("error")) for e in entries]
        for e in entries:  # the killed worker's input was retried on its restarted actor
            assert (out / f"{e['id']}.jsonl").read_bytes() == local_records, e["id"]
        assert len({e["worker"]["node"] for e in entries}) == 2  # both nodes worked
        assert pids[0] not in {e["worker"]["pid"] for e in entries}
        assert sorted(e["tries"] for e in entries) == [1, 1, 1, 2]  # the killed input, once more
        assert not list(out.glob("*.partial"))
    finally:
        if engine is not None:
            engine.shutdown()  # before the cluster: its head is the driver's node
        cluster.shutdown()


def test_a_worker_runs_its_libraries_with_the_drivers_openmp_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    from emodesk.batch.ray_engine import worker_env

    for name in ("EMODESK_HOME", "EMODESK_DATA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EMODESK_MODELS", "/m")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert worker_env() == {"EMODESK_MODELS": "/m", "OMP_NUM_THREADS": "3"}
    monkeypatch.delenv("OMP_NUM_THREADS")  # unset: OpenMP's default, the CPUs this process may use
    assert worker_env()["OMP_NUM_THREADS"] == str(len(os.sched_getaffinity(0)))


def test_the_local_engine_never_imports_ray_and_a_missing_ray_is_a_clear_error(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from emodesk.cli.main import main\n"
        f"code = main(['analyze', {str(DEMO)!r}, {str(DEMO)!r}, '--out', {str(tmp_path / 'o')!r}])\n"
        "print(code, 'ray' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert r.stdout.strip().splitlines()[-1] == "0 False", r.stderr
    blocked = "import sys; sys.modules['ray'] = None\nfrom emodesk.cli.main import main\n"
    argv = ["analyze", str(DEMO), "--out", str(tmp_path / "r"), "--engine", "ray"]
    blocked += f"sys.exit(main({argv!r}))"
    r = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "emodesk[scale]" in r.stderr and "Traceback" not in r.stderr, r.stderr
