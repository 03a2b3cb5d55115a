"""``SimAdapter``: the :class:`twin.adapter.MeshAdapter` of the SimPy twin, and the SimPy process
that runs the MAPE-K loop on simulated time.

Each action changes the twin exactly as the real command changes a node (see
:data:`twin.adapter.ACTION_KINDS`): ``set_orig_interval`` takes effect when the node schedules
its next OGM (the pending one keeps its send time), removing a hard interface purges every
neighbour on it and their windows restart empty, quarantine drops the node's traffic at its
neighbours. A command sent to a node that is down fails, as it would over the network.
"""

from __future__ import annotations

import time

import numpy as np

from twin.adapter import Action, ActionResult, SignedAction, Telemetry
from twin.mapek.loop import Controller
from twin.sim.model import BatmanTwin

CAPABILITIES = frozenset({"batman_iv", "twin"})
#: the babel twin: what emu offers on babeld, less the yggdrasil overlay the twin does not model
BABEL_CAPABILITIES = frozenset({"twin", "observe", "probes", "protocol:babel", "set_orig_interval", "set_hop_penalty",
                                "hardif_down", "hardif_up", "quarantine", "unquarantine", "restart_routing"})


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

    def now(self) -> float:
        return float(self.env.now)

    def capabilities(self) -> frozenset[str]:
        return BABEL_CAPABILITIES if self.babel else CAPABILITIES

    @property
    def babel(self) -> bool:
        return getattr(self.twin, "protocol", "batman_iv") == "babel"

    def observe(self) -> Telemetry:
        self.twin.advance(self.env.now)
        tel = self.twin.telemetry(self.env.now)
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
            tel.probe_src, tel.probe_dst, tel.probe_sent, tel.probe_ok = src, dst, sent.astype(np.int32), good
        return tel

    def apply(self, signed: SignedAction) -> ActionResult:
        a = signed.action
        now = self.now()
        if self.verifier is not None:
            t0 = time.perf_counter()
            reason = self.verifier(signed, now)
            self.verify_s.append(time.perf_counter() - t0)
            if reason:
                self.rejected[reason.split(":")[0]] = self.rejected.get(reason.split(":")[0], 0) + 1
                return ActionResult(a, False, now, rejected_reason=reason)
        tw = self.twin
        if a.node not in tw.index:
            return ActionResult(a, False, now, rejected_reason=f"unknown node {a.node}")
        x = tw.index[a.node]
        target_is_subject = a.kind in ("quarantine", "unquarantine")
        if not target_is_subject and not tw.st.alive[x]:
            return ActionResult(a, False, now, rejected_reason=f"{a.node} unreachable (no answer)")
        tw.advance(now)
        st = tw.st
        if self.babel:
            return self._apply_babel(a, x, now)
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


def load_detector(sc):
    """The scenario's trained anomaly model and its version (clear error when missing)."""
    from pathlib import Path

    from twin.errors import RunError
    from twin.ml.persist import load_model

    if not sc.loop.model:
        raise RunError("loop.detector isolation_forest needs loop.model: a file from `twin train detector`")
    path = Path(sc.loop.model)
    if not path.is_absolute() and sc.source is not None:
        path = sc.source.parent / path
    if not path.exists():
        raise RunError(f"anomaly model {path} not found: create it with `twin train detector --out {path}`")
    return load_model(path)


class LoopHandle:
    """What run.py gets back: the controller once the process has started, and its stats."""

    def __init__(self):
        self.controller: Controller | None = None
        self.adapter: SimAdapter | None = None
        self.plane = None
        self.pqc_costs: dict | None = None

    def stats(self) -> dict:
        s = self.controller.stats() if self.controller else {}
        if self.plane is not None:
            s["security"] = self.plane.summary()
            if self.pqc_costs:
                from twin.pqc import fragments, sizes

                sz = sizes()
                s["security"]["handshake_cost_ms"] = round(self.pqc_costs["handshake"] * 1000, 3)
                s["security"]["envelope_bytes"] = sz.get("action_envelope")
                s["security"]["envelope_frames"] = fragments(sz.get("action_envelope", 0))
        if self.adapter is not None:
            v = self.adapter.verify_s
            s["verify_p50_ms"] = round(float(np.median(v)) * 1000, 4) if v else None
            s["rejected"] = dict(self.adapter.rejected)
        return s


def make_loop_process(world, *, signer=None, verifier=None, knowledge=None, detector=None, loop: bool = True):
    """A SimPy process factory running the controller every ``loop.period`` of sim time.

    Commands are signed by the controller's ML-DSA-65 identity and verified by the nodes (real
    crypto); signing and the loop's own compute are measured and delay the commands' effect.
    Control-plane attacks of the scenario are injected through the same node-facing adapter.
    """
    from twin.mapek.analyze import Analyzer
    from twin.mapek.knowledge import KnowledgeBase
    from twin.mapek.plan import Planner
    from twin.sim.security import ControlPlane, attack_process
    from twin.topology import most_central

    sc = world.scenario
    handle = LoopHandle()
    detector_version = None
    if detector is None and sc.loop.enabled and sc.loop.detector == "isolation_forest":
        detector, detector_version = load_detector(sc)
    plane = ControlPlane() if sc.loop.sign or sc.attacks else None
    handle.plane = plane

    def process(env, twin, rec):
        adapter = SimAdapter(twin, env, rec, world, verifier=verifier or (plane.verify if plane else None))
        handle.adapter = adapter
        if sc.attacks and plane is not None:
            env.process(attack_process(env, adapter, plane, sc.attacks, most_central(world.graph)))
        if not loop:
            return
        kb = knowledge or KnowledgeBase()
        ctl = Controller(adapter, planner=Planner(allowed=sc.loop.actions, knowledge=kb,
                                                  base_interval_ms=int(round(sc.routing.orig_interval * 1000))),
                         analyzer=Analyzer(detector=detector, warmup_s=sc.loop.warmup),
                         signer=signer or (plane if sc.loop.sign else None),
                         knowledge=kb)
        handle.controller = ctl
        if detector_version:
            ctl.model_version = detector_version
        if plane is not None:
            # mutual-auth hybrid (X-Wing + ML-DSA-65) session with every node before acting, at
            # the cost measured on this machine (calibrated once, cached)
            from twin.pqc import get_costs

            costs = get_costs()
            handle.pqc_costs = costs
            yield env.timeout(costs["handshake"] * len(world.graph) if sc.loop.charge_costs else 0.0)
        while True:
            yield env.timeout(sc.loop.period)
            it = ctl.iterate()
            charge = sc.loop.charge_costs
            yield env.timeout(it.mape_cost_s if charge else 0.0)  # the loop's own compute delays its decisions
            if it.actions:
                # each command leaves as soon as it is signed (measured cost), a 3-frame envelope
                # takes ~2 ms to cross the mesh
                for k, cost in enumerate(ctl.sign(it)):
                    yield env.timeout((cost if charge else 0.0) + (0.002 if k == 0 else 0.0))
                    ctl.send(it, k)
            ctl.finish(it)
            rec.other.extend(ctl.log)
            ctl.log.clear()

    return process, handle


__all__ = ["SimAdapter", "make_loop_process", "Action"]
