"""Topology builders and importers: every mesh the twin runs on is a plain ``nx.Graph``.

The simulator never sees networkx objects beyond this contract, so it is kept small and exact:

* undirected ``nx.Graph`` with **string** node labels; the order of ``g.nodes`` is the canonical
  index order (simulator node ``i`` is ``list(g.nodes)[i]``). Builders label ``"n0".."n{N-1}"``.
* node attribute ``pos`` = ``(x, y)`` tuple when a position is known;
* every edge carries ``loss`` (per packet, per direction, 0..1), ``delay_s`` (seconds) and
  ``rate_bps`` (``None`` = unlimited); see :func:`apply_link_defaults`;
* ``g.graph["kind"]`` names the builder; random graphs record ``g.graph["graph_seed"]``.

Random functions take an explicit ``seed`` and never touch global random state, so every
experiment can be replayed and compared against the reference model bit for bit.
"""

from __future__ import annotations

import math
import random
import re
import xml.etree.ElementTree as ET
from collections.abc import Hashable, Sequence
from pathlib import Path

import networkx as nx
import numpy as np
from scipy.sparse import csgraph

#: Seeds tried by :func:`random_geometric` before giving up (part of the reference recipe).
GEOMETRIC_SEED_TRIES = 10_000
DEFAULT_DELAY_S = 0.001


class TopologyError(ValueError):
    """A topology could not be built or a topology file is unusable (message names file and field)."""


def link_key(a: str, b: str) -> tuple[str, str]:
    """Canonical key of the undirected link a-b, so per-link tables never hold both (a, b) and (b, a)."""
    return (a, b) if a <= b else (b, a)


def apply_link_defaults(
    g: nx.Graph, *, loss: float = 0.0, delay_s: float = DEFAULT_DELAY_S, rate_bps: float | None = None
) -> nx.Graph:
    """Fill ``loss``/``delay_s``/``rate_bps`` on edges that lack them; existing values win.

    Only *missing* keys are filled (an explicit ``rate_bps=None`` means unlimited and stays), so
    importers can set what the source file knows and leave the rest to the simulator's defaults.
    Returns ``g`` for chaining.
    """
    defaults = {"loss": float(loss), "delay_s": float(delay_s), "rate_bps": rate_bps}
    for _, _, data in g.edges(data=True):
        for key, value in defaults.items():
            data.setdefault(key, value)
    return g


def _named(g: nx.Graph, kind: str) -> nx.Graph:
    """Relabel integer nodes i -> "n{i}" keeping node *and* adjacency order, then set defaults.

    ``nx.relabel_nodes(copy=True)`` re-adds nodes in order and edges in ``g.edges`` order, so the
    string graph iterates exactly like the integer one; betweenness and BFS-based choices then match
    a reference model that works on the integer graph.
    """
    h = nx.relabel_nodes(g, {i: f"n{i}" for i in g.nodes}, copy=True)
    for _, data in h.nodes(data=True):
        if "pos" in data:
            data["pos"] = tuple(float(c) for c in data["pos"])
    h.graph["kind"] = kind
    return apply_link_defaults(h)


def _check_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise TopologyError(f"{name} must be an integer >= {minimum}, got {value!r}")


def line(n: int, *, spacing: float = 1.0) -> nx.Graph:
    """Chain n0 - n1 - ... ; node i at ``(i * spacing, 0)``.

    Use ``spacing = 0.9 * r`` for a radio range ``r``: neighbours are in range, second neighbours
    are not, which is what makes the chain a multi-hop test case.
    """
    _check_count("n", n, 1)
    g = nx.path_graph(n)
    nx.set_node_attributes(g, {i: (i * spacing, 0.0) for i in g}, "pos")
    return _named(g, "line")


def ring(n: int, *, spacing: float = 1.0) -> nx.Graph:
    """Cycle of ``n >= 3`` nodes on a circle whose chord between neighbours equals ``spacing``.

    The smallest topology with two disjoint paths: the simplest self-healing case.
    """
    _check_count("n", n, 3)
    g = nx.cycle_graph(n)
    radius = spacing / (2.0 * math.sin(math.pi / n))
    pos = {i: (radius * math.cos(2 * math.pi * i / n), radius * math.sin(2 * math.pi * i / n)) for i in g}
    nx.set_node_attributes(g, pos, "pos")
    return _named(g, "ring")


