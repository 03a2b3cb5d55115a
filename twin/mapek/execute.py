"""Execute: sign each command, send it through the adapter, and keep track of what must be
verified, restored or rolled back.

Remedies with temporary effects (an OGM burst) carry their own restore commands; a remedy whose
incident has not cleared by the verification deadline is rolled back (restored early) and the
next-ranked remedy is tried. A restore that does not reach its node (lost, no route, node down)
is retried with exponential back-off; one that still fails after ``restore_attempts`` is given up
and reported (``failed_restores`` in the summary), so a node left at 40 ms OGMs is never silent.
Nothing here knows which mode it runs in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from twin.adapter import Action, ActionResult, MeshAdapter, SignedAction
from twin.mapek.knowledge import Incident
from twin.mapek.plan import Remedy


class Signer(Protocol):
    def sign(self, action: Action, now: float) -> bytes: ...


@dataclass
class Pending:
    incident: Incident
    remedy: Remedy
    applied_s: float
    verify_by_s: float
    restore_at_s: float | None
    alternatives: list[Remedy] = field(default_factory=list)
    restored: bool = False
    settled: bool = False
    lift_at_s: float | None = None  # a quarantine's end
    lifted: bool = False
    resends: int = 0


@dataclass
class Retry:
    action: Action
    due_s: float
    attempts: int


class Executor:
    def __init__(self, adapter: MeshAdapter, *, signer: Signer | None = None, verify_after_s: float = 10.0,
                 restore_attempts: int = 5, backoff_s: float = 1.0):
        self.adapter = adapter
        self.signer = signer
        self.verify_after_s = verify_after_s
        self.restore_attempts = restore_attempts
        self.backoff_s = backoff_s
        self.pending: list[Pending] = []
        self.results: list[ActionResult] = []
        self.sign_s: list[float] = []
        self.restores: dict[int, int] = {}  # id(restore action) -> attempts so far
        self.retries: list[Retry] = []
        self.failed_restores: list[dict] = []
        self._keep: dict[int, Action] = {}  # keeps restore actions alive, so their id() stays theirs
        self.delivered: set[int] = set()  # id() of commands that reached their node
        self.resend_limit = 2

    def prepare(self, actions: list[Action]) -> tuple[list[SignedAction], list[float]]:
        """Sign every command; returns them and the measured signing cost of each, in seconds."""
        now = self.adapter.now()
        signed, costs = [], []
        for a in actions:
            t0 = time.perf_counter()
            signed.append(SignedAction(a, self.signer.sign(a, now) if self.signer else None))
            costs.append(time.perf_counter() - t0)
        self.sign_s.extend(costs)
        return signed, costs

    def send(self, signed: list[SignedAction]) -> list[ActionResult]:
        res = [self.adapter.apply(s) for s in signed]
        self.results.extend(res)
        for r in res:
            self._after_send(r)
        return res

    def is_restore(self, a: Action) -> bool:
        return id(a) in self.restores

    def _mark_restores(self, actions: list[Action]) -> list[Action]:
        for a in actions:
            self.restores.setdefault(id(a), 0)
            self._keep[id(a)] = a
        return actions

    def _after_send(self, r: ActionResult) -> None:
        """A restore that did not take effect is retried after 1, 2, 4, ... s, then given up."""
        k = id(r.action)
        if r.applied:
            self.delivered.add(k)
        if k not in self.restores:
            return
        self.restores[k] += 1
        if r.applied:
            self.restores.pop(k)
            self._keep.pop(k, None)
            return
        n = self.restores[k]
        if n >= self.restore_attempts:
            self.restores.pop(k)
            self._keep.pop(k, None)
            self.failed_restores.append({"t_s": round(self.adapter.now(), 3), "node": r.action.node,
                                         "kind": r.action.kind, "params": r.action.params, "attempts": n,
                                         "reason": (r.rejected_reason or r.detail)[:200]})
            return
        self.retries.append(Retry(r.action, self.adapter.now() + self.backoff_s * 2 ** (n - 1), n))

    def track(self, incident: Incident, remedy: Remedy, alternatives: list[Remedy]) -> None:
        now = self.adapter.now()
        self._mark_restores(remedy.restore)
        self._mark_restores(remedy.lift)
        self.pending.append(Pending(incident, remedy, now, now + self.verify_after_s,
                                    now + remedy.restore_after_s if remedy.restore else None, alternatives,
                                    lift_at_s=now + remedy.lift_after_s if remedy.lift else None))

    def due(self, active_keys: set, healed=None) -> tuple[list[Action], list[tuple[Pending, str]]]:
        """Restore commands now due (retries included), and pendings whose outcome is now known.

        ``healed(incident)`` says whether the mesh works around the incident's nodes even if the
        diagnosis itself persists (a dead relay stays dead; healing means nobody routes via it).
        """
        now = self.adapter.now()
        restore: list[Action] = [r.action for r in self.retries if r.due_s <= now]
        self.retries = [r for r in self.retries if r.due_s > now]
        settled: list[tuple[Pending, str]] = []
        for p in list(self.pending):
            cleared = (p.incident.diagnosis, tuple(p.incident.nodes)) not in active_keys or (
                healed is not None and healed(p.incident))
            if cleared and p.incident.resolved_s is None:
                p.incident.resolved_s = round(now, 3)
            if p.restore_at_s is not None and not p.restored and now >= p.restore_at_s:
                restore.extend(p.remedy.restore)
                p.restored = True
            missing = [a for a in p.remedy.actions if id(a) not in self.delivered]
            if now >= p.verify_by_s and not p.settled and not cleared and missing and p.resends < self.resend_limit:
                # part of the remedy never arrived (lost, no route yet): it has not failed, it has not
                # been tried. Send the missing commands again and wait, rather than escalate
                p.resends += 1
                p.verify_by_s = now + self.verify_after_s
                if p.restore_at_s is not None and not p.restored:
                    p.restore_at_s = max(p.restore_at_s, now + p.remedy.restore_after_s)
                restore.extend(missing)
                continue
            if now >= p.verify_by_s and not p.settled:
                p.settled = True
                settled.append((p, "resolved" if cleared else "unresolved"))
                if not cleared and not p.restored and p.remedy.restore:  # did not help: roll back now
                    restore.extend(p.remedy.restore)
                    p.restored = True
                if not cleared and p.remedy.lift and not p.lifted:  # a quarantine that did not help is lifted
                    p.lift_at_s = now
            if p.lift_at_s is not None and not p.lifted and now >= p.lift_at_s:
                restore.extend(p.remedy.lift)
                p.lifted = True
            if p.settled and (p.restored or not p.remedy.restore) and (p.lifted or not p.remedy.lift):
                self.pending.remove(p)
        return restore, settled

    def outstanding(self) -> list[dict]:
        """Temporary changes not yet undone (pending restores and retries), for the summary."""
        out = [{"node": a.node, "kind": a.kind, "params": a.params, "state": "not yet due"}
               for p in self.pending if not p.restored for a in p.remedy.restore]
        out += [{"node": a.node, "kind": a.kind, "params": a.params, "state": f"due at {p.lift_at_s:.1f} s"}
                for p in self.pending if p.remedy.lift and not p.lifted for a in p.remedy.lift]
        out += [{"node": r.action.node, "kind": r.action.kind, "params": r.action.params,
                 "state": f"retry {r.attempts + 1} due at {r.due_s:.1f} s"} for r in self.retries]
        return out
