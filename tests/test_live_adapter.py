"""LiveAdapter over real agents on loopback (stand-in kernels): reporting, safety limits,
commit-confirmed health checks, faults, and restoring every node when the run ends."""

from __future__ import annotations

import time

import pytest

from twin.adapter import Action, MeshAdapter, SignedAction
from twin.live.adapter import LiveAdapter, LiveSigner
from twin.live.loopback import AgentsThread, controller_of, write_lab


@pytest.fixture()
def lab4(tmp_path):
    inv_path, cfgs = write_lab(tmp_path, 4, allow_faults=["node_crash", "node_recover"],
                               safety={"max_changed_fraction": 0.25, "health_check_after": "300ms",
                                       "confirm_within": "10s"})
    agents = AgentsThread(cfgs)
    inv, ident, bundle = controller_of(inv_path)
    yield inv, ident, bundle, agents
    agents.close()


def _act(ad: LiveAdapter, signer: LiveSigner, a: Action):
    return ad.apply(SignedAction(a, signer.sign(a, ad.now())))


def test_adapter_is_a_mesh_adapter_and_reports_every_agent(lab4):
    inv, ident, bundle, _agents = lab4
    ad = LiveAdapter(inv, ident, bundle)
    try:
        assert isinstance(ad, MeshAdapter)
        info = ad.begin("t")
        assert all("error" not in v for v in info.values())
        tel = ad.observe()
        assert tel.nodes == ["n0", "n1", "n2", "n3"] and tel.reporting.all()
        assert (tel.orig_interval_s == 1.0).all()
    finally:
        ad.close()


def test_dry_run_by_default_changes_nothing(lab4):
    inv, ident, bundle, agents = lab4
    ad = LiveAdapter(inv, ident, bundle)
    ad.begin("t")
    r = _act(ad, LiveSigner(ident), Action("set_orig_interval", "n1", {"ms": 40}))
    ad.close()
    assert not r.applied and r.rejected_reason.startswith("dry_run: would set orig_interval_ms 1000->40")
    assert all(k.writes == [] for k in agents.kernels.values())


def test_silent_node_is_not_reporting_and_does_not_block_the_poll(lab4):
    inv, ident, bundle, agents = lab4
    ad = LiveAdapter(inv, ident, bundle, apply_enabled=True)
    ad.begin("t")
    try:
        assert ad.inject("node_crash", "n2")[0] == "injected"
        t0 = time.perf_counter()
        tel = ad.observe()
        took = time.perf_counter() - t0
        assert tel.reporting.tolist() == [True, True, False, True]
        assert took < inv.channel.poll_timeout + 0.5
        assert agents.kernels["n2"].current.hardifs == (("eth1", False),)
        # the other nodes still answer at once on the next poll
        assert ad.observe().reporting.sum() == 3
    finally:
        res = ad.close()
    assert res["n2"]["restored"] and agents.kernels["n2"].current.hardifs == (("eth1", True),)


def test_fault_not_allowed_by_the_inventory_is_refused(tmp_path):
    inv_path, cfgs = write_lab(tmp_path, 2)  # allow_faults empty
    agents = AgentsThread(cfgs)
    inv, ident, bundle = controller_of(inv_path)
    ad = LiveAdapter(inv, ident, bundle, apply_enabled=True)
    try:
        ad.begin("t")
        verdict, why = ad.inject("node_crash", "n0")
        assert verdict == "not_allowed" and "none allowed" in why
        assert agents.kernels["n0"].writes == []
    finally:
        ad.close()
        agents.close()


def test_blast_radius_health_check_confirm_and_restore_at_close(lab4):
    inv, ident, bundle, agents = lab4
    ad = LiveAdapter(inv, ident, bundle, apply_enabled=True)
    s = LiveSigner(ident)
    ad.begin("t")
    try:
        ad.observe()
        assert _act(ad, s, Action("set_hop_penalty", "n0", {"value": 100})).applied
        r = _act(ad, s, Action("set_hop_penalty", "n1", {"value": 100}))  # 25 % of 4 nodes: one at a time
        assert not r.applied and r.rejected_reason.startswith("blast_radius")
        assert _act(ad, s, Action("set_orig_interval", "n0", {"ms": 100})).applied  # same node joins its change
        time.sleep(0.4)
        ad.observe()  # health check passes: the change is confirmed
        assert not ad.pending and any(e["outcome"] == "confirmed" for e in ad.events)
        agent = agents.agents["n0"]
        assert agent.cc.pending is None and agents.kernels["n0"].current.hop_penalty == 100
        assert _act(ad, s, Action("set_hop_penalty", "n1", {"value": 100})).applied
    finally:
        res = ad.close()
    assert all(r["restored"] for r in res.values())
    assert all(k.current.hop_penalty == 30 and k.current.orig_interval_ms == 1000 for k in agents.kernels.values())


