"""Guardrails: the loop must never do more harm than the fault.

Three rules, each a plain check the controller runs before a command leaves:

* **Hysteresis**: a diagnosis is acted on only after it persisted over ``confirm`` consecutive
  polls (fresh reports each time), so one late report or one lost poll never triggers a remedy.
* **Budget**: at most ``per_node`` commands per node in any 60 s (restores of the loop's own
  temporary changes are exempt: undoing is always allowed). Refused commands are logged with the
  reason, never silently dropped.
* **Escalation only on measured failure**: the executor moves to the next remedy only when the
  verification deadline passed and the incident's evidence had not cleared (see
  :mod:`twin.mapek.execute`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from twin.adapter import Action


@dataclass
class Guardrails:
    per_node: int = 6
    window_s: float = 60.0
    confirm: int = 2
    sent: dict[str, deque] = field(default_factory=dict)  # node -> send times within the window
    refused: int = 0

    def admit(self, actions: list[Action], now: float, *, exempt: set[int] = frozenset()) -> tuple[
            list[Action], list[tuple[Action, str]]]:
        """Split ``actions`` into those within budget and those refused (with the reason).
        ``exempt`` holds ``id()`` of restore commands, which always pass."""
        ok: list[Action] = []
        refused: list[tuple[Action, str]] = []
        for a in actions:
            q = self.sent.setdefault(a.node, deque())
            while q and now - q[0] >= self.window_s:
                q.popleft()
            if id(a) not in exempt:
                if len(q) >= self.per_node:
                    refused.append((a, f"budget: {a.node} already had {len(q)} commands in "
                                       f"{self.window_s:g} s (limit {self.per_node})"))
                    self.refused += 1
                    continue
                q.append(now)
            ok.append(a)
        return ok, refused
