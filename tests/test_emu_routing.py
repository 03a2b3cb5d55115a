"""End-to-end emulation on babeld: convergence, reroute, nftables loss, quarantine, steering.

Each test is a small mesh (<= 5 nodes) with a run of a few seconds, so the file stays well under
two minutes on two cores.
"""

from __future__ import annotations

import math
import os

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from twin.adapter import Action, MeshAdapter, SignedAction
from twin.emu.adapter import EmuAdapter
from twin.emu.capabilities import probe_capabilities
from twin.emu.cleanup import leftovers
from twin.emu.runner import EVENT_COLUMNS, run_emu
from twin.faults import Op

pytestmark = [pytest.mark.emu,
              pytest.mark.skipif(os.geteuid() != 0, reason="emu tests need root")]


def _probes(ev: pd.DataFrame, src: str | None = None, t0: float = -math.inf, t1: float = math.inf) -> pd.DataFrame:
    p = ev[(ev.kind == "probe") & (ev.t_s >= t0) & (ev.t_s < t1)]
    return p[p.node == src] if src else p


def _delivery(p: pd.DataFrame) -> float:
    return float((p.outcome == "delivered").mean()) if len(p) else float("nan")


def _no_leftovers(run_id: str) -> None:
    left = leftovers({f"mtw{run_id}"})
    assert not any(left.values()), left


def test_line_converges_and_delivers() -> None:
    g = nx.path_graph([f"n{i}" for i in range(4)])
    run = run_emu(g, [], [("n0", "n3"), ("n3", "n0")], duration_s=4.0, probe_rate_hz=10.0,
                  fallback_overlay=False)
    ev = run.events
    assert list(ev.columns) == list(EVENT_COLUMNS)
    assert {c: str(t) for c, t in ev.dtypes.items()} == EVENT_COLUMNS
    assert set(ev.kind) <= {"op", "probe", "route_change", "action", "note"}
    assert 0 < run.convergence_s < 15
    p = _probes(ev)
    assert len(p) >= 2 * 4 * 10 * 0.9
    assert p.valid.all()
    assert _delivery(p) >= 0.97
    lat = p[p.outcome == "delivered"].latency_ms
    assert (lat > 0).all() and lat.median() < 20
    assert set(p.node) == {"n0", "n3"}
    assert (ev[ev.kind == "probe"].fault == -1).all()
    # other tenants may load this host: check the bookkeeping, not that the host was idle
    assert 0 <= run.load["cpu_mean"] <= run.load["cpu_max"] <= 100 and run.load["samples"] >= 5
    assert run.load["valid_run"] == (not run.load["saturated"])
    assert run.timings["build_s"] < 10
    _no_leftovers(run.run_id)


def test_ring_link_down_reroutes_and_delivery_resumes() -> None:
    g = nx.cycle_graph([f"n{i}" for i in range(6)])  # n0 -> n1: direct, or 5 hops the other way round
    ops = [Op(2.0, 0, "link_down", 7, link=("n0", "n1"))]
    run = run_emu(g, ops, [("n0", "n1")], duration_s=9.0, probe_rate_hz=20.0, fallback_overlay=False)
    ev = run.events
    op = ev[ev.kind == "op"]
    assert len(op) == 1 and op.fault.iloc[0] == 7 and op.outcome.iloc[0] == "link_down"
    assert op.node.iloc[0] == "n0" and op.peer.iloc[0] == "n1"
    t_down = float(op.t_s.iloc[0])
    assert abs(t_down - 2.0) < 0.3
    assert _delivery(_probes(ev, "n0", 0, t_down)) >= 0.95
    # babel needs a seqno request to accept the longer (infeasible) path: ~2-3 s without delivery
    assert _delivery(_probes(ev, "n0", t_down + 4.0)) >= 0.95  # rerouted the long way round
    rc = ev[(ev.kind == "route_change") & (ev.node == "n0") & (ev.peer == "n1") & (ev.t_s > t_down)]
    assert rc.detail.str.contains("-> n5").any(), rc
    assert _probes(ev).valid.all()  # the ring stays connected
    _no_leftovers(run.run_id)


