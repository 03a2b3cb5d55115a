"""Import a real community batman-adv mesh from a meshviewer JSON snapshot (yanic / Freifunk).

Format: ``nodes[]`` with ``node_id``, ``is_online``, ``is_gateway`` and optional
``location{latitude, longitude}``; ``links[]`` with ``source``/``target`` (node_ids),
``source_tq``/``target_tq`` (0..1) and ``type`` (``wifi``, ``vpn``, ``other`` ...).

Snapshots are messy: links point at offline or unknown nodes, the same pair appears several
times and the mesh falls apart into islands. The importer keeps what the twin can simulate and
says in an :class:`ImportReport` what it dropped and why, so results on a real mesh can be traced
back to the snapshot.

Resulting graph (see :mod:`twin.topology` for the shared convention):

* node labels are the ``node_id`` strings, **sorted by node_id** (stable across snapshots, unlike
  file order); attributes ``gateway``, ``online``, ``lat``, ``lon`` (``None`` when unknown) and
  ``pos`` = (x, y) in km (equirectangular projection around the mean kept location), only for
  nodes with a location;
* per edge ``tq`` (mean of source_tq and target_tq), ``type``, ``parallel`` (links merged into it),
  ``loss`` = ``1 - sqrt(tq)`` clipped to [0, 0.95]: batman-adv's TQ of a link is roughly the
  product of the delivery ratios of both directions, so each direction loses ``1 - sqrt(tq)``;
  the clip keeps a nearly dead link from being a black hole the simulator cannot route around;
* ``delay_s`` 0.02 for VPN/tunnel links (internet uplinks), 0.002 for wifi, 0.001 otherwise;
  ``rate_bps`` None.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import networkx as nx

from twin.topology import TopologyError, apply_link_defaults, components_report, link_key

MAX_LOSS = 0.95
EARTH_RADIUS_KM = 6371.0088
#: Link delay by meshviewer type; types not listed get the topology default (1 ms).
TYPE_DELAY_S = {"vpn": 0.02, "tunnel": 0.02, "fastd": 0.02, "l2tp": 0.02, "wireguard": 0.02, "wifi": 0.002}


@dataclass
class ImportReport:
    """What a meshviewer import kept and dropped; every link of the file lands in exactly one bucket.

    ``links_total == links_kept + links_dangling + links_offline + links_type_filtered
    + links_self + links_merged + links_dropped_small_components``.
    """

    path: str
    nodes_total: int = 0
    nodes_online: int = 0
    nodes_kept: int = 0
    links_total: int = 0
    links_kept: int = 0
    links_dangling: int = 0
    links_offline: int = 0
    links_merged: int = 0
    links_type_filtered: int = 0
    links_self: int = 0
    links_dropped_small_components: int = 0
    components: int = 0
    component_sizes: list[int] = field(default_factory=list)
    nodes_dropped_small_components: int = 0

    def lines(self) -> list[str]:
        """Human summary, one fact per line, for CLI output and experiment logs."""
        sizes = ", ".join(map(str, self.component_sizes))
        return [
            f"meshviewer import {self.path}",
            f"nodes: {self.nodes_total} in file, {self.nodes_online} online, {self.nodes_kept} kept",
            f"links: {self.links_total} in file, {self.links_kept} kept",
            f"dropped links: {self.links_dangling} dangling (unknown node), {self.links_offline} offline "
            f"endpoint, {self.links_type_filtered} filtered by type, {self.links_self} self-loops, "
            f"{self.links_dropped_small_components} in dropped components",
            f"merged parallel links: {self.links_merged}",
            f"components before selection: {self.components} (largest: {sizes or '-'})",
            f"nodes dropped with small components: {self.nodes_dropped_small_components}",
        ]


class _Reader:
    """Field-path aware accessors so every error says ``file: nodes[3].node_id ...``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, where: str, problem: str) -> TopologyError:
        return TopologyError(f"{self.path}: {where} {problem}")

    def get(self, obj: dict, key: str, where: str) -> Any:
        try:
            return obj[key]
        except KeyError as err:
            raise self.error(f"{where}.{key}", "is missing") from err

    def string(self, obj: dict, key: str, where: str) -> str:
        value = self.get(obj, key, where)
        if not isinstance(value, str) or not value:
            raise self.error(f"{where}.{key}", f"{value!r} is not a non-empty string")
        return value

    def boolean(self, obj: dict, key: str, where: str, default: bool | None = None) -> bool:
        value = obj.get(key, default) if default is not None else self.get(obj, key, where)
        if not isinstance(value, bool):
            raise self.error(f"{where}.{key}", f"{value!r} is not true/false")
        return value

    def number(self, obj: dict, key: str, where: str, lo: float, hi: float) -> float:
        value = self.get(obj, key, where)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.error(f"{where}.{key}", f"{value!r} is not a finite number")
        if not lo <= value <= hi:
            raise self.error(f"{where}.{key}", f"{value!r} is outside {lo:g}..{hi:g}")
        return float(value)

    def items(self, doc: dict, key: str) -> list[tuple[str, dict]]:
        seq = self.get(doc, key, "top level")
        if not isinstance(seq, list):
            raise self.error(f"top level.{key}", f"is a {type(seq).__name__}, not a list")
        for i, item in enumerate(seq):
            if not isinstance(item, dict):
                raise self.error(f"{key}[{i}]", f"is a {type(item).__name__}, not an object")
        return [(f"{key}[{i}]", item) for i, item in enumerate(seq)]


