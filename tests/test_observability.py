"""Controller observability: Prometheus metrics fed from a real controller in sim and live, the
/metrics endpoint, and OpenTelemetry spans per loop phase when OTEL_TRACES_EXPORTER asks for them."""

from __future__ import annotations

import json
import urllib.request

from twin.observability import ControllerMetrics, ControllerWatch
from twin.scenario import parse

SIM = """
name: obs
duration: 40s
topology: {kind: ring, nodes: 8}
traffic: [{kind: probe, pairs: 4, rate: 5/s, select: through}]
faults: [{at: 20s, kind: node_crash, node: most_central}]
loop: {enabled: true, period: 250ms, warmup: 5s}
"""


def test_watch_counts_every_iteration_incident_and_action_of_a_sim_run():
    from twin.sim.loop import make_loop_process
    from twin.sim.runner import run_sim
    from twin.world import resolve

    world = resolve(parse(SIM))
    tick, handle = make_loop_process(world, loop=True)
    m = ControllerMetrics("sim")
    watch = ControllerWatch(lambda: handle.controller, m, period_s=0.05)
    run_sim(world, loop_tick=tick)
    watch.close()
    ctl = handle.controller
    get = m.registry.get_sample_value
    assert get("meshtwin_loop_phase_seconds_count", {"phase": "monitor"}) == len(ctl.iterations) > 100
    incidents = ctl.knowledge.incidents
    assert incidents and sum(get("meshtwin_incidents_total", {"diagnosis": d}) or 0
                             for d in {i.diagnosis for i in incidents}) == len(incidents)
    applied = sum(1 for r in ctl.executor.results if r.applied)
    kinds = {r.action.kind for r in ctl.executor.results}
    assert applied > 0 and sum(get("meshtwin_actions_total", {"kind": k, "verdict": "applied"}) or 0
                               for k in kinds) == applied


def test_metrics_endpoint_and_spans_on_a_live_loop(tmp_path, monkeypatch, capsys):
    from twin.live.adapter import LiveAdapter, LiveSigner
    from twin.live.loopback import AgentsThread, controller_of, write_lab
    from twin.mapek.loop import Controller

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    inv_path, cfgs = write_lab(tmp_path, 3)
    agents = AgentsThread(cfgs)
    inv, ident, bundle = controller_of(inv_path)
    ad = LiveAdapter(inv, ident, bundle)
    m = ControllerMetrics("live", port=0)
    try:
        ad.begin("obs")
        ctl = Controller(ad, signer=LiveSigner(ident))
        for _ in range(4):
            it = ctl.tick()
            m.record(it, (), reporting=len(ad.reporting_now))
        body = urllib.request.urlopen(f"http://127.0.0.1:{m.port}/metrics", timeout=5).read().decode()
    finally:
        m.close()
        ad.close()
        agents.close()
    assert 'meshtwin_loop_phase_seconds_count{phase="observe"} 4.0' in body
    assert "meshtwin_nodes_reporting 3.0" in body
    out = capsys.readouterr().out
    spans = [json.loads(s) for s in out.replace("}\n{", "}\x00{").split("\x00") if s.strip().startswith("{")]
    names = [s["name"] for s in spans]
    assert names.count("mapek.iteration") == 4 and names.count("mapek.monitor") == 4
    roots = {s["context"]["span_id"] for s in spans if s["name"] == "mapek.iteration"}
    assert all(s["parent_id"] in roots for s in spans if s["name"] != "mapek.iteration")
