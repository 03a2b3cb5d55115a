"""Sweeps: grid expansion, content-addressed skipping, failures recorded, and the same rows from the
local process pool and from a real dask.distributed cluster (scheduler and two worker processes on
loopback)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import networkx as nx
import pandas as pd
import pytest

from twin.errors import TwinError
from twin.sweep import VOLATILE_COLUMNS, make_jobs, parse_param, sweep

SCENARIO = """\
name: tiny-crash
seed: 3
duration: 60s
topology: {kind: random_geometric, nodes: 30, radius: 0.3}
routing: {protocol: batman_iv, orig_interval: 1s, hop_penalty: 30}
traffic:
  - {kind: probe, pairs: 5, rate: 5/s, select: through, start: 5s}
faults:
  - {at: 30s, kind: node_crash, node: most_central}
targets:
  mttr: {max: 20s}
"""


@pytest.fixture
def scen(tmp_path: Path) -> Path:
    p = tmp_path / "tiny-crash.yaml"
    p.write_text(SCENARIO)
    return p


def test_parse_param_reads_yaml_scalars():
    assert parse_param("routing.orig_interval=0.5s, 1s,2s") == ("routing.orig_interval", ["0.5s", "1s", "2s"])
    assert parse_param("routing.hop_penalty=15,30") == ("routing.hop_penalty", [15, 30])
    with pytest.raises(TwinError, match="PATH=V1"):
        parse_param("no-equals-sign")


def test_grid_keys_are_content_addressed(scen: Path):
    a = make_jobs(scen, [1, 2], [("routing.orig_interval", ["0.5s", "1s"])])
    assert len(a) == 4 and len({j.key for j in a}) == 4
    assert [j.params for j in a][:2] == [(("routing.orig_interval", 0.5),)] * 2   # resolved to seconds
    b = make_jobs(scen, [2], [("routing.orig_interval", ["1s"])])
    assert b[0].key == a[3].key                                              # same inputs, same key
    # the scenario's own value is the same run as an explicit override of that value
    assert make_jobs(scen, [1])[0].key == a[2].key


def test_bad_param_value_is_a_scenario_error_naming_the_field(scen: Path):
    from twin.scenario import ScenarioError

    with pytest.raises(ScenarioError, match="routing.hop_penalty"):
        make_jobs(scen, [1], [("routing.hop_penalty", ["lots"])])
    with pytest.raises(TwinError, match="no item 5"):
        make_jobs(scen, [1], [("faults[5].at", ["3s"])])


def test_pool_sweep_skips_finished_runs_and_records_failures(scen: Path, tmp_path: Path):
    out = tmp_path / "out"
    ok = make_jobs(scen, [3, 4], out=out)
    # the same scenario name on a mesh file that is gone by the time the run starts: the run raises
    mesh = tmp_path / "mesh.graphml"
    nx.write_graphml(nx.path_graph(4), mesh)
    gone = tmp_path / "gone.yaml"
    gone.write_text("name: tiny-crash\nduration: 10s\ntopology: {kind: graphml, file: mesh.graphml}\n")
    broken = make_jobs(gone, [5], out=out)
    mesh.unlink()
    res = sweep(ok + broken, out, workers=2)
    df = pd.read_parquet(out / "tiny-crash" / "sweep.parquet")
    assert len(df) == 3 and set(df["seed"]) == {3, 4, 5}
    err = df[df["seed"] == 5].iloc[0]
    assert err["status"] == "error" and "mesh.graphml" in err["error"]
    good = df[df["seed"] != 5]
    assert set(good["status"]) <= {"pass", "fail"} and good["mttr_s"].notna().all()
    assert good["delivery_ratio"].between(0, 1).all()
    for rd in good["run_dir"]:
        assert (out / "tiny-crash" / rd / "summary.json").exists()
    assert res.ran == 3 and res.errors == 1
    again = sweep(ok + broken, out, workers=2)
    assert again.skipped == 2 and again.ran == 1          # only the error is tried again
    assert len(pd.read_parquet(out / "tiny-crash" / "sweep.parquet")) == 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stable(df: pd.DataFrame) -> pd.DataFrame:
    df = df.drop(columns=[c for c in VOLATILE_COLUMNS if c in df]).sort_values(["seed", "key"])
    df["mttr_all_s"] = df["mttr_all_s"].map(list)
    return df.reset_index(drop=True)


@pytest.mark.slow
def test_dask_cluster_gives_the_same_rows_as_the_pool(scen: Path, tmp_path: Path):
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                         os.environ.get("PYTHONPATH", "")])}
    bindir = Path(sys.executable).parent
    procs = [subprocess.Popen([str(bindir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        time.sleep(1.0)
        for _ in range(2):
            procs.append(subprocess.Popen([str(bindir / "dask"), "worker", addr, "--nworkers", "1", "--nthreads", "1",
                                           "--no-dashboard", "--local-directory", str(tmp_path / "dask")],
                                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(addr, timeout="30s") as c:
            c.wait_for_workers(2, timeout=60)
            assert len(c.scheduler_info()["workers"]) == 2
        jobs = make_jobs(scen, [3, 4, 5, 6], [("routing.hop_penalty", [15, 30])])
        local = sweep(jobs, tmp_path / "pool", workers=2)
        remote = sweep(jobs, tmp_path / "dask-out", scheduler=addr)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
    assert local.errors == 0 and remote.errors == 0 and len(local.rows) == 8
    pd.testing.assert_frame_equal(_stable(local.rows), _stable(remote.rows))
    assert local.rows["mttr_s"].nunique() > 1      # the seeds really are different meshes


def test_cli_run_seeds_prints_distributions_and_bad_params_exit_2(scen: Path, tmp_path: Path):
    import json

    from typer.testing import CliRunner

    from twin.cli import app

    r = CliRunner().invoke(app, ["run", str(scen), "--seeds", "5", "--out", str(tmp_path / "o"), "--json", "-q"])
    assert r.exit_code in (0, 1), r.output
    rep = json.loads(r.output)
    g = rep["groups"][0]
    assert g["runs"] == 5 and g["mttr_s"]["n"] + g["mttr_s"]["missing"] == 5
    assert {t["verdict"] for t in g["targets"]} <= {"pass", "fail", "not enough runs"}
    assert len(pd.read_parquet(tmp_path / "o" / "tiny-crash" / "sweep.parquet")) == 5
    r = CliRunner().invoke(app, ["sweep", str(scen), "--seeds", "2", "-p", "routing.hop_penalty=lots",
                                 "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "hop_penalty" in r.output
