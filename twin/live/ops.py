"""Operator commands against a lab, as plain functions the CLI prints: check, status, stop.

``check`` is what must hold before any run: every agent reachable and proving the identity the
inventory names, its clock within the envelope skew, batman-adv answering with a known
algorithm and version, the agent holding CAP_NET_ADMIN, and its allow-lists matching the
inventory (an agent allowing more than the inventory says is a finding, not a detail).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from twin.live.client import AgentClient, AgentUnavailable
from twin.live.inventory import Inventory
from twin.pqc import NodeIdentity, TrustBundle

MAX_CLOCK_SKEW_S = 2.0  # agents accept envelopes issued up to 5 s in their future; keep well inside


@dataclass
class NodeCheck:
    node: str
    ok: bool
    checks: dict[str, tuple[bool, str]] = field(default_factory=dict)


def _clients(inv: Inventory) -> dict[str, AgentClient]:
    ident = NodeIdentity.load(inv.path(inv.controller.identity))
    bundle = TrustBundle.load(inv.path(inv.controller.trust_bundle))
    return {n.name: AgentClient(n.name, *inv.address(n), ident, bundle, inv.spiffe(n),
                                connect_timeout_s=inv.channel.connect_timeout, backoff_s=0.0) for n in inv.nodes}


async def _each(inv: Inventory, header: dict, timeout_s: float = 5.0) -> dict[str, tuple[dict | None, str, float]]:
    """{node: (reply or None, error, round trip s)} asked of every agent at once."""
    async def one(c: AgentClient):
        t0 = time.time()
        try:
            h, _ = await c.request(header, timeout_s=timeout_s)
            return c.name, (h, "", time.time() - t0, t0)
        except AgentUnavailable as err:
            return c.name, (None, str(err), time.time() - t0, t0)
        finally:
            await c.close()

    return dict(await asyncio.gather(*(one(c) for c in _clients(inv).values())))


def check(inv: Inventory) -> list[NodeCheck]:
    res = asyncio.run(_each(inv, {"op": "info"}))
    out = []
    for n in inv.nodes:
        h, err, rtt, t0 = res[n.name]
        c = NodeCheck(n.name, False)
        host, port = inv.address(n)
        c.checks["reachable"] = (h is not None, err or f"{host}:{port}, rtt {rtt * 1000:.1f} ms")
        if h is not None:
            c.checks["identity"] = (h.get("spiffe") == inv.spiffe(n), str(h.get("spiffe")))
            skew = h["time"] - (t0 + rtt / 2)
            c.checks["clock"] = (abs(skew) <= MAX_CLOCK_SKEW_S, f"{skew:+.3f} s (bound ±{MAX_CLOCK_SKEW_S:g} s)")
            k = h.get("kernel", {})
            known = k.get("algo") in ("BATMAN_IV", "BATMAN_V")
            c.checks["batman-adv"] = (known, f"{k.get('algo')} {k.get('batadv_version')} via {k.get('source')}")
            c.checks["permissions"] = (bool(k.get("cap_net_admin")), "CAP_NET_ADMIN" if k.get("cap_net_admin")
                                       else "agent lacks CAP_NET_ADMIN (see live/meshtwin-agent.service)")
            extra = sorted(set(h.get("allow_actions", [])) - set(n.allow_actions))
            extra_f = sorted(set(h.get("allow_faults", [])) - set(n.allow_faults))
            c.checks["allow-lists"] = (not extra and not extra_f, "match the inventory" if not (extra or extra_f)
                                       else f"agent allows more than the inventory: {extra + extra_f}")
            pend = h.get("pending")
            why = "no pending change" if pend is None else f"pending change {pend['id']}"
            if h.get("halted"):
                why += "; halted by twin live stop (lift with twin live stop --resume)"
            c.checks["idle"] = (pend is None and not h.get("halted"), why)
        c.ok = all(v for v, _ in c.checks.values())
        out.append(c)
    return out


def status(inv: Inventory) -> dict:
    path = inv.path(inv.controller.state_dir) / "status.json"
    run = json.loads(path.read_text()) if path.exists() else None
    if run is not None:
        run["controller_alive"] = _alive(run.get("pid")) and run.get("state") != "finished"
    res = asyncio.run(_each(inv, {"op": "info"}, timeout_s=2.0))
    nodes = {}
    for name, (h, err, _rtt, _t0) in res.items():
        nodes[name] = {"error": err} if h is None else {k: h.get(k) for k in ("pending", "halted", "run", "settings",
                                                                              "silent")}
    return {"run": run, "nodes": nodes}


def _alive(pid) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def stop(inv: Inventory, resume: bool = False) -> dict:
    """Kill switch: interrupt a running controller on this host, then tell every agent to revert,
    restore its run-start settings and refuse actions (``resume`` lifts that)."""
    if resume:
        res = asyncio.run(_each(inv, {"op": "resume"}))
        return {"nodes": {n: {"ok": bool(h and h.get("ok")), "error": e} for n, (h, e, _r, _t) in res.items()}}
    path = inv.path(inv.controller.state_dir) / "status.json"
    signalled = None
    if path.exists():
        run = json.loads(path.read_text())
        if run.get("state") != "finished" and _alive(run.get("pid")):
            os.kill(run["pid"], signal.SIGINT)
            signalled = run["pid"]
            deadline = time.time() + 10
            while _alive(run["pid"]) and time.time() < deadline:
                time.sleep(0.1)
    res = asyncio.run(_each(inv, {"op": "stop"}))
    nodes = {n: ({"restored": bool(h.get("ok")), "settings": h.get("settings")} if h else {"restored": False,
                                                                                          "error": e})
             for n, (h, e, _r, _t) in res.items()}
    return {"controller_interrupted": signalled, "nodes": nodes}


def state_path(inv: Inventory) -> Path:
    return inv.path(inv.controller.state_dir) / "status.json"
