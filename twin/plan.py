"""``twin plan``: what a scenario resolves to, before anything runs.

The resolved mesh (size, degree, hop diameter, link types with their loss and delay, the import
report of a real mesh), which node or links each fault hits (with the node's betweenness rank and
whether its loss splits the mesh), and every probe pair with its hop count and whether its shortest
path crosses a faulted node. The same :func:`twin.world.resolve` a run uses, so the plan is what
the run will do.
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np

from twin.world import World


def plan(world: World) -> dict:
    g = world.graph
    sc = world.scenario
    deg = np.array([d for _, d in g.degree()], float) if g.number_of_nodes() else np.zeros(1)
    comps = sorted((len(c) for c in nx.connected_components(g)), reverse=True)
    largest = g.subgraph(max(nx.connected_components(g), key=len)) if g.number_of_nodes() else g
    types: dict[str, dict] = {}
    for t, grp in _group_links(g).items():
        loss = np.array([d.get("loss") or 0.0 for d in grp], float)
        delay = np.array([d.get("delay_s") or 0.0 for d in grp], float)
        types[t] = {"links": len(grp), "loss_mean": round(float(loss.mean()), 4),
                    "loss_max": round(float(loss.max()), 4), "delay_ms_mean": round(1000 * float(delay.mean()), 3)}
    labels = nx.get_node_attributes(g, "label")
    topo = {
        "kind": sc.topology.kind, "nodes": g.number_of_nodes(), "links": g.number_of_edges(),
        "components": comps[:10], "degree": {"min": int(deg.min()), "mean": round(float(deg.mean()), 2),
                                             "max": int(deg.max())},
        "hop_diameter": nx.diameter(largest) if largest.number_of_nodes() > 1 else 0,
        "link_types": types, "notes": list(world.notes),
    }
    from twin.topology import betweenness
    from twin.world import route_cost

    w = route_cost(g, sc.routing.hop_penalty)   # imported meshes: paths as batman-adv routes them
    topo["paths_by"] = "routing cost (link TQ and hop penalty)" if w else "hop count"
    if g.number_of_nodes() <= 2:
        bc = {n: 0.0 for n in g}
    else:
        bc = betweenness(g) if w is None else nx.betweenness_centrality(g, weight=w)
    rank = {n: i + 1 for i, n in enumerate(sorted(g.nodes, key=lambda n: (-bc[n], str(n))))}
    cut = set(nx.articulation_points(g))
    faults = []
    for f in world.faults:
        faults.append({
            "index": f.index, "kind": f.kind, "at_s": f.at_s, "label": f.label(),
            "nodes": [{"node": n, "label": labels.get(n), "degree": g.degree(n), "betweenness_rank": rank.get(n),
                       "splits_mesh": n in cut} for n in f.nodes],
            "links": [list(lk) for lk in f.links[:20]], "links_total": len(f.links),
            "duration_s": f.duration_s,
        })
    hit = {n for f in world.faults for n in f.nodes if n in g}
    dist_hit = {x: nx.single_source_dijkstra_path_length(g, x, weight=w or (lambda *_: 1)) for x in hit}
    flows = []
    for i, fl in enumerate(world.flows):
        pairs = []
        for a, b in fl.pairs:
            try:
                path = nx.shortest_path(g, a, b, weight=w)
                hops = len(path) - 1
                cost = nx.path_weight(g, path, w) if w else hops
            except nx.NetworkXNoPath:
                hops = cost = None
            # a shortest path crosses x when the detour through x is no longer (as pairs_through picks them)
            via = hops is not None and any(a != x != b and a in d and b in d and math.isclose(d[a] + d[b], cost,
                                                                                             rel_tol=1e-9)
                                           for x, d in dist_hit.items())
            pairs.append({"src": a, "dst": b, "hops": hops, "via_fault": via})
        hops = [p["hops"] for p in pairs if p["hops"] is not None]
        flows.append({"flow": i, "rate_per_s": fl.rate, "start_s": fl.start, "via": fl.via, "pairs": pairs,
                      "hops": {"min": min(hops), "median": float(np.median(hops)), "max": max(hops)} if hops
                      else None,
                      "beyond_reach": sum(1 for h in hops if h > 32)})
    return {"scenario": sc.name, "seed": sc.seed, "duration_s": sc.duration, "routing": sc.routing.protocol,
            "topology": topo, "faults": faults, "flows": flows}


def _group_links(g: nx.Graph) -> dict[str, list[dict]]:
    by: dict[str, list[dict]] = {}
    for _, _, d in g.edges(data=True):
        by.setdefault(str(d.get("type", "link")), []).append(d)
    return dict(sorted(by.items()))


def lines(p: dict) -> list[str]:
    """The plan as plain text, one fact per line."""
    t = p["topology"]
    out = [f"{p['scenario']}: seed {p['seed']}, {p['duration_s']:g} s, {p['routing']}",
           f"topology {t['kind']}: {t['nodes']} nodes, {t['links']} links, components {t['components']}, "
           f"degree {t['degree']['min']}/{t['degree']['mean']}/{t['degree']['max']} (min/mean/max), "
           f"hop diameter {t['hop_diameter']}; faults and pairs placed by {t['paths_by']}"]
    for name, d in t["link_types"].items():
        out.append(f"  links {name}: {d['links']}, loss mean {d['loss_mean']:g} max {d['loss_max']:g}, "
                   f"delay mean {d['delay_ms_mean']:g} ms")
    out += [f"  {n}" for n in t["notes"]]
    for f in p["faults"]:
        what = ", ".join(f"{n['node']}{' (' + n['label'] + ')' if n['label'] else ''}: degree {n['degree']}, "
                         f"betweenness rank {n['betweenness_rank']}"
                         f"{', its loss splits the mesh' if n['splits_mesh'] else ''}" for n in f["nodes"])
        links = f"{f['links_total']} link(s)" if f["links_total"] else ""
        out.append(f"fault {f['index']} {f['label']}: {what or links}")
    for fl in p["flows"]:
        h = fl["hops"]
        hs = "" if h is None else f", hops {h['min']}-{h['max']} (median {h['median']:g})"
        via = f" through {fl['via']}" if fl["via"] else ""
        far = f", {fl['beyond_reach']} beyond 32 hops" if fl["beyond_reach"] else ""
        out.append(f"flow {fl['flow']}: {len(fl['pairs'])} pair(s){via} at {fl['rate_per_s']:g}/s from "
                   f"{fl['start_s']:g} s{hs}{far}")
        for q in fl["pairs"]:
            out.append(f"  {q['src']} -> {q['dst']}: {q['hops'] if q['hops'] is not None else 'unreachable'} hop(s)"
                       + ("  [a shortest path crosses a faulted node]" if q["via_fault"] else ""))
    return out
