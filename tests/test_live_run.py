"""``twin run --mode live`` on a loopback lab (real agents, sockets, probes; stand-in kernels),
and the operator commands ``twin live check|status|stop`` through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import RUN_FILES

from twin.live import audit
from twin.live.inventory import InventoryError
from twin.live.loopback import AgentsThread, write_lab
from twin.run import execute
from twin.scenario import parse

SCENARIO = """
name: live-loopback
duration: 5s
topology: {kind: ring, nodes: 4}
traffic: [{kind: probe, pairs: 3, rate: 10/s}]
faults: [{at: 2s, kind: node_crash, node: n1, duration: 1500ms}]
loop: {enabled: true, period: 250ms, warmup: 1s}
targets: {delivery_ratio: {min: 0.5, after: start}}
"""


@pytest.fixture()
def lab(tmp_path):
    inv, cfgs = write_lab(tmp_path / "lab", 4, allow_faults=["node_crash", "node_recover"])
    agents = AgentsThread(cfgs)
    yield inv, agents, tmp_path
    agents.close()


def test_live_run_writes_the_same_run_folder_as_sim_and_restores_every_node(lab):
    inv, agents, tmp = lab
    sc = parse(SCENARIO)
    res = execute(sc, mode="live", out=tmp / "results", inventory=inv, apply=True)
    sim = execute(sc, mode="sim", out=None)
    assert set(res.summary) == set(sim.summary)
    assert set(res.summary["loop_stats"]) == set(sim.summary["loop_stats"])
    assert all((res.run_dir / f).is_file() for f in RUN_FILES)
    ev = res.events
    ops = ev[ev["kind"] == "op"]
    assert ops["outcome"].tolist() == ["crash", "recover"] and ops["detail"].tolist() == ["fault", "repair"]
    assert res.summary["faults"][0]["repaired_at_s"] is not None
    pr = ev[ev["kind"] == "probe"]
    assert len(pr) >= 100 and (pr["outcome"] == "delivered").any()
    # probes to the crashed node while it was down are lost and not valid (its endpoint was dead)
    down = pr[(pr["peer"] == "n1") & (pr["t_s"] > 2.3) & (pr["t_s"] < 3.3)]
    assert len(down) == 0 or (~down["valid"]).all()
    assert (ev[ev["kind"] == "restore"]["outcome"] == "restored").sum() == 4
    assert all(k.current.hardifs == (("eth1", True),) for k in agents.kernels.values())
    log = audit.read(tmp / "lab" / "audit" / "n1.audit.jsonl")
    assert [e["verdict"] for e in log if e["event"] == "fault"] == ["injected", "injected"]


def test_dry_run_touches_nothing(lab):
    inv, agents, tmp = lab
    res = execute(parse(SCENARIO), mode="live", out=None, inventory=inv, apply=False)
    ops = res.events[res.events["kind"] == "op"]
    assert ops["outcome"].tolist() == ["crash_dry_run", "recover_dry_run"]
    assert any("faults were logged, not injected" in n for n in res.journal["notes"])
    assert all(k.writes == [] for k in agents.kernels.values())


def test_a_fault_the_inventory_does_not_allow_refuses_the_run_before_anything_is_touched(tmp_path):
    inv, cfgs = write_lab(tmp_path / "lab", 4)  # no faults allowed
    agents = AgentsThread(cfgs)
    try:
        with pytest.raises(InventoryError, match=r"does not allow it \(nodes\[1\]\.allow_faults\)"):
            execute(parse(SCENARIO), mode="live", out=None, inventory=inv, apply=True)
        log = audit.read(tmp_path / "lab" / "audit" / "n1.audit.jsonl")
        assert [e["event"] for e in log] == ["start"]
    finally:
        agents.close()


def _twin(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "twin.cli", *args], capture_output=True, text=True, timeout=120)


def test_check_status_and_the_kill_switch_from_the_cli(lab):
    inv, agents, tmp = lab
    p = _twin("live", "check", str(inv), "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    checks = json.loads(p.stdout)
    assert [c["node"] for c in checks] == ["n0", "n1", "n2", "n3"] and all(c["ok"] for c in checks)
    # a controller mid-run with an unconfirmed change on n2 (and a run-start snapshot everywhere)
    from twin.adapter import Action, SignedAction
    from twin.live.adapter import LiveAdapter, LiveSigner
    from twin.live.loopback import controller_of

    inventory, ident, bundle = controller_of(inv)
    ad = LiveAdapter(inventory, ident, bundle, apply_enabled=True)
    ad.begin("cli")
    a = Action("set_hop_penalty", "n2", {"value": 250})
    assert ad.apply(SignedAction(a, LiveSigner(ident).sign(a, 0))).applied
    assert agents.kernels["n2"].current.hop_penalty == 250
    p = _twin("live", "stop", str(inv))
    assert p.returncode == 0, p.stdout + p.stderr
    assert all(a.halted for a in agents.agents.values())
    assert agents.kernels["n2"].current.hop_penalty == 30
    b = Action("set_hop_penalty", "n2", {"value": 250})
    r = ad.apply(SignedAction(b, LiveSigner(ident).sign(b, 0)))
    assert not r.applied and r.rejected_reason.startswith("halted")
    ad.close()
    st = _twin("live", "status", str(inv), "--json")
    assert st.returncode == 0 and all(n["halted"] for n in json.loads(st.stdout)["nodes"].values())
    p = _twin("live", "check", str(inv), "--json")
    assert p.returncode == 1 and all("halted" in c["checks"]["idle"][1] for c in json.loads(p.stdout))
    assert _twin("live", "stop", str(inv), "--resume").returncode == 0
    assert not any(a.halted for a in agents.agents.values())


def test_bad_inventory_names_file_line_and_field(tmp_path):
    f = tmp_path / "inv.yaml"
    f.write_text("mesh: lab\ncontroller: {identity: a, trust_bundle: b}\nnodes:\n"
                 "  - {name: n0, mgmt: 10.0.0.1, allow_actions: [reboot]}\n  - {name: n1, mgmt: not-an-ip}\n")
    p = _twin("live", "check", str(f))
    assert p.returncode == 2
    assert f"{f}:4: nodes[0].allow_actions" in p.stderr and "'reboot' is not an agent action" in p.stderr
    assert f"{f}:5: nodes[1].mgmt" in p.stderr


def test_a_dry_run_from_the_cli_prints_what_the_loop_would_do(lab):
    """A dry run from the CLI says what the loop would have sent and writes nothing. (The stand-in
    kernels' fixed tables never show a failure, so the list printed here is empty.)"""
    inv, agents, tmp = lab
    sc = tmp / "s.yaml"
    sc.write_text(SCENARIO)
    p = _twin("run", str(sc), "--mode", "live", "-i", str(inv), "-o", str(tmp / "out"))
    assert p.returncode in (0, 1), p.stderr
    assert "dry run: the loop would have sent" in p.stdout
    assert all(k.writes == [] for k in agents.kernels.values())
