"""Bounds that span several fields of a scenario, checked after the schema (the per-field bounds
are data in :mod:`twin.scenario` and :mod:`twin.limits`): probe pairs against the mesh size, probes
over the whole run, flapping, random geometric density, and targets that could never be evaluated.
Each problem names the field that has to change, with its line.
"""

from __future__ import annotations

import math

from twin import limits as L
from twin.scenario import Problem, Scenario, TopologySpec


def _check_geometric(t: TopologySpec, bad) -> None:
    """A random geometric mesh neither too dense (memory) nor too sparse to ever be connected."""
    if t.kind != "random_geometric" or t.nodes < 3:
        return
    from twin.topology import expected_degree, radius_for_degree

    field = "topology.radius" if t.radius is not None else "topology.avg_degree"
    deg = expected_degree(t.nodes, t.radius) if t.radius is not None else t.avg_degree
    need = L.MIN_DEGREE_PER_LN_N * math.log(t.nodes)
    if deg > L.MAX_MEAN_DEGREE:
        bad(field, f"{t.nodes} nodes would have {deg:.0f} neighbours each on average; at most "
            f"{L.MAX_MEAN_DEGREE:.0f} are allowed (a smaller radius or avg_degree)")
    elif deg < need:
        r = radius_for_degree(t.nodes, need, edge_correction=True)
        bad(field, f"{t.nodes} nodes with {deg:.2g} neighbours each on average are almost never connected "
            f"(about {need:.1f} needed): raise radius to at least {r:.3g} or avg_degree to {need:.1f}")


def cross_check(sc: Scenario, fname: str = "<string>") -> list[Problem]:
    """Bounds that span fields (pairs against nodes, probes over the whole run, flaps) and targets
    that could never be evaluated; each problem names the field that has to change."""
    out: list[Problem] = []

    def bad(path: str, msg: str) -> None:
        out.append(Problem(fname, sc.line_of(path), path, msg))

    n = sc.topology.node_count()
    _check_geometric(sc.topology, bad)
    probes = 0.0
    for i, tr in enumerate(sc.traffic):
        if n is not None and "pairs" in tr.model_fields_set and tr.pairs > n * (n - 1):  # default 10: "all"
            bad(f"traffic[{i}].pairs", f"{tr.pairs} pairs, but {n} nodes have only {n * (n - 1)} ordered pairs")
        probes += tr.pairs * tr.rate * max(0.0, sc.duration - tr.start)
    if probes > L.MAX_PROBES:
        bad("traffic", f"{probes:.3g} probes over the run (pairs x rate x probing time); at most "
            f"{L.MAX_PROBES:.0e} are allowed: fewer pairs, a lower rate or a shorter run")
    for i, f in enumerate(sc.faults):
        if f.kind == "link_flap":
            period = f.period or 2.0
            active = f.duration if f.duration is not None else max(0.0, sc.duration - f.at)
            if active / (period / 2) > L.MAX_FLAP_OPS:
                bad(f"faults[{i}].period", f"flapping every {period:g}s for {active:g}s is "
                    f"{active / (period / 2):.3g} link changes; at most {L.MAX_FLAP_OPS:.0e} are allowed")
    tg = sc.targets
    if tg.loop_latency is not None and not sc.loop.enabled:
        bad("targets.loop_latency", "loop_latency measures the loop, but loop.enabled is false: enable the loop "
            "or remove this target")
    if tg.mttr is not None and not sc.faults:
        bad("targets.mttr", "an mttr target needs at least one fault (MTTR is measured from a fault)")
    if not sc.traffic:
        for name in ("mttr", "delivery_ratio", "convergence"):
            if getattr(tg, name) is not None:
                bad(f"targets.{name}", f"{name} is measured with probes, but traffic is empty")
    after = tg.delivery_ratio.after if tg.delivery_ratio else None
    if after not in (None, "converged", "start", "heal"):
        from twin.units import parse_duration

        if parse_duration(after) >= sc.duration:
            bad("targets.delivery_ratio.after", f"after {after} starts at or after the end of the run "
                f"({sc.duration:g}s): nothing would be counted")
    return out
