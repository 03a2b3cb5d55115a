"""What every routing model of the twin shares: the mesh as CSR arrays, per-link loss, delay and
rate, the link and blackhole faults, and the data plane.

The routing models differ in how next hops come about (B.A.T.M.A.N. IV's OGM floods, babeld's
updates and feasibility); once they are in ``st.xs[dst, node, 0]`` (the in-edge of ``node`` whose
neighbour is the next hop toward ``dst``, -1 for none), probes walk them the same way, so a
delivery ratio in one model means the same thing as in the other. The walk itself (``walk``) is
compiled with numba: every probe of a run takes it.

Data frames and OGMs do not see the same loss on wifi: an OGM is a broadcast, sent once, while a
unicast data frame is retried by 802.11 up to its retry limit (7 by default), so it is lost on a
hop only when every attempt is. A link's ``retries`` (set per link type by the meshviewer import,
0 everywhere else) turns its loss p into ``p ** (retries + 1)`` for probes; routing keeps seeing p.
"""

from __future__ import annotations

import networkx as nx
import numba as nb
import numpy as np
from scipy.sparse.csgraph import reverse_cuthill_mckee

from twin.faults import Op
from twin.sim.rng import uniform


def mesh_csr(graph: nx.Graph, *, locality: bool = False) -> tuple[list[str], dict[str, int], np.ndarray, np.ndarray]:
    """Node names, name -> index, and the CSR adjacency (``indptr``, sorted neighbour indices).

    Nodes are numbered in the graph's order, or with ``locality`` in reverse Cuthill-McKee order
    (SciPy's, computed on the graph's own node order, so the numbering is the same in every
    process): neighbours get nearby numbers, so an OGM flood, which sweeps the mesh as a wave, reads
    per-node and per-link records that sit close together in memory (measured on the 1000-node
    benchmark mesh: ~6 % less time per OGM copy).
    """
    nodes = list(graph.nodes)
    order = range(len(nodes))
    if locality and nodes:
        adj = nx.to_scipy_sparse_array(graph, nodelist=nodes, weight=None, format="csr")
        order = reverse_cuthill_mckee(adj, symmetric_mode=True)
    names = [str(nodes[i]) for i in order]
    index = {n: i for i, n in enumerate(names)}
    nbrs = [sorted(index[str(v)] for v in graph[nodes[i]]) for i in order]
    indptr = np.zeros(len(names) + 1, np.int32)
    indptr[1:] = np.cumsum([len(x) for x in nbrs])
    nbr = np.array([v for row in nbrs for v in row], np.int32)
    return names, index, indptr, nbr


def link_params(graph: nx.Graph, names: list[str], src_of: np.ndarray, nbr: np.ndarray, loss: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Fill ``loss`` per directed edge from the graph; returns per-edge delay (s) and rate (bit/s, 0: none)."""
    e = len(nbr)
    delay = np.zeros(e)
    rate = np.zeros(e)
    for r in range(e):
        d = graph.edges[names[src_of[r]], names[nbr[r]]]
        loss[r] = d.get("loss", 0.0)
        delay[r] = d.get("delay_s", 0.001)
        rate[r] = d.get("rate_bps") or 0.0
    return delay, rate


@nb.njit(cache=True)
def walk(col, nbr, up, alive, quarantined, loss, a, b, ttl, delay, rate, size_bits, blackhole, rng, fwd):
    """Follow next-hop tables from a to b like a data packet; ``col[x]`` is x's router toward b (an
    in-edge of x, -1 for none), that is ``xs[b, :, 0]``.

    Returns (outcome, hops, latency_s). Outcomes: 0 delivered, 1 lost on a lossy link,
    2 no route, 3 next hop dead or link down, 4 TTL exceeded (loop), 5 dropped by a blackhole,
    6 source dead.
    """
    if alive[a] == 0:
        return 6, 0, 0.0
    x = a
    lat = 0.0
    for h in range(ttl):
        if x == b:
            return 0, h, lat
        if h > 0 and blackhole[x]:
            return 5, h, lat
        r = col[x]
        if r < 0:
            return 2, h, lat
        nxt = nbr[r]
        e = r  # the in-edge r of x from nxt is, read as x's row entry, also the edge x -> nxt
        if up[e] == 0 or alive[nxt] == 0 or quarantined[nxt] or quarantined[x]:
            return 3, h, lat
        if h > 0:
            fwd[x] += 1  # batctl statistics "forward": frames this node relayed
        p = loss[e]
        if p > 0.0 and uniform(rng) < p:
            return 1, h, lat
        lat += delay[e]
        if rate[e] > 0.0:
            lat += size_bits / rate[e]
        x = nxt
    if x == b:
        return 0, ttl, lat
    return 4, ttl, lat


@nb.njit(cache=True)
def walk_batch(xs, nbr, up, alive, quarantined, loss, src, dst, ttl, delay, rate, size_bits, blackhole, rng, fwd,
               out_code, out_hops, out_lat):
    for i in range(src.shape[0]):
        c, h, lat = walk(xs[dst[i], :, 0], nbr, up, alive, quarantined, loss, src[i], dst[i], ttl, delay, rate,
                         size_bits, blackhole, rng, fwd)
        out_code[i] = c
        out_hops[i] = h
        out_lat[i] = lat


@nb.njit(cache=True)
def walk_batch_at(t, e_t0, e_node, e_orig, e_old, nbr_index, col, xs, nbr, up, alive, quarantined, loss, src, dst,
                  ttl, delay, rate, size_bits, blackhole, rng, fwd, out_code, out_hops, out_lat):
    """``walk_batch`` on the routes as they were at time t, although floods up to a later time have run:
    the route changes of floods originated at or after t (``e_*``: route-log entries, in log order, which
    include every such change toward these destinations) are undone, newest first, in a copy (``col``)
    of the destination's routes. So probes need not stop the kernel at every probe time."""
    for i in range(src.shape[0]):
        b = dst[i]
        col[:] = xs[b, :, 0]
        for j in range(e_t0.shape[0] - 1, -1, -1):
            if e_orig[j] == b and e_t0[j] >= t:
                x = e_node[j]
                old = e_old[j]
                col[x] = nbr_index[x, old] if old >= 0 else -1
        c, h, lat = walk(col, nbr, up, alive, quarantined, loss, src[i], b, ttl, delay, rate, size_bits, blackhole,
                         rng, fwd)
        out_code[i] = c
        out_hops[i] = h
        out_lat[i] = lat


