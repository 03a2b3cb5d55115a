"""Post-quantum identities and a signed control plane for the mesh.

What the rest of the project calls (all times are caller-supplied float seconds, so the same
code runs on simulated and wall-clock time):

* identities: :class:`MeshCA` (``generate``, ``new_identity``, ``issue``, ``revoke``),
  :class:`NodeIdentity`, :class:`TrustBundle` (``add_identity``, ``apply_revocations``, ``lookup``)
* actions/telemetry: :func:`sign_action`, :func:`make_signed_action`, :class:`EnvelopeVerifier`
  (``verify``, ``verify_signed_action``, ``verify_telemetry``), :func:`sign_telemetry`
* sessions: :func:`run_handshake`, :class:`HandshakeClient`, :class:`HandshakeServer`
* costs for the simulator: :func:`get_costs`, :func:`sizes`, :func:`fragments`
* every rejection is a :class:`PQCError` subclass: :class:`ForgedError`, :class:`ReplayError`,
  :class:`ExpiredError`, :class:`RevokedError`, :class:`TamperedError` (+ :class:`InvalidKeyError`,
  :class:`UnsupportedError`, :class:`HandshakeError`)

Algorithms: ML-KEM-768 (FIPS 203), ML-DSA-65 (FIPS 204), X-Wing hybrid KEM
(draft-connolly-cfrg-xwing-kem-10), HKDF-SHA256. Backends: ``cryptography`` (default) and
``oqs`` when liboqs is installed; see :func:`available_backends`.
"""

from __future__ import annotations

from .backends import available_backends, get_backend
from .backends.base import (
    ExpiredError,
    ForgedError,
    HandshakeError,
    InvalidKeyError,
    PQCError,
    ReplayError,
    RevokedError,
    TamperedError,
    UnsupportedError,
)
from .calibrate import fragments, get_costs, sizes
from .envelope import (
    EnvelopeVerifier,
    ReplayCache,
    VerifiedAction,
    envelope_size,
    make_signed_action,
    sign_action,
    sign_telemetry,
    verify_action,
    verify_telemetry,
)
from .handshake import (
    ClientHello,
    HandshakeClient,
    HandshakeResult,
    HandshakeServer,
    ServerHello,
    SessionKeys,
    run_handshake,
)
from .hybrid import XWingPrivateKey, XWingPublicKey, xwing_decapsulate, xwing_encapsulate, xwing_generate
from .identity import (
    IdentityDocument,
    MeshCA,
    NodeIdentity,
    RevocationList,
    TrustBundle,
    VerifiedIdentity,
    parse_spiffe_id,
    spiffe_id,
)

__all__ = [
    "ClientHello",
    "EnvelopeVerifier",
    "ExpiredError",
    "ForgedError",
    "HandshakeClient",
    "HandshakeError",
    "HandshakeResult",
    "HandshakeServer",
    "IdentityDocument",
    "InvalidKeyError",
    "MeshCA",
    "NodeIdentity",
    "PQCError",
    "ReplayCache",
    "ReplayError",
    "RevocationList",
    "RevokedError",
    "ServerHello",
    "SessionKeys",
    "TamperedError",
    "TrustBundle",
    "UnsupportedError",
    "VerifiedAction",
    "VerifiedIdentity",
    "XWingPrivateKey",
    "XWingPublicKey",
    "available_backends",
    "envelope_size",
    "fragments",
    "get_backend",
    "get_costs",
    "make_signed_action",
    "parse_spiffe_id",
    "run_handshake",
    "sign_action",
    "sign_telemetry",
    "sizes",
    "spiffe_id",
    "verify_action",
    "verify_telemetry",
    "xwing_decapsulate",
    "xwing_encapsulate",
    "xwing_generate",
]
