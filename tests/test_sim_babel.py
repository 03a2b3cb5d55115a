"""The twin's Babel model: what babeld 1.12 does that the comparison with ``emu`` rests on.

Facts checked here: costs and routes on a loss-free mesh (256 per wireless hop, shortest paths),
the reach-based cost growth after a neighbour falls silent (first miss noticed at 1.7 hello
intervals, cost doubling per missed hello, infinite after 12, neighbour flushed at 16), the
feasibility condition forcing a seqno request when the only alternative is unfeasible, the
hello interval setting the pace of failover, an interface taken down flushing its neighbour at
once, and determinism per seed.
"""

from __future__ import annotations

import statistics

import networkx as nx
import numpy as np
import pytest

from twin import topology as topo
from twin.babel_metric import BABEL_NOMINAL_COST, INFINITY
from twin.compare import Comparison, ModeRun
from twin.faults import Op
from twin.run import execute
from twin.scenario import RoutingSpec, load
from twin.sim.babel import BabelTwin

BABEL = RoutingSpec(protocol="babel", hello_interval=1.0)


def crash(tw: BabelTwin, node: str, at: float) -> None:
    tw.advance(at)
    tw.apply_op(Op(at_s=at, seq=0, kind="crash", node=node, fault=0))


def test_converged_mesh_routes_on_shortest_paths_with_nominal_costs():
    g = topo.random_geometric(20, radius=0.35, seed=4)
    tw = BabelTwin(g, BABEL, seed=1)
    assert tw.settled_s < 30.0 and tw.convergence_s <= tw.settled_s
    assert tw.reachable_fraction() == 1.0
    # the first routes learnt are not all the best: a new route starts with a smoothed metric of at
    # least INFINITY/2 and replaces an installed one only once that has decayed (half-life 4 s)
    tw.advance(60.0)
    hops = dict(nx.all_pairs_shortest_path_length(g))
    for a in tw.names:
        for b in tw.names:
            if a != b:
                assert tw.metric(a, b) == BABEL_NOMINAL_COST * hops[a][b], (a, b)
                assert tw.next_hop(a, b) in g[a]
    assert tw.reachable_fraction() == 1.0


def test_cost_of_a_silent_neighbour_doubles_per_missed_hello_then_goes_infinite():
    tw = BabelTwin(topo.line(3), BABEL, seed=2)
    x, r = tw.index["n1"], int(tw.st.nbr_index[tw.index["n1"], tw.index["n2"]])
    assert tw._cost(x, r) == BABEL_NOMINAL_COST
    crash(tw, "n2", 10.0)
    seen: list[tuple[float, int]] = []
    t = 10.0
    while t < 30.0 and tw.neigh[r] is not None:
        t += 0.05
        tw.advance(t)
        if tw.neigh[r] is not None:
            seen.append((t - 10.0, tw._cost(x, r)))
    costs = [c for _, c in seen]
    first_rise = next(dt for dt, c in seen if c > BABEL_NOMINAL_COST)
    # babeld notices a missed hello 1.7 intervals after the last one, at its next neighbour check
    assert 0.7 < first_rise < 3.5
    assert costs == sorted(costs)  # only ever worse while silent
    # k missed hellos leave reach = 0xFFFF >> k: cost 341 for k = 1, then 512 * 2**(k - 2)
    allowed = {256, 341} | {512 << j for j in range(7)}
    assert {c for c in costs if c < INFINITY} <= allowed
    inf_at = next(dt for dt, c in seen if c >= INFINITY)
    assert 8.0 < inf_at < 12.5  # 0x8000 * 256 / (sreach + 1) passes 65535 at the 9th missed hello
    assert tw.neigh[r] is None and 15.0 < t - 10.0 < 21.0  # flushed once reach is 0 (16 missed)


def _ring_failover(hello: float, seed: int) -> tuple[float, int, int]:
    """Ring of 5: n1 reaches n3 via n2 (2 hops). Its only other route, via n0 (n0 -> n4 -> n3),
    has refmetric 512, not below n1's feasibility distance, so it is unfeasible until n3 issues a
    new seqno. Crash n2 and time n1's switch to n0."""
    tw = BabelTwin(topo.ring(5), RoutingSpec(protocol="babel", hello_interval=hello), seed=seed)
    tw.advance(60.0)  # past the start-up re-optimisation (see the first test)
    assert tw.next_hop("n1", "n3") == "n2"
    before = tw.myseqno[tw.index["n3"]]
    crash(tw, "n2", 60.0)
    t = 60.0
    while tw.next_hop("n1", "n3") != "n0" and t < 120.0:
        t += 0.05
        tw.advance(t)
    return t - 60.0, before, tw.myseqno[tw.index["n3"]]


def test_unfeasible_alternative_needs_a_new_seqno_from_the_source():
    dt, before, after = _ring_failover(1.0, seed=3)
    assert dt < 30.0, "n1 never switched to its alternative"
    assert after != before, "the switch happened without n3 raising its seqno"
    tw = BabelTwin(topo.ring(5), BABEL, seed=3)
    tw.advance(60.0)
    src = tw.sources[tw.index["n1"]][tw.index["n3"]]
    assert src[1] == 2 * BABEL_NOMINAL_COST  # n1's feasibility distance is its own 2-hop metric


def test_failover_time_scales_with_the_hello_interval():
    fast = statistics.median(_ring_failover(0.5, s)[0] for s in range(1, 6))
    slow = statistics.median(_ring_failover(2.0, s)[0] for s in range(1, 6))
    assert 2.5 < slow / fast < 6.0