def test_nft_loss_rule_drops_about_the_right_fraction() -> None:
    caps = probe_capabilities()
    g = nx.Graph()
    g.add_edge("n0", "n1", loss=0.3)
    run = run_emu(g, [], [("n0", "n1")], duration_s=6.0, probe_rate_hz=50.0, fallback_overlay=False)
    assert run.impairments["loss"] == ("netem" if caps["netem"] else "nftables")
    assert run.impairments["links"]["n0-n1"]["loss"] == run.impairments["loss"]
    p = _probes(run.events)
    assert len(p) >= 250
    # the rule sits on n0's egress, so each dropped probe is refused at send (EPERM from netfilter)
    dropped = p.detail.str.contains("send=err:1").mean()
    assert 0.2 <= dropped <= 0.4, dropped
    # end to end loses at least that much: babel hellos cross the same lossy link, and at 30 % loss
    # babeld's link-quality cost can lose the route for a while (seen from ~0.35 up to the whole
    # 6 s window on a loaded host), which is babeld's business, not the rule's
    loss = 1 - _delivery(p)
    assert loss >= dropped - 0.01, (loss, dropped)
    _no_leftovers(run.run_id)


def test_quarantine_blocks_traffic_and_actions_are_applied() -> None:
    g = nx.path_graph(["n0", "n1", "n2"])
    results: dict[str, object] = {}
    telemetry = []
    during_q = []

    def tick(ad: EmuAdapter) -> None:
        t = ad.now()
        if "tel" not in results:
            results["tel"] = isinstance(ad, MeshAdapter) and ad.mode == "emu"
            telemetry.append(ad.observe())
            results["bogus"] = ad.apply(SignedAction(Action("steer_fallback", "n0", {"dst": "n1"})))
        if t >= 2.0 and "q" not in results:
            results["q"] = ad.apply(SignedAction(Action("quarantine", "n1")))
            results["t_q"] = t
        if t >= 3.5 and "q" in results and "u" not in results:
            during_q.append(ad.observe())  # sampled each tick: babeld ages reach only at its checks
        if t >= 6.5 and "u" not in results:
            telemetry.append(ad.observe())
            results["u"] = ad.apply(SignedAction(Action("unquarantine", "n1")))
            results["t_u"] = t
            # babeld re-learns the node's neighbours after this (documented): not before t_u
            results["hop"] = ad.apply(SignedAction(Action("set_hop_penalty", "n2", {"value": 30})))

    run = run_emu(g, [], [("n0", "n2")], duration_s=8.0, probe_rate_hz=20.0, loop_period_s=0.25,
                  on_tick=tick, fallback_overlay=False)
    assert results["tel"] is True
    assert results["q"].applied and results["u"].applied and results["hop"].applied
    assert not results["bogus"].applied and "not supported" in results["bogus"].rejected_reason
    ev = run.events
    t_q, t_u = results["t_q"], results["t_u"]
    assert _delivery(_probes(ev, "n0", 0.5, t_q)) >= 0.9
    assert _delivery(_probes(ev, "n0", t_q + 0.2, t_u)) == 0.0
    acts = ev[ev.kind == "action"]
    assert set(acts.outcome) == {"applied", "rejected"} and len(acts) == 4
    tel = telemetry[0]
    assert tel.n == 3 and tel.reporting.all()
    i = {n: k for k, n in enumerate(tel.nodes)}
    assert tel.orig_next_hop[i["n0"], i["n2"]] == i["n1"]
    assert tel.orig_next_hop[i["n2"], i["n0"]] == i["n1"]
    assert tel.orig_tq[i["n0"], i["n1"]] > tel.orig_tq[i["n0"], i["n2"]] > 0
    assert len(tel.link_src) == 4 and (tel.link_tq > 0).all()
    assert (tel.tx_packets > 0).all() and tel.orig_interval_s.tolist() == [1.0, 1.0, 1.0]
    tel_q = telemetry[1]  # 4.5 s into the quarantine: n0 has not heard n1 since, its link decays

    def link(t, a, b):  # (tq, last_seen) of a's entry for neighbour b, or None
        for s_, d_, q_, age in zip(t.link_src, t.link_dst, t.link_tq, t.link_last_seen, strict=True):
            if (int(s_), int(d_)) == (i[a], i[b]):
                return int(q_), float(age)
        return None

    before = link(tel, "n0", "n1")
    assert before[1] < 1.5
    # babeld only ages ``reach`` when its periodic neighbour check (about every 1.5 hello intervals)
    # finds a hello well overdue, so the first decay shows 1-3 s into the quarantine, later on a busy
    # host (a CI run once saw none within 3 s); some sample 1.5-4.5 s into the quarantine must show it
    samples = [link(x, "n0", "n1") for x in [*during_q, tel_q]]
    assert any(d is None or (d[1] > before[1] and d[1] >= 1.0) for d in samples), (
        t_q, before, [(round(x.t, 2), d) for x, d in zip([*during_q, tel_q], samples, strict=True)])
    assert np.all(tel_q.probe_ok <= tel_q.probe_sent)
    _no_leftovers(run.run_id)


