"""On freshly produced results: the results API, both notebooks (executed with nbclient, any cell
error fails), ``twin report`` rendered by headless Chromium (screenshot kept under results/ as a CI
artifact), and ``twin plan``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import networkx as nx
import pytest
from typer.testing import CliRunner

from twin.cli import app
from twin.results import ResultsError, load_run, load_sweep

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = """\
name: tiny-nb
seed: 3
duration: 60s
topology: {kind: random_geometric, nodes: 30, radius: 0.3}
traffic:
  - {kind: probe, pairs: 5, rate: 5/s, select: through, start: 5s}
faults:
  - {at: 40s, kind: node_crash, node: most_central}
loop: {enabled: false, warmup: 20s, charge_costs: false}
targets:
  mttr: {median: 5s}
"""


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> dict:
    """One run (loop on and off: siblings for the report) and a 2x2 sweep over 4 seeds."""
    from twin.run import execute
    from twin.scenario import load
    from twin.sweep import make_jobs, sweep

    d = tmp_path_factory.mktemp("fresh")
    scen = d / "tiny-nb.yaml"
    scen.write_text(SCENARIO)
    sc = load(scen)
    off = execute(sc, out=d / "runs", loop=False)
    on = execute(sc, out=d / "runs", loop=True)
    jobs = make_jobs(scen, range(3, 7), [("routing.orig_interval", ["0.5s", "1s"]), ("loop.enabled", [True, False])],
                     out=d / "sweeps")
    res = sweep(jobs, d / "sweeps", workers=2)
    assert res.errors == 0
    return {"dir": d, "scen": scen, "run": on.run_dir, "run_off": off.run_dir, "sweep": d / "sweeps" / "tiny-nb"}


def test_results_api_reads_what_the_run_wrote(fresh):
    run = load_run(fresh["run"])
    assert run.summary["loop"] is True and run.mode == "sim"
    assert len(run.events) and {"t_s", "kind", "node", "peer", "outcome"} <= set(run.events.columns)
    rec = run.pair_recovery()
    assert len(rec) == 5 and set(rec["fault"]) == {0}
    broke = rec[rec["broken_s"].notna()]
    assert len(broke) == run.summary["faults"][0]["affected_pairs"]
    # every affected pair is back by the time the fault's MTTR says all of them are
    assert (broke["recovered_s"] <= run.summary["faults"][0]["mttr_s"] + 1.0).all()
    assert run.world().graph.number_of_nodes() == run.summary["nodes"]
    rows = load_sweep(fresh["sweep"])
    assert len(rows) == 16 and {"seed", "status", "mttr_s", "delivery_ratio"} <= set(rows.columns)
    assert set(rows["routing.orig_interval"]) == {0.5, 1.0} and set(rows["loop.enabled"]) == {True, False}
    with pytest.raises(ResultsError, match="not a run folder"):
        load_run(fresh["dir"] / "nowhere")
    with pytest.raises(ResultsError, match="no sweep.parquet"):
        load_sweep(fresh["dir"] / "runs")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["analysis", "sweep"])
def test_notebook_executes_without_a_cell_error(fresh, name, monkeypatch):
    import nbclient
    import nbformat

    monkeypatch.setenv("TWIN_RUN", str(fresh["run"]))
    monkeypatch.setenv("TWIN_SWEEP", str(fresh["sweep"]))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
                            ).execute()   # raises CellExecutionError on any failing cell
    outs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outs if o.get("output_type") == "error"]
    assert sum(1 for o in outs if "image/png" in o.get("data", {})) >= 3      # the figures were drawn


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _browser(*args: str) -> subprocess.CompletedProcess:
    exe = _chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing on CI: setup.sh installs it")
        pytest.skip("chromium not installed (setup.sh installs it as root)")
    prof = tempfile.mkdtemp(prefix="twin-chromium-")
    try:
        return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                               "--disable-background-networking", "--disable-component-update", "--disable-sync",
                               f"--user-data-dir={prof}", *args], capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(prof, ignore_errors=True)


def test_report_of_a_run_renders_in_headless_chromium(fresh):
    r = CliRunner().invoke(app, ["report", str(fresh["run"])])
    assert r.exit_code == 0, r.output
    page = fresh["run"] / "report.html"
    text = page.read_text()
    assert "src='http" not in text and "href='http" not in text          # self-contained
    md = (fresh["run"] / "report.md").read_text()
    assert "## Per-pair recovery" in md and "(report-topology.png)" in md
    assert "Other runs of this scenario and seed" in md                    # loop on vs off found
    dom = _browser("--dump-dom", page.as_uri())
    assert 'data-rendered="ok"' in dom.stdout, dom.stderr[-2000:]      # every figure decoded
    shot = ROOT / "results" / "report-screenshot.png"
    shot.parent.mkdir(exist_ok=True)
    _browser("--window-size=1200,1800", f"--screenshot={shot}", page.as_uri())
    assert shot.stat().st_size > 20_000                                    # not a blank page


def test_report_of_a_sweep(fresh):
    r = CliRunner().invoke(app, ["report", str(fresh["sweep"])])
    assert r.exit_code == 0, r.output
    md = (fresh["sweep"] / "report.md").read_text()
    assert "16 run(s)" in md and "routing.orig_interval=0.5" in md and "loop.enabled=True" in md
    r = CliRunner().invoke(app, ["report", str(fresh["dir"])])
    assert r.exit_code == 2 and "neither a run folder" in r.output


def test_plan_names_the_fault_and_the_pairs_hops(fresh):
    r = CliRunner().invoke(app, ["plan", str(fresh["scen"]), "--json"])
    assert r.exit_code == 0, r.output
    p = json.loads(r.output)
    from twin.scenario import load
    from twin.world import resolve

    w = resolve(load(fresh["scen"]))
    assert p["faults"][0]["nodes"][0]["node"] == w.faults[0].nodes[0]
    assert p["faults"][0]["nodes"][0]["betweenness_rank"] == 1          # most_central is the top of the ranking
    for q in p["flows"][0]["pairs"]:
        assert q["hops"] == nx.shortest_path_length(w.graph, q["src"], q["dst"])
        assert q["via_fault"]                                            # select: through
    r = CliRunner().invoke(app, ["plan", str(fresh["dir"] / "missing.yaml")])
    assert r.exit_code == 2


def test_a_run_recorded_with_a_since_removed_field_still_rebuilds_its_mesh(fresh, tmp_path):
    old = tmp_path / "old-run"
    shutil.copytree(fresh["run_off"], old)
    j = json.loads((old / "run.json").read_text())
    j["scenario"]["loop"]["model"] = None            # a field an older meshtwin recorded
    (old / "run.json").write_text(json.dumps(j))
    assert load_run(old).world().graph.number_of_nodes() == 30
    j["scenario"]["topology"]["nodes"] = "many"      # a real problem is still an error
    (old / "run.json").write_text(json.dumps(j))
    with pytest.raises(Exception, match="nodes"):
        load_run(old).world()