def grid(rows: int, cols: int, *, spacing: float = 1.0) -> nx.Graph:
    """4-neighbour grid; node index ``row * cols + col`` at ``(col * spacing, row * spacing)``."""
    _check_count("rows", rows, 1)
    _check_count("cols", cols, 1)
    g = nx.Graph()
    for r in range(rows):
        g.add_nodes_from((r * cols + c, {"pos": (c * spacing, r * spacing)}) for c in range(cols))
    for r in range(rows):
        for c in range(cols):
            i = r * cols + c
            if c + 1 < cols:
                g.add_edge(i, i + 1)
            if r + 1 < rows:
                g.add_edge(i, i + cols)
    out = _named(g, "grid")
    out.graph.update(rows=rows, cols=cols)
    return out


def random_geometric(n: int, *, radius: float, seed: int) -> nx.Graph:
    """Connected random geometric graph in the unit square, by the reference recipe.

    Tries ``nx.random_geometric_graph(n, radius, seed=s)`` for ``s = seed, seed + 1, ...``
    (at most :data:`GEOMETRIC_SEED_TRIES`) and keeps the first connected one, so the same
    ``(n, radius, seed)`` gives the very graph the reference model uses. The seed that produced
    it is recorded in ``g.graph["graph_seed"]``.
    """
    _check_count("n", n, 1)
    if not radius > 0:
        raise TopologyError(f"radius must be > 0, got {radius!r}")
    for s in range(seed, seed + GEOMETRIC_SEED_TRIES):
        g = nx.random_geometric_graph(n, radius, seed=s)
        if nx.is_connected(g):
            break
    else:
        raise TopologyError(
            f"no connected random geometric graph for n={n}, radius={radius} with seeds "
            f"{seed}..{seed + GEOMETRIC_SEED_TRIES - 1}; increase radius (see radius_for_degree)"
        )
    out = _named(g, "random_geometric")
    out.graph.update(graph_seed=s, seed=seed, radius=float(radius))
    return out


def _square_distance_cdf(r: float) -> float:
    """P(distance <= r) for two uniform points in the unit square (exact, 0 <= r <= sqrt 2)."""
    if r <= 1.0:
        return math.pi * r * r - 8.0 / 3.0 * r**3 + 0.5 * r**4
    s = math.sqrt(r * r - 1.0)
    r2 = r * r
    return (
        1.0 / 3.0
        + (math.pi - 2.0) * r2
        - 0.5 * r2 * r2
        + 4.0 / 3.0 * (2 * r2 + 1) * s
        - 4 * r2 * math.acos(1 / r)
    )


def expected_degree(n: int, radius: float) -> float:
    """Mean degree of ``n`` uniform points in the unit square linked within ``radius`` (border included)."""
    return (n - 1) * _square_distance_cdf(min(float(radius), math.sqrt(2.0)))


def radius_for_degree(n: int, avg_degree: float, *, edge_correction: bool = False) -> float:
    """Radius giving an expected average degree ``avg_degree`` for ``n`` nodes in the unit square.

    Default: ``sqrt(avg_degree / (pi * (n - 1)))``, the textbook estimate that ignores the square's
    border (the reference model's choice). Nodes near the border lose part of their disc, so the
    realised degree is lower (about 16 % at radius 0.2). ``edge_correction=True`` instead solves
    ``(n - 1) * P(|X - Y| <= r) = avg_degree`` with the exact distance distribution of two uniform
    points in the unit square, which makes the *expected* degree exact.
    """
    _check_count("n", n, 2)
    if not 0 < avg_degree <= n - 1:
        raise TopologyError(f"avg_degree must be in (0, n-1] = (0, {n - 1}], got {avg_degree!r}")
    if not edge_correction:
        return math.sqrt(avg_degree / (math.pi * (n - 1)))
    target = avg_degree / (n - 1)
    lo, hi = 0.0, math.sqrt(2.0)
    for _ in range(100):  # bisection: the CDF is monotone, 100 halvings reach float precision
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _square_distance_cdf(mid) < target else (lo, mid)
    return hi


