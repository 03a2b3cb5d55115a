"""The agent's Prometheus metrics: what batman-adv reports on this node, and what the agent did.

``meshtwin_agent_originators``, ``meshtwin_agent_neighbours``, ``meshtwin_agent_link_tq{neigh,hardif}``
(B.A.T.M.A.N. IV) or ``meshtwin_agent_link_throughput_kbps{neigh,hardif}`` (V),
``meshtwin_agent_actions_total{verdict}``, ``meshtwin_agent_connections_refused_total``. Values are
refreshed on each controller poll (the agent reads the kernel only when asked); served on
``metrics_port`` when the config sets one.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class AgentMetrics:
    def __init__(self, node: str, port: int | None = None) -> None:
        r = self.registry = CollectorRegistry()
        self.originators = Gauge("meshtwin_agent_originators", "originators in the batman-adv table", registry=r)
        self.neighbours = Gauge("meshtwin_agent_neighbours", "batman-adv neighbours", registry=r)
        self.tq = Gauge("meshtwin_agent_link_tq", "TQ toward a neighbour (IV)", ["neigh", "hardif"], registry=r)
        self.thr = Gauge("meshtwin_agent_link_throughput_kbps", "throughput toward a neighbour (V)",
                         ["neigh", "hardif"], registry=r)
        self.actions = Counter("meshtwin_agent_actions_total", "actions by verdict", ["verdict"], registry=r)
        self.refused = Counter("meshtwin_agent_connections_refused_total", "connections refused", registry=r)
        self.server = None
        if port is not None:
            self.server, _t = start_http_server(port, registry=r)

    def observe(self, snap: dict) -> None:
        self.originators.set(len(snap["originators"]))
        self.neighbours.set(len(snap["neighbours"]))
        self.tq.clear()
        self.thr.clear()
        for neigh, hardif, tq, thr, _last in snap["neighbours"]:
            if tq is not None:
                self.tq.labels(neigh, hardif).set(tq)
            if thr is not None:
                self.thr.labels(neigh, hardif).set(thr)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
