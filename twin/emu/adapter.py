"""``EmuAdapter``: the :class:`twin.adapter.MeshAdapter` of a running emulation.

``observe()`` asks each node's routing daemon what it knows (babeld's ``dump`` over its local
socket, or ``batctl oj``/``nj``) and reads interface counters with pyroute2; ``apply()`` runs the
real command (``ip link``, babeld interface reconfiguration, ``batctl``, nftables, restart).
Nothing here reads ground truth: a crashed node is simply one whose daemon does not answer.

Babel quality values (``link_tq``, ``orig_tq``) come from :mod:`twin.babel_metric`, shared with
the sim babel model; besides:

* ``link_last_seen`` = leading zero bits of the neighbour's 16-bit hello history (``reach``)
  times the hello interval (babeld ages ``reach`` only when it notices missed hellos, so this
  lags by up to ~3 intervals); ``orig_last_seen`` = time since this adapter last saw a finite
  route.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twin.adapter import ACTION_KINDS, Action, ActionResult, SignedAction, Telemetry, capability_set
from twin.babel_metric import BATMAN_HOP_PENALTY, INFINITY, hop_penalty_rxcost, link_quality, route_quality
from twin.emu.capabilities import EmuError
from twin.emu.daemons import Babel, Batman, DaemonError


class _Reject(Exception):
    """The node refuses the action (unknown node, unsupported kind, node down): not a failure."""


def timed_action(a: Action, t: float, run, failures: tuple[type[BaseException], ...]) -> ActionResult:
    """``run(a)`` as an :class:`ActionResult` with its wall-clock cost: applied with run's detail,
    refused (:class:`_Reject`) or failed (one of ``failures``). Shared by every emulated body."""
    t_start = time.monotonic()
    try:
        return ActionResult(a, True, t, detail=run(a), cost_s=time.monotonic() - t_start)
    except _Reject as exc:
        return ActionResult(a, False, t, rejected_reason=str(exc), cost_s=time.monotonic() - t_start)
    except failures as exc:
        return ActionResult(a, False, t, rejected_reason=f"failed: {exc}", cost_s=time.monotonic() - t_start)


@dataclass
class EmuAdapter:
    """Observe and act on an emulated mesh; one instance per run (built by ``run_emu``)."""

    net: Any  # EmuNetwork
    routing: Babel | Batman
    impair: Any  # Impairments
    prober: Any = None  # Prober
    ygg: Any = None  # Yggdrasil or None
    caps: dict = field(default_factory=dict)
    t0: float = field(default_factory=time.monotonic)
    events: list[dict] = field(default_factory=list)
    probe_window_s: float = 2.0
    mode: str = "emu"
    routes: dict[str, dict[str, tuple[str, int]]] = field(default_factory=dict)  # node -> dst -> (nh, metric)
    _seen: dict[tuple[int, int], float] = field(default_factory=dict)
    _ns: dict[str, Any] = field(default_factory=dict)
    _dumps: dict[str, dict] = field(default_factory=dict)

    @property
    def protocol(self) -> str:
        return "batman" if isinstance(self.routing, Batman) else "babel"

    def now(self) -> float:
        return time.monotonic() - self.t0

    def capabilities(self) -> frozenset[str]:
        kinds = set(ACTION_KINDS)
        if self.ygg is None or self.prober is None:
            kinds -= {"steer_fallback", "unsteer_fallback"}
        if not self.caps.get("nftables"):
            kinds -= {"quarantine", "unquarantine"}
        return capability_set(self.protocol, kinds, features=("observe", "probes"), host=self.caps)

    def event(self, kind: str, node: str | None = None, peer: str | None = None,
              outcome: str | None = None, detail: str = "", latency_ms: float = math.nan, fault: int = -1,
              t_s: float | None = None) -> None:
        self.events.append({"t_s": self.now() if t_s is None else t_s, "kind": kind, "node": node,
                            "peer": peer, "outcome": outcome, "latency_ms": latency_ms, "valid": True,
                            "fault": fault, "detail": detail})

    # ------------------------------------------------------------------ routes
    def _node_routes(self, node: str) -> dict[str, tuple[str, int]] | None:
        """dst -> (next hop, metric) of installed routes, or None if the node does not answer."""
        if not self.routing.alive(node):
            return None
        try:
            if isinstance(self.routing, Batman):
                out = {}
                for o in self.routing.originators(node):
                    dst = self.net.mac_owner.get(str(o.get("orig_address", "")).lower())
                    nh = self.net.mac_owner.get(str(o.get("neigh_address", "")).lower())
                    if dst and nh and o.get("best"):
                        out[dst] = (nh, 255 - int(o.get("tq", 0)))
                return out
            dump = self.routing.dump(node)
        except (OSError, DaemonError, EmuError, ValueError):
            return None
        out = {}
        for r in dump["route"]:
            dst = self.net.node_of_addr(r.get("prefix", ""))
            nh = self.net.peer_of.get((node, r.get("if", "")))
            metric = int(r.get("metric", INFINITY))
            if r.get("installed") == "yes" and dst and nh and metric < INFINITY:  # 65535: retracted
                out[dst] = (nh, metric)
        self._dumps[node] = dump
        return out

    def poll_routes(self) -> dict[str, dict[str, tuple[str, int]] | None]:
        """Read every node's routes and log next-hop changes as ``route_change`` events."""
        t = self.now()
        tables: dict[str, dict[str, tuple[str, int]] | None] = {}
        for node in self.net.nodes:
            cur = self._node_routes(node)
            tables[node] = cur
            if cur is None:
                continue
            old = self.routes.get(node, {})
            for dst in sorted(set(old) | set(cur)):
                o, c = old.get(dst), cur.get(dst)
                if o is not None and c is not None and o[0] == c[0]:
                    continue
                outcome = "added" if o is None else "removed" if c is None else "changed"
                self.event("route_change", node, dst, outcome, t_s=t,
                           detail=f"via {o[0] if o else '-'} -> {c[0] if c else '-'}"
                                  f" metric {c[1] if c else INFINITY}")
            self.routes[node] = cur
            i = self.net.index[node]
            for dst, (_nh, metric) in cur.items():
                if metric < INFINITY:
                    self._seen[(i, self.net.index[dst])] = t
        return tables

    def converged(self, components: list[set[str]]) -> bool:
        """Every node has an installed route to every other node of its component."""
        tables = self.poll_routes()
        for comp in components:
            for n in comp:
                tab = tables.get(n)
                if tab is None or any(d not in tab for d in comp if d != n):
                    return False
        return True

    # ------------------------------------------------------------------ observe
    def _counters(self, node: str) -> tuple[int, int]:
        ifaces = set(self.net.node_ifaces(node))
        try:
            if node not in self._ns:
                from pyroute2 import NetNS

                self._ns[node] = NetNS(self.net.ns(node))
            tx = rx = 0
            for link in self._ns[node].get_links():
                if link.get("ifname") in ifaces:
                    st = link.get("stats64") or {}
                    tx += int(st.get("tx_packets", 0))
                    rx += int(st.get("rx_packets", 0))
            return tx, rx
        except Exception:  # noqa: BLE001 - pyroute2 missing/broken: /proc/<pid>/net/dev is the same data
            tx = rx = 0
            with open(f"/proc/{self.net.hosts[node].pid}/net/dev") as f:
                for ln in f.read().splitlines()[2:]:
                    name, data = ln.split(":", 1)
                    if name.strip() in ifaces:
                        v = data.split()
                        rx += int(v[1])
                        tx += int(v[9])
            return tx, rx

    def observe(self) -> Telemetry:
        n = len(self.net.nodes)
        tables = self.poll_routes()
        t = self.now()
        reporting = np.array([tables[x] is not None for x in self.net.nodes], dtype=bool)
        nh = np.full((n, n), -1, np.int32)
        tq = np.zeros((n, n), np.uint8)
        metric = np.full((n, n), -1, np.int32)
        last = np.full((n, n), np.nan, np.float32)
        for (i, j), seen in self._seen.items():
            last[i, j] = t - seen
        lsrc, ldst, ltq, llast = [], [], [], []
        tx = np.zeros(n, np.int64)
        rx = np.zeros(n, np.int64)
        interval = np.zeros(n, np.float32)
        for node, tab in tables.items():
            i = self.net.index[node]
            interval[i] = (self.routing.hello.get(node, self.routing.hello_interval_s)
                           if isinstance(self.routing, Babel) else self.routing.orig_interval_ms / 1000)
            if tab is None:
                continue
            for dst, (hop, m) in tab.items():
                j = self.net.index[dst]
                nh[i, j], metric[i, j] = self.net.index[hop], m
                tq[i, j] = route_quality(m) if isinstance(self.routing, Babel) else 255 - m
            tx[i], rx[i] = self._counters(node)
            for peer, q, age in self._links(node):
                lsrc.append(i)
                ldst.append(self.net.index[peer])
                ltq.append(q)
                llast.append(age)
        psrc, pdst, psent, pok, plat = [], [], [], [], []
        if self.prober is not None:
            self.prober.poll()
            for (s, d), (sent, ok, lat) in self.prober.window(time.monotonic() - self.probe_window_s).items():
                psrc.append(self.net.index[s])
                pdst.append(self.net.index[d])
                psent.append(sent)
                pok.append(ok)
                plat.append(lat)
        return Telemetry(
            t=t, nodes=list(self.net.nodes), reporting=reporting, orig_next_hop=nh, orig_tq=tq,
            orig_last_seen=last, link_src=np.array(lsrc, np.int32), link_dst=np.array(ldst, np.int32),
            link_tq=np.array(ltq, np.uint8), link_last_seen=np.array(llast, np.float32), tx_packets=tx,
            rx_packets=rx, probe_src=np.array(psrc, np.int32), probe_dst=np.array(pdst, np.int32),
            probe_sent=np.array(psent, np.int32), probe_ok=np.array(pok, np.int32),
            probe_latency_ms=np.array(plat, np.float32), orig_interval_s=interval,
            extra={"protocol": self.protocol, "route_metric": metric,
                   "quality_mapping": "link_tq=255*256/cost; orig_tq=255*(240/255)**(metric/256)"})

    def _links(self, node: str) -> list[tuple[str, int, float]]:
        if isinstance(self.routing, Batman):  # neighbours from `batctl nj`, their TQ from one-hop `oj` rows
            one_hop = {str(o.get("neigh_address", "")).lower(): int(o.get("tq", 0))
                       for o in self.routing.originators(node) if o.get("orig_address") == o.get("neigh_address")}
            out = []
            for nb in self.routing.neighbours(node):
                mac = str(nb.get("neigh_address", "")).lower()
                peer = self.net.mac_owner.get(mac)
                if peer:
                    out.append((peer, one_hop.get(mac, 0), float(nb.get("last_seen_msecs", 0)) / 1000))
            return out
        hello = self.routing.hello.get(node, self.routing.hello_interval_s)
        out = []
        for nb in self._dumps.get(node, {}).get("neighbour", []):
            peer = self.net.peer_of.get((node, nb.get("if", "")))
            if peer is None:
                continue
            reach = int(nb.get("reach", "0"), 16) & 0xFFFF
            idle = 16 - reach.bit_length()
            out.append((peer, link_quality(int(nb.get("cost", INFINITY))), idle * hello))
        return out

    def close(self) -> None:
        for ns in self._ns.values():
            with contextlib.suppress(Exception):
                ns.close()
        self._ns.clear()

    # ------------------------------------------------------------------ apply
    def apply(self, action: SignedAction) -> ActionResult:
        """Run the action for real. Signature checks are the caller's job (envelope may be None)."""
        a: Action = action.action
        t = self.now()
        res = timed_action(a, t, self._apply, (EmuError, OSError, subprocess.SubprocessError))
        peer = a.params.get("peer") or a.params.get("dst")
        self.event("action", a.node, peer, "applied" if res.applied else "rejected", t_s=t,
                   detail=f"{a.kind} {a.params} {res.detail or res.rejected_reason}".strip())
        return res

    def _apply(self, a: Action) -> str:
        if a.node not in self.net.index:
            raise _Reject(f"unknown node {a.node!r}")
        if a.kind not in self.capabilities():
            raise _Reject(f"{a.kind} not supported in this run (protocol {self.protocol}, "
                          f"fallback overlay {'on' if self.ygg else 'off'})")
        if a.node in self.impair.crashed:
            raise _Reject(f"{a.node} does not answer (down)")
        batman = isinstance(self.routing, Batman)
        if a.kind in ("hardif_down", "hardif_up"):
            down = a.kind == "hardif_down"
            ifaces = self._ifaces(a)
            for ifname in ifaces:
                if batman:
                    self.net.run(a.node, ["ip", "link", "set", "dev", ifname] + (["nomaster"] if down else
                                                                                 ["master", "bat0"]))
                else:
                    self.impair.set_admin(a.node, ifname, "action", down)
            return f"{'down' if down else 'up'}: {','.join(ifaces)}"
        if a.kind == "set_hop_penalty":
            value = int(a.params.get("value", BATMAN_HOP_PENALTY))
            if batman:
                self.routing.hop_penalty[a.node] = value
                self.routing.batctl(a.node, "hop_penalty", str(value))
                return f"batctl hop_penalty {value}"
            rxcost = hop_penalty_rxcost(value)
            return f"hop_penalty {value} -> " + self.routing.reconfigure(a.node, rxcost=rxcost)
        if a.kind == "set_orig_interval":
            ms = int(a.params.get("ms", 1000))
            if ms < 20 or ms > 60000:
                raise _Reject(f"interval {ms} ms outside 20..60000")
            if batman:
                self.routing.batctl(a.node, "orig_interval", str(ms))
                return f"batctl orig_interval {ms}"
            return self.routing.reconfigure(a.node, hello_s=ms / 1000)
        if a.kind in ("quarantine", "unquarantine"):
            return self.impair.quarantine(a.node, add=a.kind == "quarantine")
        if a.kind in ("steer_fallback", "unsteer_fallback"):
            src, dst = a.params.get("src", a.node), a.params.get("dst")
            if (src, dst) not in self.prober.pairs:
                raise _Reject(f"no probe flow {src}->{dst} to steer")
            if dst not in self.ygg.address or not self.ygg.alive(src):
                raise _Reject(f"fallback overlay not running on {src} or {dst}")
            self.prober.steer(src, dst, a.kind == "steer_fallback")
            where = f"yggdrasil {self.ygg.address[dst]}" if a.kind == "steer_fallback" else self.net.addr(dst)
            return f"flow {src}->{dst} now sent to {where}"
        if a.kind == "restart_routing":
            self.routing.restart(a.node)
            return f"{self.routing.kind} restarted on {a.node}"
        raise _Reject(f"{a.kind} not implemented in emu")  # pragma: no cover

    def _ifaces(self, a: Action) -> list[str]:
        if "ifname" in a.params:
            if a.params["ifname"] not in self.net.node_ifaces(a.node):
                raise _Reject(f"{a.node} has no interface {a.params['ifname']}")
            return [a.params["ifname"]]
        if "peer" in a.params:
            key = (a.node, a.params["peer"])
            if key not in self.net.iface:
                raise _Reject(f"{a.node} has no link to {a.params['peer']}")
            return [self.net.iface[key]]
        return self.net.node_ifaces(a.node)
