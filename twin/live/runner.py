"""``twin run --mode live``: one scenario against the lab in the inventory, in wall-clock time.

The same :class:`twin.world.World` as ``sim`` and ``emu`` (graph, faults, probe pairs), the same
MAPE-K controller code, the same event table and so the same run folder. The scenario's nodes
must be inventory nodes (by name); its faults run only on nodes whose inventory entry allows
that fault kind, otherwise the run is refused before anything is touched (exit 2).

Dry run is the default: the loop observes the lab and every command is checked by its agent and
answered "would apply", faults are logged, not injected. ``--apply`` acts. However the run ends
(its end, an exception, Ctrl-C, SIGTERM, ``twin live stop``), every node's pending change is
reverted and its run-start settings are written back and read back; the results are events
(``restore``) in the run folder.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from pathlib import Path

import numpy as np

from twin.atomic import write_text
from twin.errors import RunError
from twin.live.inventory import InventoryError, load
from twin.world import World

DEFAULT_INVENTORY = Path("live/inventory.yaml")
_LIVE_FAULTS = {"crash": "node_crash", "recover": "node_recover"}


def _check(world: World, inv) -> None:
    names = {n.name for n in inv.nodes}
    missing = [n for n in world.nodes if n not in names]
    if missing:
        raise InventoryError(f"scenario nodes not in the inventory: {', '.join(missing[:10])} (live runs name the "
                             f"lab's nodes; inventory has {', '.join(sorted(names)[:10])})")
    for op in world.ops:
        kind = _LIVE_FAULTS.get(op.kind)
        if kind is None:
            raise InventoryError(f"fault op {op.kind} ({world.faults[op.fault].label()}) cannot be injected live; "
                                 f"live faults: node_crash, node_recover")
        if kind not in inv.node(op.node).allow_faults:
            raise InventoryError(f"the scenario injects {kind} on {op.node} but the inventory does not allow it "
                                 f"(nodes[{[n.name for n in inv.nodes].index(op.node)}].allow_faults)")


def _status(path: Path, **fields) -> None:
    import json

    write_text(path, json.dumps({"pid": os.getpid(), "updated": time.time(), **fields}, default=str))


def run_world(world: World, *, inventory: Path | None = None, apply: bool = False, progress=None):
    """Returns (events, engine info, wall seconds, loop stats or None), as ``twin.emu.bridge.run_world``."""
    from twin.emu.runner import _validity, events_frame
    from twin.live.adapter import LiveAdapter, LiveSigner
    from twin.observability import ControllerMetrics
    from twin.pqc import NodeIdentity, TrustBundle

    sc = world.scenario
    inv_path = Path(inventory or os.environ.get("MESHTWIN_INVENTORY") or DEFAULT_INVENTORY)
    inv = load(inv_path)
    _check(world, inv)
    ident = NodeIdentity.load(inv.path(inv.controller.identity))
    bundle = TrustBundle.load(inv.path(inv.controller.trust_bundle))
    wall0 = time.monotonic()
    ad = LiveAdapter(inv, ident, bundle, apply_enabled=apply, names=list(world.nodes))
    run_id = f"{sc.name}-{int(time.time())}"
    status = inv.path(inv.controller.state_dir) / "status.json"
    from twin.observability import metrics_port

    port = inv.controller.metrics_port if inv.controller.metrics_port is not None else metrics_port()
    metrics = ControllerMetrics("live", port)
    old_term = signal.getsignal(signal.SIGTERM)

    def _term(*_a):
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread: Ctrl-C only
        signal.signal(signal.SIGTERM, _term)
    ctl = None
    executed: list[tuple[float, object]] = []
    restore: dict = {}
    convergence_s = math.nan
    try:
        info = ad.begin(run_id)
        down = {n: v["error"] for n, v in info.items() if "error" in v}
        if down:
            raise RunError("live: agents not reachable: " + "; ".join(f"{n}: {e}" for n, e in list(down.items())[:5]))
        _status(status, state="converging", run=run_id, scenario=sc.name, apply=apply, inventory=str(inv_path))
        t = time.monotonic()
        while time.monotonic() - t < inv.channel.converge_timeout:
            tel = ad.observe()
            known = (tel.orig_next_hop >= 0).sum(axis=1) + 1
            if tel.reporting.all() and (known >= len(world.nodes)).all():
                convergence_s = time.monotonic() - t
                break
            time.sleep(0.5)
        pairs = [p for fl in world.flows for p in fl.pairs]
        rate = max((f.rate for f in world.flows), default=1.0)
        ad.events.clear()
        ad.t0 = time.monotonic()
        ad.start_probes(pairs, rate)
        ad.probe_rows.clear()
        if sc.loop.enabled:
            from twin.mapek.factory import build_brain

            ctl = build_brain(ad, sc.loop, signer=LiveSigner(ident), base_interval_s=sc.routing.orig_interval,
                              source_dir=sc.source.parent if sc.source else None).controller
        ops = sorted(world.ops)
        i, next_tick, next_prog, next_obs = 0, 0.0, 0.0, 0.0
        last_nh = None
        while (now := ad.now()) < sc.duration:
            while i < len(ops) and ops[i].at_s <= now:
                op = ops[i]
                kind = _LIVE_FAULTS[op.kind]
                verdict, why = ad.inject(kind, op.node) if apply else ("dry_run", "not injected in a dry run")
                if verdict == "injected":
                    executed.append((ad.now(), op))
                ad.event("op", op.node, f"{op.kind}" if verdict == "injected" else f"{op.kind}_{verdict}",
                         "repair" if op.repair else "fault")  # as sim: results find repairs by this
                ad.events[-1]["fault"] = op.fault
                i += 1
            if now >= next_tick:
                if ctl is not None:
                    it = ctl.tick()
                    metrics.record(it, ctl.executor.results[-len(it.signed):] if it.signed else (),
                                   reporting=len(ad.reporting_now))
                    _status(status, state="running", run=run_id, scenario=sc.name, apply=apply, t=round(now, 2),
                            iterations=len(ctl.iterations), pending=[c.__dict__ for c in ad.pending],
                            incidents=[{k: v for k, v in x.__dict__.items() if k != "vector"}
                                       for x in ctl.knowledge.incidents[-5:]],
                            reporting=sorted(ad.reporting_now), inventory=str(inv_path))
                elif now >= next_obs:
                    ad.observe()
                    next_obs = now + 0.5
                last_nh = _route_changes(ad, last_nh)
                next_tick = max(next_tick + (_period(sc) if ctl else 0.5), ad.now())
            if progress is not None and now >= next_prog:
                progress(now)
                next_prog += 1.0
            time.sleep(max(0.0, min(0.05, next_tick - ad.now())))
        time.sleep(1.2)  # the last probes are judged (lost after 1 s)
        ad.observe()
    finally:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, old_term)
        restore = ad.close("run ended")
        metrics.close()
        _status(status, state="finished", run=run_id, scenario=sc.name,
                restored={n: r.get("restored") for n, r in restore.items()}, inventory=str(inv_path))
    rows = [{"t_s": r["t_s"], "src": r["src"], "dst": r["dst"], "rtt": r["rtt_ms"]} for r in ad.probe_rows
            if 0 <= r["t_s"] < sc.duration]
    valid = _validity(world.graph, executed, rows)
    events = [e for e in ad.events]
    for r, v in zip(rows, valid, strict=True):
        events.append({"t_s": r["t_s"], "kind": "probe", "node": r["src"], "peer": r["dst"],
                       "outcome": "delivered" if r["rtt"] is not None else "lost",
                       "latency_ms": r["rtt"] / 2 if r["rtt"] is not None else float("nan"), "valid": v,
                       "fault": -1, "detail": "half round trip" if r["rtt"] is not None else ""})
    if ctl is not None:
        for e in ctl.log:
            events.append({"latency_ms": float("nan"), "valid": True, "fault": -1, "peer": None, **e})
    ev = events_frame(events)
    ev["flow"], ev["pair"] = _flow_pair(ev, world)
    for c in ("kind", "node", "peer", "outcome", "detail"):
        ev[c] = ev[c].astype("string")
    if not apply and world.ops:
        world.notes.append("dry run: the scenario's faults were logged, not injected; MTTR and delivery describe "
                           "the undisturbed lab")
    engine = {"engine": "live agents", "inventory": str(inv_path), "apply": apply, "convergence_s": convergence_s,
              "agents": {n: {k: v.get(k) for k in ("agent_version", "kernel", "settings")} for n, v in info.items()},
              "restored": restore}
    loop_info = ctl.stats() if ctl is not None else None
    if loop_info is not None:
        loop_info["security"] = ad.security()
        loop_info["verify_p50_ms"] = round(float(np.median(ad.verify_ms)), 4) if ad.verify_ms else None
        loop_info["rejected"] = dict(ad.verdicts)
    return ev, engine, time.monotonic() - wall0, loop_info


def _period(sc) -> float:
    """The loop period: the scenario's, else its control-plane poll interval, else 1 s."""
    control = getattr(sc, "control", None)
    return float(sc.loop.period or getattr(control, "poll", None) or 1.0)


