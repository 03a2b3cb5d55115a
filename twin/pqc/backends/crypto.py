"""Default backend: pyca/cryptography (>= 47) ML-KEM-768 and ML-DSA-65 on OpenSSL / AWS-LC.

Private keys are always the FIPS seed forms (64-byte d||z, 32-byte xi), which is what
``private_bytes_raw`` returns and ``from_seed_bytes`` takes, so key files are small and
interoperate byte for byte with any FIPS 203/204 implementation that derives keys from seeds
(the test suite checks this against kyber-py and dilithium-py).

The wrappers are ``__slots__`` classes holding the parsed cryptography object: one attribute
load and one method call on top of the native call, which keeps the layered code within the
1.10x overhead budget that ``bench/pqc.py`` checks.
"""

from __future__ import annotations

import cryptography
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem

from .base import (
    MLDSA65_PUBLIC_KEY_SIZE,
    MLDSA65_SEED_SIZE,
    MLKEM768_CIPHERTEXT_SIZE,
    MLKEM768_SEED_SIZE,
    Backend,
    InvalidKeyError,
    KemPrivateKey,
    KemPublicKey,
    SigPrivateKey,
    SigPublicKey,
    TamperedError,
    check_context,
    check_mlkem_public_bytes,
)


class _KemPub(KemPublicKey):
    __slots__ = ("_k", "_raw")

    def __init__(self, k: mlkem.MLKEM768PublicKey, raw: bytes | None = None) -> None:
        self._k = k
        self._raw = raw

    def encapsulate(self) -> tuple[bytes, bytes]:
        return self._k.encapsulate()

    def public_bytes(self) -> bytes:
        if self._raw is None:
            self._raw = self._k.public_bytes_raw()
        return self._raw


class _KemPriv(KemPrivateKey):
    __slots__ = ("_k",)

    def __init__(self, k: mlkem.MLKEM768PrivateKey) -> None:
        self._k = k

    def decapsulate(self, ciphertext: bytes) -> bytes:
        if len(ciphertext) != MLKEM768_CIPHERTEXT_SIZE:
            raise TamperedError(
                f"ML-KEM-768 ciphertext must be {MLKEM768_CIPHERTEXT_SIZE} bytes, got {len(ciphertext)}"
            )
        return self._k.decapsulate(ciphertext)

    def public_key(self) -> KemPublicKey:
        return _KemPub(self._k.public_key())

    def private_bytes(self) -> bytes:
        return self._k.private_bytes_raw()


class _SigPub(SigPublicKey):
    __slots__ = ("_k", "_raw")

    def __init__(self, k: mldsa.MLDSA65PublicKey, raw: bytes | None = None) -> None:
        self._k = k
        self._raw = raw

    def verify(self, signature: bytes, message: bytes, context: bytes = b"") -> bool:
        try:
            self._k.verify(signature, message, context)
        except InvalidSignature:
            return False
        except ValueError:  # over-long context raises InvalidKeyError; other malformed input is "invalid"
            check_context(context)
            return False
        return True

    def public_bytes(self) -> bytes:
        if self._raw is None:
            self._raw = self._k.public_bytes_raw()
        return self._raw


class _SigPriv(SigPrivateKey):
    __slots__ = ("_k",)

    def __init__(self, k: mldsa.MLDSA65PrivateKey) -> None:
        self._k = k

    def sign(self, message: bytes, context: bytes = b"") -> bytes:
        if len(context) > 255:
            check_context(context)
        return self._k.sign(message, context)

    def public_key(self) -> SigPublicKey:
        return _SigPub(self._k.public_key())

    def private_bytes(self) -> bytes:
        return self._k.private_bytes_raw()


class CryptographyBackend(Backend):
    """pyca/cryptography: FIPS seed-form keys, native constant-time code."""

    name = "cryptography"
    version = cryptography.__version__

    def kem_generate(self) -> KemPrivateKey:
        return _KemPriv(mlkem.MLKEM768PrivateKey.generate())

    def kem_from_seed(self, seed: bytes) -> KemPrivateKey:
        if len(seed) != MLKEM768_SEED_SIZE:
            raise InvalidKeyError(f"ML-KEM-768 seed (d||z) must be {MLKEM768_SEED_SIZE} bytes, got {len(seed)}")
        return _KemPriv(mlkem.MLKEM768PrivateKey.from_seed_bytes(seed))

    def kem_public_from_bytes(self, raw: bytes) -> KemPublicKey:
        raw = bytes(raw)
        try:
            return _KemPub(mlkem.MLKEM768PublicKey.from_public_bytes(raw), raw)
        except ValueError:
            # cryptography reports a failed modulus check as a length error; say what it was.
            check_mlkem_public_bytes(raw)
            raise InvalidKeyError("ML-KEM-768 encapsulation key rejected by the backend") from None

    def kem_private_from_bytes(self, raw: bytes) -> KemPrivateKey:
        return self.kem_from_seed(raw)

    def sig_generate(self) -> SigPrivateKey:
        return _SigPriv(mldsa.MLDSA65PrivateKey.generate())

    def sig_from_seed(self, seed: bytes) -> SigPrivateKey:
        if len(seed) != MLDSA65_SEED_SIZE:
            raise InvalidKeyError(f"ML-DSA-65 seed (xi) must be {MLDSA65_SEED_SIZE} bytes, got {len(seed)}")
        return _SigPriv(mldsa.MLDSA65PrivateKey.from_seed_bytes(seed))

    def sig_public_from_bytes(self, raw: bytes) -> SigPublicKey:
        raw = bytes(raw)
        if len(raw) != MLDSA65_PUBLIC_KEY_SIZE:
            raise InvalidKeyError(f"ML-DSA-65 public key must be {MLDSA65_PUBLIC_KEY_SIZE} bytes, got {len(raw)}")
        try:
            return _SigPub(mldsa.MLDSA65PublicKey.from_public_bytes(raw), raw)
        except ValueError as e:
            raise InvalidKeyError(f"ML-DSA-65 public key rejected: {e}") from None

    def sig_private_from_bytes(self, raw: bytes) -> SigPrivateKey:
        return self.sig_from_seed(raw)
