"""Control-plane attacks in the twin: what an adversary on the mesh could send to a node agent.

A command signed by an unknown key, a replay of a captured command, an expired one, one from a
revoked identity, and tampered telemetry. Each goes through the same node-facing adapter as the
loop's own commands; each must be rejected, is counted in ``summary.json``, and is never applied.
"""

from __future__ import annotations

from twin.adapter import Action, SignedAction
from twin.control.plane import ControlPlane
from twin.pqc import MeshCA, PQCError, sign_action, sign_telemetry

ATTACK_KINDS = ("forged_command", "replayed_command", "expired_command", "revoked_controller",
                "tampered_telemetry")


def attack_process(env, adapter, plane: ControlPlane, attacks: list, target: str):
    """SimPy process: launch each attack at its time through the node-facing adapter."""
    for atk in sorted(attacks, key=lambda a: a.at):
        if atk.at > env.now:
            yield env.timeout(atk.at - env.now)
        node = atk.node if atk.node and atk.node != "most_central" else target
        evil = Action("quarantine", node, {}, reason="attacker: isolate a healthy relay")
        now = adapter.now()
        plane.attempts[atk.kind] += 1
        if atk.kind == "forged_command":
            rogue = MeshCA.generate("meshtwin").new_identity("controller", now=now)
            signed = SignedAction(evil, sign_action(rogue, evil, ttl_s=30.0, now=now))
        elif atk.kind == "replayed_command":
            if not plane.captured:  # nothing captured yet: record one legit command first
                legit = Action("set_hop_penalty", node, {"value": 30}, reason="routine")
                first = SignedAction(legit, plane.sign(legit, now))
                adapter.node_apply(first)
            signed = plane.captured[0]
        elif atk.kind == "expired_command":
            signed = SignedAction(evil, plane.sign(evil, now - 120.0))
        elif atk.kind == "revoked_controller":
            old = plane.ca.new_identity("old-controller", now=now)
            plane.bundle.add_identity(old.document)
            plane.bundle.apply_revocations(plane.ca.revoke({old.document.spiffe_id: "key compromised"}, now=now))
            signed = SignedAction(evil, sign_action(old, evil, ttl_s=30.0, now=now))
        elif atk.kind == "tampered_telemetry":
            ident = plane.ca.new_identity(node, now=now)
            plane.bundle.add_identity(ident.document)
            env_bytes = bytearray(sign_telemetry(ident, b'{"orig_tq": [255, 255]}', now=now))
            env_bytes[len(env_bytes) // 2] ^= 0x01
            try:
                plane.verifier.verify_telemetry(bytes(env_bytes), now)
            except PQCError as err:
                plane.rejected[type(err).__name__] += 1
            continue
        else:  # pragma: no cover - schema restricts kinds
            continue
        res = adapter.node_apply(signed)
        if res.applied:
            plane.malicious_applied += 1
        adapter.rec.other.append({"t_s": now, "kind": "attack", "node": node, "outcome":
                                  "applied" if res.applied else "rejected", "detail": f"{atk.kind}: "
                                  f"{res.rejected_reason}"[:200]})


__all__ = ["ATTACK_KINDS", "attack_process"]
