"""babeld's ``babeld.c``: the daemon on every node and its main loop, here one event queue for the
whole mesh, advanced lazily to whatever time someone looks at it; daemon start, crash and restart,
convergence before the scenario starts, and the faults and loop actions that reach babeld.

The protocol itself is in the mixins, one per babeld file (:mod:`twin.sim.babel`).
"""

from __future__ import annotations

import heapq
import math
from types import SimpleNamespace

import networkx as nx
import numpy as np

from twin.babel_metric import BABEL_NOMINAL_COST, INFINITY, hop_penalty_rxcost
from twin.faults import Op
from twin.scenario import RoutingSpec
from twin.sim.babel.local import LocalMixin
from twin.sim.babel.message import MessageMixin
from twin.sim.babel.neighbour import Neighbour, NeighbourMixin
from twin.sim.babel.resend import ResendMixin
from twin.sim.babel.route import Route, RouteMixin
from twin.sim.babel.util import seqno_plus
from twin.sim.dataplane import DataPlane, link_params, mesh_csr
from twin.sim.rng import new_stream

SETTLE_POLL = 0.1  # s: how often emu checks for initial convergence


class BabelTwin(NeighbourMixin, MessageMixin, ResendMixin, RouteMixin, LocalMixin, DataPlane):
    """Every node's babeld, advanced lazily to whatever time someone looks at it."""

    protocol = "babel"

    def __init__(self, graph: nx.Graph, routing: RoutingSpec, seed: int, *, warm_up: bool = True):
        self.graph = graph
        self.names, self.index, indptr, nbr = mesh_csr(graph)
        self.n = n = len(self.names)
        self.routing = routing
        self.probe_ttl = 64  # the IPv6 hop limit of the prober's packets
        e = len(nbr)
        src_of = np.repeat(np.arange(n, dtype=np.int32), np.diff(indptr)).astype(np.int32)
        nbr_index = np.full((n, n), -1, np.int32)
        nbr_index[src_of, nbr] = np.arange(e, dtype=np.int32)
        rev = nbr_index[nbr, src_of].astype(np.int32)
        # the arrays the runner, the sim adapter and the data-plane walk read (batman's names)
        self.st = SimpleNamespace(
            indptr=indptr, nbr=nbr, rev=rev, src_of=src_of, nbr_index=nbr_index,
            up=np.ones(e, np.uint8), loss=np.zeros(e), alive=np.ones(n, np.uint8),
            quarantined=np.zeros(n, np.uint8), tx=np.zeros(n, np.int64), rx=np.zeros(n, np.int64),
            interval=np.full(n, float(routing.hello_interval)), xs=np.full((n, n, 4), -1, np.int32))
        self.delay, self.rate = link_params(graph, self.names, src_of, nbr, self.st.loss)
        self.blackhole = np.zeros(n, np.uint8)
        self.forwarded = np.zeros(n, np.int64)
        self.fault_down = np.zeros(e, bool)
        self.iface_off = np.zeros(e, bool)  # interfaces the loop took down (hardif_down)
        self.rxcost_nominal = np.full(n, BABEL_NOMINAL_COST, np.int64)
        self.rng_data = new_stream(seed, "data")
        self._rand = np.random.default_rng(np.random.SeedSequence([seed, 11]))
        self._rbuf = self._rand.random(4096)
        self._rpos = 0
        self.t = 0.0
        self.route_log: list[np.ndarray] = []
        self._log: list[tuple[float, int, int, int, int]] = []
        self._heap: list[tuple] = []
        self._seq = 0
        self.now = 0.0  # engine time (daemon start = 0)
        self.offset = 0.0  # engine time of scenario time 0
        self.gen = np.zeros(n, np.int64)  # daemon generation: timers of a killed babeld are void
        self.next_check = np.zeros(n)
        self.myseqno = [int(self._rand.integers(0, 1 << 16)) for _ in range(n)]
        self.hello_seqno = [int(self._rand.integers(0, 1 << 16)) for _ in range(e)]
        self.neigh: list[Neighbour | None] = [None] * e  # per in-edge r of its node
        self.routes: list[dict[int, dict[int, Route]]] = [{} for _ in range(n)]  # x -> dst -> r -> route
        self.sources: list[dict[int, list]] = [{} for _ in range(n)]  # x -> dst -> [seqno, metric, time]
        self.requests: list[dict[int, list]] = [{} for _ in range(n)]  # x -> dst -> [seqno, from r, time]
        self._seen = np.full((n, n), np.nan)  # when each node last had a finite route to each other
        self.last_change = 0.0
        self.convergence_s = math.nan
        self.settled_s = math.nan
        for x in range(n):
            self._start_daemon(x)
        if warm_up:
            self._warm_up()

    # ---- randomness (babeld's ``roughly``), from one seeded stream ------------------------
    def _u(self) -> float:
        if self._rpos >= len(self._rbuf):
            self._rbuf = self._rand.random(4096)
            self._rpos = 0
        v = self._rbuf[self._rpos]
        self._rpos += 1
        return float(v)

    def roughly(self, v: float) -> float:
        return v * (0.75 + 0.5 * self._u())

    def _iroughly(self, v: int) -> int:
        """babeld's integer ``roughly``: ``3v/4 + random() % (v/2)``, symmetric for negatives."""
        if v < 0:
            return -self._iroughly(-v)
        if v <= 1:
            return v
        return v * 3 // 4 + int(self._u() * (v // 2))

    # ---- event queue ----------------------------------------------------------------------
    def _at(self, t: float, kind: str, *args) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, args))

    def _run_until(self, t_engine: float) -> None:
        heap = self._heap
        while heap and heap[0][0] < t_engine:
            t, _, kind, args = heapq.heappop(heap)
            self.now = t
            getattr(self, "_ev_" + kind)(*args)
        self.now = max(self.now, t_engine)

    def advance(self, t: float) -> None:
        """Run every babeld event before scenario time ``t``."""
        if t <= self.t:
            return
        self._run_until(t + self.offset)
        self.t = t
        self._drain_log()

    def _drain_log(self) -> None:
        if self._log:
            a = np.array(self._log, dtype=[("t", "f8"), ("node", "i4"), ("orig", "i4"), ("old", "i4"),
                                           ("new", "i4")]).view(np.recarray)
            self.route_log.append(a)
            self._log = []

    def engine_info(self) -> dict:
        """What ran and how much work it did, for the run journal."""
        return {"engine": "babel (babeld 1.12 model)", "nodes": self.n, "directed_links": int(len(self.st.nbr)),
                "messages_tx": int(self.st.tx.sum()), "messages_rx": int(self.st.rx.sum()),
                "initial_convergence_s": round(float(self.convergence_s), 3),
                "settled_s": round(float(self.settled_s), 3)}

    def purge(self) -> None:
        """babeld expires routes on its own timers; nothing to do on the runner's purge tick."""

    # ---- daemon life ------------------------------------------------------------------------
    def _hello_s(self, x: int) -> float:
        return float(self.st.interval[x])

    def _start_daemon(self, x: int) -> None:
        g = int(self.gen[x])
        for e in range(self.st.indptr[x], self.st.indptr[x + 1]):
            self._at(self.now + self.roughly(0.05), "hello", x, e, g)  # babeld says hello at start
            self._at(self.now + self.roughly(self._hello_s(x) * 4), "periodic", x, e, g)
        self._schedule_check(x, self.roughly(self._hello_s(x)))
        self._at(self.now + self.roughly(30.0), "expire", x, g)

    def _warm_up(self) -> None:
        """Converge like ``emu`` does before its timeline starts (see the module docstring)."""
        h = float(self.routing.hello_interval)
        settle, settle_max = 2 * h + 0.5, max(5.0, 5 * h)
        comps = [np.array([self.index[str(v)] for v in c]) for c in nx.connected_components(self.graph)]
        t = 0.0
        while t < 120.0:
            t += SETTLE_POLL
            self._run_until(t)
            ok = all((self.st.xs[np.ix_(c, c)][:, :, 0] >= 0).sum() == len(c) * (len(c) - 1) for c in comps)
            if ok and math.isnan(self.convergence_s):
                self.convergence_s = t
            if ok and (t - self.last_change >= settle or t - self.convergence_s >= settle_max):
                break
        self.settled_s = t
        self.offset = t + 0.3
        self._run_until(self.offset)
        self._log = []  # route learning during convergence happened before the timeline

    # ---- faults and actions ---------------------------------------------------------------------
    def _sync_up(self, e: int) -> None:
        self.st.up[e] = 0 if (self.fault_down[e] or self.iface_off[e] or self.iface_off[self.st.rev[e]]) else 1

    def apply_op(self, op: Op) -> None:
        self._run_until(self.t + self.offset)
        if op.kind == "crash":
            x = self.index[op.node]
            self.st.alive[x] = 0
            self.gen[x] += 1  # babeld SIGKILLed: its timers die with it
        elif op.kind == "recover":
            self.reboot(self.index[op.node])
        else:
            self.apply_link_op(op)

    def hardif(self, x: int, *, up: bool, peer: str | None = None) -> None:
        """``ip link set IF down|up`` on node x (one interface toward ``peer``, or all): babeld
        flushes every neighbour on an interface that goes down, and its routes with them."""
        st = self.st
        rows = range(st.indptr[x], st.indptr[x + 1])
        if peer is not None:
            rows = [int(st.nbr_index[x, self.index[peer]])]
        for e in rows:
            self.iface_off[e] = not up
            self._sync_up(e)
            self._sync_up(int(st.rev[e]))
            if not up and self.neigh[e] is not None:
                self._flush_neighbour(x, e)
            elif up and st.alive[x]:
                self._send_hello(x, e)

    def reboot(self, x: int) -> None:
        """babeld (re)starts on x: empty tables; the seqno continues from its state file."""
        st = self.st
        self.gen[x] += 1
        for dst in list(self.routes[x]):
            if int(st.xs[dst, x, 0]) >= 0:
                self._set_installed(x, dst, None)
        self.routes[x] = {}
        self.sources[x] = {}
        self.requests[x] = {}
        for r in range(st.indptr[x], st.indptr[x + 1]):
            self.neigh[r] = None
        self.myseqno[x] = seqno_plus(self.myseqno[x], 1)
        st.alive[x] = 1
        self._start_daemon(x)

    def set_hello_interval(self, x: int, seconds: float) -> None:
        self.st.interval[x] = seconds

    def set_hop_penalty(self, x: int, value: int) -> None:
        """emu maps batman's hop penalty onto the node's interface rxcost (see babel_metric)."""
        self.rxcost_nominal[x] = hop_penalty_rxcost(value)
        for r in range(self.st.indptr[x], self.st.indptr[x + 1]):
            if self.neigh[r] is not None:
                self._update_neighbour_metric(x, r)

    def metric(self, node: str, dest: str) -> int:
        rt = self._installed(self.index[node], self.index[dest])
        return rt.metric if rt is not None else INFINITY
