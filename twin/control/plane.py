"""The signed control plane: the controller's identity and the node agents' verifier.

Every command the loop sends is an ML-DSA-65 envelope (nonce, issued-at, expiry) signed by the
controller's SPIFFE identity, and every node verifies it before acting, with the real
cryptography (on simulated time in ``sim``, wall time in ``emu``/``live``). What fails the checks
(unknown signer, replay, expiry, revoked signer, tampering) is counted and never applied.
"""

from __future__ import annotations

from collections import Counter

from twin.adapter import Action, SignedAction
from twin.pqc import (
    EnvelopeVerifier,
    MeshCA,
    PQCError,
    sign_action,
)


class ControlPlane:
    """The controller's identity, the nodes' trust bundle and their envelope verifier."""

    def __init__(self, mesh: str = "meshtwin"):
        self.ca = MeshCA.generate(mesh)
        self.controller = self.ca.new_identity("controller", now=0.0)
        self.bundle = self.ca.trust_bundle()
        self.bundle.add_identity(self.controller.document)
        self.verifier = EnvelopeVerifier(self.bundle, replay_window_s=60.0)
        self.captured: list[SignedAction] = []
        self.attempts: Counter = Counter()
        self.rejected: Counter = Counter()
        self.malicious_applied = 0

    def sign(self, action: Action, now: float) -> bytes:
        return sign_action(self.controller, action, ttl_s=30.0, now=now)

    def verify(self, signed: SignedAction, now: float) -> str | None:
        """None if the node may act on it, else the rejection reason (error class first)."""
        try:
            self.verifier.verify_signed_action(signed, now)
        except PQCError as err:
            self.rejected[type(err).__name__] += 1
            return f"{type(err).__name__}: {err}"
        if len(self.captured) < 8:
            self.captured.append(signed)  # what an eavesdropper on the mesh could record
        return None

    def summary(self) -> dict:
        return {"attempts": dict(self.attempts), "rejected": dict(self.rejected),
                "malicious_applied": self.malicious_applied, "signer": self.controller.document.spiffe_id}


__all__ = ["ControlPlane"]
