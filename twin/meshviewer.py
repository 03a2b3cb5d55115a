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
  and the link model of its type (:class:`LinkModel`, overridable per type from the scenario's
  ``topology.link_types``): ``loss`` is the model's, or by default ``1 - sqrt(tq)`` clipped to
  [0, 0.95] (batman-adv's TQ of a link is roughly the product of the delivery ratios of both
  directions, so each direction loses ``1 - sqrt(tq)``); ``delay_s`` 20 ms for VPN/tunnel links
  (internet uplinks), 2 ms for wifi, 1 ms otherwise; ``retries``: 802.11 unicast retries of a data
  frame on wifi (7, the default ``dot11ShortRetryLimit``), 0 elsewhere. OGMs are broadcasts and get
  no retry, so routing sees the raw loss while a probe crossing a wifi hop is lost only when all
  ``retries + 1`` attempts are; ``rate_bps`` None;
* node attribute ``label``: the node's hostname when the file has one.

Three facts of real snapshots are handled, each counted in the :class:`ImportReport`:

* **dead links**: a link whose mean TQ is below ``min_tq`` is dropped. The default, 0.1 (about
  25/255), sits in a gap of both shipped snapshots (Bielefeld: two links at 0.045-0.049, the next at
  0.126; Leipzig: the lowest at 0.133); a TQ of 0 is a link that was dead when the snapshot was
  taken, and a link under 0.1 delivers under a third of the OGMs each way;
* **placeholder TQs**: some gateways report one fixed value for every VPN uplink (0.01, say). A TQ
  value shared exactly by at least half of a type's links (5 or more) and below 0.5 is taken for a
  placeholder, not a measurement: those links get their type's ``loss`` (default 0) and are exempt
  from ``min_tq``;
* **impossible coordinates** (latitude outside ±90, longitude outside ±180, not a number) are a
  warning on that node, which then has no position; the file is not rejected.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import networkx as nx

from twin.topology import TopologyError, apply_link_defaults, components_report, link_key

MAX_LOSS = 0.95
EARTH_RADIUS_KM = 6371.0088
#: links under this mean TQ are dropped (see the module doc for how it was chosen)
DEFAULT_MIN_TQ = 0.1
#: a TQ value on at least this share of a type's links, below PLACEHOLDER_MAX_TQ, is a placeholder
PLACEHOLDER_SHARE = 0.5
PLACEHOLDER_MIN_LINKS = 5
PLACEHOLDER_MAX_TQ = 0.5
#: tunnel types that share the ``vpn`` link model unless the scenario names them itself
VPN_ALIASES = ("tunnel", "fastd", "l2tp", "wireguard")


@dataclass(frozen=True)
class LinkModel:
    """How the twin simulates links of one meshviewer type. ``loss=None``: from each link's TQ."""

    loss: float | None = None
    delay_s: float | None = None
    retries: int = 0


DEFAULT_MODELS = {
    "wifi": LinkModel(delay_s=0.002, retries=7),
    "vpn": LinkModel(delay_s=0.02),
    "other": LinkModel(delay_s=0.001),
}


def model_for(ltype: str, models: dict[str, LinkModel]) -> LinkModel:
    t = ltype.lower()
    if t in models:
        return models[t]
    if t in VPN_ALIASES and "vpn" in models:
        return models["vpn"]
    return models.get("other", LinkModel())


