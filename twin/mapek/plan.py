"""Plan: turn a diagnosis into ranked candidate remedies, each a list of real commands.

A remedy is only ever made of commands batman-adv (or nftables, yggdrasil) really offers:

* ``ogm_burst``: ``batctl orig_interval 100`` on every reachable node, restored later. A stale
  ring of 5 is flushed by 5 new sequence numbers arriving another way, so faster OGMs flush it
  5x..10x sooner, at the cost of 10x OGM traffic while it lasts. The node's *pending* OGM keeps
  its old send time (that is how the kernel schedules), so the gain starts within one interval.
* ``hardif_bounce``: remove and re-add the hard interface on the nodes still relaying via a dead
  node. It purges *every* neighbour on that interface and restarts their 64-wide windows, so TQ
  stays low for tens of seconds; no rule offers it (see :data:`RULES`).
* ``quarantine``: nftables drop of the node's traffic on its neighbours (blackholes), followed by
  an OGM burst so routes through it flush quickly.

Ranking: the rule table's order; with a knowledge base of past incidents (``loop.knowledge``), the
success rate of each remedy among the most similar past incidents reorders the candidates.
Diagnoses with no remedy get a stated reason (:func:`no_action_reason`), logged and summarised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from twin.adapter import Action, speaks
from twin.mapek.analyze import Diagnosis
from twin.mapek.monitor import Features

#: ``hardif_bounce`` is offered by no rule any more: measured on in-band relay crashes, bouncing
#: the interfaces of nodes still routing via a dead relay restarted their neighbours' windows and
#: made MTTR worse than doing nothing on some seeds. It stays available to ``twin.training``.
RULES: dict[str, list[str]] = {
    "dead_relay": ["ogm_burst", "drop_dead_links"],
    "blackhole": ["quarantine"],
    "partition": [],
    "broken_flow": ["fallback_overlay"],
    "degraded_link": [],
    "flapping_link": [],
}

#: Why a diagnosis gets no remedy: said in the run's log and summary, never silent.
NO_REMEDY: dict[str, str] = {
    "partition": "no command heals a cut: nodes on the other side are unreachable until a link returns, and "
                 "routes re-form on their own when it does",
    "degraded_link": "batman-adv's TQ already steers around a lossy link as its window fills; a burst or "
                     "bounce would only restart the windows that are measuring it",
    "flapping_link": "a link that keeps coming back is the radio's doing; bursts would add churn, and "
                     "quarantining a node for one bad link costs every route through it",
}


def no_action_reason(d: Diagnosis, planner: Planner) -> str:
    """The sentence the summary shows for a diagnosis the loop leaves alone."""
    if d.kind == "dead_relay" and not d.evidence.get("routes_via"):
        return "no action, because no reporting node routes through it: there is no stale route to flush"
    if d.kind in NO_REMEDY:
        return f"no action, because {NO_REMEDY[d.kind]}"
    allowed = sorted(planner.allowed) if planner.allowed is not None else "all"
    return (f"no action, because no remedy for {d.kind} is both allowed (loop.actions: {allowed}) and offered "
            f"by this mesh ({', '.join(sorted(planner.capabilities or [])) or 'capabilities unknown'})")


@dataclass
class Remedy:
    name: str
    diagnosis: Diagnosis
    actions: list[Action]
    restore: list[Action] = field(default_factory=list)  # undo after restore_after_s
    restore_after_s: float = 0.0
    score: float = 0.0
    lift: list[Action] = field(default_factory=list)  # a second, later undo (quarantine lifted)
    lift_after_s: float = 0.0


def incident_vector(d: Diagnosis, f: Features) -> np.ndarray:
    """Symptoms of an incident as numbers, for retrieval and ranking."""
    idx = {n: i for i, n in enumerate(f.names)}
    rows = [idx[n] for n in d.nodes if n in idx]
    if not rows:
        return np.zeros(6)
    m = f.matrix()[rows].mean(axis=0)
    kinds = ["dead_relay", "blackhole", "partition", "degraded_link", "flapping_link"]
    onehot = [1.0 if d.kind == k else 0.0 for k in kinds]
    return np.concatenate([m, onehot, [float(f.routes_via[rows].mean())]])


class Planner:
    def __init__(self, *, allowed: list[str] | None = None, fast_interval_ms: int = 40,
                 base_interval_ms: int = 1000, restore_after_s: float = 8.0, knowledge=None,
                 quarantine_s: float = 300.0):
        self.allowed = None if allowed is None else set(allowed)
        self.fast_interval_ms = fast_interval_ms
        self.base_interval_ms = base_interval_ms
        self.restore_after_s = restore_after_s
        self.knowledge = knowledge
        self.quarantine_s = quarantine_s
        self.capabilities: frozenset[str] | None = None  # set by the controller from its adapter

    def _ok(self, kind: str) -> bool:
        return self.allowed is None or kind in self.allowed

    def _burst(self, d: Diagnosis, f: Features, exclude: set[str]) -> tuple[list[Action], list[Action]]:
        acts, undo = [], []
        # commands leave one by one as they are signed: destinations of failing probe flows first,
        # their fresh OGMs are the ones that flush the stale routes those flows depend on
        failing = {b for _a, b, sent, ok in f.flows if ok < sent}
        order = sorted(range(len(f.names)), key=lambda i: (i not in failing, i))
        for i in order:
            name = f.names[i]
            if name in exclude or not f.reporting[i]:
                continue
            base = int(round(float(f.interval[i]) * 1000)) if len(f.interval) else self.base_interval_ms
            base = max(base, self.base_interval_ms) if base <= self.fast_interval_ms else base
            acts.append(Action("set_orig_interval", name, {"ms": self.fast_interval_ms},
                               reason=f"{d.kind} {','.join(d.nodes)}: flush stale rings"))
            undo.append(Action("set_orig_interval", name, {"ms": base}, reason="restore after burst"))
        return acts, undo

    def _batman(self) -> bool:
        """OGM bursts and interface bounces are batman-adv remedies; babeld heals a dead neighbour
        itself (and re-adding its interface only interrupts it)."""
        return speaks(self.capabilities, "batman_iv")

    def candidates(self, d: Diagnosis, f: Features) -> list[Remedy]:
        out: list[Remedy] = []
        if self.allowed is not None and not self.allowed:
            return []  # observe only
        if d.kind == "dead_relay" and not any(f.routes_via[f.names.index(v)] for v in d.nodes if v in f.names):
            return []  # nobody routes through it: nothing stale to flush (see no_action_reason)
        for name in RULES.get(d.kind, []):
            if name in ("ogm_burst", "hardif_bounce") and not self._batman():
                continue
            if name == "fallback_overlay":
                # the yggdrasil overlay routes on its own; a flow the mesh routing lost is carried
                # there until the routing has healed (restored later)
                if self.capabilities is None or "steer_fallback" not in self.capabilities or not self._ok(
                        "steer_fallback"):
                    continue
                a, b = d.nodes
                out.append(Remedy(name, d, [Action("steer_fallback", a, {"src": a, "dst": b},
                                                   reason=f"flow {a}->{b} delivers nothing")],
                                  [Action("unsteer_fallback", a, {"src": a, "dst": b}, reason="routing healed")],
                                  20.0))
                continue
            if name == "drop_dead_links" and (self._batman() or not self._ok("hardif_down")):
                continue
            if name == "drop_dead_links":
                # one interface per link (babeld on point-to-point links): taking down the interface
                # toward the silent neighbour makes babeld retract its routes through it at once
                # instead of waiting for its link cost to climb hello by hello
                v = d.nodes[0]
                nbrs = [f.names[i] for i in f.neighbours_of(f.names.index(v)) if f.reporting[i]]
                acts = [Action("hardif_down", n, {"peer": v}, reason=f"{v} silent: drop the link to it") for n in nbrs]
                undo = [Action("hardif_up", n, {"peer": v}, reason="restore the link") for n in nbrs]
                if acts:
                    out.append(Remedy(name, d, acts, undo, 30.0))
                continue
            if name == "ogm_burst" and self._ok("set_orig_interval"):
                acts, undo = self._burst(d, f, set(d.nodes))
                out.append(Remedy(name, d, acts, undo, self.restore_after_s))
            elif name == "hardif_bounce" and self._ok("hardif_down"):
                v = d.nodes[0]
                # the nodes still relaying through v hold a stale route no new OGM will flush
                # (each waits for the other): re-adding their interface purges it
                stuck = [f.names[i] for i in f.routing_via(f.names.index(v)) if f.reporting[i]]
                acts = []
                for n in stuck:
                    acts += [Action("hardif_down", n, {}, reason=f"purge stale routes via {v}"),
                             Action("hardif_up", n, {}, reason="re-add interface")]
                if acts:
                    out.append(Remedy(name, d, acts))
            elif name == "quarantine" and self._ok("quarantine"):
                acts = [Action("quarantine", v, {}, reason=f"blackhole: probes through {v} fail")
                        for v in d.nodes]
                undo: list[Action] = []
                if self._ok("set_orig_interval") and self._batman():
                    b, undo = self._burst(d, f, set(d.nodes))
                    acts += b
                out.append(Remedy(name, d, acts, undo, self.restore_after_s))
                # the quarantine itself is lifted after quarantine_s: commit-confirmed, never forever
                # (a node still dropping is diagnosed and quarantined again)
                out[-1].lift = [Action("unquarantine", v, {}, reason="quarantine period over") for v in d.nodes]
                out[-1].lift_after_s = self.quarantine_s
        return self.rank(out, d, f)

    def rank(self, remedies: list[Remedy], d: Diagnosis, f: Features) -> list[Remedy]:
        """Rule order, reordered by past outcomes of similar incidents when a knowledge base is kept."""
        for k, r in enumerate(remedies):
            r.score = 1.0 - 0.1 * k
        if self.knowledge is not None and remedies:
            rates = self.knowledge.success_rates(incident_vector(d, f))
            for r in remedies:
                if r.name in rates:
                    r.score = 0.5 * r.score + 0.5 * rates[r.name]
        return sorted(remedies, key=lambda r: -r.score)
