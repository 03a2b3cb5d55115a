"""The agent's guard rails: allow-list and clamp ranges, rate budget, commit-confirmed changes.

Order of checks on the agent (cheapest and most telling first, all before the kernel is touched):
session peer is a configured controller -> envelope verifies (signer, key, revocation, expiry,
replay, ML-DSA-65 signature) -> signer is a configured controller -> the action names this node
-> kind on the node's allow-list -> parameters within the kernel's clamp ranges -> rate budget.

Commit-confirmed (NETCONF ``confirmed-commit``, gNMI commit-confirmed): one pending change at a
time, with an id and a deadline. A further change while one is pending joins it (the deadline
restarts, the rollback target stays the settings from before the first), a confirm makes it
permanent, and the deadline, an explicit revert, the controller's session closing or the kill
switch write the pre-change settings back.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from twin.adapter import Action
from twin.live.kernel import Settings

#: batman-adv's own limits: orig_interval >= 2 * JITTER (40 ms), u32 in netlink; hop penalty u8
ORIG_INTERVAL_MS = (40, 2**32 - 1)
HOP_PENALTY = (0, 255)


class Refused(Exception):
    """An action the agent will not apply; ``verdict`` is the audit category."""

    def __init__(self, verdict: str, why: str) -> None:
        super().__init__(why)
        self.verdict = verdict


def _int_param(a: Action, key: str, lo: int, hi: int) -> int:
    v = a.params.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise Refused("out_of_range", f"{a.kind} needs an integer '{key}' (got {v!r})")
    if not lo <= v <= hi:
        raise Refused("out_of_range", f"{a.kind} {key}={v} outside the kernel's range {lo}..{hi}")
    return v


def target_settings(a: Action, node: str, allowed: list[str], cur: Settings) -> Settings:
    """The settings ``a`` asks for, or :class:`Refused` (wrong node, not allow-listed, out of range)."""
    if a.node != node:
        raise Refused("wrong_node", f"action is for {a.node!r}, this agent is {node!r}")
    if a.kind not in allowed:
        raise Refused("not_allowed", f"{a.kind} is not on this node's allow-list ({', '.join(allowed) or 'empty'})")
    if a.kind == "set_orig_interval":
        return Settings(_int_param(a, "ms", *ORIG_INTERVAL_MS), cur.hop_penalty, cur.aggregated_ogms, cur.hardifs)
    if a.kind == "set_hop_penalty":
        return Settings(cur.orig_interval_ms, _int_param(a, "value", *HOP_PENALTY), cur.aggregated_ogms, cur.hardifs)
    if a.kind in ("hardif_down", "hardif_up"):
        names = [k for k, _ in cur.hardifs]
        ifname = a.params.get("ifname", names[0] if len(names) == 1 else None)
        if ifname not in names:
            raise Refused("out_of_range", f"{a.kind} needs ifname, one of {', '.join(names)} (got {ifname!r})")
        return cur.with_hardif(ifname, a.kind == "hardif_up")
    raise Refused("not_allowed", f"{a.kind} is not an action this agent implements")


@dataclass
class TokenBucket:
    """``rate_per_min`` actions per minute, bursts up to ``burst``."""

    rate_per_min: float
    burst: float = 0.0
    clock: Callable[[], float] = time.monotonic
    _tokens: float = field(init=False)
    _t: float = field(init=False)

    def __post_init__(self) -> None:
        self.burst = self.burst or max(1.0, self.rate_per_min / 2)
        self._tokens, self._t = self.burst, self.clock()

    def _refill(self) -> None:
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._t) * self.rate_per_min / 60.0)
        self._t = now

    def available(self) -> bool:
        self._refill()
        return self._tokens >= 1.0

    def take(self) -> bool:
        self._refill()
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


@dataclass
class Pending:
    id: str
    before: Settings
    after: Settings
    deadline: float  # monotonic
    peer: str
    actions: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"id": self.id, "before": self.before.to_json(), "after": self.after.to_json(),
                "expires_in_s": round(self.deadline - time.monotonic(), 3), "peer": self.peer,
                "actions": self.actions}


class CommitConfirmed:
    """At most one pending change; ``write`` is the kernel's write, ``log`` the audit callback."""

    _ids = itertools.count(1)

    def __init__(self, write: Callable[[Settings], Settings], log: Callable[..., object]) -> None:
        self.write = write
        self.log = log
        self.pending: Pending | None = None

    def apply(self, before: Settings, target: Settings, confirm_within_s: float, peer: str, action: dict) -> Pending:
        after = self.write(target)
        deadline = time.monotonic() + confirm_within_s
        if self.pending is None:
            self.pending = Pending(f"c{next(self._ids)}-{int(time.time())}", before, after, deadline, peer, [action])
        else:  # joins the open change: rollback still goes to the settings before the first
            self.pending.after, self.pending.deadline = after, deadline
            self.pending.actions.append(action)
        return self.pending

    def confirm(self, change_id: str, peer: str) -> bool:
        if self.pending is None or self.pending.id != change_id:
            return False
        p, self.pending = self.pending, None
        self.log("confirm", "confirmed", peer=peer, change=p.id, settings=p.after.to_json())
        return True

    def revert(self, why: str, peer: str = "") -> Pending | None:
        p, self.pending = self.pending, None
        if p is None:
            return None
        back = self.write(p.before)
        self.log("revert", "reverted", peer=peer, why=why, change=p.id, settings=back.to_json(),
                 restored=back == p.before)
        return p

    def expire(self) -> Pending | None:
        if self.pending is not None and time.monotonic() >= self.pending.deadline:
            return self.revert("not confirmed before its deadline")
        return None
