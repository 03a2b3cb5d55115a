"""``twin agent``: the node agent. Serves telemetry and applies guarded, signed actions.

One asyncio server per node. A connection is first a handshake (:mod:`twin.live.wire`): a peer
whose identity is not from the mesh CA, is revoked, or is not one of the configured controllers
is refused and audited before the agent reads any state. Within a session the controller asks:

``info``     node, clock, batman-adv version and algorithm, capabilities, settings, pending change
``poll``     telemetry, signed by the node's identity (ML-DSA-65 telemetry envelope)
``apply``    a signed action envelope; checked (see :mod:`twin.live.safety`), then applied
             commit-confirmed, or with ``dry_run`` only checked and answered "would apply"
``confirm``  / ``revert``  the pending change
``begin_run`` / ``end_run``  snapshot the settings at a run's start / write them back at its end
``stop``     the kill switch: revert, write the run's snapshot back, refuse actions until ``resume``
``fault``    a signed fault (node_crash: the node leaves the mesh and stops answering polls;
             node_recover) allowed by this node's ``allow_faults``

Pending changes made in a session revert when that session closes: a controller that dies or
loses the node leaves nothing half-done behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from twin.adapter import Action
from twin.live import wire
from twin.live.agent_config import AgentConfig
from twin.live.audit import AuditLog
from twin.live.inventory import AGENT_FAULTS
from twin.live.kernel import NodeKernel, Settings
from twin.live.safety import CommitConfirmed, Refused, TokenBucket, target_settings
from twin.pqc import EnvelopeVerifier, HandshakeServer, NodeIdentity, PQCError, TrustBundle, sign_telemetry

AGENT_VERSION = "1"


class Agent:
    def __init__(self, cfg: AgentConfig, kernel: NodeKernel | None = None,
                 identity: NodeIdentity | None = None, bundle: TrustBundle | None = None) -> None:
        self.cfg = cfg
        self.identity = identity or NodeIdentity.load(cfg.identity)
        self.bundle = bundle or TrustBundle.load(cfg.trust_bundle)
        if kernel is None:
            if cfg.kernel == "static":
                from twin.live.kernel import StaticKernel

                kernel = StaticKernel(cfg.node, hardifs=tuple(cfg.hardifs))
            else:
                from twin.live.kernel import BatadvKernel

                kernel = BatadvKernel(cfg.mesh_if, cfg.hardifs)
        self.kernel = kernel
        self.audit = AuditLog(cfg.audit_log)
        self.hs = HandshakeServer(self.identity, self.bundle)
        self.verifier = EnvelopeVerifier(self.bundle, replay_window_s=60.0)
        self.bucket = TokenBucket(cfg.rate_per_min)
        self.cc = CommitConfirmed(self.kernel.write, self.audit.write)
        self.baseline: Settings | None = None
        self.run_id = ""
        self.halted = False
        self.silent = False  # injected node_crash: out of the mesh, polls unanswered
        self.last_verify_ms = 0.0
        self._lock = asyncio.Lock()
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._conns: set[asyncio.Task] = set()
        self.port = cfg.port
        self.prober = None
        from twin.live.agent_metrics import AgentMetrics

        self.metrics = AgentMetrics(cfg.node, cfg.metrics_port)

    # -- server ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._server = await asyncio.start_server(self._conn, self.cfg.listen, self.cfg.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._wake = asyncio.Event()
        self._tasks.add(asyncio.create_task(self._expiry()))
        from twin.live.probe import start_prober

        self.prober = await start_prober(self.cfg.probe_host, self.cfg.probe_port)
        self.probe_port = self.prober.transport.get_extra_info("sockname")[1]
        cur = await asyncio.to_thread(self.kernel.settings)
        self.audit.write("start", "ok", node=self.cfg.node, port=self.port, settings=cur.to_json())

    async def serve_forever(self) -> None:
        await self.start()
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self.prober is not None:
            self.prober.close()
        if self._server is not None:
            self._server.close()
        conns = [t for t in self._conns if not t.done()]
        for t in conns:
            t.cancel()
        await asyncio.gather(*conns, return_exceptions=True)
        async with self._lock:
            await asyncio.to_thread(self.cc.revert, "agent shutting down")
        self.audit.write("stop", "ok", node=self.cfg.node)
        self.audit.close()
        self.metrics.close()

    async def _expiry(self) -> None:
        """Revert the pending change at its deadline; sleeps until then (woken when a change arrives),
        so an idle agent does not wake up at all."""
        while True:
            p = self.cc.pending
            timeout = None if p is None else max(0.0, p.deadline - time.monotonic())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass
            self._wake.clear()
            if self.cc.pending is not None and time.monotonic() >= self.cc.pending.deadline:
                async with self._lock:
                    await asyncio.to_thread(self.cc.expire)

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
            task.add_done_callback(self._conns.discard)
        addr = writer.get_extra_info("peername")
        where = f"{addr[0]}:{addr[1]}" if addr else "?"
        try:
            ch = await wire.server_handshake(reader, writer, self.hs, timeout_s=5.0)
        except (PQCError, wire.ChannelError, ValueError) as err:
            why = f"{type(err).__name__}: {err}"
            self.audit.write("connect", "refused", peer=where, why=why)
            self.metrics.refused.inc()
            wire.refuse(writer, why)
            writer.close()
            return
        if ch.peer not in self.cfg.controllers:
            why = f"{ch.peer} is not a controller of this node"
            self.audit.write("connect", "refused", peer=f"{ch.peer}@{where}", why=why)
            self.metrics.refused.inc()
            await ch.close()
            return
        sid = f"{ch.peer}#{id(ch):x}"
        self.audit.write("connect", "accepted", peer=f"{ch.peer}@{where}")
        try:
            while True:
                try:
                    header, blob = await ch.recv(timeout_s=3600.0)
                except wire.ChannelError:
                    break
                reply = await self._handle(header, blob, sid)
                if reply is not None:
                    await ch.send(*reply)
        except (OSError, ConnectionError):
            pass
        finally:
            async with self._lock:
                if self.cc.pending is not None and self.cc.pending.peer == sid:
                    await asyncio.to_thread(self.cc.revert, "controller session closed", sid)
            self.audit.write("disconnect", "ok", peer=ch.peer)
            await ch.close()

    # -- requests -------------------------------------------------------------------------
    async def _handle(self, h: dict, blob: bytes, sid: str) -> tuple[dict, bytes] | None:
        op, rid = h.get("op"), h.get("id")
        base = {"id": rid, "op": op}
        if op == "poll":
            if self.silent:
                return None
            snap = await asyncio.to_thread(self.kernel.snapshot)
            from twin.live import ygg

            snap.update(node=self.cfg.node, pending=self.cc.pending.id if self.cc.pending else None,
                        probes=self.prober.report() if self.prober else [],
                        yggdrasil=(await asyncio.to_thread(ygg.read, self.cfg.yggdrasil_socket)
                                   if ygg.present(self.cfg.yggdrasil_socket) else None))
            self.metrics.observe(snap)
            env = sign_telemetry(self.identity, json.dumps(snap, separators=(",", ":")).encode(), ttl_s=10.0,
                                 now=time.time())
            return base, env
        if op == "probes":
            assert self.prober is not None
            self.prober.configure(h.get("targets", []), float(h.get("rate_hz", 10.0)))
            return {**base, "ok": True, "port": self.probe_port}, b""
        if op == "info":
            info = await asyncio.to_thread(self.kernel.info)
            cur = await asyncio.to_thread(self.kernel.settings)
            return {**base, "node": self.cfg.node, "spiffe": self.identity.spiffe_id, "time": time.time(),
                    "agent_version": AGENT_VERSION, "kernel": info, "settings": cur.to_json(),
                    "allow_actions": self.cfg.allow_actions, "allow_faults": self.cfg.allow_faults,
                    "pending": self.cc.pending.to_json() if self.cc.pending else None, "halted": self.halted,
                    "run": self.run_id, "silent": self.silent, "probe_port": self.probe_port}, b""
        async with self._lock:
            reply = await asyncio.to_thread(self._locked, op, h, blob, sid, base)
        self._wake.set()  # a change may have opened or moved a deadline
        return reply

    def _locked(self, op: str, h: dict, blob: bytes, sid: str, base: dict) -> tuple[dict, bytes]:
        peer = sid.split("#")[0]
        if op == "apply":
            return {**base, **self._apply(h, blob, sid, peer)}, b""
        if op == "fault":
            return {**base, **self._fault(h, blob, peer)}, b""
        if op == "confirm":
            ok = self.cc.confirm(str(h.get("change")), peer)
            return {**base, "ok": ok}, b""
        if op == "revert":
            p = self.cc.revert(str(h.get("why", "controller asked")), peer)
            return {**base, "ok": p is not None, "settings": self.kernel.settings().to_json()}, b""
        if op == "begin_run":
            self.run_id = str(h.get("run", ""))
            self.baseline = self.kernel.settings()
            self.halted = False
            self.audit.write("begin_run", "ok", peer=peer, run=self.run_id, settings=self.baseline.to_json())
            return {**base, "ok": True, "settings": self.baseline.to_json()}, b""
        if op in ("end_run", "stop"):
            self.cc.revert(f"{op} by controller", peer)
            self.silent = False
            if self.prober is not None:
                self.prober.paused = False
                self.prober.configure([], 1.0)
            restored = self.kernel.settings()
            if self.baseline is not None and restored != self.baseline:
                restored = self.kernel.write(self.baseline)
            ok = self.baseline is None or restored == self.baseline
            if op == "stop":
                self.halted = True
            self.audit.write(op, "ok" if ok else "failed", peer=peer, run=self.run_id, settings=restored.to_json())
            return {**base, "ok": ok, "settings": restored.to_json(), "baseline":
                    self.baseline.to_json() if self.baseline else None}, b""
        if op == "resume":
            self.halted = False
            self.audit.write("resume", "ok", peer=peer)
            return {**base, "ok": True}, b""
        return {**base, "error": f"unknown op {op!r}"}, b""

    def _verify(self, blob: bytes, peer: str) -> tuple[dict, object]:
        """Envelope checks; returns (decoded payload, verified envelope) or raises Refused."""
        t0 = time.perf_counter()
        try:
            va = self.verifier.verify(blob, time.time())
        except PQCError as err:
            raise Refused(type(err).__name__.removesuffix("Error").lower(), f"{type(err).__name__}: {err}") from None
        self.last_verify_ms = (time.perf_counter() - t0) * 1000
        if va.signer not in self.cfg.controllers:
            raise Refused("not_controller", f"signed by {va.signer}, not a controller of this node")
        try:
            return json.loads(va.payload), va
        except ValueError:
            raise Refused("malformed", "signed payload is not JSON") from None

    def _apply(self, h: dict, blob: bytes, sid: str, peer: str) -> dict:
        dry = bool(h.get("dry_run", True))
        what: dict = {}
        try:
            payload, va = self._verify(blob, peer)
            try:
                a = Action.from_bytes(va.payload)
            except (KeyError, TypeError, ValueError) as err:
                raise Refused("malformed", f"not an action: {err}") from None
            what = {"kind": a.kind, "node": a.node, "params": a.params, "reason": a.reason[:120],
                    "nonce": va.nonce.hex()}
            if self.halted:
                raise Refused("halted", "kill switch engaged (twin live stop); resume first")
            cur = self.kernel.settings()
            target = target_settings(a, self.cfg.node, self.cfg.allow_actions, cur)
            confirm_s = float(h.get("confirm_within_s", 15.0))
            if not 0 < confirm_s <= self.cfg.max_confirm_s:
                raise Refused("out_of_range", f"confirm deadline {confirm_s}s outside 0..{self.cfg.max_confirm_s}s")
            if dry:
                self.audit.write("action", "dry_run", peer=peer, why="dry run: checked, not applied", **what,
                                 target=target.to_json())
                self.metrics.actions.labels("dry_run").inc()
                return {"verdict": "dry_run", "why": f"would set {_diff(cur, target)}", "target": target.to_json(),
                        "verify_ms": round(self.last_verify_ms, 4)}
            if not self.bucket.take():
                raise Refused("rate_limited", f"rate budget of {self.cfg.rate_per_min:g}/min spent")
            before = self.cc.pending.before if self.cc.pending else cur
            p = self.cc.apply(before, target, confirm_s, sid, what)
        except Refused as r:
            self.audit.write("action", r.verdict, peer=peer, why=str(r), **what)
            self.metrics.actions.labels(r.verdict).inc()
            return {"verdict": r.verdict, "why": str(r)}
        except (OSError, RuntimeError, ValueError) as err:  # the kernel said no (BatadvError, netlink): say why
            self.audit.write("action", "failed", peer=peer, why=str(err), **what)
            self.metrics.actions.labels("failed").inc()
            return {"verdict": "failed", "why": f"kernel: {err}"}
        self.audit.write("action", "applied", peer=peer, why=_diff(cur, p.after), change=p.id, **what,
                         settings=p.after.to_json())
        self.metrics.actions.labels("applied").inc()
        return {"verdict": "applied", "why": _diff(cur, p.after), "change": p.id, "settings": p.after.to_json(),
                "confirm_within_s": confirm_s, "verify_ms": round(self.last_verify_ms, 4)}

    def _fault(self, h: dict, blob: bytes, peer: str) -> dict:
        try:
            payload, _va = self._verify(blob, peer)
            kind = payload.get("fault")
            if payload.get("node") != self.cfg.node:
                raise Refused("wrong_node", f"fault is for {payload.get('node')!r}, this agent is {self.cfg.node!r}")
            if kind not in AGENT_FAULTS or kind not in self.cfg.allow_faults:
                raise Refused("not_allowed", f"fault {kind!r} not allowed on this node "
                                             f"({', '.join(self.cfg.allow_faults) or 'none allowed'})")
            if kind == "node_crash":
                cur = self.kernel.settings()
                self.kernel.write(Settings(cur.orig_interval_ms, cur.hop_penalty, cur.aggregated_ogms,
                                           tuple((k, False) for k, _ in cur.hardifs)))
                self.silent = True
                if self.prober is not None:
                    self.prober.paused = True
            elif kind == "node_recover":
                cur = self.kernel.settings()
                base = self.baseline or cur
                self.kernel.write(Settings(cur.orig_interval_ms, cur.hop_penalty, cur.aggregated_ogms, base.hardifs))
                self.silent = False
                if self.prober is not None:
                    self.prober.paused = False
            else:
                raise Refused("not_allowed", f"fault {kind!r} is not implemented by this agent")
        except Refused as r:
            self.audit.write("fault", r.verdict, peer=peer, why=str(r))
            return {"verdict": r.verdict, "why": str(r)}
        self.audit.write("fault", "injected", peer=peer, fault=kind)
        return {"verdict": "injected", "why": kind}


def _diff(a: Settings, b: Settings) -> str:
    da, db = a.to_json(), b.to_json()
    parts = [f"{k} {da[k]}->{db[k]}" for k in ("orig_interval_ms", "hop_penalty", "aggregated_ogms") if da[k] != db[k]]
    parts += [f"{k} {'in' if v else 'out of'} mesh" for k, v in db["hardifs"].items() if da["hardifs"].get(k) != v]
    return ", ".join(parts) or "no change"


def run_agent(cfg: AgentConfig) -> None:
    """Run until SIGTERM/SIGINT; pending changes revert on the way out."""
    import signal

    kernel = None
    if cfg.kernel == "batadv":  # pyroute2's sync sockets must be created outside the running loop
        from twin.live.kernel import BatadvKernel

        kernel = BatadvKernel(cfg.mesh_if, cfg.hardifs)

    async def main() -> None:
        agent = Agent(cfg, kernel=kernel)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, stop.set)
        await agent.start()
        await stop.wait()
        with contextlib.suppress(Exception):
            await agent.close()

    asyncio.run(main())
