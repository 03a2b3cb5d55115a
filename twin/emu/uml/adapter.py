"""``UmlAdapter``: the :class:`twin.adapter.MeshAdapter` of a lab of real batman-adv kernels.

It reads each node's kernel over the batadv netlink family (relayed by the node's guest agent),
polls every node concurrently, and hands the brain :class:`~twin.adapter.Telemetry` built only
from what the nodes report: a crashed node is one that does not answer. Actions are real
commands on the node: SET_MESH for ``orig_interval``/``hop_penalty``, the hard interface out of
and back into bat0, quarantine as ``tc`` ingress drop rules on the suspect's neighbours
matching its MAC (batman-adv frames never reach ``inet`` hooks), restart as bat0 re-created.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from twin.adapter import Action, ActionResult, SignedAction, Telemetry, capability_set
from twin.batadv import BatadvError, Originator, batctl
from twin.emu.adapter import _Reject, timed_action
from twin.emu.uml import filters
from twin.emu.uml.client import NodeUnreachable
from twin.emu.uml.lab import UmlLab, hardif_mac

_ERRORS = (NodeUnreachable, BatadvError, RuntimeError, OSError, ValueError)
UML_ACTIONS = frozenset({"set_orig_interval", "set_hop_penalty", "hardif_down", "hardif_up", "quarantine",
                         "unquarantine", "restart_routing"})




@dataclass
class NodeState:
    """What one node reported at its last answered poll (``t`` on the host's run clock)."""

    t: float = math.nan
    origs: list[Originator] = field(default_factory=list)
    neighbours: list = field(default_factory=list)
    tx: int = 0
    rx: int = 0
    orig_interval_ms: int = 1000


@dataclass
class UmlAdapter:
    lab: UmlLab
    t0: float = field(default_factory=time.monotonic)
    events: list[dict] = field(default_factory=list)
    probe_window_s: float = 2.0
    mode: str = "emu"
    crashed: set[str] = field(default_factory=set)
    state: dict[str, NodeState] = field(default_factory=dict)
    routes: dict[str, dict[str, tuple[str, int]]] = field(default_factory=dict)
    probes: object = None  # ProbeBook of the runner
    quarantined: dict[str, list[str]] = field(default_factory=dict)
    fallback: dict[str, str] = field(default_factory=dict)  # node -> batctl version used instead of netlink
    _ingress: set[tuple[str, int]] = field(default_factory=set)  # (node, boot) with tc ingress ready

    def __post_init__(self) -> None:
        self.names = list(self.lab.names)
        self.index = {n: i for i, n in enumerate(self.names)}
        lab_id = self.lab.lab_id
        self.mac_owner = {hardif_mac(lab_id, i, k): n for n, i in self.index.items() for k in range(64)}
        self.pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="uml-poll")

    def now(self) -> float:
        return time.monotonic() - self.t0

    def capabilities(self) -> frozenset[str]:
        return capability_set("batman_iv", UML_ACTIONS, features=("observe", "probes", "kernel"))

    def event(self, kind: str, node: str | None = None, peer: str | None = None, outcome: str | None = None,
              detail: str = "", latency_ms: float = math.nan, fault: int = -1, t_s: float | None = None) -> None:
        self.events.append({"t_s": self.now() if t_s is None else t_s, "kind": kind, "node": node, "peer": peer,
                            "outcome": outcome, "latency_ms": latency_ms, "valid": True, "fault": fault,
                            "detail": detail})

    # ------------------------------------------------------------------ polling
    def _read(self, node: str, routes_only: bool = False) -> NodeState | None:
        """One node's state; ``routes_only`` reads the originator table alone (one netlink dump
        instead of three plus the counters): enough for convergence and route changes, at a
        quarter of the guest work, which matters when 50 guests share two cores."""
        if node in self.crashed or not self.lab.alive(node):
            return None
        try:
            c = self.lab.client(node)
            if routes_only:
                prev = self.state.get(node)
                return NodeState(t=self.now(), origs=c.batadv().originators("bat0"),
                                 orig_interval_ms=prev.orig_interval_ms if prev else self.lab.orig_interval_ms)
            try:
                b = c.batadv()
                mesh = b.mesh("bat0")
                st = NodeState(t=self.now(), origs=b.originators("bat0"), neighbours=b.neighbours("bat0"),
                               orig_interval_ms=mesh.orig_interval_ms)
            except BatadvError as err:  # netlink refused: batctl's JSON is the fallback, and says so
                origs, nbrs, version = batctl.read(lambda argv: c.exec(argv))
                st = NodeState(t=self.now(), origs=origs, neighbours=nbrs,
                               orig_interval_ms=int(c.exec(["batctl", "meshif", "bat0", "orig_interval"]).split()[0]))
                if self.fallback.get(node) is None:
                    self.fallback[node] = version
                    self.event("note", node, None, "telemetry_fallback", detail=f"netlink: {err}; using {version}")
            cnt = c.call("counters")["counters"]
            for ifn, (tx, rx) in cnt.items():
                if ifn.startswith("vec") and ifn != f"vec{len(self.lab.medium.ports[node])}":
                    st.tx += tx
                    st.rx += rx
            return st
        except _ERRORS:
            return None

    def poll(self, routes_only: bool = False) -> dict[str, NodeState | None]:
        """Read every node concurrently; log next-hop changes as ``route_change`` events."""
        res = dict(zip(self.names, self.pool.map(lambda n: self._read(n, routes_only), self.names), strict=True))
        t = self.now()
        for node, st in res.items():
            if st is None:
                continue
            self.state[node] = st
            cur: dict[str, tuple[str, int]] = {}
            for o in st.origs:
                dst, nh = self.mac_owner.get(o.orig), self.mac_owner.get(o.neigh)
                if o.best and dst and nh and dst != node:
                    cur[dst] = (nh, 255 - int(o.tq or 0))
            old = self.routes.get(node, {})
            for dst in sorted(set(old) | set(cur)):
                a, b = old.get(dst), cur.get(dst)
                if a is not None and b is not None and a[0] == b[0]:
                    continue
                outcome = "added" if a is None else "removed" if b is None else "changed"
                self.event("route_change", node, dst, outcome, t_s=t,
                           detail=f"via {a[0] if a else '-'} -> {b[0] if b else '-'} tq {255 - b[1] if b else 0}")
            self.routes[node] = cur
        return res

    def converged(self, components: list[set[str]]) -> bool:
        """Every node has a best route to every node of its component (originator tables only)."""
        tables = self.poll(routes_only=True)
        for comp in components:
            for n in comp:
                if tables.get(n) is None or any(d not in self.routes.get(n, {}) for d in comp if d != n):
                    return False
        return True

    # ------------------------------------------------------------------ observe
    def observe(self) -> Telemetry:
        tables = self.poll()
        n = len(self.names)
        t = self.now()
        reporting = np.array([tables[x] is not None for x in self.names], dtype=bool)
        nh = np.full((n, n), -1, np.int32)
        tq = np.zeros((n, n), np.uint8)
        last = np.full((n, n), np.nan, np.float32)
        tx = np.zeros(n, np.int64)
        rx = np.zeros(n, np.int64)
        interval = np.full(n, np.nan, np.float32)
        lsrc, ldst, ltq, llast = [], [], [], []
        for node, st in tables.items():
            if st is None:
                continue
            i = self.index[node]
            interval[i] = st.orig_interval_ms / 1000
            tx[i], rx[i] = st.tx, st.rx
            one_hop = {}
            for o in st.origs:
                dst, hop = self.mac_owner.get(o.orig), self.mac_owner.get(o.neigh)
                if dst is None or hop is None:
                    continue
                j = self.index[dst]
                if o.best:
                    nh[i, j], tq[i, j] = self.index[hop], int(o.tq or 0)
                    last[i, j] = o.last_seen_ms / 1000
                if o.orig == o.neigh:
                    one_hop[o.neigh] = int(o.tq or 0)
            for nb in st.neighbours:
                peer = self.mac_owner.get(nb.neigh)
                if peer is None:
                    continue
                lsrc.append(i)
                ldst.append(self.index[peer])
                ltq.append(one_hop.get(nb.neigh, 0))
                llast.append(nb.last_seen_ms / 1000)
        psrc, pdst, psent, pok, plat = [], [], [], [], []
        if self.probes is not None:
            for (s, d), (sent, ok, lat) in self.probes.window(self.now() - self.probe_window_s).items():
                psrc.append(self.index[s])
                pdst.append(self.index[d])
                psent.append(sent)
                pok.append(ok)
                plat.append(lat)
        return Telemetry(t=t, nodes=list(self.names), reporting=reporting, orig_next_hop=nh, orig_tq=tq,
                         orig_last_seen=last, link_src=np.array(lsrc, np.int32), link_dst=np.array(ldst, np.int32),
                         link_tq=np.array(ltq, np.uint8), link_last_seen=np.array(llast, np.float32),
                         tx_packets=tx, rx_packets=rx, probe_src=np.array(psrc, np.int32),
                         probe_dst=np.array(pdst, np.int32), probe_sent=np.array(psent, np.int32),
                         probe_ok=np.array(pok, np.int32), probe_latency_ms=np.array(plat, np.float32),
                         orig_interval_s=interval, extra={"protocol": "batman", "source": "batadv netlink"})

    # ------------------------------------------------------------------ apply
    def apply(self, action: SignedAction) -> ActionResult:
        a: Action = action.action
        t = self.now()
        res = timed_action(a, t, self._apply, _ERRORS)
        peer = a.params.get("peer") or a.params.get("dst")
        self.event("action", a.node, peer, "applied" if res.applied else "rejected", t_s=t,
                   detail=f"{a.kind} {a.params} {res.detail or res.rejected_reason}".strip())
        return res

    def _apply(self, a: Action) -> str:
        if a.node not in self.index:
            raise _Reject(f"unknown node {a.node!r}")
        if a.kind not in UML_ACTIONS:
            raise _Reject(f"{a.kind} not supported on batman-adv kernels (supported: {', '.join(sorted(UML_ACTIONS))})")
        if a.node in self.crashed or not self.lab.alive(a.node):
            raise _Reject(f"{a.node} does not answer (down)")
        c = self.lab.client(a.node)
        if a.kind == "set_orig_interval":
            ms = int(a.params.get("ms", 1000))
            info = c.batadv().set_mesh("bat0", orig_interval_ms=ms)
            return f"SET_MESH orig_interval {info.orig_interval_ms} ms (read back)"
        if a.kind == "set_hop_penalty":
            value = int(a.params.get("value", 30))
            info = c.batadv().set_mesh("bat0", hop_penalty=value)
            return f"SET_MESH hop_penalty {info.hop_penalty} (read back)"
        if a.kind in ("hardif_down", "hardif_up"):
            ifs = [f"vec{k}" for k in range(len(self.lab.medium.ports[a.node]))]
            for ifn in ifs:
                c.exec(["ip", "link", "set", "dev", ifn] + (["nomaster"] if a.kind == "hardif_down"
                                                            else ["master", "bat0"]))
            if a.kind == "hardif_up":
                c.exec(["ip", "link", "set", "bat0", "up"])
            return f"{a.kind}: {','.join(ifs)}"
        if a.kind in ("quarantine", "unquarantine"):
            return self._quarantine(a.node, a.kind == "quarantine")
        if a.kind == "restart_routing":
            c.call("restart")
            return "bat0 deleted and re-created (settings, address and neighbours as at boot)"
        raise _Reject(f"{a.kind} not implemented")  # pragma: no cover

    def _quarantine(self, suspect: str, add: bool) -> str:
        """tc ingress drop of the suspect's frames on every neighbour, by source MAC
        (:mod:`twin.emu.uml.filters` says why tc)."""
        macs = [hardif_mac(self.lab.lab_id, self.index[suspect], k)
                for k in range(len(self.lab.medium.ports[suspect]))]
        peers = sorted({p for (x, p) in self.lab.medium.port_of if x == suspect})
        pref = filters.QUARANTINE_PREF0 + self.index[suspect]
        done = []
        for p in peers:
            if p in self.crashed or not self.lab.alive(p):
                continue
            c = self.lab.client(p)
            ports = len(self.lab.medium.ports[p])
            if add:
                self.ingress_ready(p)
                c.exec(["tc", "-batch", "-"], input=filters.quarantine_rules(ports, macs, pref))
                self.quarantined.setdefault(suspect, []).append(p)
            else:
                c.exec(["tc", "-force", "-batch", "-"], input=filters.delete_rules(ports, (pref,)), check=False)
            done.append(p)
        if not add:
            self.quarantined.pop(suspect, None)
        return f"{'quarantine' if add else 'unquarantine'} {suspect} ({', '.join(macs)}) on {', '.join(done)}"

    def ingress_ready(self, node: str) -> None:
        """tc modules and ingress qdiscs on ``node``, once per boot."""
        filters.ensure_ingress(self.lab.client(node), str(self.lab.kernel.module_dir),
                               len(self.lab.medium.ports[node]), self._ingress, (node, self.lab.nodes[node].boots))