def test_the_mapek_loop_runs_unchanged_on_the_live_adapter(lab4):
    from twin.mapek.loop import Controller

    inv, ident, bundle, _agents = lab4
    ad = LiveAdapter(inv, ident, bundle)
    ad.begin("t")
    try:
        ctl = Controller(ad, signer=LiveSigner(ident))
        for _ in range(3):
            ctl.tick()
        assert ctl.stats()["iterations"] == 3
    finally:
        ad.close()


def test_probes_between_agents_are_reported_on_the_controller_clock(lab4):
    inv, ident, bundle, agents = lab4
    ad = LiveAdapter(inv, ident, bundle)
    ad.begin("t")
    try:
        ad.start_probes([("n0", "n1"), ("n2", "n3")], rate_hz=20)
        time.sleep(1.5)
        ad.observe()
        agents.agents["n1"].prober.paused = True  # n1 stops echoing: n0's probes are lost
        time.sleep(1.3)
        t_cut = ad.now()
        time.sleep(1.4)
        tel = ad.observe()
    finally:
        ad.close()
    rows = ad.probe_rows
    ok01 = [r for r in rows if r["src"] == "n0" and r["rtt_ms"] is not None]
    lost01 = [r for r in rows if r["src"] == "n0" and r["rtt_ms"] is None]
    assert len(ok01) >= 15 and len(lost01) >= 5
    assert all(r["t_s"] > t_cut - 1.5 for r in lost01)  # losses are placed after the echo stopped
    assert all(r["rtt_ms"] is not None for r in rows if r["src"] == "n2")
    assert set(zip(tel.probe_src.tolist(), tel.probe_dst.tolist(), strict=True)) == {(0, 1), (2, 3)}


def test_the_inventory_chooses_in_band_or_out_of_band(tmp_path):
    """Agents listen only on their 'bat0' address (127.0.0.1 here); the management address leads
    nowhere (127.0.0.2). In-band reaches them, out-of-band reports them as not reporting."""
    import yaml

    inv_path, cfgs = write_lab(tmp_path, 2)
    doc = yaml.safe_load(inv_path.read_text())
    for n in doc["nodes"]:
        n["mgmt"], n["inband"] = "127.0.0.2", "127.0.0.1"
    agents = AgentsThread(cfgs)
    try:
        for transport, reporting in (("inband", [True, True]), ("oob", [False, False])):
            doc["channel"]["transport"] = transport
            inv_path.write_text(yaml.safe_dump(doc))
            inv, ident, bundle = controller_of(inv_path)
            ad = LiveAdapter(inv, ident, bundle)
            try:
                ad.begin("t")
                assert ad.observe().reporting.tolist() == reporting, transport
            finally:
                ad.close()
    finally:
        agents.close()


def test_an_agent_that_restarts_is_not_reporting_then_reconnected(lab4):
    from twin.live.agent import Agent
    from twin.live.agent_config import load_config

    inv, ident, bundle, agents = lab4
    ad = LiveAdapter(inv, ident, bundle)
    ad.begin("t")
    try:
        assert ad.observe().reporting.all()
        old = agents.agents["n3"]
        agents.call(old.close())
        assert ad.observe().reporting.tolist() == [True, True, True, False]
        cfg = load_config(inv.path("keys/nodes/n3/agent.yaml"))
        new = Agent(cfg, kernel=agents.kernels["n3"])
        agents.call(new.start())
        agents.agents["n3"] = new
        deadline = time.time() + 5
        while not ad.observe().reporting.all():
            assert time.time() < deadline, ad.clients["n3"].last_error
            time.sleep(0.1)
        assert ad.clients["n3"].handshakes == 2
    finally:
        ad.close()


def test_controller_rate_budget_per_node(tmp_path):
    inv_path, cfgs = write_lab(tmp_path, 2, safety={"rate_per_node": 2, "rate_fleet": 100,
                                                    "max_changed_fraction": 1.0})
    agents = AgentsThread(cfgs)
    inv, ident, bundle = controller_of(inv_path)
    ad = LiveAdapter(inv, ident, bundle, apply_enabled=True)
    s = LiveSigner(ident)
    try:
        ad.begin("t")
        out = [_act(ad, s, Action("set_hop_penalty", "n0", {"value": v})) for v in (40, 41)]
        assert out[0].applied and not out[1].applied and out[1].rejected_reason.startswith("rate_limited")
        assert _act(ad, s, Action("set_hop_penalty", "n1", {"value": 42})).applied  # another node's budget
        assert [w.hop_penalty for w in agents.kernels["n0"].writes] == [40]
    finally:
        ad.close()
        agents.close()
