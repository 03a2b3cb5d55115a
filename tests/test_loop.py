"""The MAPE-K loop over the sim adapter: healing, attacks, signed commands, no false actions."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from twin.adapter import Action, SignedAction
from twin.run import execute
from twin.scenario import parse

ROOT = Path(__file__).resolve().parents[1]


def _crash(seed: int, fault: str = "node_crash", extra: str = "") -> str:
    return f"""
name: loop-{fault}
seed: {seed}
duration: 90s
topology: {{kind: random_geometric, nodes: 50, radius: 0.24}}
traffic: [{{pairs: 10, rate: 10/s, select: through}}]
faults: [{{at: 60s, kind: {fault}, node: most_central}}]
targets: {{mttr: {{max: 30s}}, delivery_ratio: {{min: 0.99, after: 75s}}}}
{extra}"""


def test_brain_imports_no_adapter():
    """twin.mapek and twin.ml must run unchanged against sim, emu and live."""
    bad = []
    for pkg in ("mapek", "ml"):
        for f in (ROOT / "twin" / pkg).glob("*.py"):
            for node in ast.walk(ast.parse(f.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                bad += [f"{f.name}: {n}" for n in names if n.startswith(("twin.sim", "twin.emu", "twin.live"))]
    assert bad == []


@pytest.mark.parametrize("seed", [1, 5, 12])
def test_loop_heals_relay_crash_faster(seed):
    off = execute(parse(_crash(seed)), out=None, loop=False).summary
    on = execute(parse(_crash(seed)), out=None, loop=True).summary
    m_off, m_on = off["faults"][0]["mttr_s"], on["faults"][0]["mttr_s"]
    assert m_on is not None and m_off is not None
    assert m_on < m_off
    assert m_on <= 4.0
    f = on["faults"][0]
    assert f["diagnosis"] == "dead_relay"
    assert 0 < f["detected_s"] <= 2.0  # within two OGM intervals
    assert any(a["kind"] == "set_orig_interval" for a in f["actions"])
    assert on["loop_stats"]["actions_rejected"] == 0


def test_blackhole_detected_and_quarantined():
    s = execute(parse(_crash(4, "blackhole")), out=None, loop=True).summary
    f = s["faults"][0]
    assert f["diagnosis"] == "blackhole"
    assert f["detected_s"] is not None and f["detected_s"] <= 10.0
    assert any(a["kind"] == "quarantine" and a["node"] == f["label"].split("(")[1].split(")")[0]
               for a in f["actions"])
    assert s["targets"]["delivery_ratio"]["value"] >= 0.99
    # without the loop batman-adv keeps routing into the blackhole
    off = execute(parse(_crash(4, "blackhole")), out=None, loop=False).summary
    assert off["targets"]["delivery_ratio"]["value"] < 0.9


def test_fault_free_lossy_mesh_takes_no_action():
    txt = """
