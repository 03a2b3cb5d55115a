"""Deferred probes: the B.A.T.M.A.N. IV twin runs its kernel on past probe times and walks each probe
on the routes of its own instant, undoing later floods' route changes from the route log. That must
give exactly what stopping the kernel at every probe time gives."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import scenario_text

from twin.scenario import parse
from twin.sim import batman_kernel as K
from twin.sim import model as M
from twin.sim.model import BatmanTwin
from twin.sim.runner import run_sim
from twin.world import resolve

# From the start (routes still forming: many changes per flood), with loss on every link (the walks
# draw from the data stream), a relay crash and its recovery, and two flows whose probe times interleave.
CHURN = """
    name: deferred-probes
    seed: {seed}
    duration: 45s
    topology: {{kind: random_geometric, nodes: 40, radius: 0.27, link: {{loss: 0.05}}}}
    traffic:
      - {{kind: probe, pairs: 8, rate: 10/s, select: through, start: 0.5s}}
      - {{kind: probe, pairs: 6, rate: 7/s, start: 0.25s}}
    faults:
      - {{at: 20s, kind: node_crash, node: most_central, duration: 10s}}
"""


def _run(world, sc, defer: bool):
    return run_sim(world, twin=BatmanTwin(world.graph, sc.routing, sc.seed, defer_probes=defer))


@pytest.mark.parametrize("seed", [2, 9])
def test_deferred_probes_equal_probing_at_each_instant(seed, monkeypatch):
    sc = parse(scenario_text(CHURN.format(seed=seed)))
    world = resolve(sc)
    calls = {"advance": 0, "undone": 0, "walks": 0}
    adv, walk_at = K.advance, M.walk_batch_at

    def counting_advance(st, until):
        calls["advance"] += 1
        return adv(st, until)

    def counting_walk_at(t, e_t0, *rest):
        calls["walks"] += 1
        calls["undone"] += int((e_t0 >= t).sum())
        return walk_at(t, e_t0, *rest)

    monkeypatch.setattr(K, "advance", counting_advance)
    monkeypatch.setattr(M, "walk_batch_at", counting_walk_at)
    rec_now, twin_now = _run(world, sc, defer=False)
    now_calls, calls["advance"] = calls["advance"], 0
    rec_def, twin_def = _run(world, sc, defer=True)

    for name in ("probe_t", "probe_flow", "probe_pair", "probe_code", "probe_lat", "probe_valid"):
        a, b = np.concatenate(getattr(rec_now, name)), np.concatenate(getattr(rec_def, name))
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert np.array_equal(twin_now.forwarded, twin_def.forwarded)
    assert twin_now.rng_data.tobytes() == twin_def.rng_data.tobytes()  # the same draws, in the same order
    log_now, log_def = np.concatenate(twin_now.route_log), np.concatenate(twin_def.route_log)
    assert log_now.tobytes() == log_def.tobytes()
    codes = np.concatenate(rec_def.probe_code)
    assert {0, 1} <= set(codes.tolist())  # delivered and lost on a lossy link: the walks drew
    # it did defer: far fewer kernel calls, and probes really saw routes that later floods changed
    assert calls["walks"] == len(rec_def.probe_t)
    assert calls["advance"] * 4 < now_calls, (calls["advance"], now_calls)
    assert calls["undone"] > 100, calls


def test_a_probe_cannot_be_deferred_into_the_past_nor_overtaken():
    sc = parse(scenario_text(CHURN.format(seed=2)))
    world = resolve(sc)
    twin = BatmanTwin(world.graph, sc.routing, sc.seed)
    src, dst = np.arange(10, dtype=np.int32), np.full(10, 20, np.int32)
    code, lat = np.empty(10, np.int32), np.empty(10)
    twin.advance(10.0)
    with pytest.raises(ValueError, match="already at 10.0 s"):
        twin.probe_into(9.5, src, dst, 100, code, lat)
    twin.probe_into(10.5, src, dst, 100, code, lat)
    with pytest.raises(RuntimeError, match="pending"):  # an immediate probe would take its random draws first
        twin.probe(src, dst, 100)
    stream = twin.rng_data.tobytes()
    twin.advance(10.2)  # not yet due: not walked, so the data stream has not moved
    assert twin.rng_data.tobytes() == stream
    twin.advance(11.0)  # walked now: every link has 5 % loss, so the walks drew from the stream
    assert twin.rng_data.tobytes() != stream and set(code.tolist()) <= set(range(7)) and (code == 0).any()
    twin.probe(src, dst, 100)  # walked: nothing pending any more
