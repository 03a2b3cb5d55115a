"""SimPy processes of a ``sim`` run: fault timeline, probe flows, purge timer and loop ticks.

Each is a plain generator on one ``env`` (SimPy habit). The routing kernel is advanced lazily:
every process first brings the twin to ``env.now``, so faults, probes and loop decisions see the
routing state of that very instant, while OGM floods themselves run compiled in batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import pandas as pd
import simpy

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
    probe_lat: list[np.ndarray] = field(default_factory=list)
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
        c = self._comp
        return np.array([a in c and b in c and c[a] == c[b] for a, b in pairs], bool)


def run_sim(world: World, *, loop_tick: Callable | None = None, loop_period: float = 1.0,
            progress: Callable[[float], None] | None = None, twin: BatmanTwin | None = None,
            ) -> tuple[SimRecord, BatmanTwin]:
    """Run one scenario on the twin. ``loop_tick(env, twin)`` is a generator process factory."""
    sc = world.scenario
    twin = twin or BatmanTwin(world.graph, sc.routing, sc.seed)
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
            twin.advance(env.now)
            code, _, lat = twin.probe(src, dst, flow.size)
            rec.probe_t.append(np.full(len(src), env.now))
            rec.probe_flow.append(np.full(len(src), fi, np.int32))
            rec.probe_pair.append(pair_ids)
            rec.probe_code.append(code)
            rec.probe_lat.append(lat * 1000.0)
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
    rec.engine = {"engine": "batman_iv numba kernel", "nodes": twin.n, "directed_links": int(len(twin.st.nbr)),
                  "ogm_tx": int(twin.st.tx.sum()), "ogm_rx": int(twin.st.rx.sum())}
    return rec, twin


def events_frame(world: World, rec: SimRecord, twin: BatmanTwin) -> pd.DataFrame:
    """Every fault op, route change and probe outcome in one time-ordered table."""
    names = np.array(twin.names, dtype=object)
    parts = []
    if rec.probe_t:
        flow = np.concatenate(rec.probe_flow)
        pair = np.concatenate(rec.probe_pair)
        src = np.empty(len(flow), dtype=object)
        dst = np.empty(len(flow), dtype=object)
        for fi, fl in enumerate(world.flows):
            m = flow == fi
            s = np.array([a for a, _ in fl.pairs], dtype=object)
            d = np.array([b for _, b in fl.pairs], dtype=object)
            src[m] = s[pair[m]]
            dst[m] = d[pair[m]]
        code = np.concatenate(rec.probe_code)
        lat = np.concatenate(rec.probe_lat)
        parts.append(pd.DataFrame({
            "t_s": np.concatenate(rec.probe_t), "kind": "probe", "node": src, "peer": dst,
            "outcome": np.array(OUTCOMES, dtype=object)[code],
            "latency_ms": np.where(code == 0, lat, np.nan), "valid": np.concatenate(rec.probe_valid),
            "fault": -1, "detail": "", "flow": flow, "pair": pair}))
    if twin.route_log:
        log = np.concatenate(twin.route_log)
        old = np.where(log["old"] >= 0, names[np.maximum(log["old"], 0)], "-")
        new = np.where(log["new"] >= 0, names[np.maximum(log["new"], 0)], "-")
        parts.append(pd.DataFrame({
            "t_s": log["t"], "kind": "route_change", "node": names[log["node"]], "peer": names[log["orig"]],
            "outcome": "switch", "latency_ms": np.nan, "valid": True, "fault": -1,
            "detail": old.astype(object) + "->" + new.astype(object), "flow": -1, "pair": -1}))
    if rec.other:
        o = pd.DataFrame(rec.other)
        for col, default in (("latency_ms", np.nan), ("valid", True), ("fault", -1), ("detail", ""),
                             ("flow", -1), ("pair", -1), ("node", None), ("peer", None), ("outcome", None)):
            if col not in o:
                o[col] = default
        parts.append(o)
    ev = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    ev = ev.sort_values("t_s", kind="stable").reset_index(drop=True)
    ev["fault"] = ev["fault"].fillna(-1).astype("int64")
    ev["flow"] = ev["flow"].fillna(-1).astype("int32")
    ev["pair"] = ev["pair"].fillna(-1).astype("int32")
    ev["valid"] = ev["valid"].fillna(True).astype(bool)
    ev["latency_ms"] = ev["latency_ms"].astype("float64")
    for c in ("kind", "node", "peer", "outcome", "detail"):
        ev[c] = ev[c].astype("string")
    return ev
