"""``sim`` runs end to end: every fault kind changes what the probes see, and the run folder is
complete, well-formed and written atomically."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, assert_complete_run, run_dirs, scenario_text

import twin.results
import twin.run
from twin.run import execute
from twin.scenario import parse


def run(text: str, out=None):
    res = execute(parse(scenario_text(text)), out=out)
    ev = res.events
    return res, ev, ev[ev["kind"] == "probe"]


def window(pr: pd.DataFrame, t0: float, t1: float) -> pd.DataFrame:
    return pr[(pr["t_s"] >= t0) & (pr["t_s"] < t1)]


def ops(ev: pd.DataFrame) -> pd.DataFrame:
    return ev[ev["kind"] == "op"]


# --------------------------------------------------------------------------- each fault kind has an effect

CRASH = """
    seed: 2
    duration: 90s
    topology: {kind: grid, rows: 4, cols: 4}
    traffic: [{pairs: 6, rate: 10/s, select: through, via: n5, start: 5s}]
    faults: [{at: 40s, kind: node_crash, node: n5, duration: 30s}]
"""


def test_node_crash_breaks_probes_through_the_node_then_they_recover():
    res, ev, pr = run(CRASH)
    assert all("n5" not in pair for pair in res.world.flows[0].pairs)
    before, after = window(pr, 30, 40), window(pr, 40.05, 45)
    assert (before["outcome"] == "delivered").all()
    assert (after["outcome"] == "dead_hop").any() and after["valid"].all()
    assert (window(pr, 55, 70)["outcome"] == "delivered").all()  # rerouted around the dead relay
    (f,) = res.summary["faults"]
    assert f["kind"] == "node_crash" and f["at_s"] == 40.0 and f["repaired_at_s"] == 70.0
    assert 1.0 < f["mttr_s"] < 15.0 and f["affected_pairs"] >= 1
    o = ops(ev)
    assert list(o["outcome"]) == ["crash", "recover"] and list(o["node"]) == ["n5", "n5"]
    assert list(o["detail"]) == ["fault", "repair"]
    # the rebooted node is learnt again: its neighbours route to it directly
    back = ev[(ev["kind"] == "route_change") & (ev["t_s"] > 70) & ev["detail"].str.endswith("->n5")]
    assert set(back["node"]) & {"n1", "n4", "n6", "n9"}


def test_link_down_then_up():
    res, ev, pr = run("""
        seed: 1
        duration: 110s
        topology: {kind: ring, nodes: 6}
        traffic: [{pairs: 30, rate: 10/s, start: 5s}]
        faults:
          - {at: 40s, kind: link_down, between: [n0, n1]}
          - {at: 70s, kind: link_up, between: [n0, n1]}
    """)
    cross = window(pr, 40.05, 45)
    cross = cross[(cross["node"] == "n0") & (cross["peer"] == "n1")]
    assert len(cross) and (cross["outcome"] == "dead_hop").all() and cross["valid"].all()
    assert (window(pr, 60, 70)["outcome"] == "delivered").all()
    down, up = res.summary["faults"]
    assert down["kind"] == "link_down" and down["mttr_s"] is not None and down["affected_pairs"] >= 1
    assert up["kind"] == "link_up"
    assert list(ops(ev)["outcome"]) == ["link_down", "link_up"]
    assert set(ops(ev)["peer"]) == {"n0-n1"}
    # n0 goes round the ring to reach n1, then back to the direct link once it is up again
    rc = ev[(ev["kind"] == "route_change") & (ev["node"] == "n0") & (ev["peer"] == "n1")]
    assert (rc[(rc["t_s"] > 40) & (rc["t_s"] < 70)]["detail"] == "n1->n5").any()
    assert (rc[rc["t_s"] > 70]["detail"] == "n5->n1").any()


def test_link_degrade_raises_loss_and_is_restored():
    res, ev, pr = run("""
        seed: 1
        duration: 120s
        topology: {kind: line, nodes: 3}
        traffic: [{pairs: 6, rate: 10/s, start: 5s}]
        faults: [{at: 40s, kind: link_degrade, between: [n0, n1], loss: 0.3, duration: 40s}]
    """)
    def ratio(w):
        return (w["outcome"] == "delivered").mean()

    over = pr["node"].isin(["n0"]) | pr["peer"].isin(["n0"])  # pairs that cross n0-n1
    before, during, after = window(pr, 10, 40), window(pr, 40, 80), window(pr, 80, 120)
    assert ratio(before) == 1.0 and ratio(after) == 1.0
    lossy = during[over.loc[during.index]]
    assert 0.55 < ratio(lossy) < 0.85  # 30 % loss on one hop
    assert set(lossy["outcome"]) == {"delivered", "lost"}
    assert ratio(during[~over.loc[during.index]]) == 1.0
    o = ops(ev)
    assert list(o["outcome"]) == ["link_set", "link_set"] and list(o["detail"]) == ["fault", "repair"]
    assert res.summary["faults"][0]["mttr_s"] == 0.0  # a lost probe still had a route


def test_partition_invalidates_cross_pairs_and_heal_restores_them():
    res, ev, pr = run("""
        seed: 4
        duration: 110s
        topology: {kind: grid, rows: 4, cols: 4}
        traffic: [{pairs: 20, rate: 10/s, start: 5s}]
        faults:
          - at: 40s
            kind: partition
            groups: [[n0, n1, n2, n3, n4, n5, n6, n7], [n8, n9, n10, n11, n12, n13, n14, n15]]
          - {at: 70s, kind: heal}
    """)
    top = {f"n{i}" for i in range(8)}
    cross = pr["node"].isin(top) != pr["peer"].isin(top)
    assert cross.any() and (~cross).any()
    during = window(pr, 40, 70)
    assert not during[cross.loc[during.index]]["valid"].any()
    assert during[~cross.loc[during.index]]["valid"].all()
    assert window(pr, 5, 40)["valid"].all() and window(pr, 70, 110)["valid"].all()
    late = window(pr, 95, 110)
    assert (late[cross.loc[late.index]]["outcome"] == "delivered").all()  # routes across are back
    o = ops(ev)
    assert set(o[o["t_s"] == 40]["outcome"]) == {"link_down"} and len(o[o["t_s"] == 40]) == 4
    assert set(o[o["t_s"] == 70]["outcome"]) == {"link_up"} and len(o[o["t_s"] == 70]) == 4
    assert res.summary["faults"][1]["kind"] == "heal"


def test_link_flap_produces_alternating_ops():
    res, ev, pr = run("""
        seed: 3
        duration: 90s
        topology: {kind: grid, rows: 3, cols: 3}
        traffic: [{pairs: 12, rate: 10/s, start: 5s}]
        faults: [{at: 40s, kind: link_flap, between: [n3, n4], period: 4s, duration: 20s}]
    """)
    o = ops(ev)
    assert list(o["t_s"]) == [40.0 + 2.0 * k for k in range(len(o))]
    assert list(o["outcome"]) == ["link_down", "link_up"] * (len(o) // 2) and len(o) == 10
    assert set(o["peer"]) == {"n3-n4"}
    assert o["t_s"].max() <= 60.0
    assert (window(pr, 40, 62)["outcome"] != "delivered").any()
    assert res.summary["faults"][0]["kind"] == "link_flap"


def test_blackhole_drops_what_it_should_forward():
    res, ev, pr = run("""
        duration: 40s
        topology: {kind: line, nodes: 5}
        traffic: [{pairs: 4, rate: 10/s, select: through, via: n2, start: 5s}]
        faults: [{at: 20s, kind: blackhole, node: n2, duration: 10s}]
    """)
    assert (window(pr, 15, 20)["outcome"] == "delivered").all()
    during = window(pr, 20.05, 30)
    assert (during["outcome"] == "blackholed").all() and during["valid"].all()
    assert (window(pr, 30.05, 40)["outcome"] == "delivered").all()
    assert list(ops(ev)["outcome"]) == ["blackhole_on", "blackhole_off"]
    assert res.summary["faults"][0]["mttr_s"] == pytest.approx(10.0, abs=0.2)


# --------------------------------------------------------------------------- the run folder

FOLDER = """
    name: folder
    seed: 3
    duration: 60s
    topology: {kind: random_geometric, nodes: 20, radius: 0.35}
    traffic: [{pairs: 6, rate: 10/s, select: through, start: 5s}]
    faults: [{at: 30s, kind: node_crash, node: most_central}]
    targets:
      mttr: {max: 20s}
      delivery_ratio: {min: 0.5, after: start}
      convergence: {max: 50s}
