"""ML-KEM-768 (FIPS 203) entry points over the selected backend.

These thin functions exist so that callers never touch a backend directly and so that every
encapsulation to a *received* public key goes through :func:`load_encapsulation_key`, which
applies the FIPS 203 §7.2 input check and turns a failure into one clear
:class:`~twin.pqc.backends.base.InvalidKeyError` whatever the backend's own message says.
"""

from __future__ import annotations

from .backends import Backend, get_backend
from .backends.base import (
    MLKEM768_CIPHERTEXT_SIZE,
    MLKEM768_PUBLIC_KEY_SIZE,
    MLKEM768_SEED_SIZE,
    MLKEM768_SHARED_SECRET_SIZE,
    InvalidKeyError,
    KemPrivateKey,
    KemPublicKey,
)

__all__ = [
    "MLKEM768_CIPHERTEXT_SIZE",
    "MLKEM768_PUBLIC_KEY_SIZE",
    "MLKEM768_SEED_SIZE",
    "MLKEM768_SHARED_SECRET_SIZE",
    "decapsulate",
    "encapsulate",
    "generate_kem_key",
    "kem_key_from_seed",
    "load_decapsulation_key",
    "load_encapsulation_key",
]


def generate_kem_key(backend: str | Backend | None = None) -> KemPrivateKey:
    """Fresh ML-KEM-768 key pair (private object; ``.public_key()`` for the other half)."""
    return get_backend(backend).kem_generate()


def kem_key_from_seed(seed: bytes, backend: str | Backend | None = None) -> KemPrivateKey:
    """ML-KEM.KeyGen_internal(d, z) with ``seed = d || z`` (64 bytes), as FIPS 203 §6.1."""
    return get_backend(backend).kem_from_seed(seed)


def load_encapsulation_key(raw: bytes, backend: str | Backend | None = None) -> KemPublicKey:
    """Parse a peer's encapsulation key; :class:`InvalidKeyError` on bad length or modulus."""
    if len(raw) != MLKEM768_PUBLIC_KEY_SIZE:
        raise InvalidKeyError(f"ML-KEM-768 encapsulation key must be {MLKEM768_PUBLIC_KEY_SIZE} bytes, got {len(raw)}")
    return get_backend(backend).kem_public_from_bytes(raw)


def load_decapsulation_key(raw: bytes, backend: str | Backend | None = None) -> KemPrivateKey:
    """Rebuild a private key from :meth:`KemPrivateKey.private_bytes` output."""
    return get_backend(backend).kem_private_from_bytes(raw)


def encapsulate(public_key: bytes | KemPublicKey, backend: str | Backend | None = None) -> tuple[bytes, bytes]:
    """``(shared_secret, ciphertext)`` for ``public_key`` (raw bytes are checked first)."""
    if not isinstance(public_key, KemPublicKey):
        public_key = load_encapsulation_key(public_key, backend)
    return public_key.encapsulate()


def decapsulate(private_key: KemPrivateKey, ciphertext: bytes) -> bytes:
    """Shared secret for ``ciphertext`` (implicit rejection: a bad ct gives an unrelated secret)."""
    return private_key.decapsulate(ciphertext)
