"""The B.A.T.M.A.N. IV twin of one mesh: kernel state plus the operations the world and the
loop can perform on it (faults, actions, probes, telemetry).

The compiled kernel (:mod:`twin.sim.batman_kernel`) only knows integer node indices and CSR
edges; this class maps names to indices, applies primitive fault ops and adapter actions as the
real commands would, and reads telemetry the way ``batctl oj``/``nj`` would report it.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from twin.adapter import Telemetry
from twin.faults import Op
from twin.scenario import RoutingSpec
from twin.sim import batman_kernel as K
from twin.sim.dataplane import DataPlane, link_params, mesh_csr
from twin.sim.rng import new_stream

OUTCOMES = ("delivered", "lost", "no_route", "dead_hop", "ttl_exceeded", "blackholed", "src_dead")


class BatmanTwin(DataPlane):
    """Routing state of every node, advanced lazily to whatever time someone looks at it."""

    def __init__(self, graph: nx.Graph, routing: RoutingSpec, seed: int, *, threads: int | None = None,
                 log_capacity: int = 1 << 18):
        self.graph = graph
        self.names, self.index, indptr, nbr = mesh_csr(graph, locality=True)
        self.n = n = len(self.names)
        self.routing = routing
        self.probe_ttl = routing.ttl
        self.rng_ogm = new_stream(seed, "ogm")
        self.rng_data = new_stream(seed, "data")
        self.rng_misc = np.random.default_rng(np.random.SeedSequence([seed, 7]))
        self.st = K.make_state(indptr, nbr, n, interval=routing.orig_interval, jitter=routing.jitter,
                               fwd_jitter=routing.forward_jitter, aggregation=routing.aggregation,
                               ttl=routing.ttl, hop_penalty=routing.hop_penalty, rng=self.rng_ogm, threads=threads,
                               log_capacity=log_capacity)
        e = len(nbr)
        self.delay, self.rate = link_params(graph, self.names, self.st.src_of, nbr, self.st.loss)
        self.blackhole = np.zeros(n, np.uint8)
        self.forwarded = np.zeros(n, np.int64)  # data frames relayed per node (batctl statistics)
        self.fault_down = np.zeros(e, bool)  # links a fault took down (ground truth)
        self.hardif_off = np.zeros(n, bool)  # nodes whose hard interface the loop removed
        self.t = 0.0
        self._route_log: list[np.ndarray] = []

    # ---- time ---------------------------------------------------------------------------
    def advance(self, t: float) -> None:
        """Run every OGM originated before ``t`` (floods are applied at their origination)."""
        if t <= self.t:
            return
        st = self.st
        while K.advance(st, t):
            self._drain_log()
        if st.log_n[0] > st.log_t.shape[0] // 8:
            # drained in chunks, not per call: each drain has a fixed cost (measured ~3 % of a
            # 1000-node run when it ran at every probe), and the kernel batches a whole epoch's
            # floods only while the log has room for them
            self._drain_log()
        self.t = t

    @property
    def route_log(self) -> list[np.ndarray]:
        """Every route change so far, as record arrays (t, node, orig, old, new) in kernel order."""
        self._drain_log()
        return self._route_log

    def _drain_log(self) -> None:
        st = self.st
        if st.log_n[0] > st.log_t.shape[0]:  # the kernel reserves room per flood; this would be a bug
            raise RuntimeError(f"route log overflow: {int(st.log_n[0])} changes, room for {st.log_t.shape[0]}")
        k = int(st.log_n[0])
        if k:
            self._route_log.append(np.rec.fromarrays(
                [st.log_t[:k].copy(), st.log_node[:k].copy(), st.log_orig[:k].copy(), st.log_old[:k].copy(),
                 st.log_new[:k].copy()], names="t,node,orig,old,new"))
        st.log_n[0] = 0

    def engine_info(self) -> dict:
        """What ran and how much work it did, for the run journal."""
        return {"engine": "batman_iv numba kernel", "nodes": self.n, "directed_links": int(len(self.st.nbr)),
                "ogm_tx": int(self.st.tx.sum()), "ogm_rx": int(self.st.rx.sum())}

    def purge(self) -> None:
        K.purge(self.st, self.t, self.routing.purge_neighbour, self.routing.purge_originator, drain=self._drain_log)
        self._drain_log()

    # ---- fault ops ----------------------------------------------------------------------
    def apply_op(self, op: Op) -> None:
        if op.kind == "crash":
            self.st.alive[self.index[op.node]] = 0
        elif op.kind == "recover":
            self.reboot(self.index[op.node])
        else:
            self.apply_link_op(op)

    def _sync_up(self, e: int) -> None:
        a, b = self.st.src_of[e], self.st.nbr[e]
        self.st.up[e] = 0 if (self.fault_down[e] or self.hardif_off[a] or self.hardif_off[b]) else 1

    def hardif(self, x: int, *, up: bool) -> None:
        """Remove (or re-add) node x's hard interface from bat0: nothing crosses it while removed,
        and batman-adv purges every neighbour on it, so their windows restart empty."""
        st = self.st
        self.hardif_off[x] = not up
        lo, hi = st.indptr[x], st.indptr[x + 1]
        for e in range(lo, hi):
            self._sync_up(e)
            self._sync_up(int(st.rev[e]))
        if not up:
            self._forget_neighbours(x)

    def _forget_neighbours(self, x: int) -> None:
        st = self.st
        lo, hi = st.indptr[x], st.indptr[x + 1]
        routed = (st.router[:, x] >= lo) & (st.router[:, x] < hi)
        st.router[routed, x] = -1
        self._clear_links(lo, hi)

    def _clear_links(self, lo: int, hi: int) -> None:
        """Forget node x's in-edges lo..hi: their rings (for every originator), windows, link TQs and
        last-heard times."""
        st = self.st
        st.rb[:, lo:hi, :] = 0
        st.recv_mask[lo:hi] = 0
        st.echo_mask[lo:hi] = 0
        st.link_q[st.rev[lo:hi]] = 0  # x's in-edges, as its neighbours' out-edges
        st.heard[st.rev[lo:hi]] = -1.0

    def reboot(self, x: int) -> None:
        """Node x (re)starts: empty tables and windows, a fresh random sequence number, own phase."""
        st = self.st
        lo, hi = st.indptr[x], st.indptr[x + 1]
        st.router[:, x] = -1
        st.last_seq[:, x] = -1
        st.orig_last_seen[:, x] = -1.0
        st.last_reset[:, x] = -1e9
        self._clear_links(lo, hi)
        st.own_seq[x] = int(self.rng_misc.integers(1 << 20, 1 << 30))
        st.alive[x] = 1

    def tq(self, node: str, orig: str) -> int:
        """Ring-average TQ of ``node``'s selected route toward ``orig`` (0 when none)."""
        o, x = self.index[orig], self.index[node]
        r = self.st.router[o, x]
        return K.ring_avg(self.st, o, int(r)) if r >= 0 else 0

    # ---- telemetry (what batctl oj / nj would print on every live node) -------------------
    def telemetry(self, now: float) -> Telemetry:
        st = self.st
        alive = st.alive.astype(bool)
        router_t = st.router.T  # [node, dest]
        nh = np.where(router_t >= 0, st.nbr[np.maximum(router_t, 0)], -1).astype(np.int32)
        rows = np.arange(self.n)[:, None]
        rec = st.rb[rows, np.maximum(st.router, 0)]  # [dest, node, 8]
        cnt = np.count_nonzero(rec[:, :, :K.RING], axis=2).T  # [node, dest]
        sm = rec[:, :, :K.RING].astype(np.int64).sum(axis=2).T
        tq = np.where((router_t >= 0) & (cnt > 0), sm // np.maximum(cnt, 1), 0).astype(np.uint8)
        seen = st.orig_last_seen.T
        last = np.where(seen >= 0, now - seen, np.nan).astype(np.float32)
        nh[~alive] = -1
        tq[~alive] = 0
        last[~alive] = np.nan
        heard = st.heard[st.rev]  # per in-edge r: when node src_of[r] last heard neighbour nbr[r]
        known = (heard >= 0) & alive[st.src_of]
        src = st.src_of[known].astype(np.int32)
        dst = st.nbr[known].astype(np.int32)
        return Telemetry(
            t=now, nodes=self.names, reporting=alive, orig_next_hop=nh, orig_tq=tq, orig_last_seen=last,
            link_src=src, link_dst=dst, link_tq=(st.link_q[st.rev][known] // 255).astype(np.uint8),
            link_last_seen=(now - heard[known]).astype(np.float32),
            tx_packets=st.tx.copy(), rx_packets=st.rx.copy(), forward_packets=self.forwarded.copy(),
            orig_interval_s=st.interval.astype(np.float32),
        )