"""


def test_results_folder_contents(tmp_path):
    res, _, _ = run(FOLDER, out=tmp_path)
    d = res.run_dir
    assert d.parent == tmp_path / "folder" and run_dirs(tmp_path) == [d]
    assert_complete_run(d)
    ev = pd.read_parquet(d / "events.parquet")
    for col in ("t_s", "kind", "node", "peer", "outcome", "latency_ms", "valid", "fault", "detail"):
        assert col in ev.columns, col
    assert ev["t_s"].is_monotonic_increasing
    assert {"probe", "op", "route_change"} <= set(ev["kind"])
    pr = ev[ev["kind"] == "probe"]
    delivered = pr["outcome"] == "delivered"
    assert pr.loc[delivered, "latency_ms"].gt(0).all() and pr.loc[~delivered, "latency_ms"].isna().all()
    assert ev["valid"].dtype == bool

    s = json.loads((d / "summary.json").read_text())
    assert (s["scenario"], s["seed"], s["mode"], s["duration_s"]) == ("folder", 3, "sim", 60.0)
    valid = pr[pr["valid"]]
    assert s["delivery_ratio"] == pytest.approx((valid["outcome"] == "delivered").mean(), abs=1e-6)
    (f,) = s["faults"]
    assert f["kind"] == "node_crash" and f["at_s"] == 30.0 and (f["mttr_s"] is None or f["mttr_s"] >= 0)
    assert set(s["targets"]) == {"mttr", "delivery_ratio", "convergence"}
    for name, t in s["targets"].items():
        assert {"value", "limit", "pass"} <= set(t), name
        assert isinstance(t["pass"], bool)
    assert s["targets"]["mttr"]["value"] == f["mttr_s"] and s["targets"]["mttr"]["limit"] == 20.0
    assert s["passed"] == all(t["pass"] for t in s["targets"].values())

    ts = pd.read_parquet(d / "timeseries.parquet")
    assert {"t_s", "sent", "delivered", "delivery_ratio"} <= set(ts.columns)
    assert len(ts) == 60 and ts["sent"].sum() == len(valid)
    assert ts["delivered"].sum() == (valid["outcome"] == "delivered").sum()

    journal = json.loads((d / "run.json").read_text())
    assert journal["wall_s"] > 0 and journal["scenario"]["name"] == "folder"


def test_out_puts_the_run_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res, _, _ = run(FOLDER, out=tmp_path / "elsewhere" / "deeper")
    assert res.run_dir.parent == tmp_path / "elsewhere" / "deeper" / "folder"
    assert_complete_run(res.run_dir)
    assert not (tmp_path / "results").exists()
    again, _, _ = run(FOLDER, out=None)
    assert again.run_dir is None and sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere"]


def _snapshot(root):
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("exc", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_crash_mid_write_leaves_no_complete_looking_run(tmp_path, monkeypatch, exc):
    first, _, _ = run(FOLDER, out=tmp_path)
    before = _snapshot(tmp_path)

    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(twin.results, "plot_timeline", boom)
    monkeypatch.setattr(twin.run, "plot_timeline", boom)
    with pytest.raises(type(exc)):
        execute(parse(scenario_text(FOLDER)), out=tmp_path)
    assert run_dirs(tmp_path) == [first.run_dir]
    assert _snapshot(tmp_path) == before  # earlier run untouched, nothing half-written left behind
    monkeypatch.undo()
    second, _, _ = run(FOLDER, out=tmp_path)  # and the next run is not confused
    assert run_dirs(tmp_path) == sorted([first.run_dir, second.run_dir])
    assert_complete_run(second.run_dir)


def test_a_killed_process_leaves_no_complete_looking_run(tmp_path):
    """The process dies (no clean-up at all) after events.parquet and summary.json are written."""
    first, _, _ = run(FOLDER, out=tmp_path)
    before = _snapshot(tmp_path)
    code = textwrap.dedent(f"""
        import os, sys
        import twin.run
        from twin.scenario import parse
        def die(*a, **k):
            print("dying mid-write", flush=True)
            os._exit(9)
        twin.run.plot_timeline = die
        twin.results.plot_timeline = die
        twin.run.execute(parse({scenario_text(FOLDER)!r}), out={str(tmp_path)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9 and "dying mid-write" in proc.stdout, proc.stderr
    assert run_dirs(tmp_path) == [first.run_dir]
    leftovers = [p for p in (tmp_path / "folder").iterdir() if p != first.run_dir]
    assert all(p.name.startswith(".") for p in leftovers), leftovers
    after = {p: v for p, v in _snapshot(tmp_path).items() if first.run_dir in p.parents}
    assert after == before


# --------------------------------------------------------------------------- link properties reach the twin


def _hops(pr: pd.DataFrame) -> np.ndarray:
    return (pr["node"].str[1:].astype(int) - pr["peer"].str[1:].astype(int)).abs().to_numpy()


def test_link_override_sets_delay_and_rate_of_one_link():
    _, _, pr = run("""
        duration: 40s
        topology:
          kind: line
          nodes: 4
          links: [{between: [n1, n2], delay: 7ms, rate: 1Mbit}]
        traffic: [{pairs: 12, rate: 5/s, start: 20s, size: 1000}]
    """)
    ok = pr[pr["outcome"] == "delivered"]
    assert len(ok) == len(pr)
    lo = np.minimum(ok["node"].str[1:].astype(int), ok["peer"].str[1:].astype(int)).to_numpy()
    hi = np.maximum(ok["node"].str[1:].astype(int), ok["peer"].str[1:].astype(int)).to_numpy()
    crosses = (lo <= 1) & (hi >= 2)
    want = 1.0 * _hops(ok) + np.where(crosses, 7.0 - 1.0 + 8.0, 0.0)  # 1000 B at 1 Mbit/s: 8 ms
    np.testing.assert_allclose(ok["latency_ms"].to_numpy(), want)


def test_topology_link_delay_and_rate_apply_to_every_link():
    """``topology.link`` is documented as the default properties of every link."""
    _, _, pr = run("""
        duration: 40s
        topology: {kind: line, nodes: 4, link: {delay: 5ms, rate: 2Mbit}}
        traffic: [{pairs: 12, rate: 5/s, start: 20s, size: 1000}]
    """)
    ok = pr[pr["outcome"] == "delivered"]
    assert len(ok) == len(pr)
    np.testing.assert_allclose(ok["latency_ms"].to_numpy(), (5.0 + 4.0) * _hops(ok))


def test_topology_link_loss_applies_to_every_link():
    _, _, pr = run("""
        duration: 60s
        topology: {kind: grid, rows: 3, cols: 3, link: {loss: 0.2}}
        traffic: [{pairs: 12, rate: 10/s, start: 30s}]
    """)
    lost = (pr["outcome"] == "lost").mean()
    assert 0.1 < lost < 0.7, f"lost fraction {lost:.3f} with 20 % loss per link"