name: calm
seed: 3
duration: 600s
topology: {kind: random_geometric, nodes: 40, avg_degree: 7, link: {loss: 0.05}}
traffic: [{pairs: 8, rate: 2/s}]
loop: {enabled: true}
"""
    s = execute(parse(txt), out=None).summary
    assert s["loop_stats"]["actions"] == 0, s["loop_stats"]["incidents"][:3]
    assert s["loop_stats"]["iterations"] >= 560  # one per 1 s poll after the PQC handshakes


def test_control_plane_attacks_rejected_and_counted():
    s = execute(parse((ROOT / "scenarios" / "control-plane-attacks.yaml").read_text()), out=None).summary
    sec = s["security"]
    assert sec["malicious_applied"] == 0
    for err in ("ForgedError", "ReplayError", "ExpiredError", "RevokedError", "TamperedError"):
        assert sec["rejected"].get(err, 0) >= 1, err
    assert sum(sec["attempts"].values()) == 5
    assert sec["envelope_frames"] == 3  # a 3309-byte ML-DSA-65 signature needs 3 frames of 1500 bytes


def test_unsigned_or_forged_command_is_not_applied():
    """Drive the sim adapter directly: a command without a valid envelope changes nothing."""
    import simpy

    from twin.control.plane import ControlPlane
    from twin.sim.adapter import SimAdapter
    from twin.sim.model import BatmanTwin
    from twin.sim.runner import SimRecord
    from twin.world import resolve

    w = resolve(parse("name: x\ntopology: {kind: line, nodes: 4}\n"))
    tw = BatmanTwin(w.graph, w.scenario.routing, 1)
    env = simpy.Environment()
    plane = ControlPlane()
    ad = SimAdapter(tw, env, SimRecord(), w, verifier=plane.verify)
    act = Action("quarantine", "n1", {}, reason="test")
    r1 = ad.apply(SignedAction(act, None))
    assert not r1.applied and tw.st.quarantined[tw.index["n1"]] == 0
    r2 = ad.apply(SignedAction(act, plane.sign(Action("quarantine", "n2"), 0.0)))  # envelope for another action
    assert not r2.applied and tw.st.quarantined[tw.index["n1"]] == 0
    r3 = ad.apply(SignedAction(act, plane.sign(act, 0.0)))
    assert r3.applied and tw.st.quarantined[tw.index["n1"]] == 1


def test_orig_interval_takes_effect_at_next_scheduling():
    """Like the kernel: the pending OGM keeps its send time; later ones use the new interval."""
    from twin.sim.model import BatmanTwin
    from twin.world import resolve

    w = resolve(parse("name: x\ntopology: {kind: line, nodes: 3}\n"))
    tw = BatmanTwin(w.graph, w.scenario.routing, 1)
    tw.advance(10.0)
    x = tw.index["n1"]
    pending = float(tw.st.next_orig[x])
    tw.st.interval[x] = 0.1
    tw.advance(pending + 0.5)
    seq_before = int(tw.st.own_seq[x])
    tw.advance(pending + 1.5)
    assert int(tw.st.own_seq[x]) - seq_before >= 9  # ~10 OGMs a second now
    assert pending > 10.0 - 1e-9


def test_hardif_bounce_purges_neighbours():
    from twin.sim.model import BatmanTwin
    from twin.world import resolve

    w = resolve(parse("name: x\ntopology: {kind: line, nodes: 5}\n"))
    tw = BatmanTwin(w.graph, w.scenario.routing, 1)
    tw.advance(80.0)
    assert tw.next_hop("n2", "n4") == "n3"
    tq_before = tw.tq("n2", "n4")
    tw.hardif(tw.index["n2"], up=False)
    assert tw.next_hop("n2", "n4") is None
    tw.hardif(tw.index["n2"], up=True)
    tw.advance(84.0)
    # windows restart empty: the route comes back with a much lower TQ (asymmetry penalty)
    assert tw.tq("n2", "n4") < tq_before * 0.7


def test_knowledge_base_persists_incidents(tmp_path):
    from twin.mapek.knowledge import KnowledgeBase

    kb = KnowledgeBase(tmp_path / "kb.json")
    inc = kb.open("dead_relay", ["n1"], 61.0, np.arange(12, dtype=float), {"x": 1})
    inc.remedy, inc.outcome = "ogm_burst", "resolved"
    kb.save()
    kb2 = KnowledgeBase(tmp_path / "kb.json")
    assert [i.remedy for i in kb2.past] == ["ogm_burst"]
    assert kb2.success_rates(np.arange(12, dtype=float)) == {"ogm_burst": 1.0}


def test_loop_runs_are_reproducible_when_costs_are_not_charged():
    txt = _crash(7, extra="loop: {enabled: true, charge_costs: false}")
    a = execute(parse(txt), out=None).events
    b = execute(parse(txt), out=None).events
    assert a.equals(b)
    assert (a["kind"] == "action").sum() > 0


def test_knowledge_file_keeps_incidents_across_runs(tmp_path):
    import json

    from twin.scenario import load

    scen = tmp_path / "kb.yaml"
    scen.write_text(_crash(3, extra="loop: {enabled: true, knowledge: incidents.json}").replace("90s", "80s"))
    first = execute(load(scen), out=None).summary
    kb = json.loads((tmp_path / "incidents.json").read_text())["incidents"]
    assert [i["diagnosis"] for i in kb] == [i["diagnosis"] for i in first["loop_stats"]["incidents"]]
    assert kb and kb[0]["diagnosis"] == "dead_relay" and kb[0]["remedy"] == "ogm_burst"
    execute(load(scen), out=None)
    again = json.loads((tmp_path / "incidents.json").read_text())["incidents"]
    assert len(again) == 2 * len(kb)  # the second run's incidents joined the first's


def test_fault_free_run_states_why_it_did_nothing_about_a_partition():
    """A diagnosis without a remedy is logged and summarised with its reason, never silent (in
    band, so the far side of the cut cannot report: out of band the controller still hears both
    sides and there is no partition to see)."""
    txt = """
name: cut
seed: 11
duration: 70s
topology: {kind: random_geometric, nodes: 40, radius: 0.3}
traffic: [{pairs: 8, rate: 5/s}]
faults: [{at: 40s, kind: partition, node: most_central}]
loop: {enabled: true}
control: {path: in_band, controller: n0}   # n0 is the node the cut isolates (with six more)
"""
    r = execute(parse(txt), out=None)
    inc = [i for i in r.summary["loop_stats"]["incidents"] if i["diagnosis"] == "partition"]
    assert inc and all(i["outcome"] == "no_action" and i["no_action"].startswith("no action, because") for i in inc)
    na = r.events[(r.events["kind"] == "no_action") & (r.events["outcome"] == "partition")]
    assert len(na) >= 1