@dataclass
class ImportReport:
    """What a meshviewer import kept and dropped; every link of the file lands in exactly one bucket.

    ``links_total == links_kept + links_dangling + links_offline + links_type_filtered
    + links_self + links_merged + links_below_min_tq + links_dropped_small_components``.
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
    links_below_min_tq: int = 0
    min_tq: float = DEFAULT_MIN_TQ
    placeholder_tq: dict[str, dict] = field(default_factory=dict)   # type -> {"tq": v, "links": n}
    warnings: list[str] = field(default_factory=list)
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
            f"{self.links_dropped_small_components} in dropped components, {self.links_below_min_tq} below "
            f"min_tq {self.min_tq:g} (dead or nearly dead at snapshot time)",
            f"merged parallel links: {self.links_merged}",
            *[f"placeholder TQ {d['tq']:g} on {d['links']} {t} link(s): not a measurement, the {t} link model's "
              f"loss is used" for t, d in sorted(self.placeholder_tq.items())],
            *[f"warning: {w}" for w in self.warnings],
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


def _location(loc: Any, where: str, node_id: str, report: ImportReport) -> tuple[float | None, float | None]:
    """(lat, lon), or (None, None) with a warning on the node when the coordinate is impossible."""
    if loc is None:
        return None, None
    if not isinstance(loc, dict):
        report.warnings.append(f"{where} of node {node_id}: {loc!r} is not an object; no position")
        return None, None
    lat, lon = loc.get("latitude"), loc.get("longitude")
    ok = all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (lat, lon))
    if not ok or not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        report.warnings.append(f"{where} of node {node_id}: latitude {lat!r}, longitude {lon!r} is not a place on "
                               f"Earth; the node is kept without a position")
        return None, None
    return float(lat), float(lon)


def _placeholders(links: Iterable[dict]) -> dict[str, float]:
    """type -> TQ value that is a placeholder in that type (see the module doc)."""
    by: dict[str, list[float]] = {}
    for d in links:
        by.setdefault(d["type"], []).extend(d["_dirs"])
    out = {}
    for t, vals in by.items():
        if len(vals) < 2 * PLACEHOLDER_MIN_LINKS:
            continue
        v, n = Counter(vals).most_common(1)[0]
        if n >= PLACEHOLDER_SHARE * len(vals) and v < PLACEHOLDER_MAX_TQ:
            out[t] = v
    return out


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
    models: dict[str, LinkModel] | None = None,
    min_tq: float = DEFAULT_MIN_TQ,
) -> tuple[nx.Graph, ImportReport]:
    """Read a meshviewer JSON snapshot into a simulator graph plus an :class:`ImportReport`.

    Offline nodes are dropped unless ``include_offline``; links are classified in this order:
    unknown endpoint (dangling), offline endpoint, type not in ``link_types`` (``None`` = all
    types), self-loop, repeat of an already seen pair (merged, the best mean TQ wins). With
    ``component="largest"`` only the largest connected component is kept (the only part the
    simulator can reach from everywhere); ``"all"`` keeps every island, including isolated nodes.
    ``models`` (by type name) override :data:`DEFAULT_MODELS` field by field; links whose mean TQ
    is below ``min_tq`` are dropped after merging, except placeholder TQs (see the module doc).
    """
    if component not in ("largest", "all"):
        raise TopologyError(f"component must be 'largest' or 'all', got {component!r}")
    types = None if link_types is None else ({link_types} if isinstance(link_types, str) else set(link_types))
    name = str(path)
    rd = _Reader(name)
    doc = _load(path)
    report = ImportReport(path=name, min_tq=min_tq)
    mods = dict(DEFAULT_MODELS)
    for t, m in (models or {}).items():
        mods[t.lower()] = m

    nodes: dict[str, dict] = {}
    first_seen: dict[str, str] = {}
    for where, raw in rd.items(doc, "nodes"):
        node_id = rd.string(raw, "node_id", where)
        if node_id in first_seen:
            raise rd.error(f"{where}.node_id", f"{node_id!r} duplicates {first_seen[node_id]}")
        first_seen[node_id] = where
        online = rd.boolean(raw, "is_online", where)
        lat, lon = _location(raw.get("location"), f"{where}.location", node_id, report)
        nodes[node_id] = {
            "gateway": rd.boolean(raw, "is_gateway", where, default=False),
            "online": online,
            "lat": lat,
            "lon": lon,
        }
        host = raw.get("hostname")
        info = raw.get("nodeinfo")
        if not host and isinstance(info, dict):  # yanic's raw nodes.json nests it
            host = info.get("hostname")
        if isinstance(host, str) and host:
            nodes[node_id]["label"] = host
    report.nodes_total = len(nodes)
    report.nodes_online = sum(d["online"] for d in nodes.values())
    keep = {n for n, d in nodes.items() if d["online"] or include_offline}

    best: dict[tuple[str, str], dict] = {}
    links = rd.items(doc, "links")
    report.links_total = len(links)
    for where, raw in links:
        src, dst = rd.string(raw, "source", where), rd.string(raw, "target", where)
        src_tq = rd.number(raw, "source_tq", where, 0.0, 1.0)
        dst_tq = rd.number(raw, "target_tq", where, 0.0, 1.0)
        tq = 0.5 * (src_tq + dst_tq)
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
                best[key] = {"tq": tq, "type": ltype, "parallel": 1, "_dirs": (src_tq, dst_tq)}
            else:
                report.links_merged += 1
                prev["parallel"] += 1
                if tq > prev["tq"]:
                    prev.update(tq=tq, type=ltype, _dirs=(src_tq, dst_tq))

    placeholders = _placeholders(best.values())
    report.placeholder_tq = {t: {"tq": v, "links": sum(1 for d in best.values() if d["type"] == t
                                                      and v in d["_dirs"])} for t, v in placeholders.items()}
    g = nx.Graph()
    g.add_nodes_from((n, nodes[n]) for n in sorted(keep))
    for (a, b), d in sorted(best.items()):
        dirs = d.pop("_dirs")
        fake = placeholders.get(d["type"]) in dirs
        if d["tq"] < min_tq and not fake:
            report.links_below_min_tq += 1
            continue
        m = model_for(d["type"], mods)
        if m.loss is not None:
            loss = m.loss
        elif fake:
            loss = 0.0
        else:
            loss = min(MAX_LOSS, max(0.0, 1.0 - math.sqrt(d["tq"])))
        extra = {"delay_s": m.delay_s} if m.delay_s is not None else {}
        g.add_edge(a, b, **d, loss=loss, retries=int(m.retries), placeholder_tq=bool(fake), **extra)

    comps = list(nx.connected_components(g))
    report.components = len(comps)
    report.component_sizes = components_report(g)[:10]
    if component == "largest" and comps:
        main = _largest(comps)
        report.nodes_dropped_small_components = g.number_of_nodes() - len(main)
        before = g.number_of_edges()
        # built node by node: a subgraph view of under half the nodes iterates its filter *set*, whose
        # order changes with the process's hash seed
        h = nx.Graph()
        h.add_nodes_from((n, g.nodes[n]) for n in sorted(main))
        h.add_edges_from((a, b, d) for a, b, d in g.edges(data=True) if a in main and b in main)
        g = h
        report.links_dropped_small_components = before - g.number_of_edges()
    report.nodes_kept = g.number_of_nodes()
    report.links_kept = g.number_of_edges()

    _project(g)
    g.graph.update(kind="meshviewer", source=name, timestamp=doc.get("timestamp"), component=component)
    return apply_link_defaults(g), report