_UNIT = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_RATE_UNIT = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def _parse_quantity(value: object, *, unit_map: dict[str, float], bare: float, what: str) -> float:
    """Number or string with unit ("5ms", "10 Mbit", "1Gbps") -> float in base units.

    A bare number is multiplied by ``bare`` (the unit topology files usually mean for that key).
    """
    if isinstance(value, bool):
        raise ValueError(f"{what} {value!r} is not a number")
    if isinstance(value, int | float):
        return float(value) * bare
    m = re.fullmatch(r"\s*([-+0-9.eE]+)\s*([a-zA-Zµ]*?)\s*(bit/s|bps|bit|b/s)?\s*", str(value))
    if not m or m.group(2).lower() not in unit_map:
        raise ValueError(f"{what} {value!r} has no understood number/unit")
    has_unit = bool(m.group(2) or m.group(3))
    try:
        return float(m.group(1)) * (unit_map[m.group(2).lower()] if has_unit else bare)
    except ValueError as err:
        raise ValueError(f"{what} {value!r} is not a number") from err


def _map_edge_attrs(data: dict, where: str) -> None:
    """Translate common GraphML edge attribute names onto loss / delay_s / rate_bps.

    Bare ``delay`` numbers are milliseconds and bare ``bandwidth``/``bw`` numbers Mbit/s (the
    Mininet / tc convention); ``rate`` and ``LinkSpeedRaw`` (Topology Zoo) are bit/s; strings
    may carry their own unit. ``loss`` above 1 is read as percent (tc netem style).
    """
    if "loss" in data:
        loss = float(data["loss"])
        loss = loss / 100.0 if 1.0 < loss <= 100.0 else loss
        if not 0.0 <= loss <= 1.0:
            raise ValueError(f"{where}.loss {data['loss']!r} is outside 0..1 (or 0..100 %)")
        data["loss"] = loss
    for key, bare in (("delay_s", 1.0), ("delay", 1e-3)):
        if key in data:
            data["delay_s"] = _parse_quantity(data[key], unit_map=_UNIT, bare=bare, what=f"{where}.{key}")
            break
    rate_keys = (("rate_bps", 1.0), ("rate", 1.0), ("bandwidth", 1e6), ("bw", 1e6), ("LinkSpeedRaw", 1.0))
    for key, bare in rate_keys:
        if key in data:
            rate = _parse_quantity(data[key], unit_map=_RATE_UNIT, bare=bare, what=f"{where}.{key}")
            data["rate_bps"] = rate
            break


def from_graphml(path: str | Path) -> nx.Graph:
    """Read a GraphML topology (e.g. Topology Zoo, yEd, a Mininet export) into the convention.

    Nodes keep file order and are relabelled with ``str``; directed or multi-edge files are
    collapsed to one undirected edge per pair (attributes merged, later edges win). ``pos`` comes from
    ``x``/``y`` node attributes, else from ``Longitude``/``Latitude`` (degrees, unprojected).
    """
    try:
        raw = nx.read_graphml(path)
    except (OSError, ET.ParseError, nx.NetworkXError, ValueError, KeyError) as err:
        raise TopologyError(f"{path}: cannot read GraphML: {err}") from err
    g = nx.Graph()
    g.add_nodes_from((str(n), dict(d)) for n, d in raw.nodes(data=True))
    g.add_edges_from((str(u), str(v), dict(d)) for u, v, d in raw.edges(data=True))
    for node, data in g.nodes(data=True):
        try:
            if "x" in data and "y" in data:
                data["pos"] = (float(data["x"]), float(data["y"]))
            elif "Longitude" in data and "Latitude" in data:
                data["pos"] = (float(data["Longitude"]), float(data["Latitude"]))
        except (TypeError, ValueError) as err:
            raise TopologyError(f"{path}: node {node!r} has a non-numeric position: {err}") from err
    for u, v, data in g.edges(data=True):
        try:
            _map_edge_attrs(data, f"edge {u!r}-{v!r}")
        except (TypeError, ValueError) as err:
            raise TopologyError(f"{path}: {err}") from err
    g.graph.update(raw.graph)
    g.graph["kind"] = "graphml"
    g.graph["source"] = str(path)
    return apply_link_defaults(g)


