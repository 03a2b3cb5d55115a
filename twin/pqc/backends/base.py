"""The small interface every PQC backend implements, and the errors every layer raises.

Only two algorithms are in scope: ML-KEM-768 (FIPS 203) and ML-DSA-65 (FIPS 204). A backend
hands out opaque key objects so callers parse a peer's public key once and reuse the parsed
object (parsing an ML-DSA-65 key is ~3 % of a verify; the hot paths cache it). Everything above
this module (X-Wing, identities, envelopes, handshake) is written against these classes only,
which is what lets the test suite run unchanged over every available backend.

The errors live here, at the bottom of the import graph, so that identity, envelope and
handshake code can raise the same typed errors without import cycles. Every error the package
raises on purpose is a :class:`PQCError`, so a caller can catch one class and still tell the
reasons apart by subclass.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

#: FIPS 203 / FIPS 204 sizes in bytes. They are fixed by the standards, so the simulator can use
#: them without touching a backend.
MLKEM768_PUBLIC_KEY_SIZE = 1184
MLKEM768_CIPHERTEXT_SIZE = 1088
MLKEM768_SHARED_SECRET_SIZE = 32
MLKEM768_SEED_SIZE = 64  # d || z
MLDSA65_PUBLIC_KEY_SIZE = 1952
MLDSA65_SIGNATURE_SIZE = 3309
MLDSA65_SEED_SIZE = 32  # xi
MLDSA_MAX_CONTEXT = 255


class PQCError(Exception):
    """Base of every deliberate failure in :mod:`twin.pqc`.

    ``reason`` is a short human sentence meant for logs and ``ActionResult.rejected_reason``.
    """

    @property
    def reason(self) -> str:
        return str(self)


class InvalidKeyError(PQCError, ValueError):
    """A key's bytes are malformed or fail the standard's input check (e.g. FIPS 203 §7.2)."""


class UnsupportedError(PQCError):
    """The selected backend cannot do this (e.g. liboqs has no ML-DSA keygen from seed)."""


class ForgedError(PQCError):
    """The claimed signer is unknown, or its key is not bound to it by a trusted CA."""


class TamperedError(PQCError):
    """The bytes are malformed or the signature does not verify under the signer's key."""


class ReplayError(PQCError):
    """This nonce was already accepted inside the replay window."""


class ExpiredError(PQCError):
    """Outside its validity period: expired, not yet valid, or older than the replay window."""


class RevokedError(PQCError):
    """The signer's identity is on a CA-signed revocation list."""


class HandshakeError(PQCError):
    """The handshake was driven out of order or with a message for another session."""


class KemPublicKey(ABC):
    """A parsed ML-KEM-768 encapsulation key (already passed the FIPS 203 §7.2 check)."""

    @abstractmethod
    def encapsulate(self) -> tuple[bytes, bytes]:
        """Return ``(shared_secret, ciphertext)``."""

    @abstractmethod
    def public_bytes(self) -> bytes: ...


class KemPrivateKey(ABC):
    """An ML-KEM-768 decapsulation key."""

    @abstractmethod
    def decapsulate(self, ciphertext: bytes) -> bytes:
        """Return the shared secret; implicit rejection gives a pseudo-random one on a bad ct."""

    @abstractmethod
    def public_key(self) -> KemPublicKey: ...

    @abstractmethod
    def private_bytes(self) -> bytes:
        """Serialised private key: the 64-byte d||z seed whenever the backend can rebuild from it."""


class SigPublicKey(ABC):
    """A parsed ML-DSA-65 verification key."""

    @abstractmethod
    def verify(self, signature: bytes, message: bytes, context: bytes = b"") -> bool:
        """True iff ``signature`` is a valid pure ML-DSA-65 signature of ``message`` under ``context``."""

    @abstractmethod
    def public_bytes(self) -> bytes: ...


