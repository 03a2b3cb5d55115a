"""``run_uml``: one scenario on real batman-adv kernels (UML nodes), in wall-clock time.

Same inputs as the twin (graph, op timeline, probe pairs) and the same output shape as the
namespace emulation (:class:`twin.emu.runner.EmuRun`), so one analysis scores all modes. The
run: medium and management network, nodes booted in waves (readiness detected), initial
convergence (every node has a best route to every node of its component), a settle period,
then the timeline: ops executed on the host clock, every node polled over netlink, probes
collected from the guests. A run during which the host CPU saturated is marked invalid.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx

from twin.emu.capabilities import EmuError
from twin.emu.cleanup import EmuSession, RunState
from twin.emu.runner import CpuSampler, EmuRun, _validity, events_frame
from twin.emu.uml import filters
from twin.emu.uml.adapter import UmlAdapter
from twin.emu.uml.kernel import find_kernel
from twin.emu.uml.lab import BootError, UmlLab, bat_ip, bat_mac, hardif_mac
from twin.emu.uml.medium import Medium, MediumError
from twin.emu.uml.probes import LOSS_TIMEOUT_S, ProbeBook
from twin.faults import Op
from twin.topology import DEFAULT_DELAY_S


@dataclass
class UmlOptions:
    link_model: str = "radio"
    orig_interval_ms: int = 1000
    hop_penalty: int = 30
    aggregation: bool = True
    boot_wave: int = 6
    boot_timeout_s: float = 90.0
    converge_timeout_s: float = 120.0
    poll_s: float = 1.0
    log_dir: Path | None = None
    extra: dict = field(default_factory=dict)


def require_uml() -> dict:
    """What the UML backend needs on this host, probed; raises EmuError naming what is missing."""
    import os
    import shutil

    caps = {"root": os.geteuid() == 0, "tun": os.path.exists("/dev/net/tun"), "nft": bool(shutil.which("nft")),
            "ip": bool(shutil.which("ip")), "batctl": bool(shutil.which("batctl"))}
    k = find_kernel() if caps["root"] else None
    caps["uml_kernel"] = k.release if k else None
    caps["uml_batman_adv"] = bool(k and k.has_module("batman-adv"))
    missing = [n for n, v in caps.items() if not v]
    if missing:
        raise EmuError("UML nodes need " + ", ".join(missing) + " (run as root; `./setup.sh` installs the "
                       "Debian packages user-mode-linux, kmod, batctl, nftables)")
    return caps


def kernel_versions(lab: UmlLab, node: str) -> dict:
    """The UML kernel release and batman-adv version, as the running node reports them."""
    c = lab.client(node)
    info = c.batadv().mesh("bat0")
    return {"uml_kernel": c.exec(["uname", "-r"]).strip(), "batman_adv": info.version, "algo": info.algo,
            "batctl": c.exec(["batctl", "-v"]).strip()}


def run_uml(graph: nx.Graph, ops: list[Op], pairs: list[tuple[str, str]], *, duration_s: float,
            probe_rate_hz: float = 10.0, seed: int = 0, opts: UmlOptions | None = None,
            loop_period_s: float | None = None, on_tick: Callable[[UmlAdapter], object] | None = None,
            progress: Callable[[float, float], object] | None = None) -> EmuRun:
    opts = opts or UmlOptions()
    wall0 = time.monotonic()
    caps = require_uml()
    g = nx.relabel_nodes(graph, {n: str(n) for n in graph.nodes})
    names = [str(n) for n in graph.nodes]
    for s, d in pairs:
        if s not in g or d not in g or s == d:
            raise EmuError(f"probe pair {s}->{d} is not two distinct nodes of the graph")
    ops = sorted(ops)
    events: list[dict] = []
    executed: list[tuple[float, Op]] = []
    timings: dict[str, float] = {}
    state = RunState.create()
    cpu = CpuSampler()
    mem = MemSampler()
    convergence_s = math.nan
    extra_mods: tuple[str, ...] = ()  # drop rules load their tc modules on demand (twin.emu.uml.filters)
    # console logs outlive the run's state directory (removed at teardown); run.py copies them
    log_dir = opts.log_dir or Path(tempfile.mkdtemp(prefix=f"meshtwin-{state.prefix}-consoles-"))
    with EmuSession(state) as session:
        medium = Medium(state.prefix, names, [(str(a), str(b)) for a, b in g.edges], model=opts.link_model)
        session.on_teardown("medium", medium.close)
        lab = UmlLab(find_kernel(), medium, names, state.prefix, state.dir / "uml", log_dir,
                     orig_interval_ms=opts.orig_interval_ms, hop_penalty=opts.hop_penalty,
                     aggregation=opts.aggregation, extra_mods=extra_mods)
        session.on_teardown("uml nodes", lab.close)
        state.save(backend="uml", cgroup=str(lab.cgroup) if lab.cgroup else None)
        try:
            t = time.monotonic()
            medium.create()
            for a, b, d in g.edges(data=True):
                if d.get("loss"):
                    medium.set_link(str(a), str(b), up=True, loss=float(d["loss"]))
            lab.create_mgmt()
            timings["medium_s"] = time.monotonic() - t
            cpu.start()
            mem.start()
            session.on_teardown("cpu", cpu.stop)
            session.on_teardown("mem", mem.stop)
            t_boot = time.monotonic()
            timings["boot_s"] = lab.boot_all(wave=opts.boot_wave, timeout_s=opts.boot_timeout_s)
        except (BootError, MediumError) as err:
            raise EmuError(str(err)) from err
        versions = kernel_versions(lab, names[0])
        adapter = UmlAdapter(lab, t0=t_boot, events=events)
        session.on_teardown("adapter", adapter.pool.shutdown)
        comps = [set(c) for c in nx.connected_components(g)]
        settle = 3 * opts.orig_interval_ms / 1000
        last_change, n_ev = time.monotonic(), 0
        while True:
            ok = adapter.converged(comps)
            now = time.monotonic()
            if len(events) > n_ev:
                last_change, n_ev = now, len(events)
            if ok and math.isnan(convergence_s):
                convergence_s = now - t_boot
            if ok and (now - last_change >= settle or now - t_boot - convergence_s >= 4 * settle):
                timings["settled_s"] = now - t_boot
                break
            if now - t_boot > opts.converge_timeout_s:
                adapter.event("note", outcome="convergence_timeout", t_s=now - t_boot,
                              detail=f"a node lacked a route in its component after {opts.converge_timeout_s}s")
                timings["settled_s"] = math.nan
                break
            time.sleep(0.5)
        t0 = time.monotonic() + 0.5
        book = ProbeBook(pairs, t0)
        adapter.probes = book
        flows_of: dict[str, list[dict]] = {}
        index = {n: i for i, n in enumerate(names)}
        for k, (s, d) in enumerate(pairs):
            flows_of.setdefault(s, []).append({"id": k, "dst": bat_ip(index[d]), "rate": probe_rate_hz,
                                               "phase": (k / max(1, len(pairs))) / probe_rate_hz})

        def start_probes(node: str) -> None:
            c = lab.client(node)
            off = c.sync_clock()
            start = max(t0, time.monotonic() + 0.05)
            epoch = lab.nodes[node].boots
            c.call("probes", flows=[f | {"epoch": epoch} for f in flows_of.get(node, [])], start_mono=start - off,
                   end_mono=t0 + duration_s - off)

        for node in flows_of:
            start_probes(node)
        for e in events:
            e["t_s"] -= t0 - t_boot
        adapter.t0 = t0
        adapter.event("note", outcome="converged" if not math.isnan(convergence_s) else "not_converged",
                      t_s=t_boot - t0, detail=f"UML {versions['uml_kernel']}, batman-adv {versions['batman_adv']}: "
                      f"boot {timings['boot_s']:.1f}s, converged {convergence_s:.1f}s after the first boot, "
                      f"link model {opts.link_model}, seed {seed}")
        while time.monotonic() < t0:
            time.sleep(0.01)
        booting: dict[str, threading.Thread] = {}

        def recover(node: str) -> None:
            try:
                lab.start(node)
                lab.wait_ready([node], opts.boot_timeout_s)
                if node in flows_of:
                    start_probes(node)
                adapter.event("note", node, None, "node_booted", detail=f"ready after {lab.nodes[node].ready_s:.1f}s")
            except Exception as exc:  # noqa: BLE001 - reported in the run, never kills it
                adapter.event("note", node, None, "boot_failed", detail=str(exc)[:500])

        def drain() -> None:
            def one(node: str):
                th = booting.get(node)  # set by the fault thread: one lookup, no iteration
                if node in adapter.crashed or not lab.alive(node) or (th is not None and th.is_alive()):
                    return None
                try:
                    c = lab.client(node)
                    c.sync_clock(rounds=1)  # keeps the shortest-round-trip estimate seen so far
                    return node, lab.nodes[node].boots, c.offset_s, c.call("results")
                except Exception:  # noqa: BLE001 - a silent node is what the loop must see
                    return None
            for res in adapter.pool.map(one, names):
                if res is not None and res[2] is not None:
                    book.add(*res)

        # faults on their own thread, on time: a poll of 50 guests on a busy host can take seconds,
        # and a crash executed late while the analysis dates it on schedule would show a healthy
        # mesh right after "the crash" (MTTR 0 was seen that way)
        halt, flush = threading.Event(), threading.Event()  # teardown; the run's end (remaining ops now)
        late: list[float] = []

        def fault_thread() -> None:
            for op in ops:
                while not halt.is_set() and not flush.is_set() and adapter.now() < op.at_s:
                    halt.wait(min(0.01, max(0.0, op.at_s - adapter.now())))
                if halt.is_set():
                    return
                if adapter.now() <= duration_s:
                    late.append(adapter.now() - op.at_s)
                _execute(adapter, lab, medium, op, executed, booting, recover)

        ft = threading.Thread(target=fault_thread, name="uml-faults", daemon=True)
        session.on_teardown("faults", halt.set)
        ft.start()
        next_tick = loop_period_s if loop_period_s else math.inf
        next_poll, next_prog = 0.0, 0.0
        while True:
            now = adapter.now()
            if now >= duration_s:
                break
            if on_tick is not None and now >= next_tick:
                drain()
                on_tick(adapter)
                next_tick = max(next_tick + loop_period_s, adapter.now())  # type: ignore[operator]
            if now >= next_poll:
                drain()
                adapter.poll(routes_only=on_tick is None)  # without a loop only routes are used
                next_poll = max(next_poll + opts.poll_s, adapter.now())
            if progress is not None and now >= next_prog:
                progress(now, duration_s)
                next_prog += 1.0
            nxt = min(next_tick, next_poll, duration_s)
            time.sleep(min(0.05, max(0.0, nxt - adapter.now())))
        flush.set()  # ops scheduled after the end (repairs) run now, as the twin's do
        ft.join()
        timings["op_late_max_s"] = round(max(late), 4) if late else 0.0
        if late and max(late) > 0.25:  # MTTR is dated from the scheduled time: say when that was off
            adapter.event("note", outcome="op_late", t_s=duration_s,
                          detail=f"a fault op ran {max(late):.2f}s after its scheduled time (host busy)")
        while adapter.now() < duration_s + LOSS_TIMEOUT_S + 0.5:
            time.sleep(0.05)
        drain()
        adapter.poll()
        rows = book.rows(final=True)
        cpu.stop()
        load = cpu.summary(t0)
        load["host_mem_growth_mb"] = mem.stop()
        load["peak_host_mem_mb"] = lab.peak_mem_mb()
        for th in booting.values():
            th.join(timeout=opts.boot_timeout_s)
    valid = _validity(g, executed, rows)
    for r, v in zip(rows, valid, strict=True):
        events.append({"t_s": r["t_s"], "kind": "probe", "node": r["src"], "peer": r["dst"], "outcome": r["outcome"],
                       "latency_ms": r["latency_ms"], "valid": v, "fault": -1, "detail": r["detail"]})
    load["valid_run"] = not load["saturated"] and not math.isnan(convergence_s)
    note = {"t_s": duration_s, "kind": "note", "node": None, "peer": None, "latency_ms": math.nan, "fault": -1}
    if session.teardown_errors:
        events.append(note | {"outcome": "teardown_error", "valid": True, "detail": "; ".join(session.teardown_errors)})
    if load["saturated"]:
        events.append(note | {"outcome": "invalid_run", "valid": False,
                              "detail": f"host CPU saturated in {load['saturated_fraction']:.0%} of samples"})
    timings["teardown_s"] = session.teardown_s
    caps = caps | versions | {"link_model": opts.link_model, "backend": "uml", "telemetry": "batadv generic netlink",
                              "telemetry_fallback": dict(adapter.fallback)}
    run = EmuRun(events=events_frame(events), capabilities=caps, load=load, convergence_s=convergence_s,
                 wall_s=time.monotonic() - wall0, impairments=_impairments(g),
                 run_id=state.run_id, protocol="batman", nodes=names, timings=timings)
    run.artifacts = {f"consoles/{p.name}": p for p in sorted(log_dir.glob("*.console.log"))}  # type: ignore[attr-defined]
    return run


def _impairments(g: nx.Graph) -> dict:
    """What of each link's properties the kernel lab reproduces, said plainly in run.json: loss is
    per directed link in the medium; delay and rate are not emulated per link (frames cross the
    host bridge in well under a millisecond)."""
    out = {"loss": "nftables bridge numgen (per directed link)"}
    slow = sum(1 for _, _, d in g.edges(data=True) if float(d.get("delay_s") or 0.0) > DEFAULT_DELAY_S)
    rated = sum(1 for _, _, d in g.edges(data=True) if d.get("rate_bps"))
    if slow:
        out["delay"] = f"NOT applied on {slow} link(s) with delay above {DEFAULT_DELAY_S * 1e3:g} ms"
    if rated:
        out["rate"] = f"NOT applied on {rated} rate-limited link(s)"
    return out


class MemSampler(threading.Thread):
    """Host memory growth since start (MemTotal - MemAvailable above the starting level): counts
    every tenant of the host, so it is reported beside the lab's own cgroup figure, not instead."""

    def __init__(self, period_s: float = 0.5) -> None:
        super().__init__(daemon=True, name="emu-mem")
        self.period_s = period_s
        self._halt = threading.Event()
        self.base_mb = self.used_mb()
        self.peak_mb = self.base_mb

    @staticmethod
    def used_mb() -> float:
        info = {}
        with open("/proc/meminfo") as f:
            for line in f:
                k, v = line.split(":", 1)
                info[k] = int(v.split()[0])
        return (info["MemTotal"] - info["MemAvailable"]) / 1024

    def run(self) -> None:
        while not self._halt.wait(self.period_s):
            self.peak_mb = max(self.peak_mb, self.used_mb())

    def stop(self) -> float:
        self._halt.set()
        return round(self.peak_mb - self.base_mb, 1)


