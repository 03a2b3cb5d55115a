"""The Babel twin of one mesh: babeld 1.12's route selection, message by message.

This is the model ``twin compare`` holds against babeld in ``emu``, so it follows what babeld
does rather than what RFC 8966 allows (file and function names are babeld's):

* **Hellos and IHUs** (``message.c``): every interface sends a Hello every ``roughly(H)``
  (uniform in [0.75 H, 1.25 H)), a full IHU with every third Hello, a "marginal" IHU in between
  for neighbours whose link is not perfect.
* **Link cost** (``neighbour.c``, wireless interfaces, which is what ``emu`` configures): a 16-bit
  hello history ``reach``; a Hello shifts a 1 in, and a neighbour check notices a missed Hello
  once ``1.7 H`` have passed, then one more per ``H``. ``rxcost = 0x8000 * 256 / (sreach + 1)``
  with the two newest bits weighted, so the cost doubles with each missed Hello after the second;
  ``(reach & 0xFFF0) == 0`` is infinite and ``reach == 0`` flushes the neighbour. The link cost
  combines ``txcost`` (from the neighbour's IHU) and ``rxcost`` ETX-style. Neighbours are checked
  every ``roughly(1.5 H)``, not on every tick, which is part of why babeld reacts in steps.
* **Routes** (``route.c``): metric ``= refmetric + cost``; feasibility against the source's
  feasibility distance (newer seqno, or same seqno and smaller metric), which the node lowers
  whenever it advertises; route choice by the *smoothed* metric (half-life 4 s, advanced once
  per whole second with babeld's randomised rounding); a newly learnt route starts with a smoothed
  metric of at least ``INFINITY / 2``, so it replaces a working route only once that decays;
  switching needs both metric and smoothed metric to be better (hysteresis); routes expire after
  ``max(6 x update interval, 15 s)`` without an update. Unfeasible alternatives are stored and kept
  fresh too (babeld 1.12's dumps in ``emu`` list a route from every neighbour, feasible or not), so
  they are at hand, with a settled smoothed metric, once a new seqno makes them feasible.
* **Updates and requests**: a full update on every interface every ``roughly(U)``; triggered
  updates with babeld's urgency rules (``send_triggered_update``); on losing a route with no
  feasible alternative, a retraction and a seqno request, which hop-by-hop reaches the source,
  makes it raise its seqno and brings a feasible route back (``route_lost``,
  ``send_unfeasible_request``); satisfied requests are answered urgently along the way.
* **Crash**: the node goes silent. Neighbours see it only through missed Hellos, as babeld does
  in ``emu`` (a veth peer losing carrier does not make babeld drop the interface; taking down
  one's *own* interface does, and flushes its neighbours at once).

Why a hand-written event loop rather than SimPy processes per node: the runner advances routing
engines lazily, to the instant a probe, fault or loop tick looks at them (the same contract as the
compiled batman kernel), so the engine owns its clock. Its events are still plain timers and
messages; the data plane reuses the batman kernel's next-hop walk over ``xs[dst, node, 0]``.

The twin starts babeld on every node at engine time 0 and lets it converge by ``emu``'s own rule
(every node routes to every node of its component, and no next hop changed for ``2 H + 0.5 s``, at
most ``max(5 s, 5 H)``) before the scenario's clock starts, so faults hit a mesh of the same age.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from types import SimpleNamespace

import networkx as nx
import numpy as np

from twin.adapter import Telemetry
from twin.babel_metric import BABEL_NOMINAL_COST, INFINITY, hop_penalty_rxcost, link_quality, route_quality
from twin.faults import Op
from twin.scenario import RoutingSpec
from twin.sim.dataplane import DataPlane, link_params, mesh_csr
from twin.sim.rng import new_stream

SMOOTHING_HALF_LIFE = 4  # s, babeld's default ``smoothing-half-life``
TWO_TO_THE_ONE_OVER_HL = 77935  # 2^(1/4) in 16.16 fixed point, as babeld tabulates it
SOURCE_GC_TIME = 200.0  # s: a feasibility distance older than this no longer constrains
URGENT_JITTER = 0.010  # s: babeld flushes urgent messages within ~10 ms
REQUEST_HOPS = 127
SETTLE_POLL = 0.1  # s: how often emu checks for initial convergence
RESEND_DELAY = 2.0  # s: babeld's ``resend_delay``, doubled on each resend
RESEND_MAX = 2


def seqno_plus(s: int, k: int) -> int:
    return (s + k) & 0xFFFF


def seqno_minus(a: int, b: int) -> int:
    d = (a - b) & 0xFFFF
    return d - 0x10000 if d >= 0x8000 else d


def seqno_compare(a: int, b: int) -> int:
    if a == b:
        return 0
    return 1 if ((b - a) & 0x8000) else -1


@dataclass
class Neighbour:
    """babeld's ``struct neighbour`` on one interface (in-edge ``r`` of the node)."""

    reach: int = 0
    hello_seqno: int = -1
    hello_time: float = -math.inf
    hello_interval: float = 0.0
    txcost: int = INFINITY
    ihu_time: float = 0.0
    ihu_interval: float = 0.0


