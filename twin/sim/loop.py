"""The MAPE-K loop on simulated time: the brain from :func:`twin.mapek.factory.build_brain`,
the nodes' reports and the commands over the modelled control plane (:mod:`twin.sim.control`).

Each poll period the controller polls every node; the loop iterates once the poll's reports are
in (or every ``loop.period`` if one is set). While a diagnosis waits for confirmation the next
poll comes after a quarter period (a real controller re-polls a suspect at once). The measured
cost of Observe + Monitor + Analyze + Plan and of each signature delays the commands, and the
calibrated ML-DSA-65 costs of signing and checking each report delay the reports
(``loop.charge_costs: false`` records costs without charging them, for byte-reproducible runs).
"""

from __future__ import annotations

import numpy as np

from twin.control.view import ReportView
from twin.mapek.factory import Brain, build_brain, control_plane
from twin.sim.adapter import SimAdapter
from twin.sim.attacks import attack_process
from twin.sim.control import SimChannel, poll


class LoopHandle:
    """What run.py gets back: the brain once the process has started, and its stats."""

    def __init__(self):
        self.brain: Brain | None = None
        self.adapter: SimAdapter | None = None
        self.channel: SimChannel | None = None
        self.plane = None
        self.pqc_costs: dict | None = None

    @property
    def controller(self):
        return self.brain.controller if self.brain else None

    def channel_info(self) -> dict | None:
        """How the loop reached the nodes in this run (for ``control_overhead.channel``)."""
        if self.channel is None or self.adapter is None or self.adapter.view is None:
            return None
        return {"path": self.channel.spec.path, "poll_s": self.channel.spec.poll, "polls": self.adapter.view.polls,
                "reports": self.adapter.view.reports,
                "controller": self.adapter.twin.names[self.channel.ctrl] if self.channel.in_band else None}

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


def make_loop_process(world, *, loop: bool = True):
    """A SimPy process factory: the control plane (and attacks) always, the loop when ``loop``."""
    from twin.pqc import get_costs, sizes
    from twin.topology import most_central

    sc = world.scenario
    handle = LoopHandle()
    plane = control_plane(sc.loop, attacks=bool(sc.attacks))
    handle.plane = plane

    def process(env, twin, rec):
        adapter = SimAdapter(twin, env, rec, world, verifier=plane.verify if plane else None)
        handle.adapter = adapter
        if sc.attacks and plane is not None:
            env.process(attack_process(env, adapter, plane, sc.attacks, most_central(world.graph)))
        if not loop:
            return
        sz = sizes()
        channel = SimChannel(sc.control, twin, world, sc.seed, envelope_overhead=sz["envelope_overhead"],
                             action_envelope=sz["action_envelope"])
        handle.channel = channel
        charge = sc.loop.charge_costs
        costs = get_costs() if charge else None
        handle.pqc_costs = costs if plane is not None else None
        view = ReportView(twin.names, stale_after_s=2.5 * sc.control.poll + 0.5)
        adapter.attach(channel, view, verify_cost_s=costs["verify_action"] if costs else 0.0)
        brain = build_brain(adapter, sc.loop, base_interval_s=sc.routing.orig_interval if not adapter.babel
                            else sc.routing.hello_interval, plane=plane,
                            source_dir=sc.source.parent if sc.source else None, run_id=f"{sc.name}/seed{sc.seed}")
        handle.brain = brain
        ctl = brain.controller
        if plane is not None and charge:
            # mutual-auth hybrid (X-Wing + ML-DSA-65) session with every node before acting, at
            # the cost measured on this machine (calibrated once, cached)
            yield env.timeout(costs["handshake"] * len(world.graph))
        period = sc.loop.period
        next_poll = env.now
        while True:
            if env.now < next_poll:
                yield env.timeout(next_poll - env.now)
            started = env.now
            yield env.process(poll(env, channel, adapter, costs))
            ticks = 1 if period is None else max(1, int(round(sc.control.poll / period)))
            for k in range(ticks):
                if k:
                    yield env.timeout(period)
                yield from _iterate(env, ctl, rec, charge)
            gap = sc.control.poll / 4 if ctl.wants_confirmation else sc.control.poll
            next_poll = max(env.now, started + gap)

    return process, handle


def _iterate(env, ctl, rec, charge: bool):
    it = ctl.iterate()
    yield env.timeout(it.mape_cost_s if charge else 0.0)  # the loop's own compute delays its decisions
    if it.actions:
        # each command leaves as soon as it is signed (measured cost)
        for k, cost in enumerate(ctl.sign(it)):
            yield env.timeout(cost if charge else 0.0)
            ctl.send(it, k)
    ctl.finish(it)
    rec.other.extend(ctl.log)
    ctl.log.clear()


__all__ = ["LoopHandle", "make_loop_process"]
