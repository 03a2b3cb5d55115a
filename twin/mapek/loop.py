"""The MAPE-K controller: one iteration = observe -> monitor -> analyze -> plan, then execute.

It talks to the world only through a :class:`twin.adapter.MeshAdapter`, so ``sim``, ``emu`` and
``live`` run this very code; it is built in one place, :func:`twin.mapek.factory.build_brain`.
The cost of every phase is measured with ``perf_counter``; in ``sim`` the runner charges it to
simulated time before the actions take effect, so latency targets include real compute.

Guardrails (:mod:`twin.mapek.guard`) sit between Plan and Execute: a diagnosis must persist over
``confirm`` polls before anything is sent, every node has a command budget, and a diagnosis
without a remedy is logged with the reason ("no action, because ...").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from twin.adapter import UNDELIVERED, Action, ActionResult, MeshAdapter, SignedAction
from twin.mapek.analyze import Analyzer, Diagnosis
from twin.mapek.execute import Executor, Signer
from twin.mapek.guard import Guardrails
from twin.mapek.knowledge import KnowledgeBase
from twin.mapek.monitor import Features, Monitor
from twin.mapek.plan import Planner, Remedy, incident_vector, no_action_reason


@dataclass
class Iteration:
    t: float
    costs: dict[str, float]
    new: list[Diagnosis]
    cleared: list[Diagnosis]
    actions: list[Action] = field(default_factory=list)
    signed: list[SignedAction] = field(default_factory=list)

    @property
    def mape_cost_s(self) -> float:
        """Observe + Monitor + Analyze + Plan: the controller's own compute (observing is merging
        the nodes' reports into its view; reading the tables on the nodes is the nodes' work)."""
        return self.costs["observe"] + self.costs["monitor"] + self.costs["analyze"] + self.costs["plan"]


class Controller:
    def __init__(self, adapter: MeshAdapter, *, planner: Planner | None = None, analyzer: Analyzer | None = None,
                 signer: Signer | None = None, knowledge: KnowledgeBase | None = None,
                 verify_after_s: float = 4.0, run_id: str = "", guard: Guardrails | None = None):
        self.adapter = adapter
        self.monitor = Monitor()
        self.analyzer = analyzer or Analyzer()
        self.knowledge = knowledge or KnowledgeBase()
        self.planner = planner or Planner(knowledge=self.knowledge)
        self.planner.capabilities = adapter.capabilities()
        self.analyzer.flow_diagnosis = "steer_fallback" in self.planner.capabilities
        self.executor = Executor(adapter, signer=signer, verify_after_s=verify_after_s)
        self.guard = guard or Guardrails()
        self.waiting: dict[tuple, list] = {}  # diagnosis key -> [diagnosis, polls seen], not yet confirmed
        self.last_poll = None
        self.acted: dict[tuple, float] = {}  # diagnosis key -> when the loop last acted on it
        self.reopen_s = 60.0
        self.run_id = run_id
        self.iterations: list[dict] = []
        self.log: list[dict] = []  # anomalies, diagnoses and actions, for events.parquet
        self.last_features: Features | None = None
        self.record_features = False  # keep (t, names, feature matrix) per tick, for training
        self.feature_log: list[tuple[float, list[str], np.ndarray]] = []
        self.unconfirmed = 0

    # -- one pass -------------------------------------------------------------------------
    def iterate(self) -> Iteration:
        c: dict[str, float] = {}
        t0 = time.perf_counter()
        tel = self.adapter.observe()
        t1 = time.perf_counter()
        f = self.monitor.observe(tel)
        t2 = time.perf_counter()
        new, cleared = self.analyzer.analyze(f)
        t3 = time.perf_counter()
        if self.record_features:
            self.feature_log.append((f.t, f.names, f.matrix()))
        actions: list[Action] = []
        now = self.adapter.now()
        restore, settled = self.executor.due(set(self.analyzer.active), lambda inc: _healed(inc, f))
        for p, outcome in settled:
            p.incident.outcome = outcome
            if outcome != "resolved":
                p.incident.resolved_s = None
                p.incident.rolled_back = True
                # measured failure: the incident's evidence did not clear by the deadline. Plan
                # again on what the mesh looks like now, skipping remedies already tried
                tried = set(p.incident.remedy.split("+")) if p.incident.remedy else set()
                fresh = [r for r in self.planner.candidates(p.remedy.diagnosis, f) if r.name not in tried]
                if fresh:
                    nxt = fresh[0]
                    actions += nxt.actions
                    p.incident.remedy = f"{p.incident.remedy}+{nxt.name}"
                    p.incident.outcome = "open"
                    p.incident.actions += [_adict(a) for a in nxt.actions]
                    self.executor.track(p.incident, nxt, [])
        actions += restore
        for d in new:
            self.log.append({"t_s": now, "kind": "diagnosis", "node": ",".join(d.nodes)[:200], "outcome": d.kind,
                             "detail": str(d.evidence)})
            self.waiting[d.key] = [d, 0]
        # hysteresis: act on a diagnosis only once it held over `confirm` polls of fresh reports
        poll = tel.extra.get("poll")
        fresh_poll = poll is None or poll != self.last_poll
        self.last_poll = poll
        for key, w in list(self.waiting.items()):
            if key not in self.analyzer.active:
                self.unconfirmed += 1
                self.log.append({"t_s": now, "kind": "no_action", "node": ",".join(key[1])[:200], "outcome": key[0],
                                 "detail": "diagnosis cleared before it was confirmed"})
                del self.waiting[key]
                continue
            w[1] += 1 if fresh_poll else 0
            known = self.knowledge.recognise(key[0], list(key[1]))
            if w[1] < self.guard.confirm and known is None:
                continue
            if known is not None and w[1] < self.guard.confirm:
                self.log.append({"t_s": now, "kind": "diagnosis", "node": ",".join(key[1])[:200],
                                 "outcome": "recognised", "detail": f"as incident {known.id} of run "
                                 f"{known.run_id or '?'} ({known.remedy}, resolved): acting without confirmation"})
            del self.waiting[key]
            d = w[0]
            last = self.acted.get(key)
            if last is not None and now - last < self.reopen_s:
                self.log.append({"t_s": now, "kind": "no_action", "node": ",".join(d.nodes)[:200], "outcome": d.kind,
                                 "detail": f"no action, because the same diagnosis was acted on at {last:.1f} s"})
                continue
            inc = self.knowledge.open(d.kind, list(d.nodes), d.detected_s, incident_vector(d, f), d.evidence)
            inc.confirmed_s = round(now, 3)
            inc.run_id = self.run_id
            remedies = self.planner.candidates(d, f)
            if not remedies:
                inc.outcome = "no_action"
                inc.no_action = no_action_reason(d, self.planner)
                self.log.append({"t_s": now, "kind": "no_action", "node": ",".join(d.nodes)[:200],
                                 "outcome": d.kind, "detail": inc.no_action[:200]})
                continue
            best: Remedy = remedies[0]
            self.acted[key] = now
            inc.remedy = best.name
            inc.actions = [_adict(a) for a in best.actions]
            actions += best.actions
            self.executor.track(inc, best, remedies[1:])
        for d in cleared:
            self.log.append({"t_s": now, "kind": "diagnosis", "node": ",".join(d.nodes)[:200],
                             "outcome": "cleared", "detail": d.kind})
        exempt = {id(a) for a in actions if self.executor.is_restore(a)}
        actions, refused = self.guard.admit(actions, now, exempt=exempt)
        for a, why in refused:
            self.log.append({"t_s": now, "kind": "no_action", "node": a.node, "outcome": f"refused:{a.kind}",
                             "detail": why[:200]})
        if actions:
            self.analyzer.last_action_t = now
        t4 = time.perf_counter()
        c.update(observe=t1 - t0, monitor=t2 - t1, analyze=t3 - t2, plan=t4 - t3)
        self.last_features = f
        it = Iteration(t=now, costs=c, new=new, cleared=cleared, actions=actions)
        return it

    def sign(self, it: Iteration) -> list[float]:
        """Sign the iteration's commands; returns each one's measured signing cost (seconds)."""
        it.signed, costs = self.executor.prepare(it.actions)
        it.costs["sign"] = float(sum(costs))
        return costs

    def send(self, it: Iteration, k: int) -> ActionResult:
        """Send the k-th signed command (commands leave one by one, as each is signed)."""
        r = self.executor.send([it.signed[k]])[0]
        self.log.append({"t_s": self.adapter.now(), "kind": "action", "node": r.action.node, "outcome":
                         r.action.kind if r.applied else f"rejected:{r.action.kind}",
                         "detail": (r.rejected_reason or r.detail or r.action.reason)[:200]})
        return r

    def finish(self, it: Iteration) -> None:
        self.iterations.append({"t": it.t, **{k: round(v * 1000, 4) for k, v in it.costs.items()}})

    def execute(self, it: Iteration) -> list[ActionResult]:
        t0 = time.perf_counter()
        res = [self.send(it, k) for k in range(len(it.signed))]
        it.costs["execute"] = time.perf_counter() - t0
        self.finish(it)
        return res

    def tick(self) -> Iteration:
        """One full iteration on wall-clock adapters (emu, live)."""
        it = self.iterate()
        self.sign(it)
        self.execute(it)
        return it

    @property
    def wants_confirmation(self) -> bool:
        """A diagnosis waits for confirmation: the next poll should come soon."""
        return bool(self.waiting)

    # -- reporting ------------------------------------------------------------------------
    def stats(self) -> dict:
        it = self.iterations
        mape = np.array([r["observe"] + r["monitor"] + r["analyze"] + r["plan"] for r in it]) if it else np.zeros(0)
        res = self.executor.results
        return {
            "iterations": len(it),
            "iteration_p50_s": float(np.percentile(mape, 50) / 1000) if len(mape) else None,
            "iteration_p99_s": float(np.percentile(mape, 99) / 1000) if len(mape) else None,
            "actions": sum(1 for r in res if r.applied),
            "actions_rejected": sum(1 for r in res if not r.applied and not _undelivered(r)),
            "actions_undelivered": sum(1 for r in res if _undelivered(r)),
            "actions_refused": self.guard.refused,
            "unconfirmed_diagnoses": self.unconfirmed,
            "failed_restores": list(self.executor.failed_restores),
            "unrestored": self.executor.outstanding(),
            "incidents": [i.__dict__ for i in self.knowledge.incidents],
        }


def _healed(inc, f: Features) -> bool:
    """The mesh routes around the incident's nodes: no reporting node uses them as next hop."""
    if inc.diagnosis not in ("dead_relay", "blackhole"):
        return False
    idx = [f.names.index(n) for n in inc.nodes if n in f.names]
    return bool(idx) and int(f.routes_via[idx].sum()) == 0


def _undelivered(r: ActionResult) -> bool:
    """The command never reached its node (lost, no route, node down): not a rejection."""
    return not r.applied and r.rejected_reason.startswith(UNDELIVERED)


def _adict(a: Action) -> dict:
    return {"kind": a.kind, "node": a.node, "params": a.params}
