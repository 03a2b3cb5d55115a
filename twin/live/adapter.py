"""``LiveAdapter``: the :class:`twin.adapter.MeshAdapter` of a lab, over its node agents.

The loop calls ``observe()`` and ``apply()`` synchronously; behind them an asyncio event loop on
its own thread talks to every agent at once. A poll asks all agents concurrently and waits at
most ``channel.poll_timeout``: a node that does not answer in time (or whose telemetry signature
does not verify) is reported as not reporting for that poll, and nothing else is assumed about
it. The adapter never decides: it carries the loop's signed commands, enforces the inventory's
safety limits, and runs the commit-confirmed protocol (confirm after a passed health check,
revert after a failed one).

Safety on the controller side, before a command leaves: dry run unless ``apply=True`` (the
agent still verifies a dry-run command and answers what it would do); the node and kind must be
allowed in the inventory; per-node and fleet-wide rate budgets; at most
``safety.max_changed_fraction`` of the nodes with unconfirmed changes at once. ``close()`` (also
on Ctrl-C and ``twin live stop``) reverts every pending change and writes back the settings each
node had when the run began, then reads them back.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from twin.adapter import ACTION_KINDS, Action, ActionResult, SignedAction, Telemetry, capability_set
from twin.live.client import AgentClient, AgentUnavailable
from twin.live.inventory import Inventory
from twin.live.safety import TokenBucket
from twin.pqc import EnvelopeVerifier, NodeIdentity, PQCError, TrustBundle, sign_action


@dataclass
class _Change:
    node: str
    change: str
    kind: str
    at: float
    neighbours_before: int


@dataclass
class LiveAdapter:
    inventory: Inventory
    identity: NodeIdentity
    bundle: TrustBundle
    apply_enabled: bool = False
    mode: str = "live"
    names: list[str] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    last: dict[str, dict] = field(default_factory=dict)
    pending: list[_Change] = field(default_factory=list)
    baseline: dict[str, dict] = field(default_factory=dict)
    probe_rows: list[dict] = field(default_factory=list)
    probe_window_s: float = 2.0
    verify_ms: list[float] = field(default_factory=list)  # agents' envelope verification, as they report it
    verdicts: dict[str, int] = field(default_factory=dict)
    envelope_bytes: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        inv = self.inventory
        self.names = self.names or [n.name for n in inv.nodes]
        self.index = {n: i for i, n in enumerate(self.names)}
        self.t0 = time.monotonic()
        self.verifier = EnvelopeVerifier(self.bundle, replay_window_s=60.0)
        ch = inv.channel
        self.clients = {n.name: AgentClient(n.name, *inv.address(n), self.identity, self.bundle, inv.spiffe(n),
                                            connect_timeout_s=ch.connect_timeout, backoff_s=ch.reconnect_backoff)
                        for n in inv.nodes if n.name in self.index}
        s = inv.safety
        self.node_budget = {n: TokenBucket(s.rate_per_node) for n in self.clients}
        self.fleet_budget = TokenBucket(s.rate_fleet)
        self.mac_owner: dict[str, str] = {}
        self.reporting_now: set[str] = set()
        self.probe_port: dict[str, int] = {}
        self.last_nh: np.ndarray | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="live-adapter", daemon=True)
        self._thread.start()
        self.closed = False

    # -- plumbing -------------------------------------------------------------------------
    def _run(self, coro, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def capabilities(self) -> frozenset[str]:
        kinds: set[str] = set()
        for n in self.inventory.nodes:
            kinds |= set(n.allow_actions)
        return capability_set("batman_iv", kinds & set(ACTION_KINDS), features=("observe", "live"))

    def event(self, kind: str, node: str | None, outcome: str, detail: str = "", peer: str | None = None) -> None:
        self.events.append({"t_s": self.now(), "kind": kind, "node": node, "peer": peer, "outcome": outcome,
                            "latency_ms": float("nan"), "valid": True, "fault": -1, "detail": detail[:300]})

    # -- run bracket ----------------------------------------------------------------------
    def begin(self, run_id: str) -> dict[str, dict]:
        """Connect to every agent and snapshot its settings; returns {node: info or {'error':...}}."""
        async def one(name: str, c: AgentClient) -> tuple[str, dict]:
            try:
                info, _ = await c.request({"op": "info"}, timeout_s=self.inventory.channel.connect_timeout)
                h, _ = await c.request({"op": "begin_run", "run": run_id}, timeout_s=2.0)
                self.baseline[name] = h["settings"]
                self.probe_port[name] = int(info.get("probe_port", 0))
                return name, info
            except AgentUnavailable as err:
                return name, {"error": str(err)}

        async def all_() -> dict:
            return dict(await asyncio.gather(*(one(n, c) for n, c in self.clients.items())))

        return self._run(all_())

    def close(self, why: str = "run finished") -> dict[str, dict]:
        """Revert pending changes and restore every node's run-start settings; {node: result}."""
        if self.closed:
            return {}
        self.closed = True

        async def one(name: str, c: AgentClient) -> tuple[str, dict]:
            try:
                h, _ = await c.request({"op": "end_run", "why": why}, timeout_s=5.0)
                return name, {"restored": bool(h.get("ok")), "settings": h.get("settings")}
            except AgentUnavailable as err:
                return name, {"restored": False, "error": str(err)}

        async def all_() -> dict:
            res = dict(await asyncio.gather(*(one(n, c) for n, c in self.clients.items())))
            await asyncio.gather(*(c.close() for c in self.clients.values()), return_exceptions=True)
            return res

        try:
            res = self._run(all_(), timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        for name, r in res.items():
            self.event("restore", name, "restored" if r.get("restored") else "not_restored",
                       json.dumps(r.get("settings") or r.get("error")))
        return res

    def start_probes(self, pairs: list[tuple[str, str]], rate_hz: float) -> None:
        """Each pair's source agent probes the destination's in-band (bat0) address."""
        by_src: dict[str, list] = {}
        for s, d in pairs:
            addr = self.inventory.node(d).inband
            if addr is None:
                raise ValueError(f"probe pair {s}->{d}: node {d} has no inband address in the inventory")
            by_src.setdefault(s, []).append([d, addr, self.probe_port.get(d) or 7798])

        async def all_() -> None:
            await asyncio.gather(*(self.clients[s].request({"op": "probes", "targets": t, "rate_hz": rate_hz})
                                   for s, t in by_src.items()))

        self._run(all_(), timeout=30)

    # -- observe --------------------------------------------------------------------------
    def _poll_all(self) -> dict[str, dict | None]:
        timeout = self.inventory.channel.poll_timeout

        async def one(name: str, c: AgentClient) -> tuple[str, dict | None]:
            try:
                return name, await asyncio.wait_for(c.poll(self.verifier, timeout), timeout + 0.05)
            except (AgentUnavailable, PQCError, TimeoutError, ValueError) as err:
                c.last_error = str(err)
                return name, None

        async def all_() -> dict:
            return dict(await asyncio.gather(*(one(n, c) for n, c in self.clients.items())))

        return self._run(all_(), timeout=timeout + 2.0)

    def observe(self) -> Telemetry:
        snaps = self._poll_all()
        t = self.now()
        for name, s in snaps.items():
            if s is None:
                continue
            self.last[name] = s
            for hi in s["hardifs"].values():
                if hi.get("mac"):
                    self.mac_owner[hi["mac"].lower()] = name
            if s.get("mesh_address"):
                self.mac_owner[s["mesh_address"].lower()] = name
        self.reporting_now = {n for n, s in snaps.items() if s is not None}
        for name, s in snaps.items():
            for dst, age, rtt in (s or {}).get("probes", []):
                self.probe_rows.append({"t_s": t - age, "src": name, "dst": dst, "rtt_ms": rtt})
        tel = self._telemetry(t, snaps)
        self.last_nh = tel.orig_next_hop
        self._health_checks(snaps)
        return tel

    def _telemetry(self, t: float, snaps: dict[str, dict | None]) -> Telemetry:
        n = len(self.names)
        nh = np.full((n, n), -1, np.int32)
        tq = np.zeros((n, n), np.uint8)
        last = np.full((n, n), np.nan, np.float32)
        tx = np.zeros(n, np.int64)
        rx = np.zeros(n, np.int64)
        interval = np.zeros(n, np.float32)
        reporting = np.zeros(n, bool)
        lsrc, ldst, ltq, llast = [], [], [], []
        own = self.mac_owner
        for name, s in snaps.items():
            i = self.index[name]
            if s is None:
                continue
            reporting[i] = True
            interval[i] = s["orig_interval_ms"] / 1000
            for hi in s["hardifs"].values():
                tx[i] += hi.get("tx_packets", 0)
                rx[i] += hi.get("rx_packets", 0)
            one_hop = {}
            for orig, neigh, _hif, q, thr, seen_ms, best in s["originators"]:
                o, h = orig.lower(), neigh.lower()
                if o == h:
                    one_hop[h] = q if q is not None else _thr_tq(thr)
                dst, hop = own.get(o), own.get(h)
                if best and dst in self.index and hop in self.index:
                    j = self.index[dst]
                    nh[i, j] = self.index[hop]
                    tq[i, j] = q if q is not None else _thr_tq(thr)
                    last[i, j] = seen_ms / 1000
            for neigh, _hif, q, thr, seen_ms in s["neighbours"]:
                peer = own.get(neigh.lower())
                if peer in self.index:
                    lsrc.append(i)
                    ldst.append(self.index[peer])
                    ltq.append(q if q is not None else one_hop.get(neigh.lower(), _thr_tq(thr)))
                    llast.append(seen_ms / 1000)
        acc: dict[tuple[int, int], list] = {}
        for r in reversed(self.probe_rows):
            if r["t_s"] < t - self.probe_window_s - 10.0:  # rows arrive roughly in time order
                break
            if r["t_s"] < t - self.probe_window_s:
                continue
            if r["src"] in self.index and r["dst"] in self.index:
                a = acc.setdefault((self.index[r["src"]], self.index[r["dst"]]), [0, 0, 0.0])
                a[0] += 1
                if r["rtt_ms"] is not None:
                    a[1] += 1
                    a[2] += r["rtt_ms"] / 2
        keys = sorted(acc)
        return Telemetry(t=t, nodes=list(self.names), reporting=reporting, orig_next_hop=nh, orig_tq=tq,
                         orig_last_seen=last, link_src=np.array(lsrc, np.int32), link_dst=np.array(ldst, np.int32),
                         link_tq=np.array(ltq, np.uint8), link_last_seen=np.array(llast, np.float32),
                         tx_packets=tx, rx_packets=rx, orig_interval_s=interval,
                         probe_src=np.array([k[0] for k in keys], np.int32),
                         probe_dst=np.array([k[1] for k in keys], np.int32),
                         probe_sent=np.array([acc[k][0] for k in keys], np.int32),
                         probe_ok=np.array([acc[k][1] for k in keys], np.int32),
                         probe_latency_ms=np.array([acc[k][2] / acc[k][1] if acc[k][1] else np.nan for k in keys],
                                                   np.float32),
                         extra={"protocol": "batman", "source": "live agents",
                                "algo": {n: s.get("algo") for n, s in snaps.items() if s},
                                "yggdrasil": {n: s.get("yggdrasil") for n, s in snaps.items() if s}})

    # -- apply ----------------------------------------------------------------------------
    def apply(self, signed: SignedAction) -> ActionResult:
        a: Action = signed.action
        t = self.now()
        try:
            verdict, detail = self._send(signed)
        except AgentUnavailable as err:
            verdict, detail = "unreachable", str(err)
        applied = verdict == "applied"  # the controller logs it (one "action" event, as in sim and emu)
        return ActionResult(a, applied, t, detail=detail if applied else "",
                            rejected_reason="" if applied else f"{verdict}: {detail}")

    def _send(self, signed: SignedAction) -> tuple[str, str]:
        a = signed.action
        try:
            spec = self.inventory.node(a.node)
        except KeyError:
            return "unknown_node", f"{a.node} is not in the inventory"
        if a.kind not in spec.allow_actions:
            return "not_allowed", f"{a.kind} not allowed on {a.node} by the inventory"
        if signed.envelope is None:
            return "unsigned", "live commands must be signed"
        s = self.inventory.safety
        header = {"op": "apply", "dry_run": not self.apply_enabled, "confirm_within_s": s.confirm_within}
        if self.apply_enabled:
            changed = {c.node for c in self.pending}
            if a.node not in changed and len(changed) + 1 > max(1, int(s.max_changed_fraction * len(self.names))):
                return "blast_radius", (f"{len(changed)} node(s) already have unconfirmed changes; limit "
                                        f"{s.max_changed_fraction:.0%} of {len(self.names)}")
            if not self.node_budget[a.node].available() or not self.fleet_budget.available():
                return "rate_limited", "controller rate budget spent (per node or fleet)"
            self.node_budget[a.node].take()
            self.fleet_budget.take()
        h, _ = self._run(self.clients[a.node].request(header, signed.envelope, timeout_s=3.0), timeout=10)
        verdict = h.get("verdict", "error")
        self.envelope_bytes.append(len(signed.envelope))
        if "verify_ms" in h:
            self.verify_ms.append(float(h["verify_ms"]))
        if verdict not in ("applied", "dry_run"):
            self.verdicts[verdict] = self.verdicts.get(verdict, 0) + 1
        if verdict == "applied":
            nb = len(self.last.get(a.node, {}).get("neighbours", []))
            self.pending = [c for c in self.pending if c.node != a.node]  # joined the node's open change
            self.pending.append(_Change(a.node, h["change"], a.kind, time.monotonic(), nb))
        return verdict, h.get("why", "")

    def _health_checks(self, snaps: dict[str, dict | None]) -> None:
        """Confirm changes whose node is healthy after ``health_check_after``, revert the rest."""
        wait = self.inventory.safety.health_check_after
        for c in list(self.pending):
            if time.monotonic() - c.at < wait:
                continue
            s = snaps.get(c.node)
            healthy = s is not None and (c.kind == "hardif_down" or c.neighbours_before == 0
                                         or len(s["neighbours"]) > 0)
            op = {"op": "confirm", "change": c.change} if healthy else {"op": "revert", "why": "failed health check"}
            try:
                h, _ = self._run(self.clients[c.node].request(op, timeout_s=2.0), timeout=5)
                outcome = ("confirmed" if h.get("ok") else "expired") if healthy else "reverted"
            except AgentUnavailable as err:
                outcome = f"unconfirmed ({err}); the node reverts it by itself"
            self.pending.remove(c)
            self.event("commit", c.node, outcome, f"{c.kind} change {c.change}")

    def security(self) -> dict:
        """The control plane's side of the run, in the shape ``sim`` reports it."""
        from twin.pqc import fragments

        hs = [x for c in self.clients.values() for x in c.handshake_s]
        env = max(self.envelope_bytes, default=0)
        return {"attempts": {}, "rejected": dict(self.verdicts), "malicious_applied": 0,
                "signer": self.identity.spiffe_id,
                "handshake_cost_ms": round(float(np.median(hs)) * 1000, 3) if hs else None,
                "envelope_bytes": env or None, "envelope_frames": fragments(env) if env else None}

    # -- faults ---------------------------------------------------------------------------
    def inject(self, kind: str, node: str) -> tuple[str, str]:
        """Send a signed fault (node_crash / node_recover) to a node's agent."""
        payload = json.dumps({"fault": kind, "node": node}, sort_keys=True).encode()
        env = sign_action(self.identity, payload, ttl_s=30.0, now=time.time())
        try:
            h, _ = self._run(self.clients[node].request({"op": "fault"}, env, timeout_s=3.0), timeout=10)
            return h.get("verdict", "error"), h.get("why", "")
        except AgentUnavailable as err:
            return "unreachable", str(err)


def _thr_tq(thr: int | None) -> int:
    """B.A.T.M.A.N. V reports throughput (kbit/s), not TQ; the loop's TQ columns get a 0-255
    quality on a log scale (1 Mbit/s -> 128, 1 Gbit/s -> 255) and throughput stays in the snapshot."""
    if not thr:
        return 0
    return int(max(0, min(255, 128 + 127 * np.log10(max(thr, 1) / 1000) / 3)))


class LiveSigner:
    """The controller's ML-DSA-65 signer for live commands: wall-clock issue times (agents check
    expiry and replay against their own clocks), whatever clock the loop runs on."""

    def __init__(self, identity: NodeIdentity, ttl_s: float = 30.0) -> None:
        self.identity = identity
        self.ttl_s = ttl_s

    def sign(self, action: Action, now: float) -> bytes:
        return sign_action(self.identity, action, ttl_s=self.ttl_s, now=time.time())
