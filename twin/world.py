"""Resolve a validated scenario into concrete, mode-independent facts: the graph with per-link
properties, faults with node names, and probe pairs.

Both ``sim`` and ``emu`` start from the same :class:`World`, so the twin's prediction and the
emulation measure the same pairs under the same faults. Problems that only show once the
topology exists (a fault naming a node that is not in the mesh) are reported like schema errors:
with the file, the line and the field path.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx

from twin import topology as topo
from twin.faults import Fault, Op, expand
from twin.scenario import Problem, Scenario, ScenarioError


@dataclass
class Flow:
    """One probe flow: pairs probed ``rate`` times a second from ``start``."""

    pairs: list[tuple[str, str]]
    rate: float
    start: float
    size: int
    via: str | None = None


@dataclass
class World:
    scenario: Scenario
    graph: nx.Graph
    faults: list[Fault]
    ops: list[Op]
    flows: list[Flow]
    notes: list[str] = field(default_factory=list)

    @property
    def nodes(self) -> list[str]:
        return list(self.graph.nodes)


def _fname(sc: Scenario) -> str:
    return str(sc.source) if sc.source else f"<{sc.name}>"


def _check_file_size(sc: Scenario, path: Path) -> None:
    """A topology file larger than :data:`twin.limits.MAX_TOPOLOGY_FILE_BYTES` is refused before it is
    read (the Freifunk snapshots we import are tens of kB)."""
    from twin.limits import MAX_TOPOLOGY_FILE_BYTES

    try:
        size = path.stat().st_size
    except OSError:
        return  # missing or unreadable: the importer says so, with its own message
    if size > MAX_TOPOLOGY_FILE_BYTES:
        raise ScenarioError([Problem(_fname(sc), sc.line_of("topology.file"), "topology.file",
                                     f"{path} is {size} bytes; at most {MAX_TOPOLOGY_FILE_BYTES} are read")])


def build_graph(sc: Scenario) -> tuple[nx.Graph, list[str], list[Problem]]:
    t = sc.topology
    notes: list[str] = []
    base = sc.source.parent if sc.source else Path.cwd()
    if t.file and t.kind in ("graphml", "meshviewer"):
        _check_file_size(sc, base / t.file)
    try:
        if t.kind == "line":
            g = topo.line(t.nodes)
        elif t.kind == "ring":
            g = topo.ring(t.nodes)
        elif t.kind == "grid":
            rows = t.rows or int(round(t.nodes ** 0.5))
            cols = t.cols or -(-t.nodes // rows)
            g = topo.grid(rows, cols)
        elif t.kind == "random_geometric":
            radius = t.radius or topo.radius_for_degree(t.nodes, t.avg_degree, edge_correction=True)
            g = topo.random_geometric(t.nodes, radius=radius, seed=sc.seed)
            notes.append(f"random geometric graph: radius {radius:.4f}, graph seed {g.graph['graph_seed']}")
        elif t.kind == "graphml":
            g = topo.from_graphml(base / t.file)
        else:
            from twin.meshviewer import DEFAULT_MODELS, LinkModel, from_meshviewer

            models = {}
            for name, spec in t.link_types.items():
                d = DEFAULT_MODELS.get(name.lower(), LinkModel())
                models[name] = LinkModel(loss=spec.loss if spec.loss is not None else d.loss,
                                         delay_s=spec.delay if spec.delay is not None else d.delay_s,
                                         retries=spec.retries if spec.retries is not None else d.retries)
            g, report = from_meshviewer(base / t.file, include_offline=t.include_offline, component=t.component,
                                        models=models, min_tq=t.min_tq)
            notes.extend(report.lines())
    except topo.TopologyError as err:
        raise ScenarioError([Problem(_fname(sc), sc.line_of("topology"), "topology", str(err))]) from err
    if t.kind in ("graphml", "meshviewer"):
        # the file knows its links: the scenario's link spec only fills what it leaves out
        topo.apply_link_defaults(g, loss=t.link.loss, delay_s=t.link.delay, rate_bps=t.link.rate)
    else:
        for _, _, d in g.edges(data=True):
            d.update(loss=t.link.loss, delay_s=t.link.delay, rate_bps=t.link.rate)
    problems = []
    for i, ov in enumerate(t.links):
        a, b = ov.between
        if not g.has_edge(a, b):
            where = f"topology.links[{i}].between"
            problems.append(Problem(_fname(sc), sc.line_of(where), where, f"no link {a}-{b} in the topology"))
            continue
        g.edges[a, b].update(loss=ov.loss, delay_s=ov.delay, rate_bps=ov.rate)
    return g, notes, problems


def route_cost(g: nx.Graph, hop_penalty: int) -> str | None:
    """On an imported mesh, the cost batman-adv minimises, as an edge attribute; None elsewhere.

    B.A.T.M.A.N. IV picks the neighbour with the best path TQ: the product over hops of the link TQ
    (about ``(1 - loss)^2`` for a link losing ``loss`` each way) and the hop penalty
    ``(255 - hop_penalty) / 255``. Maximising a product is minimising the sum of ``-ln`` of its
    factors, so shortest paths under this cost are the paths the mesh routes; ``busiest_relay`` and
    ``select: through`` pairs use them on meshviewer imports, where links differ a lot (hop counts
    would send flows over 60 %-loss links the mesh itself avoids). Generated topologies have
    uniform links, where hops give the same paths, and keep the hop-count code (and its reference
    equivalence).
    """
    if g.graph.get("kind") != "meshviewer":
        return None
    hp = max(1e-6, (255 - hop_penalty) / 255)
    for _, _, d in g.edges(data=True):
        q = max(1e-6, (1.0 - float(d.get("loss") or 0.0)) ** 2)
        d["route_cost"] = -math.log(q * hp)
    return "route_cost"


def _node(sc: Scenario, g: nx.Graph, spec: str, where: str, rng: random.Random, problems: list) -> str:
    if spec == "most_central":
        return topo.most_central(g)
    if spec == "busiest_relay":
        # the most central node whose loss does not cut the mesh: its crash measures rerouting
        cut = set(nx.articulation_points(g))
        keep = g.subgraph(n for n in g.nodes if n not in cut)
        if keep.number_of_nodes() == 0:
            return topo.most_central(g)
        w = route_cost(g, sc.routing.hop_penalty)
        bc = topo.betweenness(g) if w is None else nx.betweenness_centrality(g, weight=w)
        names = list(g.nodes)
        return max((n for n in names if n not in cut), key=lambda n: (bc[n], -names.index(n)))
    if spec == "random":
        return rng.choice(list(g.nodes))
    if spec not in g:
        close = [n for n in g.nodes if str(n).startswith(spec[:2])][:5]
        problems.append(Problem(_fname(sc), sc.line_of(where), where, f"node {spec!r} is not in the topology"
                                + (f" (nodes look like {', '.join(map(str, close))})" if close else "")))
        return spec
    return spec


def _partition_links(g: nx.Graph, groups: list[list[str]]) -> tuple[tuple[tuple[str, str], ...],
                                                                     tuple[tuple[str, ...], ...]]:
    member = {}
    for gi, grp in enumerate(groups):
        for n in grp:
            member[n] = gi
    for n in g.nodes:
        member.setdefault(n, 0)
    cut = tuple(topo.link_key(a, b) for a, b in g.edges if member[a] != member[b])
    full = [[n for n in g.nodes if member[n] == gi] for gi in range(len(groups))]
    return cut, tuple(tuple(x) for x in full)


def resolve(sc: Scenario) -> World:
    """Scenario -> World; raises ScenarioError for references to things not in the mesh."""
    g, notes, problems = build_graph(sc)
    rng = random.Random(sc.seed * 1_000_003 + 17)
    faults: list[Fault] = []
    for i, f in enumerate(sc.faults):
        where = f"faults[{i}]"
        nodes: tuple[str, ...] = ()
        links: tuple[tuple[str, str], ...] = ()
        groups: tuple[tuple[str, ...], ...] = ()
        if f.node:
            nodes = (_node(sc, g, f.node, where + ".node", rng, problems),)
        if f.between:
            a = _node(sc, g, f.between[0], where + ".between[0]", rng, problems)
            b = _node(sc, g, f.between[1], where + ".between[1]", rng, problems)
            if a in g and b in g and not g.has_edge(a, b):
                problems.append(Problem(_fname(sc), sc.line_of(where + ".between"), where + ".between",
                                        f"no link {a}-{b} in the topology"))
            links = (topo.link_key(a, b),)
        if f.kind == "partition":
            if f.groups:
                for gi, grp in enumerate(f.groups):
                    for j, n in enumerate(grp):
                        _node(sc, g, n, f"{where}.groups[{gi}][{j}]", rng, problems)
                links, groups = _partition_links(g, f.groups)
            elif nodes:
                links = tuple(topo.link_key(nodes[0], nb) for nb in g[nodes[0]])
                groups = ((nodes[0],),)
        if f.kind == "heal" and not links:
            # heal every partition before it
            links = tuple(lk for pf in faults if pf.kind == "partition" for lk in pf.links)
        if f.at > sc.duration:
            problems.append(Problem(_fname(sc), sc.line_of(where + ".at"), where + ".at",
                                    f"fault at {f.at:g}s is after the end of the run ({sc.duration:g}s)"))
        faults.append(Fault(index=i, kind=f.kind, at_s=f.at, nodes=nodes, links=links, loss=f.loss,
                            rate_bps=f.rate, duration_s=f.duration, period_s=f.period, groups=groups))
    flows: list[Flow] = []
    crash_node = next((f.nodes[0] for f in faults if f.kind in ("node_crash", "blackhole") and f.nodes), None)
    via_specs = ("most_central", "busiest_relay")
    for i, tr in enumerate(sc.traffic):
        if tr.select in ("through", "through_all"):
            via = crash_node if tr.via in via_specs and crash_node else tr.via
            via = _node(sc, g, via, f"traffic[{i}].via", rng, problems)
            if via not in g:
                continue
            pairs = topo.pairs_through(g, via, tr.pairs, seed=sc.seed, weight=route_cost(g, sc.routing.hop_penalty),
                                       all_paths=tr.select == "through_all")
            if not pairs:
                problems.append(Problem(_fname(sc), sc.line_of(f"traffic[{i}].via"), f"traffic[{i}].via",
                                        f"no {'pair has every' if tr.select == 'through_all' else ''} shortest path "
                                        f"{'crossing' if tr.select == 'through_all' else 'crosses'} {via}; "
                                        "pick a more central node"))
        else:
            via = None
            pairs = topo.random_pairs(g, tr.pairs, seed=sc.seed)
        flows.append(Flow(pairs=pairs, rate=tr.rate, start=tr.start, size=tr.size, via=via))
    if problems:
        raise ScenarioError(problems)
    base_links = {topo.link_key(a, b): (d["loss"], d["rate_bps"]) for a, b, d in g.edges(data=True)}
    ops = expand(faults, sc.duration, base_links)
    return World(scenario=sc, graph=g, faults=faults, ops=ops, flows=flows, notes=notes)