def _route_changes(ad, last):
    """Log next-hop changes between two observations as ``route_change`` events (as emu does)."""
    tel_nh = getattr(ad, "last_nh", None)
    if tel_nh is None or (last is not None and tel_nh is last):
        return last
    if last is not None and last.shape == tel_nh.shape:
        for i, j in zip(*np.nonzero(last != tel_nh), strict=True):
            o, n = int(last[i, j]), int(tel_nh[i, j])
            ad.event("route_change", ad.names[i], "added" if o < 0 else "removed" if n < 0 else "changed",
                     f"via {ad.names[o] if o >= 0 else '-'} -> {ad.names[n] if n >= 0 else '-'}", peer=ad.names[j])
    return tel_nh


def _flow_pair(ev, world: World):
    index = {}
    for fi, fl in enumerate(world.flows):
        for pi, pr in enumerate(fl.pairs):
            index.setdefault(pr, (fi, pi))
    flow = np.full(len(ev), -1, np.int32)
    pair = np.full(len(ev), -1, np.int32)
    probe = (ev["kind"] == "probe").to_numpy()
    nodes, peers = ev["node"].to_numpy(), ev["peer"].to_numpy()
    for j in np.flatnonzero(probe):
        fp = index.get((nodes[j], peers[j]))
        if fp is not None:
            flow[j], pair[j] = fp
    return flow, pair
