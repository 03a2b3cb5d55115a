"""Exact betweenness centrality, bit for bit the numbers of ``nx.betweenness_centrality(g)``.

Why by hand: ``most_central`` (the relay a scenario crashes, the via of its probe pairs) needs
exact betweenness, and networkx's pure-Python Brandes took 1.8 s of a 1000-node run's set-up (this
takes 0.06 s). This is the same algorithm compiled with numba, in the same order of floating-point
operations, so every value is identical and ties between
equally central nodes break exactly as before (``tests/test_topology.py`` compares them bitwise).

Brandes, as networkx runs it for an unweighted graph: for each source in node order, a
breadth-first search in adjacency order counts shortest paths (``sigma``); then the nodes are
taken in reverse search order and each passes ``sigma[v] * (1 + delta[w]) / sigma[w]`` to its
predecessors. Each predecessor gets one such term per successor, in that reverse order, whatever
order a successor lists its predecessors in. Finally every value is scaled by
``1 / ((n - 1) * (n - 2))`` (normalized, endpoints excluded).
"""

from __future__ import annotations

import networkx as nx
import numba as nb
import numpy as np


@nb.njit(cache=True)
def _brandes(indptr: np.ndarray, nbr: np.ndarray) -> np.ndarray:
    n = indptr.shape[0] - 1
    bc = np.zeros(n)
    dist = np.empty(n, np.int64)
    sigma = np.empty(n)
    delta = np.empty(n)
    order = np.empty(n, np.int64)  # the search order (networkx's S); also its queue
    for s in range(n):
        dist[:] = -1
        sigma[:] = 0.0
        dist[s] = 0
        sigma[s] = 1.0
        order[0] = s
        head = 0
        tail = 1
        while head < tail:
            v = order[head]
            head += 1
            dv = dist[v]
            sv = sigma[v]
            for j in range(indptr[v], indptr[v + 1]):
                w = nbr[j]
                if dist[w] < 0:
                    order[tail] = w
                    tail += 1
                    dist[w] = dv + 1
                if dist[w] == dv + 1:
                    sigma[w] += sv
        for i in range(tail):
            delta[order[i]] = 0.0
        for i in range(tail - 1, -1, -1):
            w = order[i]
            coeff = (1.0 + delta[w]) / sigma[w]
            dw = dist[w]
            for j in range(indptr[w], indptr[w + 1]):  # w's predecessors: neighbours one hop nearer s
                v = nbr[j]
                if dist[v] == dw - 1:
                    delta[v] += sigma[v] * coeff
            if w != s:
                bc[w] += delta[w]
    return bc


def betweenness(g: nx.Graph) -> dict:
    """``nx.betweenness_centrality(g)`` (normalized, endpoints excluded), computed in compiled code."""
    names = list(g.nodes)
    index = {name: i for i, name in enumerate(names)}
    rows = [[index[w] for w in g[v]] for v in names]  # adjacency in networkx's iteration order
    indptr = np.zeros(len(names) + 1, np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    nbr = np.array([w for r in rows for w in r], np.int64)
    bc = _brandes(indptr, nbr)
    n = len(names) - 1  # networkx's N: valid (s, t) pairs exclude v as the target
    if n >= 2:
        bc *= 1 / (n * (n - 1))
    return dict(zip(names, bc.tolist(), strict=True))