class SigPrivateKey(ABC):
    """An ML-DSA-65 signing key."""

    @abstractmethod
    def sign(self, message: bytes, context: bytes = b"") -> bytes:
        """Pure (not pre-hash) ML-DSA-65 signature, hedged randomness, with context string ``context``."""

    @abstractmethod
    def public_key(self) -> SigPublicKey: ...

    @abstractmethod
    def private_bytes(self) -> bytes:
        """Serialised private key: the 32-byte xi seed when possible, else the backend's expanded form."""


class Backend(ABC):
    """Factory for ML-KEM-768 and ML-DSA-65 keys on one implementation."""

    #: short registry name ("cryptography", "oqs")
    name: str = ""
    #: library version string, part of the calibration cache key
    version: str = ""

    # -- ML-KEM-768 ---------------------------------------------------------------------------
    @abstractmethod
    def kem_generate(self) -> KemPrivateKey: ...

    @abstractmethod
    def kem_from_seed(self, seed: bytes) -> KemPrivateKey:
        """Deterministic ML-KEM.KeyGen_internal(d, z) from the 64-byte ``d || z``."""

    @abstractmethod
    def kem_public_from_bytes(self, raw: bytes) -> KemPublicKey:
        """Parse an encapsulation key; raise :class:`InvalidKeyError` if it fails the §7.2 check."""

    @abstractmethod
    def kem_private_from_bytes(self, raw: bytes) -> KemPrivateKey: ...

    # -- ML-DSA-65 ----------------------------------------------------------------------------
    @abstractmethod
    def sig_generate(self) -> SigPrivateKey: ...

    @abstractmethod
    def sig_from_seed(self, seed: bytes) -> SigPrivateKey:
        """Deterministic ML-DSA.KeyGen_internal(xi) from the 32-byte ``xi``."""

    @abstractmethod
    def sig_public_from_bytes(self, raw: bytes) -> SigPublicKey: ...

    @abstractmethod
    def sig_private_from_bytes(self, raw: bytes) -> SigPrivateKey: ...

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.version}>"


def check_context(context: bytes) -> None:
    """FIPS 204 limits the context string to 255 bytes; fail early with a clear message."""
    if len(context) > MLDSA_MAX_CONTEXT:
        raise InvalidKeyError(f"ML-DSA context string is {len(context)} bytes; FIPS 204 allows at most 255")


def mlkem_modulus_violation(raw: bytes) -> int | None:
    """Index of the first coefficient of an ML-KEM-768 encapsulation key that is >= q, or None.

    This is the FIPS 203 §7.2 "modulus check" (ByteEncode12(ByteDecode12(ek)) == ek) done
    directly: every 12-bit coefficient of the 1152-byte t-hat part must be below q = 3329.
    Backends whose native code may skip the check (or report it with a misleading message) call
    this so the caller always gets the same, precise error.
    """
    import numpy as np  # local: only needed on the rejection path and by the oqs backend

    a = np.frombuffer(raw[: 3 * 384], dtype=np.uint8).reshape(-1, 3).astype(np.uint16)
    c = np.empty(a.shape[0] * 2, dtype=np.uint16)
    c[0::2] = a[:, 0] | ((a[:, 1] & 0x0F) << 8)
    c[1::2] = (a[:, 1] >> 4) | (a[:, 2] << 4)
    bad = np.flatnonzero(c >= 3329)
    return int(bad[0]) if bad.size else None


def check_mlkem_public_bytes(raw: bytes) -> None:
    """Length and modulus check of an ML-KEM-768 encapsulation key, with a precise reason."""
    if len(raw) != MLKEM768_PUBLIC_KEY_SIZE:
        raise InvalidKeyError(f"ML-KEM-768 encapsulation key must be {MLKEM768_PUBLIC_KEY_SIZE} bytes, got {len(raw)}")
    idx = mlkem_modulus_violation(raw)
    if idx is not None:
        raise InvalidKeyError(
            f"ML-KEM-768 encapsulation key fails the FIPS 203 section 7.2 modulus check: "
            f"coefficient {idx} (polynomial {idx // 256}) is >= q=3329"
        )
