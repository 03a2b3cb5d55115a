"""Optional scale check (``-m slow`` deselects it): a 100-node mesh builds, converges under
babeld and tears down without leftovers; build + teardown stays under 30 s."""

from __future__ import annotations

import os
import time

import networkx as nx
import pytest

from twin.emu.adapter import EmuAdapter
from twin.emu.capabilities import probe_capabilities
from twin.emu.cleanup import EmuSession, RunState, leftovers
from twin.emu.daemons import Babel
from twin.emu.impairments import Impairments
from twin.emu.network import EmuNetwork

pytestmark = [pytest.mark.emu, pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="emu tests need root")]


def _mesh(n: int = 100, radius: float = 0.17) -> nx.Graph:
    for seed in range(100):
        g = nx.random_geometric_graph(n, radius, seed=seed)
        if nx.is_connected(g):
            return nx.relabel_nodes(g, {i: f"n{i}" for i in g.nodes})
    raise AssertionError("no connected graph")


def test_hundred_nodes_build_converge_teardown() -> None:
    g = _mesh()
    caps = probe_capabilities()
    state = RunState.create()
    with EmuSession(state) as session:
        net = EmuNetwork(g, state)
        session.on_teardown("network", net.stop)
        build_s = net.build()
        babel = Babel(net, 1.0)
        session.on_teardown("babel", babel.stop_all)
        babel.start_all(net.nodes)
        adapter = EmuAdapter(net, babel, Impairments(net, caps), caps=caps)
        t = time.monotonic()
        while not adapter.converged([set(net.nodes)]):
            assert time.monotonic() - t < 90, "babeld did not converge on 100 nodes within 90 s"
            time.sleep(1.0)
    assert build_s + session.teardown_s < 30, (build_s, session.teardown_s)
    time.sleep(0.5)
    left = leftovers({state.prefix})
    assert not any(left.values()), left