def components_report(g: nx.Graph) -> list[int]:
    """Connected component sizes, largest first: a quick check before trusting pair statistics."""
    return sorted((len(c) for c in nx.connected_components(g)), reverse=True)


#: From this many nodes on, betweenness comes from the compiled Brandes (twin.centrality); below it,
#: networkx's takes less time than loading numba (twin validate on a 50-node scenario: 0.55 s, not 1.0 s).
COMPILED_BETWEENNESS_MIN_NODES = 300


def betweenness(g: nx.Graph) -> dict:
    """``nx.betweenness_centrality(g)``, bit for bit; on large meshes computed in compiled code."""
    if g.number_of_nodes() < COMPILED_BETWEENNESS_MIN_NODES:
        return nx.betweenness_centrality(g)
    from twin.centrality import betweenness as compiled

    return compiled(g)


def most_central(g: nx.Graph) -> str:
    """Node with maximum (exact) betweenness centrality; ties go to the lowest index.

    The natural single point of failure to attack in fault experiments. Same tie-break as the
    reference ``max(bc.items(), key=lambda kv: (kv[1], -kv[0]))`` over integer indices.
    """
    if g.number_of_nodes() == 0:
        raise TopologyError("most_central: graph has no nodes")
    names = list(g.nodes)
    bc = betweenness(g)
    best, _ = max(((i, bc[name]) for i, name in enumerate(names)), key=lambda kv: (kv[1], -kv[0]))
    return names[best]


