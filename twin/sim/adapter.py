"""``SimAdapter``: the :class:`twin.adapter.MeshAdapter` of the SimPy twin.

With a control channel attached (:mod:`twin.sim.control`, every loop run), ``observe()`` is the
controller's view built from the nodes' signed reports, each with its own age, and ``apply()``
sends a command over that channel: it takes effect when it arrives, or is reported undelivered.
Without one (tests, benchmarks of the brain alone), ``observe()`` reads every node at once.

Each action changes the twin exactly as the real command changes a node (see
:data:`twin.adapter.ACTION_KINDS`): ``set_orig_interval`` takes effect when the node schedules
its next OGM (the pending one keeps its send time), removing a hard interface purges every
neighbour on it and their windows restart empty, quarantine drops the node's traffic at its
neighbours. A command for a node that is down fails, as it would over the network.
"""

from __future__ import annotations

import time

import numpy as np

from twin.adapter import Action, ActionResult, SignedAction, Telemetry, capability_set
from twin.control.overhead import BABEL_FRAME_BYTES, OGM_FRAME_BYTES
from twin.sim.model import BatmanTwin

#: what the twin models of every protocol (the yggdrasil overlay it does not)
_TWIN_ACTIONS = ("set_orig_interval", "set_hop_penalty", "hardif_down", "hardif_up", "quarantine", "unquarantine",
                 "restart_routing")
CAPABILITIES = capability_set("batman_iv", _TWIN_ACTIONS, features=("observe", "probes", "twin"))
BABEL_CAPABILITIES = capability_set("babel", _TWIN_ACTIONS, features=("observe", "probes", "twin"))


