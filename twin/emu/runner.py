"""``run_emu``: one scenario on real routing daemons in network namespaces, in wall-clock time.

The same inputs as the SimPy twin (a graph, the op timeline from :func:`twin.faults.expand`,
probe pairs) and the same kind of output (one event table), so sim and emu results can be
compared row for row. The run is only as good as the host running it: two cores emulating a
mesh can starve the daemons, so host CPU is sampled and a run during which the CPU saturated
is marked invalid instead of being reported as a routing result.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import networkx as nx
import pandas as pd

from twin.emu.adapter import EmuAdapter
from twin.emu.capabilities import EmuError, probe_capabilities, require
from twin.emu.cleanup import EmuSession, RunState
from twin.emu.daemons import Babel, Batman, Yggdrasil
from twin.emu.impairments import Impairments
from twin.emu.network import EmuNetwork
from twin.emu.prober import LOSS_TIMEOUT_S, Prober
from twin.faults import Op

#: the event table schema (shared with the sim twin)
EVENT_COLUMNS: dict[str, str] = {"t_s": "float64", "kind": "object", "node": "object", "peer": "object",
                                 "outcome": "object", "latency_ms": "float64", "valid": "bool",
                                 "fault": "int64", "detail": "object"}
SATURATED_PCT = 95.0
SATURATED_FRACTION = 0.10


@dataclass
class EmuRun:
    """Result of one emulation run. ``events`` has exactly :data:`EVENT_COLUMNS`."""

    events: pd.DataFrame
    capabilities: dict
    load: dict
    convergence_s: float
    wall_s: float
    impairments: dict
    run_id: str = ""
    protocol: str = "babel"
    nodes: list[str] = field(default_factory=list)
    timings: dict = field(default_factory=dict)


class CpuSampler(threading.Thread):
    """Host CPU utilisation every ``period_s`` (psutil if installed, else /proc/stat)."""

    def __init__(self, period_s: float = 0.5) -> None:
        super().__init__(daemon=True, name="emu-cpu")
        self.period_s = period_s
        self.samples: list[tuple[float, float]] = []
        self._halt = threading.Event()
        try:
            import psutil

            psutil.cpu_percent(None)
            self._read: Callable[[], float] = lambda: float(psutil.cpu_percent(None))
        except ImportError:
            self._prev = self._stat()
            self._read = self._proc_stat

    @staticmethod
    def _stat() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return sum(v), idle

    def _proc_stat(self) -> float:
        total, idle = self._stat()
        dt, di = total - self._prev[0], idle - self._prev[1]
        self._prev = (total, idle)
        return 100.0 * (1 - di / dt) if dt > 0 else 0.0

    def run(self) -> None:
        while not self._halt.wait(self.period_s):
            self.samples.append((time.monotonic(), self._read()))

    def stop(self) -> None:
        self._halt.set()

    def summary(self, since_mono: float) -> dict:
        xs = [p for t, p in self.samples if t >= since_mono] or [p for _t, p in self.samples] or [0.0]
        frac = sum(p > SATURATED_PCT for p in xs) / len(xs)
        return {"cpu_max": max(xs), "cpu_mean": sum(xs) / len(xs), "samples": len(xs),
                "saturated_fraction": frac, "saturated": frac > SATURATED_FRACTION}


def _needed(graph: nx.Graph, ops: list[Op], protocol: str, caps: dict) -> set[str]:
    need = {"root", "netns", "veth", "mininet"}
    need |= {"babeld"} if protocol == "babel" else {"batman_adv", "batctl"}
    losses = [d.get("loss") or 0 for _a, _b, d in graph.edges(data=True)] + [o.loss or 0 for o in ops]
    rates = [d.get("rate_bps") for _a, _b, d in graph.edges(data=True)] + [o.rate_bps for o in ops]
    if any(x > 0 for x in losses) and not caps.get("netem"):
        need.add("nftables")
    if any(rates) and not caps.get("netem"):
        need.add("tbf")
    return need


def _validity(graph: nx.Graph, executed: list[tuple[float, Op]], rows: list[dict]) -> list[bool]:
    """Ground truth per probe: both endpoints alive and connected given the ops run so far
    (a link is cut while it is down or while its loss is 100 %)."""
    dead: set[str] = set()
    down: set[frozenset] = set()
    blackhole: set[frozenset] = set()
    cache: dict[tuple, dict[str, int]] = {}
    out = [False] * len(rows)
    i = 0
    for k in sorted(range(len(rows)), key=lambda k: rows[k]["t_s"]):
        while i < len(executed) and executed[i][0] <= rows[k]["t_s"]:
            op = executed[i][1]
            if op.kind in ("crash", "recover"):
                (dead.add if op.kind == "crash" else dead.discard)(op.node)
            elif op.kind in ("link_down", "link_up"):
                (down.add if op.kind == "link_down" else down.discard)(frozenset(op.link))
            elif op.kind == "link_set":
                (blackhole.add if (op.loss or 0) >= 1.0 else blackhole.discard)(frozenset(op.link))
            i += 1
        key = (frozenset(dead), frozenset(down | blackhole))
        if key not in cache:
            g = graph.subgraph([n for n in graph if n not in dead]).copy()
            g.remove_edges_from([tuple(x) for x in key[1]])
            cache[key] = {n: c for c, comp in enumerate(nx.connected_components(g)) for n in comp}
        comp = cache[key]
        s, d = rows[k]["src"], rows[k]["dst"]
        out[k] = s in comp and d in comp and comp[s] == comp[d]
    return out


def run_emu(graph: nx.Graph, ops: list[Op], pairs: list[tuple[str, str]], *, duration_s: float,
            probe_rate_hz: float = 10.0, seed: int = 0, protocol: str = "babel",
            hello_interval_s: float = 1.0, update_interval_s: float | None = None,
            loop_period_s: float | None = None, on_tick: Callable[[EmuAdapter], object] | None = None,
            progress: Callable[[float, float], object] | None = None, fallback_overlay: bool | None = None,
            converge_timeout_s: float = 60.0, route_poll_s: float = 0.5,
            babel_config: list[str] | None = None) -> EmuRun:
    """Build, converge, run ``ops`` and probes for ``duration_s`` wall seconds, always tear down.

    Times in ``events`` are seconds since the op timeline started (after initial convergence).
    ``on_tick(adapter)`` is called every ``loop_period_s`` (the MAPE-K loop); ``progress(t,
    duration)`` about once a second. ``fallback_overlay`` starts yggdrasil on every node (default:
    when installed and the mesh has at most 20 nodes). ``seed`` is recorded only: kernel and
    daemon randomness (nftables ``numgen``, babeld jitter) cannot be seeded. ``babel_config`` adds
    global babeld config lines (e.g. ``["smoothing-half-life 0"]``).

    ``convergence_s`` is the time from daemon start until every node has a (finite) route to every
    node of its component; the timeline then starts once no next hop changed for two hello
    intervals, or at most ``max(5 s, 5 hellos)`` later (``timings["settled_s"]``), so faults hit
    a steady mesh.
    """
    wall0 = time.monotonic()
    if protocol not in ("babel", "batman"):
        raise EmuError(f"unknown protocol {protocol!r}: 'babel' or 'batman'")
    caps = probe_capabilities()
    require(caps, _needed(graph, ops, protocol, caps), f"emu run (protocol {protocol})")
    names = {str(n) for n in graph.nodes}
    for s, d in pairs:
        if s not in names or d not in names or s == d:
            raise EmuError(f"probe pair {s}->{d} is not two distinct nodes of the graph")
    if fallback_overlay is None:
        fallback_overlay = bool(caps.get("yggdrasil") and caps.get("tun")) and len(names) <= 20
    if fallback_overlay:
        require(caps, {"yggdrasil", "yggdrasilctl", "tun"}, "the fallback overlay")
    ops = sorted(ops)
    events: list[dict] = []
    executed: list[tuple[float, Op]] = []
    timings: dict[str, float] = {}
    state = RunState.create()
    cpu = CpuSampler()
    convergence_s = math.nan
    with EmuSession(state) as session:
        net = EmuNetwork(nx.relabel_nodes(graph, {n: str(n) for n in graph.nodes}), state)
        session.on_teardown("network", lambda: timings.__setitem__("teardown_network_s", net.stop()))
        timings["build_s"] = net.build()
        routing: Babel | Batman = (Babel(net, hello_interval_s, update_interval_s, list(babel_config or []))
                                   if protocol == "babel"
                                   else Batman(net, orig_interval_ms=int(hello_interval_s * 1000)))
        session.on_teardown("routing", routing.stop_all)
        ygg = Yggdrasil(net) if fallback_overlay else None
        if ygg is not None:
            session.on_teardown("yggdrasil", ygg.stop_all)
        impair = Impairments(net, caps, [routing] + ([ygg] if ygg else []))
        impair.apply_initial()
        t = time.monotonic()
        routing.start_all(net.nodes)
        if ygg is not None:
            ygg.start_all(net.nodes)
        timings["daemons_start_s"] = time.monotonic() - t
        adapter = EmuAdapter(net, routing, impair, None, ygg, caps, t0=t, events=events)
        session.on_teardown("adapter", adapter.close)
        cpu.start()
        session.on_teardown("cpu", cpu.stop)
        comps = [set(c) for c in nx.connected_components(net.graph)]
        settle = 2 * hello_interval_s + 0.5
        settle_max = max(5.0, 5 * hello_interval_s)  # equal-cost paths may flip next hops forever
        last_change = time.monotonic()
        timings["settled_s"] = math.nan
        while True:
            n_events = len(events)
            ok = adapter.converged(comps)
            now = time.monotonic()
            if len(events) > n_events:
                last_change = now
            if ok and math.isnan(convergence_s):
                convergence_s = now - t
            if ok and (now - last_change >= settle or now - t - convergence_s >= settle_max):
                timings["settled_s"] = now - t
                break
            if now - t > converge_timeout_s:
                adapter.event("note", outcome="convergence_timeout", t_s=now - t,
                              detail=_missing_routes(adapter, comps))
                break
            time.sleep(0.1)
        prober = Prober(net, list(pairs), probe_rate_hz, fallback_addr=dict(ygg.address) if ygg else {})
        t0 = time.monotonic() + 0.3
        prober.start(t0, t0 + duration_s)
        session.on_teardown("prober", prober.stop)
        adapter.prober, adapter.t0 = prober, t0
        for e in events:  # route learning during convergence happened before the timeline
            e["t_s"] -= t0 - t
        adapter.event("note", outcome="converged" if not math.isnan(convergence_s) else "not_converged",
                      t_s=t - t0, detail=f"initial convergence {convergence_s:.2f}s, settled "
                                         f"{timings['settled_s']:.2f}s (timeout {converge_timeout_s}s), "
                                         f"build {timings['build_s']:.2f}s, seed {seed}")
        while time.monotonic() < t0:
            time.sleep(0.01)
        i = 0
        supervised = 0
        next_tick = loop_period_s if loop_period_s else math.inf
        next_poll, next_prog = route_poll_s, 0.0
        while True:
            now = adapter.now()
            if now >= duration_s:
                break
            while i < len(ops) and ops[i].at_s <= now:
                _execute(adapter, impair, ops[i], executed)
                i += 1
            if on_tick is not None and now >= next_tick:
                on_tick(adapter)
                next_tick = max(next_tick + loop_period_s, adapter.now())  # type: ignore[operator]
            if now >= next_poll:
                supervised += _supervise(adapter, impair)
                adapter.poll_routes()
                prober.poll()
                next_poll = max(next_poll + route_poll_s, adapter.now())
            if progress is not None and now >= next_prog:
                progress(now, duration_s)
                next_prog += 1.0
            nxt = min(next_tick, next_poll, duration_s, ops[i].at_s if i < len(ops) else math.inf)
            time.sleep(min(0.05, max(0.0, nxt - adapter.now())))
        while i < len(ops):  # ops scheduled exactly at the end
            _execute(adapter, impair, ops[i], executed)
            i += 1
        while adapter.now() < duration_s + LOSS_TIMEOUT_S:  # let the last probes arrive
            time.sleep(0.05)
        prober.stop()
        adapter.poll_routes()
        rows = prober.rows(t0, final=True)
        cpu.stop()
        load = cpu.summary(t0)
        impairments = dict(impair.honoured)
    valid = _validity(net.graph, executed, rows)
    for r, v in zip(rows, valid, strict=True):
        events.append({"t_s": r["t_s"], "kind": "probe", "node": r["src"], "peer": r["dst"],
                       "outcome": r["outcome"], "latency_ms": r["latency_ms"], "valid": v, "fault": -1,
                       "detail": r["detail"]})
    load["valid_run"] = not load["saturated"] and not math.isnan(convergence_s)
    note = {"t_s": duration_s, "kind": "note", "node": None, "peer": None, "latency_ms": math.nan,
            "fault": -1}
    if session.teardown_errors:
        events.append(note | {"outcome": "teardown_error", "valid": True,
                              "detail": "; ".join(session.teardown_errors)})
    if load["saturated"]:
        events.append(note | {"outcome": "invalid_run", "valid": False,
                              "detail": f"host CPU > {SATURATED_PCT}% in "
                                        f"{load['saturated_fraction']:.0%} of samples"})
    timings["teardown_s"] = session.teardown_s
    load["daemon_restarts"] = supervised
    return EmuRun(events=events_frame(events), capabilities=caps, load=load, convergence_s=convergence_s,
                  wall_s=time.monotonic() - wall0, impairments=impairments, run_id=state.run_id,
                  protocol=protocol, nodes=list(net.nodes), timings=timings)


def _missing_routes(adapter: EmuAdapter, comps: list[set[str]]) -> str:
    """Which routes are missing, and what the first node lacking some says (for the note)."""
    missing = {n: sorted(d for d in comp if d != n and d not in adapter.routes.get(n, {}))
               for comp in comps for n in comp}
    missing = {n: m for n, m in missing.items() if m}
    if not missing:
        return "routes complete but still changing"
    n = next(iter(missing))
    try:
        nbrs = [f"{x.get('if')} reach={x.get('reach')} cost={x.get('cost')}"
                for x in adapter.routing.dump(n)["neighbour"]] if hasattr(adapter.routing, "dump") else []
    except Exception as exc:  # noqa: BLE001 - diagnostics only
        nbrs = [f"dump failed: {exc!r}"]
    err = getattr(adapter.routing, "procs", {}).get(n)
    tail = err.err.read_text(errors="replace")[-400:] if err is not None and err.err.exists() else ""
    return (f"{len(missing)} node(s) lack routes, e.g. {n} -> {missing[n][:5]}; {n} neighbours {nbrs}; "
            f"stderr: {tail!r}")


def _supervise(adapter: EmuAdapter, impair: Impairments) -> int:
    """Restart daemons that died although no crash op asked for it (and say so in a note): a
    daemon killed from outside must not silently turn a routing result into a blackout."""
    restarted = 0
    for d in impair.daemons:
        for node in adapter.net.nodes:
            proc = getattr(d, "procs", {}).get(node)
            if node in impair.crashed or proc is None or proc.alive():
                continue
            why = proc.failure("exited unexpectedly")
            d.start(node, wait=False)
            restarted += 1
            adapter.event("note", node, None, "daemon_restarted", detail=str(why).replace("\n", " | ")[:500])
    return restarted


def _execute(adapter: EmuAdapter, impair: Impairments, op: Op, executed: list[tuple[float, Op]]) -> None:
    t = adapter.now()
    try:
        detail, outcome = impair.execute(op), op.kind
    except EmuError as exc:
        detail, outcome = f"FAILED: {exc}", f"{op.kind}_failed"
    executed.append((t, op))
    node = op.node if op.node is not None else (op.link[0] if op.link else None)
    peer = op.link[1] if op.link else None
    adapter.event("op", node, peer, outcome, t_s=t, fault=op.fault,
                  detail=f"scheduled {op.at_s:.3f}s{' repair' if op.repair else ''}: {detail}")


def events_frame(events: list[dict]) -> pd.DataFrame:
    """Events as a DataFrame with exactly :data:`EVENT_COLUMNS`, sorted by time."""
    df = pd.DataFrame(events, columns=list(EVENT_COLUMNS))
    df = df.astype(EVENT_COLUMNS)
    df["node"] = df["node"].astype(object).where(df["node"].notna(), None)
    df["peer"] = df["peer"].astype(object).where(df["peer"].notna(), None)
    df["outcome"] = df["outcome"].astype(object).where(df["outcome"].notna(), None)
    return df.sort_values("t_s", kind="stable").reset_index(drop=True)