@dataclass(slots=True)
class Route:
    """babeld's ``struct babel_route``: what neighbour ``r`` last said about ``dst``.

    ``metric`` is ``min(refmetric + cost, INFINITY)``, kept up to date by :meth:`set_metric` (it
    is read far more often than it changes)."""

    r: int
    seqno: int
    refmetric: int
    cost: int
    time: float
    hold: float
    smoothed: int
    smoothed_time: int
    installed: bool = False
    metric: int = INFINITY

    def __post_init__(self) -> None:
        self.metric = min(self.refmetric + self.cost, INFINITY)

    def set_metric(self, refmetric: int, cost: int) -> None:
        self.refmetric, self.cost = refmetric, cost
        self.metric = min(refmetric + cost, INFINITY)


class BabelTwin(DataPlane):
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

    def _schedule_check(self, x: int, delay: float, override: bool = True) -> None:
        """babeld ``schedule_neighbours_check``: a Hello may bring the next check forward."""
        t = self.now + delay
        if not override and self.next_check[x] <= t:
            return
        self.next_check[x] = t
        self._at(t, "check", x, int(self.gen[x]), t)

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

    # ---- neighbours ---------------------------------------------------------------------------
    def _iface_up(self, r: int) -> bool:
        return not self.iface_off[r]

    def _rxcost(self, x: int, nb: Neighbour) -> int:
        reach = nb.reach
        delay = self.now - nb.hello_time
        if (reach & 0xFFF0) == 0 or delay >= 180.0:
            return INFINITY
        sreach = ((reach & 0x8000) >> 2) + ((reach & 0x4000) >> 1) + (reach & 0x3FFF)
        cost = (0x8000 * int(self.rxcost_nominal[x])) // (sreach + 1)
        if delay >= 40.0:
            ms = delay * 1000
            cost = int((cost * (ms - 20000) + 10000) // 20000)
        return min(cost, INFINITY)

    def _cost(self, x: int, r: int) -> int:
        """babeld ``neighbour_cost``: ETX-style combination of txcost and rxcost."""
        nb = self.neigh[r]
        if nb is None or not self._iface_up(r):
            return INFINITY
        a = nb.txcost
        if a >= INFINITY:
            return INFINITY
        b = self._rxcost(x, nb)
        if b >= INFINITY:
            return INFINITY
        if a <= 256 and b <= 256:
            return max(a, b)
        a, b = max(a, 256), max(b, 256)
        return min((((a * b + 128) >> 8) + b + 1) >> 1, INFINITY)

    def _update_neighbour(self, x: int, r: int, hello: int, interval: float) -> bool:
        """babeld ``update_neighbour``: fold a Hello (or, with ``hello < 0``, elapsed time) into reach."""
        nb = self.neigh[r]
        rc = False
        missed = 0
        if hello < 0:
            if nb.hello_interval <= 0:
                return False
            missed = int((self.now - nb.hello_time - 0.7 * nb.hello_interval) // nb.hello_interval)
            if missed <= 0:
                return False
            nb.hello_time += missed * nb.hello_interval
        else:
            if nb.hello_seqno >= 0 and nb.reach > 0:
                missed = seqno_minus(hello, nb.hello_seqno) - 1
                if missed < -8:
                    nb.reach, missed, rc = 0, 0, True
                elif missed < 0:
                    if interval > nb.hello_interval:
                        nb.reach = (nb.reach << -missed) & 0xFFFF
                    else:
                        hello = -2  # late hello: ignored
                    missed, rc = 0, True
            else:
                missed = 0
            if hello != -2:
                nb.hello_time = self.now
                nb.hello_interval = interval
        if missed > 0:
            nb.reach >>= missed
            nb.hello_seqno = seqno_plus(nb.hello_seqno, missed)
            rc = True
        if hello >= 0:
            nb.hello_seqno = hello
            nb.reach = (nb.reach >> 1) | 0x8000
            if (nb.reach & 0xFC00) != 0xFC00:
                rc = True
        if hello >= 0:
            if (nb.reach & 0xBF00) == 0x8000:  # a new neighbour: give it feedback at once
                self._send_hello(x, r)
            elif (nb.reach & 0xFC00) == 0xC000:  # newish: IHU and a full route dump request
                self._send_ihu(x, r)
                self._send(x, r, URGENT_JITTER, ("request", -1, 0, 0))
        return rc

    def _flush_neighbour(self, x: int, r: int) -> None:
        self.neigh[r] = None
        for dst in list(self.routes[x]):
            rt = self.routes[x][dst].get(r)
            if rt is not None:
                self._flush_route(x, dst, rt)

    def _update_neighbour_metric(self, x: int, r: int) -> None:
        for dst in list(self.routes[x]):
            rt = self.routes[x][dst].get(r)
            if rt is not None:
                self._update_route_metric(x, dst, rt)

    # ---- messages ---------------------------------------------------------------------------
    def _send(self, x: int, e: int, jitter: float, msg: tuple) -> None:
        """Queue ``msg`` on interface ``e`` of ``x`` (babeld's buffered send, flushed after a jitter)."""
        self._at(self.now + self.roughly(jitter) if jitter > 0 else self.now, "flush", x, e, int(self.gen[x]), msg)

    def _send_all(self, x: int, jitter: float, msg: tuple) -> None:
        for e in range(self.st.indptr[x], self.st.indptr[x + 1]):
            self._send(x, e, jitter, msg)

    def _nonurgent(self, x: int) -> float:
        return min(self._hello_s(x), 4.0) / 4  # babeld ``jitter(buf, 0)``: half the flush interval

    def _ev_flush(self, x: int, e: int, g: int, msg: tuple) -> None:
        st = self.st
        if g != self.gen[x] or not st.alive[x] or not self._iface_up(e):
            return
        if msg[0] == "update":
            msg = ("update_data", self._update_entries(x, msg[1]), self._hello_s(x) * 4)
        st.tx[x] += 1
        y = int(st.nbr[e])
        if not st.up[e] or st.quarantined[x] or st.quarantined[y]:
            return
        p = st.loss[e]
        if p > 0.0 and self._u() < p:
            return
        self._at(self.now + self.delay[e], "recv", y, int(st.rev[e]), msg)

    def _update_entries(self, x: int, dsts) -> list[tuple[int, int, int]]:
        """What an update from x says right now, lowering x's feasibility distances as it goes."""
        out = []
        full = dsts is None
        if full:
            dsts = [x, *self.routes[x]]
        for d in dsts:
            if d == x:
                out.append((x, self.myseqno[x], 0))
                continue
            rt = self._installed(x, d)
            if rt is None:
                if not full:  # asked about a prefix we have no route to: say so (a retraction)
                    out.append((d, 0, INFINITY))
                continue
            m = rt.metric
            if m < INFINITY:
                self._update_source(x, d, rt.seqno, m)
            out.append((d, rt.seqno, m))
        return out

    def _update_source(self, x: int, d: int, seqno: int, metric: int) -> None:
        src = self.sources[x].get(d)
        if src is None:
            self.sources[x][d] = [seqno, metric, self.now]
            return
        c = seqno_compare(src[0], seqno)
        if src[2] < self.now - SOURCE_GC_TIME or c < 0 or (c == 0 and metric < src[1]):
            src[0], src[1] = seqno, metric
        src[2] = self.now

    def _send_hello(self, x: int, e: int) -> None:
        self.hello_seqno[e] = seqno_plus(self.hello_seqno[e], 1)
        self._send(x, e, 0.0, ("hello", self.hello_seqno[e], self._hello_s(x)))

    def _send_ihu(self, x: int, r: int) -> None:
        nb = self.neigh[r]
        if nb is not None:
            self._send(x, r, 0.0, ("ihu", self._rxcost(x, nb), 3 * self._hello_s(x)))

    def _ev_hello(self, x: int, e: int, g: int) -> None:
        if g != self.gen[x]:
            return
        self._at(self.now + self.roughly(self._hello_s(x)), "hello", x, e, g)
        if not self.st.alive[x] or not self._iface_up(e):
            return
        self._send_hello(x, e)
        nb = self.neigh[e]
        if nb is None:
            return
        if self.hello_seqno[e] % 3 == 0:
            self._send_ihu(x, e)
        elif nb.txcost >= 384 or (nb.reach & 0xF000) != 0xF000:  # marginal IHU
            self._send_ihu(x, e)

    def _ev_periodic(self, x: int, e: int, g: int) -> None:
        if g != self.gen[x]:
            return
        self._at(self.now + self.roughly(self._hello_s(x) * 4), "periodic", x, e, g)
        if self.st.alive[x]:
            self._send(x, e, self._nonurgent(x), ("update", None))

    def _ev_check(self, x: int, g: int, due: float) -> None:
        """babeld ``check_neighbours``: notice missed Hellos, expire IHUs, reschedule in ~1.5 H."""
        if g != self.gen[x] or due != self.next_check[x]:
            return
        ms = 50.0
        if self.st.alive[x]:
            for r in range(self.st.indptr[x], self.st.indptr[x + 1]):
                nb = self.neigh[r]
                if nb is None:
                    continue
                changed = self._update_neighbour(x, r, -1, 0.0)
                if nb.reach == 0 or self.now - nb.hello_time > 300.0:
                    self._flush_neighbour(x, r)
                    continue
                delay = self.now - nb.ihu_time
                if not (nb.ihu_interval > 0 and delay < nb.ihu_interval * 3):
                    if delay >= 180.0 or (nb.reach & 0xFFF0) == 0 or (
                            nb.ihu_interval > 0 and delay >= nb.ihu_interval * 10):
                        nb.txcost, nb.ihu_time, changed = INFINITY, self.now, True
                if changed:
                    self._update_neighbour_metric(x, r)
                if nb.hello_interval > 0:
                    ms = min(ms, nb.hello_interval)
                if nb.ihu_interval > 0:
                    ms = min(ms, nb.ihu_interval)
        self._schedule_check(x, self.roughly(max(1.5 * ms, 0.01)))

    def _ev_expire(self, x: int, g: int) -> None:
        """babeld ``expire_routes`` (every ~30 s): flush old routes, refresh the rest."""
        if g != self.gen[x]:
            return
        self._at(self.now + self.roughly(30.0), "expire", x, g)
        if not self.st.alive[x]:
            return
        for dst in list(self.routes[x]):
            for rt in list(self.routes[x].get(dst, {}).values()):
                if rt.time < self.now - rt.hold * 7 / 8:
                    self._flush_route(x, dst, rt)
                elif rt.r in self.routes[x].get(dst, {}):
                    self._update_route_metric(x, dst, rt)

    def _ev_resend(self, x: int, g: int, dst: int, seqno: int, k: int) -> None:
        """Resend an unsatisfied seqno request, backing off (babeld ``resend.c``)."""
        if g != self.gen[x] or not self.st.alive[x]:
            return
        rt = self._installed(x, dst)
        if rt is not None and rt.metric < INFINITY and seqno_compare(rt.seqno, seqno) >= 0:
            return  # satisfied
        best = self._best(x, dst, False)
        if best is not None:
            self._send(x, best.r, URGENT_JITTER, ("seqreq", dst, seqno, REQUEST_HOPS))
        if k < RESEND_MAX:
            self._at(self.now + RESEND_DELAY * 2 ** k, "resend", x, g, dst, seqno, k + 1)

    def _ev_recv(self, x: int, r: int, msg: tuple) -> None:
        st = self.st
        if not st.alive[x] or not self._iface_up(r):
            return
        st.rx[x] += 1
        kind = msg[0]
        nb = self.neigh[r]
        if kind == "hello":
            if nb is None:
                nb = self.neigh[r] = Neighbour(ihu_time=self.now)
                self._send_hello(x, r)
            changed = self._update_neighbour(x, r, msg[1], msg[2])
            if changed:
                self._update_neighbour_metric(x, r)
            self._schedule_check(x, self.roughly(1.5 * msg[2]), override=False)
            return
        if nb is None:
            return  # babeld ignores all but Hellos from unknown neighbours
        if kind == "ihu":
            old = nb.txcost
            nb.txcost, nb.ihu_time, nb.ihu_interval = int(msg[1]), self.now, float(msg[2])
            if old != nb.txcost:
                self._update_neighbour_metric(x, r)
        elif kind == "update_data":
            hold = max(6.0 * msg[2], 15.0)  # babeld: 4 U + 2 U (interval in centiseconds)
            for dst, seqno, refmetric in msg[1]:
                if dst == x:
                    continue
                self._update_route(x, r, dst, seqno, refmetric, hold)
                req = self.requests[x].get(dst)
                if req is not None and seqno_compare(seqno, req[0]) >= 0:
                    del self.requests[x][dst]
        elif kind == "request":
            self._send(x, r, self._nonurgent(x), ("update", None if msg[1] < 0 else [msg[1]]))
        elif kind == "seqreq":
            self._handle_seqreq(x, r, msg[1], msg[2], msg[3])

    def _handle_seqreq(self, x: int, r: int, dst: int, seqno: int, hops: int) -> None:
        """babeld ``handle_request`` for a seqno request: the source raises its seqno; a node whose
        route is recent enough answers urgently; otherwise it forwards toward the source."""
        if dst == x:
            if hops > 0 and seqno_compare(seqno, self.myseqno[x]) > 0 and seqno_minus(seqno, self.myseqno[x]) <= 100:
                self.myseqno[x] = seqno_plus(self.myseqno[x], 1)
            self._send(x, r, URGENT_JITTER, ("update", [x]))
            return
        rt = self._installed(x, dst)
        if rt is not None and seqno_compare(seqno, rt.seqno) <= 0:
            self._send(x, r, URGENT_JITTER, ("update", [dst]))
            return
        if hops <= 1 or (rt is not None and seqno_minus(seqno, rt.seqno) > 100):
            return
        req = self.requests[x].get(dst)
        if req is not None and req[0] == seqno and self.now - req[2] < self._hello_s(x):
            return  # request_redundant: already forwarded this one
        succ = rt.r if rt is not None and rt.metric < INFINITY else -1
        if succ < 0 or succ == r:
            other = self._best(x, dst, False, exclude=r)
            succ = other.r if other is not None and other.metric < INFINITY else -1
        if succ < 0 or succ == r:
            return
        self.requests[x][dst] = [seqno, r, self.now]
        self._send(x, succ, URGENT_JITTER, ("seqreq", dst, seqno, hops - 1))

    def _request_resend(self, x: int, dst: int) -> None:
        """babeld ``send_request_resend``: ask for a new seqno through the best route, feasible
        or not, and resend while unsatisfied; with no route at all, multicast once."""
        src = self.sources[x].get(dst)
        if src is None:
            return
        want = src[0] if src[1] >= INFINITY else seqno_plus(src[0], 1)
        best = self._best(x, dst, False)
        if best is None:
            self._send_all(x, URGENT_JITTER, ("seqreq", dst, want, REQUEST_HOPS))
            return
        self._send(x, best.r, URGENT_JITTER, ("seqreq", dst, want, REQUEST_HOPS))
        self._at(self.now + RESEND_DELAY, "resend", x, int(self.gen[x]), dst, want, 1)

    # ---- routes -------------------------------------------------------------------------------
    def _installed(self, x: int, dst: int) -> Route | None:
        r = int(self.st.xs[dst, x, 0])
        return self.routes[x].get(dst, {}).get(r) if r >= 0 else None

    def _feasible(self, x: int, dst: int, seqno: int, refmetric: int) -> bool:
        src = self.sources[x].get(dst)
        if src is None or src[2] < self.now - SOURCE_GC_TIME or refmetric >= INFINITY:
            return True
        c = seqno_compare(seqno, src[0])
        return c > 0 or (c == 0 and refmetric < src[1])

    def _smoothed(self, rt: Route) -> int:
        """babeld ``route_smoothed_metric``: exponential smoothing in whole seconds, randomised."""
        m = rt.metric
        now_s = int(self.now)
        if m >= INFINITY or rt.smoothed_time > now_s or rt.smoothed == m:
            rt.smoothed, rt.smoothed_time = m, now_s
            return m
        while rt.smoothed_time <= now_s - SMOOTHING_HALF_LIFE:
            rt.smoothed += self._iroughly(m - rt.smoothed) // 2
            rt.smoothed_time += SMOOTHING_HALF_LIFE
        while rt.smoothed_time < now_s:
            diff = m - rt.smoothed
            rt.smoothed += int(self._iroughly(diff) * (TWO_TO_THE_ONE_OVER_HL - 0x10000) / 0x10000)
            rt.smoothed_time += 1
        if -4 < m - rt.smoothed < 4:
            rt.smoothed = m
        return rt.smoothed

    def _best(self, x: int, dst: int, feasible: bool, exclude: int = -1) -> Route | None:
        best = None
        for rt in self.routes[x].get(dst, {}).values():
            if rt.time < self.now - rt.hold or rt.r == exclude:
                continue
            if feasible and not self._feasible(x, dst, rt.seqno, rt.refmetric):
                continue
            if best is None or self._smoothed(rt) < self._smoothed(best):
                best = rt
        return best

    def _set_installed(self, x: int, dst: int, rt: Route | None) -> None:
        xs = self.st.xs
        old = int(xs[dst, x, 0])
        new = rt.r if rt is not None else -1
        if old == new:
            return
        if old >= 0 and old in self.routes[x].get(dst, {}):
            self.routes[x][dst][old].installed = False
        if rt is not None:
            rt.installed = True
        xs[dst, x, 0] = new
        nbr = self.st.nbr
        self._log.append((self.now - self.offset, x, dst, int(nbr[old]) if old >= 0 else -1,
                          int(nbr[new]) if new >= 0 else -1))
        self.last_change = self.now

    def _change_metric(self, rt: Route, refmetric: int, cost: int) -> None:
        self._smoothed(rt)
        rt.set_metric(refmetric, cost)

    def _update_route_metric(self, x: int, dst: int, rt: Route) -> None:
        old = rt.metric
        old_sm = self._smoothed(rt)
        if rt.time < self.now - rt.hold:
            if rt.refmetric < INFINITY:
                src = self.sources[x].get(dst)
                rt.seqno = seqno_plus(src[0] if src else rt.seqno, 1)
                self._change_metric(rt, INFINITY, INFINITY)  # retract_route
                if old < INFINITY:
                    self._route_changed(x, dst, rt, old)
        else:
            self._change_metric(rt, rt.refmetric, self._cost(x, rt.r))
            if rt.metric != old or self._smoothed(rt) != old_sm:
                self._route_changed(x, dst, rt, old)

    def _update_route(self, x: int, r: int, dst: int, seqno: int, refmetric: int, hold: float) -> None:
        """babeld ``update_route``: an update for ``dst`` arrived from the neighbour on ``r``."""
        feasible = self._feasible(x, dst, seqno, refmetric)
        if dst not in self.sources[x]:
            self.sources[x][dst] = [seqno, INFINITY, self.now]  # find_source(create)
        cost = self._cost(x, r)
        metric = min(refmetric + cost, INFINITY)
        table = self.routes[x].setdefault(dst, {})
        rt = table.get(r)
        if rt is not None:
            old = rt.metric
            if refmetric < INFINITY:  # babeld 1.12 keeps unfeasible alternatives fresh (seen in emu dumps)
                rt.time = self.now
            rt.seqno = seqno
            self._change_metric(rt, refmetric, cost)
            rt.hold = hold
            self._route_changed(x, dst, rt, old)
            if not feasible:
                self._unfeasible_request(x, r, dst, seqno, metric, rt.installed and
                                         rt.time < self.now - rt.hold * 7 / 8)
            return
        if refmetric >= INFINITY:
            return
        if not feasible:  # kept all the same: babeld 1.12 in emu lists every neighbour's route
            self._unfeasible_request(x, r, dst, seqno, metric, False)
        rt = table[r] = Route(r=r, seqno=seqno, refmetric=refmetric, cost=cost, time=self.now, hold=hold,
                              smoothed=0, smoothed_time=int(self.now))
        rt.smoothed = max(rt.metric, INFINITY // 2)
        self._consider(x, dst, rt)

    def _unfeasible_request(self, x: int, r: int, dst: int, seqno: int, metric: int, force: bool) -> None:
        src = self.sources[x].get(dst)
        if src is None or seqno_minus(src[0], seqno) > 100:
            return
        inst = self._installed(x, dst)
        if force or inst is None or inst.metric >= metric + 512:
            want = src[0] if src[1] >= INFINITY else seqno_plus(src[0], 1)
            self._send(x, r, URGENT_JITTER, ("seqreq", dst, want, REQUEST_HOPS))

    def _consider(self, x: int, dst: int, rt: Route) -> None:
        """babeld ``consider_route``: install a feasible route if both its metric and its smoothed
        metric beat the installed one (the strong ordering, hence hysteresis)."""
        if rt.installed or not self._feasible(x, dst, rt.seqno, rt.refmetric):
            return
        inst = self._installed(x, dst)
        if inst is not None:
            if rt.metric >= INFINITY:
                return
            if inst.metric < INFINITY and not (inst.metric >= rt.metric
                                               and self._smoothed(inst) > self._smoothed(rt)):
                return
        old_metric = inst.metric if inst is not None else INFINITY
        self._set_installed(x, dst, rt)
        if inst is not None:
            self._triggered_update(x, dst, rt, old_metric)
        else:
            self._send_all(x, URGENT_JITTER, ("update", [dst]))

    def _route_changed(self, x: int, dst: int, rt: Route, old: int) -> None:
        if rt.installed:
            better = self._best(x, dst, True)
            if better is not None and better.metric < rt.metric:
                self._consider(x, dst, better)
        if rt.installed:
            self._triggered_update(x, dst, rt, old)
        else:
            self._consider(x, dst, rt)

    def _triggered_update(self, x: int, dst: int, rt: Route, old: int) -> None:
        """babeld ``send_triggered_update``: how urgently to tell the neighbours, if at all."""
        if not rt.installed:
            return
        new = rt.metric
        diff = abs(new - old)
        req = self.requests[x].get(dst)
        if old < INFINITY <= new:  # (one source per prefix here, so never a source switch)
            urgent = 2
        elif new > old and old < 6 * 256 and diff >= 512:
            urgent = 1
        elif req is not None and seqno_compare(req[0], rt.seqno) <= 0:
            urgent = 1
        elif old >= INFINITY > new:
            urgent = 0
        elif new < old and diff < 1024:
            return
        elif diff < 384:
            return
        else:
            urgent = 0
        self._send_all(x, URGENT_JITTER if urgent else self._nonurgent(x), ("update", [dst]))
        if old < INFINITY and new >= old + 512:
            self._request_resend(x, dst)
        elif old < INFINITY and new >= old + 288:
            self._send_all(x, URGENT_JITTER, ("request", dst, 0, 0))

    def _flush_route(self, x: int, dst: int, rt: Route) -> None:
        lost = rt.installed
        old = rt.metric
        table = self.routes[x].get(dst, {})
        table.pop(rt.r, None)
        if lost:
            self._set_installed(x, dst, None)
            self._route_lost(x, dst, old)

    def _route_lost(self, x: int, dst: int, old: int) -> None:
        new = self._best(x, dst, True)
        if new is not None:
            self._consider(x, dst, new)
        elif old < INFINITY:
            self._send_all(x, URGENT_JITTER, ("update", [dst]))  # a retraction (no installed route)
            if old <= INFINITY // 2:
                self._request_resend(x, dst)

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

    # ---- telemetry (what babeld's ``dump`` says on every live node, as emu maps it) ---------------
    def telemetry(self, now: float) -> Telemetry:
        self.advance(now)
        st, n = self.st, self.n
        alive = st.alive.astype(bool)
        nh = np.full((n, n), -1, np.int32)
        tq = np.zeros((n, n), np.uint8)
        metric = np.full((n, n), -1, np.int32)
        for x in np.flatnonzero(alive):
            for dst in self.routes[x]:
                rt = self._installed(int(x), dst)
                if rt is None or rt.metric >= INFINITY:
                    continue
                nh[x, dst], metric[x, dst], tq[x, dst] = st.nbr[rt.r], rt.metric, route_quality(rt.metric)
                self._seen[x, dst] = now
        last = (now - self._seen).astype(np.float32)
        last[~alive] = np.nan
        lsrc, ldst, ltq, llast = [], [], [], []
        for r in range(len(st.nbr)):
            x = int(st.src_of[r])
            nb = self.neigh[r]
            if nb is None or not alive[x]:
                continue
            lsrc.append(x)
            ldst.append(int(st.nbr[r]))
            ltq.append(link_quality(self._cost(x, r)))
            llast.append((16 - nb.reach.bit_length()) * self._hello_s(x))
        return Telemetry(
            t=now, nodes=self.names, reporting=alive, orig_next_hop=nh, orig_tq=tq, orig_last_seen=last,
            link_src=np.array(lsrc, np.int32), link_dst=np.array(ldst, np.int32), link_tq=np.array(ltq, np.uint8),
            link_last_seen=np.array(llast, np.float32), tx_packets=st.tx.copy(), rx_packets=st.rx.copy(),
            orig_interval_s=st.interval.astype(np.float32),
            extra={"protocol": "babel", "route_metric": metric,
                   "quality_mapping": "link_tq=255*256/cost; orig_tq=255*(240/255)**(metric/256)"})