def _execute(adapter: UmlAdapter, lab: UmlLab, medium: Medium, op: Op, executed: list, booting: dict,
             recover: Callable[[str], None]) -> None:
    t = adapter.now()
    try:
        if op.kind == "crash":
            adapter.crashed.add(op.node)
            lab.kill(op.node)
            detail = "SIGKILL of the node's UML processes (power loss)"
        elif op.kind == "recover":
            adapter.crashed.discard(op.node)
            th = threading.Thread(target=recover, args=(op.node,), daemon=True)
            booting[op.node] = th
            th.start()
            detail = "fresh boot started"
        elif op.kind in ("link_down", "link_up"):
            a, b = op.link
            base = medium.state.get(frozenset((a, b)), (True, 0.0))[1]
            detail = medium.set_link(a, b, up=op.kind == "link_up", loss=base)
        elif op.kind == "link_set":
            a, b = op.link
            detail = medium.set_link(a, b, up=True, loss=float(op.loss or 0.0))
            if op.rate_bps:
                detail += f"; rate {op.rate_bps:g} bit/s NOT applied (the shared medium has no per-link rate)"
        elif op.kind in ("blackhole_on", "blackhole_off"):
            detail = _blackhole(adapter, lab, op.node, op.kind == "blackhole_on")
        else:
            raise EmuError(f"op {op.kind} not supported on UML nodes")
        outcome = op.kind
    except Exception as exc:  # noqa: BLE001 - a failed op is an event, the run goes on
        detail, outcome = f"FAILED: {exc}", f"{op.kind}_failed"
    executed.append((t, op))
    node = op.node if op.node is not None else (op.link[0] if op.link else None)
    peer = op.link[1] if op.link else None
    adapter.event("op", node, peer, outcome, t_s=t, fault=op.fault,
                  detail=f"scheduled {op.at_s:.3f}s{' repair' if op.repair else ''}: {detail}")


def _blackhole(adapter: UmlAdapter, lab: UmlLab, node: str, on: bool) -> str:
    """The node keeps sending OGMs but drops the batman-adv unicast frames it should forward: tc
    ingress filters inside it on ethertype 0x4305, packet type 0x40 (BATADV_UNICAST), whose
    destination (bytes 4-9 of the batman-adv header) is not its own originator address."""
    c = lab.client(node)
    idx = adapter.index[node]
    ports = len(lab.medium.ports[node])
    if not on:
        c.exec(["tc", "-force", "-batch", "-"], input=filters.delete_rules(ports, filters.BLACKHOLE_PREFS))
        return "blackhole rules removed"
    own = hardif_mac(lab.lab_id, idx, 0)
    adapter.ingress_ready(node)
    c.exec(["tc", "-batch", "-"], input=filters.blackhole_rules(ports, own))
    return f"drops BATADV_UNICAST frames not addressed to {own} ({bat_mac(lab.lab_id, idx)} keeps its OGMs)"