def _sample(allp: Sequence[tuple[int, int]], k: int, seed: int) -> Sequence[tuple[int, int]]:
    """The reference draw: all pairs if k covers them, else ``Random(seed*7919+1).sample``.

    ``random.sample`` only takes ``len`` and indexes, so a lazy sequence of pairs draws exactly what
    the reference's list draws, without holding n^2 tuples (25 million at 5000 nodes, 4 GB)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise TopologyError(f"k must be an integer >= 0, got {k!r}")
    return allp if k >= len(allp) else random.Random(seed * 7919 + 1).sample(allp, k)


class _PairsInComponents(Sequence):
    """All ordered pairs ``(a, b)``, ``a != b``, of nodes in the same component, in lexicographic
    order, computed on demand from per-node offsets (O(n) memory)."""

    def __init__(self, comp: list[int]):
        c = np.asarray(comp, dtype=np.int64)
        self._members = {int(cid): np.flatnonzero(c == cid) for cid in np.unique(c)}
        self._comp = c
        counts = np.array([len(self._members[int(x)]) - 1 for x in c], dtype=np.int64)
        self._start = np.concatenate(([0], np.cumsum(counts)))

    def __len__(self) -> int:
        return int(self._start[-1])

    def __getitem__(self, i):  # noqa: ANN001 - int index, as random.sample uses it
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        a = int(np.searchsorted(self._start, i, side="right")) - 1
        r = i - int(self._start[a])
        m = self._members[int(self._comp[a])]
        b = int(m[r]) if m[r] < a else int(m[r + 1])
        return a, b


class _FlatPairs(Sequence):
    """Pairs stored as flat row-major indices ``a * n + b`` (sorted), decoded on demand."""

    def __init__(self, flat: np.ndarray, n: int):
        self._flat, self._n = flat, n

    def __len__(self) -> int:
        return len(self._flat)

    def __getitem__(self, i):  # noqa: ANN001 - int index, as random.sample uses it
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        a, b = divmod(int(self._flat[i]), self._n)
        return a, b


def _component_ids(g: nx.Graph, names: list[Hashable]) -> list[int]:
    comp = {}
    for cid, nodes in enumerate(nx.connected_components(g)):
        comp.update(dict.fromkeys(nodes, cid))
    return [comp[name] for name in names]


def random_pairs(g: nx.Graph, k: int, *, seed: int, same_component: bool = True) -> list[tuple[str, str]]:
    """``k`` ordered (src, dst) pairs, exactly as the reference ``pick_pairs(n, k, seed)``.

    Candidates are all ordered index pairs ``a != b`` in lexicographic order; fewer than ``k``
    candidates returns them all. With ``same_component`` (default) pairs spanning two components
    are left out because no routing can ever serve them; on a connected graph this changes
    nothing, ``same_component=False`` reproduces the reference on any graph.
    """
    names = list(g.nodes)
    comp = _component_ids(g, names) if same_component else [0] * len(names)
    return [(names[a], names[b]) for a, b in _sample(_PairsInComponents(comp), k, seed)]


def _longer_without(adj, v: int, rows: np.ndarray, dist: np.ndarray, unweighted: bool) -> np.ndarray:
    """Per (row, column): is the path strictly longer (or gone) once node ``v`` is removed?"""
    keep = np.ones(adj.shape[0], bool)
    keep[v] = False
    sub = adj[keep][:, keep]
    pos = np.cumsum(keep) - 1  # index of each kept node in ``sub``
    d2 = np.full(dist.shape, np.inf)
    d2[:, keep] = csgraph.shortest_path(sub, unweighted=unweighted, directed=False, indices=pos[rows])
    return d2 > dist if unweighted else (d2 > dist) & ~np.isclose(d2, dist, rtol=1e-9, atol=1e-12)


def pairs_through(g: nx.Graph, via: str, k: int, *, seed: int, weight: str | None = None,
                  all_paths: bool = False) -> list[tuple[str, str]]:
    """``k`` ordered pairs having a shortest path through ``via`` (reference ``pick_pairs(..., via)``).

    These are the flows a failure of ``via`` must disturb, so they measure healing. Only pairs in
    ``via``'s component qualify; fewer than ``k`` candidates returns them all. ``weight`` names an
    edge attribute to measure paths by (a routing cost) instead of hops.

    ``all_paths`` keeps only pairs EVERY shortest path of which crosses ``via`` (without ``via`` the
    pair is farther apart, or cut off): with a tie, one router may use the path through ``via`` and
    another an equal path around it, so only these pairs are disturbed whoever does the routing.
    """
    names = list(g.nodes)
    if via not in g:
        raise TopologyError(f"pairs_through: via {via!r} is not a node of the graph")
    v = names.index(via)
    n = len(names)
    # path lengths (hops, or the ``weight`` attribute) by compiled search (scipy's csgraph): the same
    # numbers as networkx's all-pairs search (1.5 s of pure Python at 1000 nodes), one block of source
    # rows at a time so memory stays O(block x n) instead of an n x n matrix (200 MB at 5000 nodes)
    adj = nx.to_scipy_sparse_array(g, nodelist=names, weight=weight, format="csr")
    dv = csgraph.shortest_path(adj, unweighted=weight is None, directed=False, indices=v)
    reach = np.isfinite(dv)  # a pair outside via's component cannot pass through it
    reach[v] = False
    flat: list[np.ndarray] = []
    block = max(1, 2_000_000 // max(n, 1))
    for r0 in range(0, n, block):
        rows = np.arange(r0, min(n, r0 + block))
        rows = rows[reach[rows]]
        if not len(rows):
            continue
        dist = csgraph.shortest_path(adj, unweighted=weight is None, directed=False, indices=rows)
        through = dv[rows, None] + dv[None, :]
        on_path = (through == dist) if weight is None else np.isclose(through, dist, rtol=1e-9, atol=1e-12)
        cand = reach[None, :] & on_path
        if all_paths:
            cand &= _longer_without(adj, v, rows, dist, weight is None)
        cand[np.arange(len(rows)), rows] = False
        r, c = np.nonzero(cand)  # row-major: the reference's lexicographic order
        flat.append(rows[r].astype(np.int64) * n + c)
    allp = _FlatPairs(np.concatenate(flat) if flat else np.empty(0, np.int64), n)
    return [(names[a], names[b]) for a, b in _sample(allp, k, seed)]
