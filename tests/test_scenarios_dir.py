"""Every scenario users copy from ``scenarios/`` runs (SimPy habit: examples are tests).

Parametrised over the glob, so a new file is picked up without touching this test. Runs are in
the scenario's own mode (``sim``, or ``emu`` as root) with the duration capped to keep CI fast;
a capped run is only checked for a complete run folder and a summary with the scenario's
targets, an uncapped sim run must also pass them.
"""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, SCENARIOS, assert_complete_run, run_dirs

from twin.run import execute
from twin.scenario import load

CAP_S = 150.0
FILES = sorted(SCENARIOS.glob("*.yaml")) + sorted(SCENARIOS.glob("*.yml"))


def _param(p):
    """Emulation scenarios run in emu mode (root, namespaces): marked so, and still run in CI."""
    return pytest.param(p, id=p.name, marks=pytest.mark.emu) if load(p).mode == "emu" else pytest.param(p, id=p.name)


def test_there_are_scenarios():
    assert len(FILES) >= 5


def _capped_duration(sc) -> float:
    """min(duration, 150 s), but never cut a scenario's own faults off: keep 30 s after the last one."""
    last_fault = max((f.at for f in sc.faults), default=0.0)
    return min(sc.duration, max(CAP_S, last_fault + 30.0))


def _expected_targets(sc) -> set[str]:
    t = sc.targets
    names = set()
    if t.mttr:
        stats = [s for s in ("max", "p95", "median") if getattr(t.mttr, s) is not None]
        names |= {"mttr"} | {f"mttr_{s}" for s in stats[1:]}
    if t.delivery_ratio:
        names.add("delivery_ratio")
    if t.convergence:
        names.add("convergence")
    if t.loop_latency and sc.loop.enabled:
        names |= {f"loop_latency_{s}" for s in ("p99", "p50") if getattr(t.loop_latency, s) is not None}
    return names


@pytest.mark.parametrize("path", [_param(p) for p in FILES])
def test_scenario_runs_in_its_mode(path, tmp_path):
    sc = load(path)
    if sc.topology.file:
        topo_file = (path.parent / sc.topology.file).resolve()
        if not topo_file.exists():
            if ROOT not in topo_file.parents:
                pytest.skip(f"topology file {topo_file} lives outside the repository and is absent here")
            pytest.fail(f"{path.name}: topology file {topo_file} is missing from the repository")
    duration = _capped_duration(sc)
    capped = duration < sc.duration
    if capped:
        sc = sc.updated(duration=duration)
    res = execute(sc, mode=sc.mode, out=tmp_path)
    (d,) = run_dirs(tmp_path)
    assert d == res.run_dir
    assert_complete_run(d)
    s = json.loads((d / "summary.json").read_text())
    assert s["scenario"] == sc.name and s["mode"] == sc.mode and s["duration_s"] == duration
    assert s["targets"], f"{path.name} declares no targets: a scenario is a CI gate"
    assert set(s["targets"]) == _expected_targets(sc)
    for name, t in s["targets"].items():
        assert {"value", "limit", "pass"} <= set(t), name
    assert len(s["faults"]) == len(sc.faults)
    if not capped and sc.mode == "sim":  # emulated results depend on host load (see the run's load guard)
        failed = {k: v for k, v in s["targets"].items() if not v["pass"]}
        assert not failed, f"{path.name}: targets failed in a full-length run: {failed}"