def test_taking_down_an_interface_flushes_its_neighbour_at_once():
    tw = BabelTwin(topo.ring(5), BABEL, seed=4)
    tw.advance(60.0)
    assert tw.next_hop("n1", "n3") == "n2"
    crash(tw, "n2", 60.0)
    tw.advance(60.2)
    tw.hardif(tw.index["n1"], up=False, peer="n2")
    assert tw.neigh[int(tw.st.nbr_index[tw.index["n1"], tw.index["n2"]])] is None
    assert tw.next_hop("n1", "n3") != "n2"  # no route through the dropped neighbour is left


def test_same_seed_same_run_and_seeds_differ():
    sc = load("scenarios/babel-relay-crash.yaml")
    runs = [execute(sc.model_copy(update={"seed": s}), out=None) for s in (2, 2, 3)]
    a, b, c = (r.events for r in runs)
    assert a.equals(b)
    assert runs[0].summary == runs[1].summary
    assert not a.equals(c)
    assert runs[0].summary["faults"][0]["mttr_s"] is not None
    assert runs[0].journal["engine"]["engine"].startswith("babel")


def test_comparison_report_medians_bars_and_exclusions():
    def run(seed, mode, mttr, dr, invalid=None):
        return ModeRun(seed=seed, mode=mode, mttr_s=[mttr], delivery_ratio=dr, run_dir=None, wall_s=1.0,
                       invalid=invalid)

    cmp = Comparison(scenario="x", protocol="babel", seeds=[1, 2, 3, 4])
    cmp.runs = [(run(1, "sim", 5.0, 0.90), run(1, "emu", 6.0, 0.91)),
                (run(2, "sim", 7.0, 0.92), run(2, "emu", 6.5, 0.92)),
                (run(3, "sim", 6.0, 0.94), run(3, "emu", 7.0, 0.93)),
                (run(4, "sim", 1.0, 0.50), run(4, "emu", 1.0, 0.99, invalid="host CPU saturated"))]
    rep = cmp.report()
    assert rep["valid_pairs"] == 3 and rep["excluded"] == [{"seed": 4, "why": "host CPU saturated"}]
    assert rep["mttr"]["sim_median_s"] == 6.0 and rep["mttr"]["emu_median_s"] == 6.5
    assert rep["mttr"]["rel_diff"] == pytest.approx(6.0 / 6.5 - 1, abs=1e-4) and rep["mttr"]["pass"]
    assert rep["delivery"]["diff_pp"] == pytest.approx(0.0, abs=1e-6) and rep["agree"]
    cmp.runs[0] = (run(1, "sim", 20.0, 0.80), run(1, "emu", 6.0, 0.91))
    cmp.runs[1] = (run(2, "sim", 21.0, 0.92), run(2, "emu", 6.5, 0.92))
    rep = cmp.report()
    assert not rep["mttr"]["pass"] and not rep["delivery"]["pass"] and not rep["agree"]
    cmp.runs[2] = (ModeRun(3, "sim", [None], 0.9, None, 1.0), run(3, "emu", 7.0, 0.9))
    assert cmp.report()["mttr"]["sim_not_recovered"] == 1


def test_babel_telemetry_maps_costs_like_emu():
    tw = BabelTwin(topo.line(4), BABEL, seed=5)
    tw.advance(3.0)
    tel = tw.telemetry(3.0)  # a line has one path: no start-up re-optimisation
    i, j = tw.index["n0"], tw.index["n3"]
    assert tel.orig_next_hop[i, j] == tw.index["n1"]
    assert tel.extra["route_metric"][i, j] == 3 * BABEL_NOMINAL_COST
    assert 0 < tel.orig_tq[i, j] < tel.orig_tq[i, tw.index["n1"]] <= 255
    assert np.all(tel.link_tq == 255)  # every lossless link at nominal cost
    assert tel.forward_packets is None  # babeld keeps no relay counters


def test_compare_without_root_says_so_before_running_anything(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from twin.cli import app

    monkeypatch.setattr("os.geteuid", lambda: 1000)
    res = CliRunner().invoke(app, ["compare", "scenarios/babel-relay-crash.yaml", "--seeds", "2",
                                   "--out", str(tmp_path)])
    assert res.exit_code == 3
    assert "root" in res.output and "Traceback" not in res.output
    assert not any(tmp_path.iterdir())  # not even the quick twin runs were started


@pytest.mark.parametrize("seed", [1, 5])
def test_the_loop_on_babel_diagnoses_the_crash_and_never_slows_babel(seed):
    """Polled once a second, the controller sees the crash only once babeld's own route ages
    show it (babel relays are heard once per hello, too rarely for the frame-silence rule), by
    which time babeld has mostly healed: the loop diagnoses it and must not make it worse."""
    sc = load("scenarios/babel-relay-crash.yaml").model_copy(update={"seed": seed})
    off = execute(sc, out=None, loop=False).summary["faults"][0]
    on = execute(sc, out=None, loop=True).summary["faults"][0]
    assert off["mttr_s"] is not None and on["mttr_s"] is not None
    assert on["mttr_s"] <= off["mttr_s"]
    assert on["diagnosis"] == "dead_relay"
    crashed = on["label"].split("(")[1].split(")")[0]
    # babeld's only remedy: neighbours take down their interface toward the silent relay
    assert all(a["kind"] == "hardif_down" and a["params"].get("peer") == crashed for a in on["actions"])
