"""Analyze: what is wrong, and where.

Diagnosis names the fault with evidence a mesh engineer would accept (the anomaly forest of
:mod:`twin.ml.anomaly` is judged offline and is not consulted here: it decided nothing):

* ``dead_relay``: the node's OGMs stopped arriving anywhere for longer than its loss-adjusted
  silence threshold (see :mod:`twin.mapek.monitor`) while other nodes still route through it;
* ``blackhole``: the node keeps advertising fresh OGMs (so routes go through it) but probes whose
  path crosses it fail and none succeed;
* ``degraded_link`` / ``flapping_link``: the mean TQ toward a node drops sharply, or its routes
  churn repeatedly;
* ``partition``: several nodes fall silent in the same tick (one cut, not many crashes).

Diagnoses are sticky until their evidence clears, so one fault gives one incident.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from twin.mapek.monitor import Features


@dataclass
class Diagnosis:
    kind: str
    nodes: tuple[str, ...]
    detected_s: float
    confidence: float
    evidence: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        return (self.kind, self.nodes)


class Analyzer:
    """Stateful diagnosis with hysteresis."""

    def __init__(self, *, warmup_s: float = 30.0, blackhole_min_failures: int = 8,
                 partition_min_nodes: int = 3, churn_limit: float = 8.0, tq_drop: float = 0.25):
        self.warmup_s = warmup_s
        self.hold_s = 30.0  # a diagnosis the loop acted on stays, so its own effects are not new faults
        self.flow_streak: dict[tuple[int, int], int] = {}
        self.flow_ticks = 3
        self.flow_diagnosis = False  # the controller turns it on when the adapter can steer flows
        self.last_action_t = -1e9
        self.blackhole_min_failures = blackhole_min_failures
        self.partition_min_nodes = partition_min_nodes
        self.churn_limit = churn_limit
        self.tq_drop = tq_drop
        self.active: dict[tuple, Diagnosis] = {}
        self.seen_alive: np.ndarray | None = None
        self.churn_hist: dict[int, list[float]] = {}
        self.churn_base: np.ndarray | None = None  # per node: usual route changes per second (learned)
        self.doubt: np.ndarray | None = None  # per node: factor on its silence bars after false alarms

    def analyze(self, f: Features) -> tuple[list[Diagnosis], list[Diagnosis]]:
        """Returns (new diagnoses, cleared diagnoses) for this snapshot."""
        n = len(f.names)
        if self.seen_alive is None or len(self.seen_alive) != n:
            self.seen_alive = np.zeros(n, bool)
        sil = np.nan_to_num(f.silence, nan=np.inf)
        self.seen_alive |= sil < 1.0
        if self.churn_base is None or len(self.churn_base) != n:
            self.churn_base = np.zeros(n)
        if f.t < self.warmup_s:  # the mesh is still converging: learn who is alive, judge nothing
            self.churn_base = np.maximum(0.98 * self.churn_base, f.churn)
            return [], []
        current: dict[tuple, Diagnosis] = {}
        was_dead = np.zeros(n, bool)
        for (kind, nodes) in self.active:
            if kind in ("dead_relay", "partition"):
                for name in nodes:
                    was_dead[f.names.index(name)] = True
        # raise after the loss-adjusted number of missed OGMs; clear only once OGMs flow again
        fsil = f.frame_silence if f.frame_silence is not None else np.zeros(n)
        fthr = f.frame_silence_thr if f.frame_silence_thr is not None else np.full(n, np.inf)
        # a node once declared dead that was heard again was a false alarm: its bars double
        if self.doubt is None or len(self.doubt) != n:
            self.doubt = np.ones(n)
        quiet_frames = (np.isfinite(fsil) & (fsil > fthr * self.doubt) & (f.degree > 0)  # inf: nobody reported
                        & (sil > 1.0))  # and no new OGM anywhere for an interval either
        # OGM silence: m missed OGMs plus the +-20 ms jitter and forwarding slack, in seconds
        iref = f.interval_ref if f.interval_ref is not None else np.ones(n)
        overdue = sil > (f.required_miss + 0.03 / iref) * self.doubt
        if f.silence_usual is not None:  # a node usually unheard for long is judged against its usual
            overdue &= ~(f.silence_usual > 2.0) | (sil > 1.5 * f.silence_usual + 1.0)
        dead = np.flatnonzero(self.seen_alive & (overdue | quiet_frames
                                                 | (was_dead & (sil > 1.0))))
        dead_set = {int(j) for j in dead}
        # nodes silent only because every neighbour they have is silent too are cut off behind
        # them, not separate faults: a relay crash that strands two leaves is one dead relay
        primary = [int(i) for i in dead if not set(f.neighbours_of(int(i))) <= dead_set]
        if len(primary) >= self.partition_min_nodes:
            names = tuple(f.names[i] for i in dead)
            current[("partition", names)] = Diagnosis("partition", names, f.t, 0.8,
                                                      {"silent_nodes": len(dead),
                                                       "ogm_silence": [round(float(sil[i]), 2) for i in dead[:6]],
                                                       "frame_silence": [round(float(fsil[i]), 2) for i in dead[:6]],
                                                       "frame_thr": [round(float(fthr[i]), 2) for i in dead[:6]]})
        else:
            bh_names = {nm for (kind, nodes) in self.active if kind == "blackhole" for nm in nodes}
            bh_idx = {f.names.index(nm) for nm in bh_names}
            for i in dead:
                nbrs = set(f.neighbours_of(int(i)))
                if nbrs and nbrs <= (bh_idx | {int(j) for j in dead}):
                    continue  # cut off behind a quarantined or silent node: no relay died here
                conf = float(min(1.0, 0.5 + 0.1 * f.routes_via[i]))
                current[("dead_relay", (f.names[i],))] = Diagnosis(
                    "dead_relay", (f.names[i],), f.t, conf,
                    {"silence_intervals": float(sil[i]), "required_miss": int(f.required_miss[i]),
                     "frame_silence_s": float(fsil[i]), "frame_threshold_s": float(fthr[i]),
                     "routes_via": int(f.routes_via[i])})
        streak = f.fail_streak if f.fail_streak is not None else np.zeros(n, np.int64)
        # a node relaying what it should (forward counter) is upstream of the drop, not the drop
        ratio = f.relay_ratio if f.relay_ratio is not None else np.full(n, np.nan)
        # without forward counters (babeld exposes none) a drop cannot be told from a reroute in
        # progress: no blackhole verdict then, a false quarantine costs more than a late one
        relays = ~np.isnan(ratio) & (ratio < 0.5)
        unlikely = f.fail_evidence >= 6.0 if f.fail_evidence is not None else np.ones(n, bool)
        # (a probe or two credited to a node through a route that changed since its report is noise:
        # "none delivered" means under 5 %)
        none_ok = f.probe_ok_through <= 0.05 * (f.probe_fail_through + f.probe_ok_through)
        bh = np.flatnonzero((f.probe_fail_through >= self.blackhole_min_failures) & none_ok
                            & unlikely
                            & (streak >= 2) & (sil < 1.0) & relays)
        # explain the failing paths with as few suspects as possible: every relay upstream of a
        # blackhole sees the same failures, the blackhole is on all of them
        suspects = set(int(i) for i in bh)
        for (kind, nodes) in self.active:  # neighbours of a quarantined node drop its traffic by our rule
            if kind == "blackhole" and f.t - self.active[(kind, nodes)].detected_s < self.hold_s:
                suspects -= set(f.neighbours_of(f.names.index(nodes[0])))
        # failures already explained by a known blackhole or a silent node are not new evidence
        known = {f.names.index(nm) for (kind, nodes) in self.active for nm in nodes
                 if kind in ("blackhole", "dead_relay")} | {int(i) for i in dead}
        known_bh = {nm for (kind, nodes) in self.active if kind == "blackhole" for nm in nodes}
        for (kind, nodes) in list(self.active):
            if kind == "blackhole":  # stays diagnosed while quarantined (silent) or still failing
                i = f.names.index(nodes[0])
                d0 = self.active[(kind, nodes)]
                if sil[i] > 1.0 or streak[i] > 0 or f.t - d0.detected_s < self.hold_s:
                    current[(kind, nodes)] = self.active[(kind, nodes)]
        for i in [int(i) for i in dead if f.names[int(i)] in known_bh]:
            current.pop(("dead_relay", (f.names[i],)), None)  # silent because we quarantined it
        # the dropper relays nothing its neighbours can overhear (watchdog ratio ~0); relays
        # downstream of it on some paths still forward other traffic, relays upstream forward
        # everything. Greedy: the suspect with the lowest overheard-forward ratio among those with
        # enough failures takes the blame for every failing path through it; repeat on the rest
        # The pool is every relay on a failing path its neighbours did not hear forward, even one
        # whose evidence is not yet conclusive: it still explains the paths through it, so the
        # relays downstream of it are never blamed for its drops; it is only *chosen* (quarantined)
        # once it meets every rule above.
        pool = set(int(i) for i in np.flatnonzero((f.probe_fail_through >= self.blackhole_min_failures)
                                                  & relays & (sil < 1.0))) | suspects
        chosen: list[int] = []
        explained: set[int] = set()
        # (paths to or from a node we quarantined or that is silent fail by our doing or its death;
        # a path through a node that did not answer this poll may end at a crash not yet diagnosed,
        # where the relay before it "drops" everything too: no verdict on such paths)
        remaining = {p[1:-1]: c for p, c in f.failing_paths.items()
                     if not (known - suspects) & set(p) and all(f.reporting[v] for v in p)}
        while remaining:
            blame = {v: sum(c for p, c in remaining.items() if v in p) for v in pool - explained}
            cands = [v for v, c in blame.items() if c >= self.blackhole_min_failures]
            if not cands:
                break
            v = min(cands, key=lambda k: (float(ratio[k]), -blame[k], k))
            explained.add(v)
            if v in suspects:
                chosen.append(v)
            remaining = {p: c for p, c in remaining.items() if v not in p}
        chosen.sort()
        for i in chosen:
            current[("blackhole", (f.names[i],))] = Diagnosis(
                "blackhole", (f.names[i],), f.t, 0.9,
                {"failed_probes_through": float(f.probe_fail_through[i]), "ok_probes_through": 0})
        for i in np.flatnonzero(f.tq_trend < -self.tq_drop):
            if sil[i] < 1.0:
                current[("degraded_link", (f.names[i],))] = Diagnosis(
                    "degraded_link", (f.names[i],), f.t, 0.6, {"tq_trend": float(f.tq_trend[i])})
        quiet = f.t - self.last_action_t > 20.0  # our own remedies churn routes on purpose
        # churn far above what this node's table usually does (learned per node, never one global
        # threshold: a big lossy mesh churns more everywhere)
        high = (f.churn > max(self.churn_limit, 0.25 * n)) & (f.churn > 4.0 * self.churn_base) & quiet
        if quiet:
            self.churn_base = np.where(high, self.churn_base, np.maximum(0.98 * self.churn_base, f.churn))
        for i in np.flatnonzero(high):
            hist = self.churn_hist.setdefault(int(i), [])
            hist.append(f.t)
            recent = [t for t in hist if f.t - t <= 20.0]
            self.churn_hist[int(i)] = recent
            if len(recent) >= 4:
                current[("flapping_link", (f.names[i],))] = Diagnosis(
                    "flapping_link", (f.names[i],), f.t, 0.6, {"churn_events_20s": len(recent)})
        # a probe flow that delivered nothing for several ticks in a row is broken, whatever the cause
        # (only worth a diagnosis where a fallback overlay can carry it)
        for a, b, sent, ok in (f.flows if self.flow_diagnosis else []):
            key = (a, b)
            self.flow_streak[key] = self.flow_streak.get(key, 0) + 1 if (sent > 0 and ok == 0) else (
                0 if ok > 0 else self.flow_streak.get(key, 0))
        for (a, b), k in self.flow_streak.items():
            if k >= self.flow_ticks:
                names = (f.names[a], f.names[b])
                current[("broken_flow", names)] = self.active.get(("broken_flow", names)) or Diagnosis(
                    "broken_flow", names, f.t, 0.7, {"failed_ticks": k})
        new = [d for k, d in current.items() if k not in self.active]
        cleared = [d for k, d in self.active.items() if k not in current]
        for d in cleared:  # declared dead, heard again: that node's silences mislead, trust them less
            if d.kind == "dead_relay":
                i = f.names.index(d.nodes[0])
                if sil[i] < 1.0:
                    self.doubt[i] = min(self.doubt[i] * 2.0, 16.0)
        for k, d in current.items():
            self.active.setdefault(k, d)
        for d in cleared:
            self.active.pop(d.key, None)
        return new, cleared
