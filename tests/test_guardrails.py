"""Guardrails and restores of the brain, driven through a small fake adapter (an external edge:
the brain's own code is real; only the mesh answering commands is scripted)."""

from __future__ import annotations

import pytest

from twin.adapter import UNDELIVERED, Action, ActionResult, capability_set, protocol_capability, speaks
from twin.mapek.analyze import Diagnosis
from twin.mapek.execute import Executor
from twin.mapek.guard import Guardrails
from twin.mapek.knowledge import Incident
from twin.mapek.plan import Remedy


class ScriptedMesh:
    """Answers commands as scripted: the first ``fail`` sends of each command are undelivered."""

    mode = "test"

    def __init__(self, fail: int):
        self.t = 0.0
        self.fail = fail
        self.sent: list[tuple[float, str]] = []

    def now(self) -> float:
        return self.t

    def apply(self, signed):
        a = signed.action
        self.sent.append((self.t, a.kind))
        if sum(1 for _, k in self.sent if k == a.kind) <= self.fail:
            return ActionResult(a, False, self.t, rejected_reason=UNDELIVERED + "lost")
        return ActionResult(a, True, self.t)

    def capabilities(self):
        return frozenset()


def _remedy(restore_after: float = 1.0) -> tuple[Incident, Remedy]:
    d = Diagnosis("dead_relay", ("n1",), 0.0, 1.0)
    burst = Action("set_orig_interval", "n2", {"ms": 40})
    undo = Action("set_orig_interval", "n2", {"ms": 1000}, reason="restore")
    return Incident(0, "dead_relay", ["n1"], 0.0, [], {}), Remedy("ogm_burst", d, [burst], [undo], restore_after)


def _drive(ex: Executor, mesh: ScriptedMesh, until: float) -> None:
    while mesh.t < until:
        restore, _ = ex.due(set())
        if restore:
            signed, _ = ex.prepare(restore)
            ex.send(signed)
        mesh.t += 0.25


def test_lost_restore_is_retried_with_back_off_until_it_arrives():
    mesh = ScriptedMesh(fail=2)
    ex = Executor(mesh, verify_after_s=100.0)
    inc, rem = _remedy()
    ex.track(inc, rem, [])
    _drive(ex, mesh, 10.0)
    times = [t for t, k in mesh.sent]
    assert len(times) == 3  # two losses, then it arrived
    assert times[1] - times[0] == pytest.approx(1.0, abs=0.26) and times[2] - times[1] == pytest.approx(2.0, abs=0.26)
    assert ex.failed_restores == [] and ex.outstanding() == []


def test_restore_that_never_arrives_is_reported():
    mesh = ScriptedMesh(fail=99)
    ex = Executor(mesh, verify_after_s=100.0, restore_attempts=4)
    inc, rem = _remedy()
    ex.track(inc, rem, [])
    _drive(ex, mesh, 40.0)
    assert len(mesh.sent) == 4
    (f,) = ex.failed_restores
    assert f["node"] == "n2" and f["params"] == {"ms": 1000} and f["attempts"] == 4 and "lost" in f["reason"]


def test_budget_refuses_commands_beyond_the_limit_but_never_restores():
    g = Guardrails(per_node=2)
    acts = [Action("hardif_down", "n1"), Action("hardif_up", "n1"), Action("hardif_down", "n1")]
    ok, refused = g.admit(acts, 0.0)
    assert ok == acts[:2] and [a for a, _ in refused] == acts[2:] and "limit 2" in refused[0][1]
    undo = Action("hardif_up", "n1", reason="restore")
    ok, refused = g.admit([undo], 1.0, exempt={id(undo)})
    assert ok == [undo] and refused == []
    ok, _ = g.admit([Action("hardif_down", "n1")], 61.0)  # the window moved on
    assert len(ok) == 1


def test_one_capability_vocabulary():
    from twin.sim.adapter import BABEL_CAPABILITIES, CAPABILITIES

    assert protocol_capability("batman") == protocol_capability("batman_iv") == "protocol:batman_iv"
    assert speaks(CAPABILITIES, "batman_iv") and not speaks(BABEL_CAPABILITIES, "batman_iv")
    caps = capability_set("babel", ["quarantine"], features=("observe",), host={"netem": True, "nft": False})
    assert caps == {"protocol:babel", "quarantine", "observe", "host:netem"}
    with pytest.raises(ValueError, match="unknown capability"):
        capability_set("babel", ["reboot_world"])