def _load(path: str | Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as err:
        raise TopologyError(f"{path}: cannot read: {err}") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TopologyError(f"{path}: not valid JSON: {err}") from err
    if not isinstance(doc, dict):
        raise TopologyError(f"{path}: top level is a {type(doc).__name__}, not an object with nodes/links")
    return doc


def _largest(components: list[set[str]]) -> set[str]:
    """Largest component; equal sizes go to the one holding the smallest node_id (deterministic)."""
    return min(components, key=lambda c: (-len(c), min(c)))


def _project(g: nx.Graph) -> None:
    """lat/lon -> local plane in km (equirectangular around the mean location): fine at city scale."""
    located = [(d["lat"], d["lon"]) for _, d in g.nodes(data=True) if d["lat"] is not None]
    if not located:
        return
    lat0 = sum(p[0] for p in located) / len(located)
    lon0 = sum(p[1] for p in located) / len(located)
    k = math.pi / 180.0 * EARTH_RADIUS_KM
    for _, d in g.nodes(data=True):
        if d["lat"] is not None:
            d["pos"] = ((d["lon"] - lon0) * k * math.cos(math.radians(lat0)), (d["lat"] - lat0) * k)
    g.graph["origin_latlon"] = (lat0, lon0)


def from_meshviewer(
    path: str | Path,
    *,
    include_offline: bool = False,
    component: Literal["largest", "all"] = "largest",
    link_types: Iterable[str] | None = None,
) -> tuple[nx.Graph, ImportReport]:
    """Read a meshviewer JSON snapshot into a simulator graph plus an :class:`ImportReport`.

    Offline nodes are dropped unless ``include_offline``; links are classified in this order:
    unknown endpoint (dangling), offline endpoint, type not in ``link_types`` (``None`` = all
    types), self-loop, repeat of an already seen pair (merged, the best mean TQ wins). With
    ``component="largest"`` only the largest connected component is kept (the only part the
    simulator can reach from everywhere); ``"all"`` keeps every island, including isolated nodes.
    """
    if component not in ("largest", "all"):
        raise TopologyError(f"component must be 'largest' or 'all', got {component!r}")
    types = None if link_types is None else ({link_types} if isinstance(link_types, str) else set(link_types))
    name = str(path)
    rd = _Reader(name)
    doc = _load(path)
    report = ImportReport(path=name)

    nodes: dict[str, dict] = {}
    first_seen: dict[str, str] = {}
    for where, raw in rd.items(doc, "nodes"):
        node_id = rd.string(raw, "node_id", where)
        if node_id in first_seen:
            raise rd.error(f"{where}.node_id", f"{node_id!r} duplicates {first_seen[node_id]}")
        first_seen[node_id] = where
        online = rd.boolean(raw, "is_online", where)
        lat = lon = None
        loc = raw.get("location")
        if loc is not None:
            if not isinstance(loc, dict):
                raise rd.error(f"{where}.location", f"{loc!r} is not an object")
            lat = rd.number(loc, "latitude", f"{where}.location", -90.0, 90.0)
            lon = rd.number(loc, "longitude", f"{where}.location", -180.0, 180.0)
        nodes[node_id] = {
            "gateway": rd.boolean(raw, "is_gateway", where, default=False),
            "online": online,
            "lat": lat,
            "lon": lon,
        }
    report.nodes_total = len(nodes)
    report.nodes_online = sum(d["online"] for d in nodes.values())
    keep = {n for n, d in nodes.items() if d["online"] or include_offline}

    best: dict[tuple[str, str], dict] = {}
    links = rd.items(doc, "links")
    report.links_total = len(links)
    for where, raw in links:
        src, dst = rd.string(raw, "source", where), rd.string(raw, "target", where)
        src_tq = rd.number(raw, "source_tq", where, 0.0, 1.0)
        tq = 0.5 * (src_tq + rd.number(raw, "target_tq", where, 0.0, 1.0))
        ltype = raw.get("type", "other")
        if not isinstance(ltype, str):
            raise rd.error(f"{where}.type", f"{ltype!r} is not a string")
        if src not in nodes or dst not in nodes:
            report.links_dangling += 1
        elif src not in keep or dst not in keep:
            report.links_offline += 1
        elif types is not None and ltype not in types:
            report.links_type_filtered += 1
        elif src == dst:
            report.links_self += 1
        else:
            key = link_key(src, dst)
            prev = best.get(key)
            if prev is None:
                best[key] = {"tq": tq, "type": ltype, "parallel": 1}
            else:
                report.links_merged += 1
                prev["parallel"] += 1
                if tq > prev["tq"]:
                    prev.update(tq=tq, type=ltype)

    g = nx.Graph()
    g.add_nodes_from((n, nodes[n]) for n in sorted(keep))
    for (a, b), d in sorted(best.items()):
        loss = min(MAX_LOSS, max(0.0, 1.0 - math.sqrt(d["tq"])))
        delay = TYPE_DELAY_S.get(d["type"].lower())
        g.add_edge(a, b, **d, loss=loss, **({"delay_s": delay} if delay is not None else {}))

    comps = list(nx.connected_components(g))
    report.components = len(comps)
    report.component_sizes = components_report(g)[:10]
    if component == "largest" and comps:
        main = _largest(comps)
        report.nodes_dropped_small_components = g.number_of_nodes() - len(main)
        before = g.number_of_edges()
        g = nx.Graph(g.subgraph(sorted(main)))
        report.links_dropped_small_components = before - g.number_of_edges()
    report.nodes_kept = g.number_of_nodes()
    report.links_kept = g.number_of_edges()

    _project(g)
    g.graph.update(kind="meshviewer", source=name, timestamp=doc.get("timestamp"), component=component)
    return apply_link_defaults(g), report
