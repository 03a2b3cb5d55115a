"""Execute: sign each command, send it through the adapter, and keep track of what must be
verified, restored or rolled back.

Remedies with temporary effects (an OGM burst) carry their own restore commands; a remedy whose
incident has not cleared by the verification deadline is rolled back (restored early) and the
next-ranked remedy is tried. Nothing here knows which mode it runs in.
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


class Executor:
    def __init__(self, adapter: MeshAdapter, *, signer: Signer | None = None, verify_after_s: float = 10.0):
        self.adapter = adapter
        self.signer = signer
        self.verify_after_s = verify_after_s
        self.pending: list[Pending] = []
        self.results: list[ActionResult] = []
        self.sign_s: list[float] = []

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
        return res

    def track(self, incident: Incident, remedy: Remedy, alternatives: list[Remedy]) -> None:
        now = self.adapter.now()
        self.pending.append(Pending(incident, remedy, now, now + self.verify_after_s,
                                    now + remedy.restore_after_s if remedy.restore else None, alternatives))

    def due(self, active_keys: set, healed=None) -> tuple[list[Action], list[tuple[Pending, str]]]:
        """Restore commands now due, and pendings whose outcome is now known.

        ``healed(incident)`` says whether the mesh works around the incident's nodes even if the
        diagnosis itself persists (a dead relay stays dead; healing means nobody routes via it).
        """
        now = self.adapter.now()
        restore: list[Action] = []
        settled: list[tuple[Pending, str]] = []
        for p in list(self.pending):
            cleared = (p.incident.diagnosis, tuple(p.incident.nodes)) not in active_keys or (
                healed is not None and healed(p.incident))
            if cleared and p.incident.resolved_s is None:
                p.incident.resolved_s = round(now, 3)
            if p.restore_at_s is not None and not p.restored and now >= p.restore_at_s:
                restore.extend(p.remedy.restore)
                p.restored = True
            if now >= p.verify_by_s and not p.settled:
                p.settled = True
                settled.append((p, "resolved" if cleared else "unresolved"))
                if not cleared and not p.restored and p.remedy.restore:  # did not help: roll back now
                    restore.extend(p.remedy.restore)
                    p.restored = True
            if p.settled and (p.restored or not p.remedy.restore):
                self.pending.remove(p)
        return restore, settled
