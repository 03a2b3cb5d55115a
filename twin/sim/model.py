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
from twin.sim.dataplane import DataPlane, link_params, mesh_csr, walk_batch_at
from twin.sim.rng import new_stream

OUTCOMES = ("delivered", "lost", "no_route", "dead_hop", "ttl_exceeded", "blackholed", "src_dead")


class BatmanTwin(DataPlane):
    """Routing state of every node, advanced lazily to whatever time someone looks at it."""

    def __init__(self, graph: nx.Graph, routing: RoutingSpec, seed: int, *, threads: int | None = None,
                 log_capacity: int = 1 << 18, defer_probes: bool = True):
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
        self.defer_probes = defer_probes
        self._pending: list[tuple[float, np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]] = []

    # ---- time ---------------------------------------------------------------------------
    def advance(self, t: float) -> None:
        """Run every OGM originated before ``t`` (floods are applied at their origination), then the
        probes deferred until now."""
        if self._pending and self._pending[0][0] <= max(t, self.t):  # (pending in time order)
            self._advance_and_probe(max(t, self.t))
            return
        if t <= self.t:
            return
        st = self.st
        while K.advance(st, t):
            self._drain_log()
        self._end_advance(t)

    def _end_advance(self, t: float) -> None:
        st = self.st
        if st.log_n[0] > st.log_t.shape[0] // 8:
            # drained in chunks, not per call: each drain has a fixed cost (measured ~3 % of a
            # 1000-node run when it ran at every probe), and the kernel batches a whole epoch's
            # floods only while the log has room for them
            self._drain_log()
        self.t = t

    def probe_into(self, t: float, src: np.ndarray, dst: np.ndarray, size_bytes: int, code: np.ndarray,
                   lat: np.ndarray) -> None:
        """Probe (src, dst) pairs as at time ``t`` into ``code`` and ``lat`` (seconds); with
        ``defer_probes`` (the default) they are filled by the next :meth:`advance`, not now.

        Why: the runner probes ten times a second, and stopping the compiled kernel at every probe time
        cost a call's fixed work (who can hear, per-link counts, the Python around it) and split each
        100 ms epoch's parallel batch in two. Deferred, the kernel runs on to the next fault, purge or
        loop tick in one call, and the probes walk the routes of their own instant: the route changes
        that later floods made toward their destinations are undone from the route log. Outcomes,
        latencies, the data random stream and the forward counters are exactly those of probing at
        ``t`` (``tests/test_sim_probes.py``). Everything else a probe reads (links, liveness,
        blackholes) only changes at faults and actions, and every process advances the twin before
        it applies one.
        """
        if not self.defer_probes:
            super().probe_into(t, src, dst, size_bytes, code, lat)
            return
        if t < self.t:
            raise ValueError(f"cannot probe at {t} s: the twin is already at {self.t} s")
        self._pending.append((t, src, dst, size_bytes, code, lat))

    def probe(self, src: np.ndarray, dst: np.ndarray, size_bytes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._pending:  # they come first in the data random stream
            raise RuntimeError("deferred probes are pending: advance the twin first")
        return super().probe(src, dst, size_bytes)

    def _advance_and_probe(self, t: float) -> None:
        """Run the kernel to ``t`` in one go, keeping the route changes toward the pending probes'
        destinations (with their floods' origination times), then walk each pending probe in order."""
        st = self.st
        due = [p for p in self._pending if p[0] <= t]
        self._pending = [p for p in self._pending if p[0] > t]
        wanted = np.zeros(self.n, bool)
        for p in due:
            wanted[p[2]] = True
        cols = (st.log_t0, st.log_node, st.log_orig, st.log_old)
        keep = [np.zeros(0, c.dtype) for c in cols]
        if t > self.t:
            k0 = int(st.log_n[0])
            while True:
                more = K.advance(st, t)
                k1 = int(st.log_n[0])
                m = wanted[st.log_orig[k0:k1]]
                keep = [np.concatenate([kept, c[k0:k1][m]]) for kept, c in zip(keep, cols, strict=True)]
                if not more:
                    break
                self._drain_log()
                k0 = 0
        e_t0, e_node, e_orig, e_old = keep
        col = np.empty(self.n, np.int32)
        for tp, src, dst, size_bytes, code, lat in due:
            hops = np.empty(len(src), np.int32)
            walk_batch_at(tp, e_t0, e_node, e_orig, e_old, st.nbr_index, col, st.xs, st.nbr, st.up, st.alive,
                            st.quarantined, self.data_loss(), src, dst, int(self.probe_ttl), self.delay, self.rate,
                            float(size_bytes * 8), self.blackhole, self.rng_data, self.forwarded, code, hops, lat)
        if t > self.t:
            self._end_advance(t)

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
        st.link_w[st.rev[lo:hi]] = 0
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
        # one row per reporting node, contiguous (as each node dumps its own table): the arrays
        # above come out transposed from the [dest, node] kernel layout
        nh, tq, last = np.ascontiguousarray(nh), np.ascontiguousarray(tq), np.ascontiguousarray(last)
        return Telemetry(
            t=now, nodes=self.names, reporting=alive, orig_next_hop=nh, orig_tq=tq, orig_last_seen=last,
            link_src=src, link_dst=dst, link_tq=(st.link_q[st.rev][known] // 255).astype(np.uint8),
            link_last_seen=(now - heard[known]).astype(np.float32),
            tx_packets=st.tx.copy(), rx_packets=st.rx.copy(), forward_packets=self.forwarded.copy(),
            orig_interval_s=st.interval.astype(np.float32),
        )
