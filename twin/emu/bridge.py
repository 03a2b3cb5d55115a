"""Run a resolved scenario (:class:`twin.world.World`) in emulation and hand back the events in
the same shape as ``sim``, so the same analysis scores both and `twin compare` can put the
twin's prediction next to the emulated reality.

The scenario's routing protocol picks the daemon: ``babel`` runs babeld on every host (available
everywhere); ``batman_iv`` needs the batman-adv kernel module, and a machine without it gets a
clear error instead of a silent switch to another protocol.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from twin.errors import RunError
from twin.world import World


def run_world(world: World, *, progress=None, holder: dict | None = None):
    """Returns (events, engine info, wall seconds, loop stats or None). ``holder`` (optional) gets
    the controller as ``holder["ctl"]`` once it exists (controller metrics read it)."""
    from twin.emu.runner import run_emu

    sc = world.scenario
    protocol = {"babel": "babel", "batman_iv": "batman"}[sc.routing.protocol]
    pairs: list[tuple[str, str]] = []
    flow_of: list[tuple[int, int]] = []
    for fi, fl in enumerate(world.flows):
        for pi, pr in enumerate(fl.pairs):
            pairs.append(pr)
            flow_of.append((fi, pi))
    rate = max((f.rate for f in world.flows), default=1.0)
    holder = {} if holder is None else holder

    def on_tick(adapter):
        brain = holder.get("brain")
        if brain is None:
            from twin.mapek.factory import build_brain, control_plane

            plane = holder["plane"] = control_plane(sc.loop)
            node_side = VerifyingAdapter(adapter, plane) if plane else adapter
            brain = holder["brain"] = build_brain(node_side, sc.loop, base_interval_s=sc.routing.hello_interval,
                                                  plane=plane, source_dir=sc.source.parent if sc.source else None)
            holder["ctl"] = brain.controller
        brain.controller.tick()

    def prog(t, _d=None):
        if progress:
            progress(t)

    backend = choose_backend(sc)
    try:
        if backend == "uml":
            from twin.emu.uml.runner import UmlOptions, run_uml

            opts = UmlOptions(link_model=sc.emu.link_model, orig_interval_ms=round(sc.routing.orig_interval * 1000),
                              hop_penalty=sc.routing.hop_penalty, aggregation=sc.routing.aggregation > 0,
                              boot_wave=sc.emu.boot_wave)
            run = run_uml(world.graph, world.ops, pairs, duration_s=sc.duration, probe_rate_hz=rate, seed=sc.seed,
                          opts=opts, loop_period_s=(sc.loop.period or sc.control.poll) if sc.loop.enabled else None,
                          on_tick=on_tick if sc.loop.enabled else None, progress=prog)
        else:
            run = run_emu(world.graph, world.ops, pairs, duration_s=sc.duration, probe_rate_hz=rate, seed=sc.seed,
                          protocol=protocol, hello_interval_s=sc.routing.hello_interval,
                          loop_period_s=(sc.loop.period or sc.control.poll) if sc.loop.enabled else None,
                          on_tick=on_tick if sc.loop.enabled else None, progress=prog)
    except Exception as err:  # EmuError and friends: a run that could not happen, said clearly
        if err.__class__.__name__ == "EmuError":
            hint = (" (set routing.protocol: babel to emulate with babeld)"
                    if protocol == "batman" and backend == "netns" else "")
            raise RunError(f"emu: {err}{hint}") from err
        raise
    ev = run.events.copy()
    index = {p: i for i, p in enumerate(pairs)}
    key = list(zip(ev["node"].astype(object), ev["peer"].astype(object), strict=True))
    probe = (ev["kind"] == "probe").to_numpy()
    flow = np.full(len(ev), -1, np.int32)
    pair = np.full(len(ev), -1, np.int32)
    for j in np.flatnonzero(probe):
        i = index.get(key[j])
        if i is not None:
            flow[j], pair[j] = flow_of[i]
    ev["flow"] = flow
    ev["pair"] = pair
    for c in ("kind", "node", "peer", "outcome", "detail"):
        ev[c] = ev[c].astype("string")
    ev = ev.sort_values("t_s", kind="stable").reset_index(drop=True)
    engine = {"engine": "uml + batman-adv" if backend == "uml" else f"mininet + {protocol}", "backend": backend,
              "capabilities": run.capabilities, "load": run.load,
              "impairments": run.impairments, "convergence_s": run.convergence_s, "timings": run.timings}
    loop_info = holder["ctl"].stats() if "ctl" in holder else None
    if "brain" in holder:
        holder["brain"].finish()
    if loop_info is not None and holder.get("plane") is not None:
        loop_info["security"] = holder["plane"].summary()
    if not run.load.get("valid_run", True):
        engine["invalid"] = "host CPU saturated during the run: results do not describe the mesh"
    if backend == "uml":
        engine["versions"] = {k: run.capabilities.get(k) for k in ("uml_kernel", "batman_adv", "batctl", "algo")}
        engine["artifacts"] = getattr(run, "artifacts", {})
    return pd.DataFrame(ev), engine, run.wall_s, loop_info


def choose_backend(sc) -> str:
    """``uml`` or ``netns`` for this scenario: batman_iv runs on UML kernels when the host kernel has
    no batman-adv module (host namespaces stay the choice where it has it); ``emu.nodes`` forces."""
    if sc.emu.nodes != "auto":
        if sc.emu.nodes == "uml" and sc.routing.protocol != "batman_iv":
            raise RunError(f"emu.nodes: uml runs batman-adv kernels; routing.protocol {sc.routing.protocol!r} "
                           "needs emu.nodes: netns")
        return sc.emu.nodes
    if sc.routing.protocol != "batman_iv":
        return "netns"
    from twin.emu.capabilities import probe_capabilities

    return "netns" if probe_capabilities().get("batman_adv") else "uml"


class VerifyingAdapter:
    """The node agents' side of the signed control plane in emulation: every command's ML-DSA-65
    envelope is verified (signer, expiry, replay) before the real command runs."""

    mode = "emu"

    def __init__(self, inner, plane):
        self.inner = inner
        self.plane = plane

    def now(self) -> float:
        return self.inner.now()

    def observe(self):
        return self.inner.observe()

    def capabilities(self):
        return self.inner.capabilities()

    def apply(self, signed):
        from twin.adapter import ActionResult

        reason = self.plane.verify(signed, self.inner.now())
        if reason:
            return ActionResult(signed.action, False, self.inner.now(), rejected_reason=reason)
        return self.inner.apply(signed)
