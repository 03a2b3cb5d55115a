"""SimPy processes of a ``sim`` run: fault timeline, probe flows, purge timer and loop ticks.

Each is a plain generator on one ``env`` (SimPy habit). The routing kernel is advanced lazily:
every process that reads or changes the twin first brings it to ``env.now``, so faults and loop
decisions see the routing state of that very instant, while OGM floods themselves run compiled in
batches. Probes are handed to the twin with their time; it may walk them at its next advance, on
the routes of their own instant (``BatmanTwin.probe_into``), so the kernel need not stop ten times
a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import pandas as pd
import simpy

from twin.events import KINDS, category_order
from twin.faults import Op
from twin.sim.model import OUTCOMES, BatmanTwin
from twin.world import World


@dataclass
class SimRecord:
    """Raw columns of one run, turned into ``events.parquet`` by :mod:`twin.results`."""

    probe_t: list[np.ndarray] = field(default_factory=list)
    probe_flow: list[np.ndarray] = field(default_factory=list)
    probe_pair: list[np.ndarray] = field(default_factory=list)
    probe_code: list[np.ndarray] = field(default_factory=list)
    probe_lat: list[np.ndarray] = field(default_factory=list)  # seconds
    probe_valid: list[np.ndarray] = field(default_factory=list)
    other: list[dict] = field(default_factory=list)  # ops, actions, anomalies, notes
    wall_s: float = 0.0
    engine: dict = field(default_factory=dict)


class GroundTruth:
    """Which nodes are alive and which pairs are connected: for scoring only, never for the loop."""

    def __init__(self, graph: nx.Graph):
        self.g = graph.copy()
        self.dead: set[str] = set()
        self._comp: dict[str, int] = {}
        self.refresh()

    def refresh(self) -> None:
        h = self.g.subgraph(n for n in self.g.nodes if n not in self.dead)
        self._comp = {v: i for i, cc in enumerate(nx.connected_components(h)) for v in cc}
        self._valid_cache: dict[int, np.ndarray] = {}

    def apply(self, op: Op) -> None:
        if op.kind == "crash":
            self.dead.add(op.node)
        elif op.kind == "recover":
            self.dead.discard(op.node)
        elif op.kind == "link_down":
            self.g.remove_edge(*op.link) if self.g.has_edge(*op.link) else None
        elif op.kind == "link_up":
            self.g.add_edge(*op.link)
        else:
            return
        self.refresh()

    def valid(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        hit = self._valid_cache.get(id(pairs))
        if hit is None:  # only changes when an op changes the topology
            c = self._comp
            hit = self._valid_cache[id(pairs)] = np.array([a in c and b in c and c[a] == c[b] for a, b in pairs], bool)
        return hit


def make_twin(world: World):
    """The routing model the scenario asks for: batman-adv's B.A.T.M.A.N. IV or babeld's Babel."""
    sc = world.scenario
    if sc.routing.protocol == "babel":
        from twin.sim.babel import BabelTwin

        return BabelTwin(world.graph, sc.routing, sc.seed)
    return BatmanTwin(world.graph, sc.routing, sc.seed)


def run_sim(world: World, *, loop_tick: Callable | None = None, loop_period: float = 1.0,
            progress: Callable[[float], None] | None = None, twin=None,
            ) -> tuple[SimRecord, BatmanTwin]:
    """Run one scenario on the twin. ``loop_tick(env, twin)`` is a generator process factory."""
    sc = world.scenario
    twin = twin or make_twin(world)
    env = simpy.Environment()
    rec = SimRecord()
    truth = GroundTruth(world.graph)
    idx = twin.index

    def faults():
        for op in world.ops:
            if op.at_s > env.now:
                yield env.timeout(op.at_s - env.now)
            twin.advance(env.now)
            twin.apply_op(op)
            truth.apply(op)
            rec.other.append({"t_s": env.now, "kind": "op", "node": op.node,
                              "peer": "-".join(op.link) if op.link else None, "outcome": op.kind,
                              "fault": op.fault, "detail": "repair" if op.repair else "fault"})

    def prober(fi: int):
        flow = world.flows[fi]
        src = np.array([idx[a] for a, _ in flow.pairs], np.int32)
        dst = np.array([idx[b] for _, b in flow.pairs], np.int32)
        pair_ids = np.arange(len(flow.pairs), dtype=np.int32)
        period = 1.0 / flow.rate
        k = 0
        while True:
            t = flow.start + k * period
            if t >= sc.duration:
                return
            if t > env.now:
                yield env.timeout(t - env.now)
            # filled now or, deferred by the twin, at its next advance (before anything reads them)
            code, lat = np.empty(len(src), np.int32), np.empty(len(src))
            twin.probe_into(env.now, src, dst, flow.size, code, lat)
            rec.probe_t.append(np.full(len(src), env.now))
            rec.probe_flow.append(np.full(len(src), fi, np.int32))
            rec.probe_pair.append(pair_ids)
            rec.probe_code.append(code)
            rec.probe_lat.append(lat)
            rec.probe_valid.append(truth.valid(flow.pairs) & (twin.st.alive[src] == 1))
            k += 1

    def purger():
        while True:
            yield env.timeout(2.0)
            twin.advance(env.now)
            twin.purge()

    def ticker():
        step = max(1.0, sc.duration / 200)
        while True:
            yield env.timeout(step)
            twin.advance(env.now)
            if progress:
                progress(env.now)

    env.process(faults())
    for fi in range(len(world.flows)):
        env.process(prober(fi))
    env.process(purger())
    env.process(ticker())
    if loop_tick is not None:
        env.process(loop_tick(env, twin, rec))
    t0 = time.perf_counter()
    env.run(until=sc.duration)
    twin.advance(sc.duration)
    rec.wall_s = time.perf_counter() - t0
    rec.engine = twin.engine_info()
    return rec, twin


class _Vocab:
    """String columns as integer codes into one shared vocabulary: millions of route changes stay
    small in memory and in Parquet (dictionary-encoded), and categories agree across row kinds."""

    def __init__(self):
        self.words: list[str] = []
        self.index: dict[str, int] = {}

    def code(self, w) -> int:
        if w is None or (isinstance(w, float) and np.isnan(w)):
            return -1
        w = str(w)
        c = self.index.get(w)
        if c is None:
            c = self.index[w] = len(self.words)
            self.words.append(w)
        return c

    def codes(self, words) -> np.ndarray:
        return np.array([self.code(w) for w in words], np.int32)


#: events columns stored as categories of the run's vocabulary
_CAT = ("kind", "node", "peer", "outcome", "detail")


def events_frame(world: World, rec: SimRecord, twin: BatmanTwin) -> pd.DataFrame:
    """Every fault op, route change, probe outcome and loop record in one time-ordered table.

    Route changes: ``node`` switched its next hop toward ``peer``; ``detail`` is ``old->new``
    (``-`` for none).
    """
    voc = _Vocab()
    name_code = voc.codes(twin.names)
    # Each column is a list of pieces, one per add(): an array, or a scalar that stands for a piece of
    # `sizes[i]` equal values. Scalars are only spread out as the column is assembled, into the one
    # array it becomes: the route changes' constant columns (kind, outcome, latency, ...) held as full
    # arrays were ~35 bytes per change at once, a third of a 1000-node run's peak memory.
    cols: dict[str, list] = {k: [] for k in ("t_s", "kind", "node", "peer", "outcome", "latency_ms", "valid", "fault",
                                              "detail", "flow", "pair")}
    sizes: list[int] = []

    def add(t, kind, node, peer, outcome, lat, valid, fault, detail, flow, pair):
        sizes.append(len(t))
        cols["t_s"].append(np.asarray(t, np.float64))
        for k, v in (("kind", kind), ("node", node), ("peer", peer), ("outcome", outcome), ("latency_ms", lat),
                     ("valid", valid), ("fault", fault), ("detail", detail), ("flow", flow), ("pair", pair)):
            cols[k].append(v)

    if rec.probe_t:
        flow = np.concatenate(rec.probe_flow)
        pair = np.concatenate(rec.probe_pair)
        src = np.zeros(len(flow), np.int32)
        dst = np.zeros(len(flow), np.int32)
        for fi, fl in enumerate(world.flows):
            m = flow == fi
            s_ = np.array([twin.index[a] for a, _ in fl.pairs], np.int32)
            d_ = np.array([twin.index[b] for _, b in fl.pairs], np.int32)
            src[m] = name_code[s_[pair[m]]]
            dst[m] = name_code[d_[pair[m]]]
        code = np.concatenate(rec.probe_code)
        lat = np.concatenate(rec.probe_lat) * 1000.0  # ms
        out_codes = voc.codes(OUTCOMES)
        add(np.concatenate(rec.probe_t), voc.code("probe"), src, dst, out_codes[code],
            np.where(code == 0, lat, np.nan), np.concatenate(rec.probe_valid), -1, voc.code(""), flow, pair)
    if twin.route_log:
        log = np.concatenate(twin.route_log)
        # the twin's log is consumed here: with its copy above it was the largest thing a run holds
        twin.route_log.clear()
        n = twin.n
        uniq, inv = _pair_codes(log["old"], log["new"], n)
        label = lambda i: twin.names[i] if i >= 0 else "-"  # noqa: E731
        det = voc.codes([f"{label(int(k // (n + 1)) - 1)}->{label(int(k % (n + 1)) - 1)}" for k in uniq])
        t_rc = log["t"].copy()
        node_rc, peer_rc = name_code[log["node"]], name_code[log["orig"]]
        del log
        add(t_rc, voc.code("route_change"), node_rc, peer_rc, voc.code("switch"), np.nan, True, -1, det[inv], -1, -1)
        del t_rc, node_rc, peer_rc, inv
    if rec.other:
        o = rec.other
        g = lambda k, d: [r.get(k, d) for r in o]  # noqa: E731
        add(np.array(g("t_s", 0.0), float), voc.codes(g("kind", None)), voc.codes(g("node", None)),
            voc.codes(g("peer", None)), voc.codes(g("outcome", None)),
            np.array([np.nan if v is None else v for v in g("latency_ms", np.nan)], float),
            np.array(g("valid", True), bool), np.array(g("fault", -1), np.int64), voc.codes(g("detail", "")),
            np.array(g("flow", -1), np.int32), np.array(g("pair", -1), np.int32))
    if not cols["t_s"]:
        return pd.DataFrame({k: [] for k in cols})
    # Column by column, each column's pieces freed as soon as it is built, and no consolidating copy
    # (copy=False): a 1000-node run logs ~5 million route changes, and building the table all at once
    # held three copies of it, most of the run's peak memory.
    t = np.concatenate(cols.pop("t_s"))
    order = np.argsort(t, kind="stable")
    data = {"t_s": t[order]}
    del t
    dtypes = {"latency_ms": np.float64, "valid": bool, "fault": np.int64, "flow": np.int32, "pair": np.int32}
    for k in ("kind", "node", "peer", "outcome", "latency_ms", "valid", "fault", "detail", "flow", "pair"):
        col = _assemble(cols.pop(k), sizes, dtypes.get(k, np.int32))
        data[k] = _categorical(col[order], voc.words, KINDS if k == "kind" else ()) if k in _CAT else col[order]
        del col
    return pd.DataFrame(data, copy=False)


def _categorical(codes: np.ndarray, words: list[str], fixed: tuple[str, ...]) -> pd.Categorical:
    """Vocabulary codes (-1: none) as a categorical in the events schema's form (twin/events.py: the
    words present, ``fixed`` first), so that conform() keeps it as it is instead of recoding it."""
    used = np.bincount(codes.astype(np.int64) + 1, minlength=len(words) + 1)[1:] > 0
    order = category_order([w for w, u in zip(words, used, strict=True) if u], fixed)
    dt = np.int8 if len(order) < 127 else np.int16 if len(order) < 32767 else np.int32
    remap = np.full(len(words) + 1, -1, dt)
    pos = {w: i for i, w in enumerate(order)}
    for i, w in enumerate(words):
        if w in pos:
            remap[i + 1] = pos[w]
    return pd.Categorical.from_codes(remap[codes + 1], categories=pd.Index(order))


def _assemble(pieces: list, sizes: list[int], dtype) -> np.ndarray:
    """One column from its pieces (arrays, or scalars standing for sizes[i] equal values)."""
    out = np.empty(sum(sizes), dtype)
    pos = 0
    for v, m in zip(pieces, sizes, strict=True):
        out[pos:pos + m] = v
        pos += m
    return out


def _pair_codes(old: np.ndarray, new: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (old, new) next-hop pairs of the route changes (as keys (old+1)*(n+1) + new+1,
    ascending) and each change's index among them. Through a table of every possible key when that
    is small (a few MB up to ~4000 nodes): np.unique's sort held three 8-byte copies per change."""
    span = (n + 1) * (n + 1)
    kt = np.int32 if span < 2**31 else np.int64
    key = (old.astype(kt) + 1) * (n + 1) + (new.astype(kt) + 1)
    if span > 1 << 24:
        uniq, inv = np.unique(key, return_inverse=True)
        return uniq, inv
    seen = np.zeros(span, bool)
    seen[key] = True
    uniq = np.flatnonzero(seen)
    index = np.cumsum(seen, dtype=np.int32) - 1
    return uniq, index[key]