@pytest.mark.skipif(not probe_capabilities().get("yggdrasil"), reason="yggdrasil not installed")
def test_steer_fallback_over_yggdrasil() -> None:
    g = nx.path_graph(["n0", "n1", "n2"])
    res = {}

    def tick(ad: EmuAdapter) -> None:
        if ad.now() >= 1.0 and "s" not in res:
            res["s"] = ad.apply(SignedAction(Action("steer_fallback", "n0", {"src": "n0", "dst": "n2"})))
            res["t"] = ad.now()

    run = run_emu(g, [], [("n0", "n2")], duration_s=6.0, probe_rate_hz=10.0, loop_period_s=0.25, on_tick=tick,
                  fallback_overlay=True)
    assert res["s"].applied, res["s"]
    p = _probes(run.events, "n0", res["t"] + 0.2)
    assert p.detail.str.contains("via=ygg").all()
    assert _delivery(_probes(run.events, "n0", res["t"] + 3.0)) >= 0.8  # overlay paths settle in ~1-2 s
    _no_leftovers(run.run_id)


def test_crash_invalidates_probes_and_recover_restores_delivery() -> None:
    g = nx.path_graph(["n0", "n1", "n2"])
    ops = [Op(1.5, 0, "crash", 3, node="n2"), Op(4.0, 1, "recover", 3, node="n2", repair=True)]
    seen = []

    def tick(ad: EmuAdapter) -> None:
        if 2.5 <= ad.now() and not seen:
            seen.append(ad.observe())

    run = run_emu(g, ops, [("n0", "n2")], duration_s=9.0, probe_rate_hz=20.0, loop_period_s=0.5, on_tick=tick,
                  fallback_overlay=False)
    ev = run.events
    ops_ev = ev[ev.kind == "op"]
    assert list(ops_ev.outcome) == ["crash", "recover"] and (ops_ev.fault == 3).all()
    t_crash, t_rec = ops_ev.t_s.tolist()
    before, during = _probes(ev, "n0", 0, t_crash), _probes(ev, "n0", t_crash + 0.05, t_rec - 0.05)
    assert before.valid.all() and _delivery(before) >= 0.95
    assert len(during) > 20 and not during.valid.any() and _delivery(during) == 0.0
    # n1 must hear a few hellos from the restarted n2 before its link cost is finite again
    assert _delivery(_probes(ev, "n0", t_rec + 3.5)) >= 0.9
    tel = seen[0]
    assert tel.reporting.tolist() == [True, True, False]  # a crashed node simply does not answer
