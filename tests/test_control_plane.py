"""The modelled control plane: per-node reports with their own age, out-of-band loss, in-band
reachability, the cost of healing, and blackholes found from random pairs."""

from __future__ import annotations

import numpy as np
import pytest

from twin.run import execute
from twin.scenario import ScenarioError, parse


def test_control_section_is_bounded_and_located():
    with pytest.raises(ScenarioError) as err:
        parse("name: x\ncontrol:\n  poll: 10ms\n  path: radio\n  loss: 2\n")
    text = str(err.value)
    assert "<string>:3: control.poll" in text and "control.path" in text and "control.loss" in text


def test_lossy_out_of_band_reports_arrive_per_node_with_their_own_age():
    import simpy

    from twin.control.view import ReportView
    from twin.sim.adapter import SimAdapter
    from twin.sim.control import SimChannel, poll
    from twin.sim.model import BatmanTwin
    from twin.sim.runner import SimRecord
    from twin.world import resolve

    w = resolve(parse("name: x\nseed: 2\ntopology: {kind: grid, rows: 4, cols: 4}\n"
                      "control: {path: out_of_band, loss: 0.3, rtt: 20ms}\n"))
    tw = BatmanTwin(w.graph, w.scenario.routing, 2)
    env = simpy.Environment()
    ad = SimAdapter(tw, env, SimRecord(), w)
    ch = SimChannel(w.scenario.control, tw, w, 2, envelope_overhead=3400, action_envelope=3482)
    ad.attach(ch, ReportView(tw.names, stale_after_s=3.0))

    def polls():
        yield env.timeout(20.0)
        for _ in range(6):
            yield env.process(poll(env, ch, ad, None))
            yield env.timeout(1.0)

    env.process(polls())
    env.run(until=40.0)
    tel = ad.observe()
    assert ad.view.polls == 6 and 0 < ad.view.reports < 6 * 16  # some requests or reports were lost
    ages = tel.report_age[~np.isnan(tel.report_age)]
    assert len(np.unique(np.round(ages, 3))) > 1  # rows of different polls, each with its own age
    assert ages.min() >= 40.0 - 26.0 - 1e-9 and not tel.reporting.all()
    assert ch.meter.telemetry_bytes > 0


def test_in_band_commands_need_a_route_to_the_controller():
    import simpy

    from twin.adapter import Action, SignedAction
    from twin.control.view import ReportView
    from twin.faults import Op
    from twin.sim.adapter import SimAdapter
    from twin.sim.control import SimChannel
    from twin.sim.model import BatmanTwin
    from twin.sim.runner import SimRecord
    from twin.world import resolve

    w = resolve(parse("name: x\ntopology: {kind: line, nodes: 5}\ncontrol: {path: in_band, controller: n0}\n"))
    tw = BatmanTwin(w.graph, w.scenario.routing, 1)
    env = simpy.Environment()
    ad = SimAdapter(tw, env, SimRecord(), w)
    ad.attach(SimChannel(w.scenario.control, tw, w, 1, envelope_overhead=3400, action_envelope=3482),
              ReportView(tw.names, stale_after_s=3.0))
    env.run(until=30.0)
    ok = ad.apply(SignedAction(Action("set_hop_penalty", "n4", {"value": 40})))
    assert ok.applied and ok.at_s > 30.0  # it arrives after crossing four hops
    tw.advance(30.0)
    tw.apply_op(Op(at_s=30.0, seq=0, kind="crash", fault=0, node="n2"))
    lost = ad.apply(SignedAction(Action("set_hop_penalty", "n4", {"value": 50})))
    assert not lost.applied and lost.rejected_reason.startswith("undelivered")
    env.run(until=31.0)
    assert tw.st.hop_penalty[tw.index["n4"]] == 40  # only the first one took effect


def test_cost_of_healing_is_in_the_summary_and_can_be_bounded():
    txt = """
name: cost
seed: 1
duration: 75s
topology: {kind: random_geometric, nodes: 30, radius: 0.3}
traffic: [{pairs: 6, rate: 5/s, select: through}]
faults: [{at: 45s, kind: node_crash, node: most_central}]
targets: {control_overhead: {max: 20kbit/s}}
"""
    off = execute(parse(txt), out=None, loop=False).summary
    on = execute(parse(txt), out=None, loop=True).summary
    co_off, co_on = off["control_overhead"], on["control_overhead"]
    assert co_off["telemetry_bytes_per_node_s"] == 0 and co_on["telemetry_bytes_per_node_s"] > 1000
    assert co_on["routing_frames_per_node_s"] > co_off["routing_frames_per_node_s"]  # the 40 ms burst
    assert co_on["command_bytes_per_node_s"] > 0 and co_on["peak_10s_bit_per_node_s"] > co_on["total_bit_per_node_s"]
    t = on["targets"]["control_overhead"]
    assert t["value"] == co_on["total_bit_per_node_s"] and t["limit"] == 20_000 and t["pass"] is (t["value"] <= 20_000)
    assert off["targets"]["control_overhead"]["pass"] is (co_off["total_bit_per_node_s"] <= 20_000)


def test_blackhole_found_from_random_pairs_and_nobody_else_quarantined():
    txt = """
name: bh
seed: 5
duration: 80s
topology: {kind: random_geometric, nodes: 50, radius: 0.24}
traffic: [{pairs: 20, rate: 10/s, select: random}]
faults: [{at: 60s, kind: blackhole, node: most_central}]
loop: {enabled: true}
"""
    r = execute(parse(txt), out=None)
    victim = r.world.faults[0].nodes[0]
    q = r.events[(r.events["kind"] == "action") & (r.events["outcome"] == "quarantine")]
    assert set(q["node"].astype(str)) == {victim}
    assert float(q["t_s"].min()) - 60.0 <= 10.0
    assert r.summary["faults"][0]["diagnosis"] == "blackhole"