class DataPlane:
    """Mixin of the routing twins. Needs ``st`` (``xs``, ``nbr``, ``nbr_index``, ``up``, ``alive``,
    ``quarantined``, ``loss``), ``names``, ``index``, ``delay``, ``rate``, ``blackhole``,
    ``forwarded``, ``fault_down``, ``rng_data``, ``probe_ttl`` and a ``_sync_up(edge)`` that
    recomputes ``st.up`` from ``fault_down`` and the model's own interface state. A ``graph`` whose
    edges carry ``retries`` gives data frames link-layer retransmissions (see the module doc)."""

    _dloss_cache: np.ndarray | None = None
    _retry_cache: np.ndarray | None = None

    def data_loss(self) -> np.ndarray:
        """Per directed edge, the loss of a unicast data frame: all ``retries + 1`` attempts lost.
        The OGM loss array itself when no link retries (every generated topology), so those runs
        draw the very same random numbers as before retries existed."""
        if self._retry_cache is None:
            r = np.zeros(len(self.st.loss), np.int64)
            for a, b, d in getattr(self, "graph", nx.Graph()).edges(data=True):
                k = int(d.get("retries") or 0)
                if k:
                    for e in self._edges(str(a), str(b)):
                        r[e] = k
            self._retry_cache = r
        if not self._retry_cache.any():
            return self.st.loss
        if self._dloss_cache is None:
            self._dloss_cache = self.st.loss ** (self._retry_cache + 1)
        return self._dloss_cache

    def _edges(self, a: str, b: str) -> tuple[int, int]:
        i, j = self.index[a], self.index[b]
        e1, e2 = int(self.st.nbr_index[i, j]), int(self.st.nbr_index[j, i])
        if e1 < 0:
            raise KeyError(f"no link {a}-{b}")
        return e1, e2

    def apply_link_op(self, op: Op) -> None:
        """The faults that act on links and forwarding alone, the same for every routing model."""
        if op.kind in ("link_down", "link_up"):
            for e in self._edges(*op.link):
                self.fault_down[e] = op.kind == "link_down"
                self._sync_up(e)
        elif op.kind == "link_set":
            for e in self._edges(*op.link):
                self.st.loss[e] = op.loss or 0.0
                self.rate[e] = op.rate_bps or 0.0
            self._dloss_cache = None
        elif op.kind == "blackhole_on":
            self.blackhole[self.index[op.node]] = 1
        elif op.kind == "blackhole_off":
            self.blackhole[self.index[op.node]] = 0
        else:  # pragma: no cover
            raise ValueError(f"unknown op {op.kind}")

    def probe(self, src: np.ndarray, dst: np.ndarray, size_bytes: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Walk each (src, dst) pair hop by hop: outcome code, hops and latency per probe."""
        m = len(src)
        code = np.empty(m, np.int32)  # walk_batch writes every entry
        hops = np.empty(m, np.int32)
        lat = np.empty(m)
        st = self.st
        walk_batch(st.xs, st.nbr, st.up, st.alive, st.quarantined, self.data_loss(), src, dst, int(self.probe_ttl),
                     self.delay, self.rate, float(size_bytes * 8), self.blackhole, self.rng_data, self.forwarded,
                     code, hops, lat)
        return code, hops, lat

    def probe_into(self, t: float, src: np.ndarray, dst: np.ndarray, size_bytes: int, code: np.ndarray,
                   lat: np.ndarray) -> None:
        """Probe at time ``t`` into the caller's arrays (outcome codes, latency in seconds). Here at
        once; a model may defer the walk to its next ``advance`` (``BatmanTwin`` does)."""
        self.advance(t)
        code[:], _, lat[:] = self.probe(src, dst, size_bytes)

    def reachable_fraction(self) -> float:
        """Fraction of ordered pairs of live nodes whose route walk reaches the destination."""
        live = np.flatnonzero(self.st.alive)
        src = np.repeat(live, len(live)).astype(np.int32)
        dst = np.tile(live, len(live)).astype(np.int32)
        keep = src != dst
        saved, fwd = self.st.loss.copy(), self.forwarded.copy()
        self.st.loss[:] = 0.0  # reachability is about routes, not random loss
        self._dloss_cache = None
        try:
            code, _, _ = self.probe(src[keep], dst[keep], 100)
        finally:
            self.st.loss[:] = saved
            self.forwarded[:] = fwd
            self._dloss_cache = None
        return float((code == 0).mean()) if keep.any() else 0.0

    def next_hop(self, node: str, dest: str) -> str | None:
        r = int(self.st.xs[self.index[dest], self.index[node], 0])
        return self.names[self.st.nbr[r]] if r >= 0 else None