class SimAdapter:
    mode = "sim"

    def __init__(self, twin: BatmanTwin, env, rec, world, *, verifier=None):
        self.twin = twin
        self.env = env
        self.rec = rec
        self.world = world
        self.verifier = verifier
        self._probe_cursor = 0
        self.verify_s: list[float] = []
        self.rejected: dict[str, int] = {}
        self.channel = None  # twin.sim.control.SimChannel, when the loop runs
        self.view = None  # twin.control.view.ReportView fed by the channel's polls
        self.verify_cost_s = 0.0  # node-side envelope check, charged before a command acts

    def attach(self, channel, view, *, verify_cost_s: float = 0.0) -> None:
        """From now on observe through ``view`` and command through ``channel``."""
        self.channel, self.view, self.verify_cost_s = channel, view, verify_cost_s

    @property
    def routing_frame_bytes(self) -> int:
        return BABEL_FRAME_BYTES if self.babel else OGM_FRAME_BYTES

    def add_watchdog(self, tel: Telemetry) -> None:
        """Each neighbour-table row gets what the reporting node overheard its neighbour relay
        (-1 where the link is down and it hears nothing): the neighbours' view of a relay's
        forwarding, never the relay's own counter."""
        st = self.twin.st
        e = st.nbr_index[tel.link_dst, tel.link_src]  # the neighbour's transmissions toward the reporter
        hears = (e >= 0) & (st.up[np.maximum(e, 0)] == 1) & (st.alive[tel.link_dst] == 1)
        tel.link_fwd_heard = np.where(hears, self.twin.forwarded[tel.link_dst], -1).astype(np.int64)

    def now(self) -> float:
        return float(self.env.now)

    def capabilities(self) -> frozenset[str]:
        return BABEL_CAPABILITIES if self.babel else CAPABILITIES

    @property
    def babel(self) -> bool:
        return getattr(self.twin, "protocol", "batman_iv") == "babel"

    def observe(self) -> Telemetry:
        if self.view is not None:
            tel = self.view.telemetry(self.env.now)
        else:
            self.twin.advance(self.env.now)
            tel = self.twin.telemetry(self.env.now)
            self.add_watchdog(tel)
        k0, k1 = self._probe_cursor, len(self.rec.probe_t)
        self._probe_cursor = k1
        if k1 > k0:
            flow = np.concatenate(self.rec.probe_flow[k0:k1])
            pair = np.concatenate(self.rec.probe_pair[k0:k1])
            ok = np.concatenate(self.rec.probe_code[k0:k1]) == 0
            key = flow.astype(np.int64) * 1_000_000 + pair
            uniq, inv = np.unique(key, return_inverse=True)
            sent = np.bincount(inv)
            good = np.bincount(inv, weights=ok).astype(np.int32)
            idx = self.twin.index
            src = np.empty(len(uniq), np.int32)
            dst = np.empty(len(uniq), np.int32)
            for j, kk in enumerate(uniq):
                a, b = self.world.flows[int(kk // 1_000_000)].pairs[int(kk % 1_000_000)]
                src[j], dst[j] = idx[a], idx[b]
            if self.view is not None:  # a probing node's results come with its report, or not at all
                fresh = tel.report_age[src] <= 1.5 * self.channel.spec.poll
                src, dst, sent, good = src[fresh], dst[fresh], sent[fresh], good[fresh]
            tel.probe_src, tel.probe_dst, tel.probe_sent, tel.probe_ok = src, dst, sent.astype(np.int32), good
        return tel

    def apply(self, signed: SignedAction) -> ActionResult:
        """The controller sends a command: over the control channel when one is attached (it acts
        on arrival, after the node checked its envelope), else straight to the node."""
        if self.channel is None:
            return self.node_apply(signed)
        a = signed.action
        now = self.now()
        if a.node not in self.twin.index:
            return ActionResult(a, False, now, rejected_reason=f"unknown node {a.node}")
        ok, delay, why = self.channel.command(self.twin.index[a.node], now)
        if not ok:
            return ActionResult(a, False, now, rejected_reason=why)
        arrive = now + delay + self.verify_cost_s
        reason = self._verify(signed, arrive)
        if reason:
            return ActionResult(a, False, now, rejected_reason=reason)
        bad = self._check(a)
        if bad:
            return ActionResult(a, False, now, rejected_reason=bad)
        self.env.process(self._later(arrive - now, a))
        return ActionResult(a, True, arrive, detail=f"{a.kind} {a.params}")

    def _later(self, delay: float, a: Action):
        if delay > 0:
            yield self.env.timeout(delay)
        self._effect(a, self.now())

    def _verify(self, signed: SignedAction, now: float) -> str:
        if self.verifier is None:
            return ""
        t0 = time.perf_counter()
        reason = self.verifier(signed, now)
        self.verify_s.append(time.perf_counter() - t0)
        if reason:
            self.rejected[reason.split(":")[0]] = self.rejected.get(reason.split(":")[0], 0) + 1
        return reason or ""

    def _check(self, a: Action) -> str:
        """Arguments a node agent refuses whatever the mesh's state."""
        if a.kind == "set_orig_interval":
            ms = int(a.params.get("ms", 1000))
            lo = 20 if self.babel else 40
            if not lo <= ms <= 60_000:
                return f"orig_interval {ms} ms outside {lo}..60000"
        if a.kind == "set_hop_penalty" and not 0 <= int(a.params.get("value", 30)) <= 255:
            return f"hop_penalty {a.params.get('value')} outside 0..255"
        if a.kind not in _TWIN_ACTIONS:
            return f"{a.kind} has no model in sim (needs yggdrasil: emu)"
        return ""

    def _effect(self, a: Action, now: float) -> ActionResult:
        """The command runs on the node now (if it is still up)."""
        tw = self.twin
        x = tw.index[a.node]
        if a.kind not in ("quarantine", "unquarantine") and not tw.st.alive[x]:
            return ActionResult(a, False, now, rejected_reason=f"{a.node} went down before the command arrived")
        tw.advance(now)
        if self.babel:
            return self._apply_babel(a, x, now)
        return self._apply_batman(a, x, now)

    def node_apply(self, signed: SignedAction) -> ActionResult:
        """A command arriving at its node now (an attacker on the mesh, or no control channel)."""
        a = signed.action
        now = self.now()
        reason = self._verify(signed, now)
        if reason:
            return ActionResult(a, False, now, rejected_reason=reason)
        tw = self.twin
        if a.node not in tw.index:
            return ActionResult(a, False, now, rejected_reason=f"unknown node {a.node}")
        x = tw.index[a.node]
        target_is_subject = a.kind in ("quarantine", "unquarantine")
        if not target_is_subject and not tw.st.alive[x]:
            return ActionResult(a, False, now, rejected_reason=f"{a.node} unreachable (no answer)")
        tw.advance(now)
        if self.babel:
            return self._apply_babel(a, x, now)
        return self._apply_batman(a, x, now)

    def _apply_batman(self, a: Action, x: int, now: float) -> ActionResult:
        tw = self.twin
        st = tw.st
        if a.kind == "set_orig_interval":
            ms = int(a.params.get("ms", 1000))
            if not 40 <= ms <= 60_000:
                return ActionResult(a, False, now, rejected_reason=f"orig_interval {ms} ms outside 40..60000")
            st.interval[x] = ms / 1000.0
        elif a.kind == "set_hop_penalty":
            v = int(a.params.get("value", 30))
            if not 0 <= v <= 255:
                return ActionResult(a, False, now, rejected_reason=f"hop_penalty {v} outside 0..255")
            st.hop_penalty[x] = v
        elif a.kind == "hardif_down":
            tw.hardif(x, up=False)
        elif a.kind == "hardif_up":
            tw.hardif(x, up=True)
        elif a.kind == "quarantine":
            st.quarantined[x] = 1
        elif a.kind == "unquarantine":
            st.quarantined[x] = 0
        elif a.kind == "restart_routing":
            tw.reboot(x)
        else:
            return ActionResult(a, False, now, rejected_reason=f"{a.kind} has no model in sim (needs yggdrasil: emu)")
        return ActionResult(a, True, now, detail=f"{a.kind} {a.params}")

    def _apply_babel(self, a: Action, x: int, now: float) -> ActionResult:
        """The same commands emu runs on babeld: hello interval, rxcost, interface down/up."""
        tw = self.twin
        if a.kind == "set_orig_interval":
            ms = int(a.params.get("ms", 1000))
            if not 20 <= ms <= 60_000:
                return ActionResult(a, False, now, rejected_reason=f"interval {ms} ms outside 20..60000")
            tw.set_hello_interval(x, ms / 1000.0)
        elif a.kind == "set_hop_penalty":
            tw.set_hop_penalty(x, int(a.params.get("value", 30)))
        elif a.kind in ("hardif_down", "hardif_up"):
            peer = a.params.get("peer")
            if peer is not None and (peer not in tw.index or tw.st.nbr_index[x, tw.index[peer]] < 0):
                return ActionResult(a, False, now, rejected_reason=f"{a.node} has no link to {peer}")
            tw.hardif(x, up=a.kind == "hardif_up", peer=peer)
        elif a.kind == "quarantine":
            tw.st.quarantined[x] = 1
        elif a.kind == "unquarantine":
            tw.st.quarantined[x] = 0
        elif a.kind == "restart_routing":
            tw.reboot(x)
        else:
            return ActionResult(a, False, now, rejected_reason=f"{a.kind} has no model in sim (needs yggdrasil: emu)")
        return ActionResult(a, True, now, detail=f"{a.kind} {a.params}")


__all__ = ["SimAdapter"]
