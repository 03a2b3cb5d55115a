"""X-Wing: the X25519 + ML-KEM-768 hybrid KEM of draft-connolly-cfrg-xwing-kem.

We follow **draft-connolly-cfrg-xwing-kem-10** (2 March 2026; unchanged since -06 in everything
used here). We use a published hybrid rather than our own KDF because the X-Wing combiner has a
security proof (eprint 2024/039) that relies on ML-KEM's FO transform; a home-made
"hash both secrets" is easy to get subtly wrong (e.g. forgetting the X25519 ciphertext and
public key, which X-Wing binds). Sections used:

* 5.2 ``expandDecapsulationKey``: ``SHAKE256(sk, 96)`` -> ML-KEM-768 ``d || z`` (bytes 0..63)
  and the X25519 scalar (bytes 64..95); the decapsulation key is the 32-byte seed ``sk``.
* 5.3 Combiner: ``SHA3-256(ss_M || ss_X || ct_X || pk_X || XWingLabel)``, label ``\\.//^\\``
  = ``5c2e2f2f5e5c``, *last*.
* 5.1 encodings: pk = ``pk_M || pk_X`` (1216 B), ct = ``ct_M || ct_X`` (1120 B), ss 32 B.
* 5.4 Encapsulate with the §7.2 check on ``pk_M`` (done by :func:`twin.pqc.kem.load_encapsulation_key`).

The test suite checks our keygen, decapsulation and (derandomised) combiner against the
draft's Appendix C vectors. X25519 comes from pyca/cryptography on every backend: liboqs has
none, and it is not the post-quantum part.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from .backends import Backend, get_backend
from .backends.base import (
    MLKEM768_CIPHERTEXT_SIZE,
    MLKEM768_PUBLIC_KEY_SIZE,
    InvalidKeyError,
    KemPrivateKey,
    KemPublicKey,
    TamperedError,
)

XWING_DRAFT = "draft-connolly-cfrg-xwing-kem-10"
#: the 6-byte ASCII label "\./" "/^\" of section 5.3
XWING_LABEL = b"\\.//^\\"
XWING_SEED_SIZE = 32
XWING_PUBLIC_KEY_SIZE = MLKEM768_PUBLIC_KEY_SIZE + 32  # 1216
XWING_CIPHERTEXT_SIZE = MLKEM768_CIPHERTEXT_SIZE + 32  # 1120
XWING_SHARED_SECRET_SIZE = 32

assert XWING_LABEL.hex() == "5c2e2f2f5e5c"


def combiner(ss_m: bytes, ss_x: bytes, ct_x: bytes, pk_x: bytes) -> bytes:
    """Section 5.3: ``SHA3-256(ss_M || ss_X || ct_X || pk_X || XWingLabel)``."""
    return hashlib.sha3_256(b"".join((ss_m, ss_x, ct_x, pk_x, XWING_LABEL))).digest()


def expand_seed(seed: bytes) -> tuple[bytes, bytes]:
    """Section 5.2: ``(d || z, sk_X)`` from the 32-byte decapsulation key."""
    if len(seed) != XWING_SEED_SIZE:
        raise InvalidKeyError(f"X-Wing decapsulation key must be {XWING_SEED_SIZE} bytes, got {len(seed)}")
    expanded = hashlib.shake_256(seed).digest(96)
    return expanded[:64], expanded[64:96]


@dataclass(frozen=True, eq=False)
class XWingPublicKey:
    """A parsed X-Wing encapsulation key; parse once with :meth:`from_bytes`, encapsulate many."""

    raw: bytes
    _kem: KemPublicKey = field(repr=False)
    _x: X25519PublicKey = field(repr=False)

    @classmethod
    def from_bytes(cls, raw: bytes, backend: str | Backend | None = None) -> XWingPublicKey:
        if len(raw) != XWING_PUBLIC_KEY_SIZE:
            raise InvalidKeyError(f"X-Wing encapsulation key must be {XWING_PUBLIC_KEY_SIZE} bytes, got {len(raw)}")
        raw = bytes(raw)
        kem = get_backend(backend).kem_public_from_bytes(raw[:MLKEM768_PUBLIC_KEY_SIZE])
        x = X25519PublicKey.from_public_bytes(raw[MLKEM768_PUBLIC_KEY_SIZE:])
        return cls(raw, kem, x)

    def encapsulate(self) -> tuple[bytes, bytes]:
        """Section 5.4: ``(shared_secret, ciphertext)``."""
        ek_x = X25519PrivateKey.generate()
        ct_x = ek_x.public_key().public_bytes_raw()
        ss_x = _exchange(ek_x, self._x)
        ss_m, ct_m = self._kem.encapsulate()
        return combiner(ss_m, ss_x, ct_x, self.raw[MLKEM768_PUBLIC_KEY_SIZE:]), ct_m + ct_x


@dataclass(frozen=True, eq=False)
class XWingPrivateKey:
    """An X-Wing key pair held in expanded form (section 5.5.1) next to its 32-byte seed.

    Keeping the expansion avoids redoing ML-KEM keygen on decapsulation; only ``seed`` is ever
    serialised (the draft forbids shipping expanded keys between implementations).
    """

    seed: bytes = field(repr=False)
    public_bytes: bytes
    _kem: KemPrivateKey = field(repr=False)
    _x: X25519PrivateKey = field(repr=False)

    @classmethod
    def from_seed(cls, seed: bytes, backend: str | Backend | None = None) -> XWingPrivateKey:
        """``GenerateKeyPairDerand`` (section 5.2.1)."""
        dz, sk_x = expand_seed(seed)
        kem = get_backend(backend).kem_from_seed(dz)
        x = X25519PrivateKey.from_private_bytes(sk_x)
        pk = kem.public_key().public_bytes() + x.public_key().public_bytes_raw()
        return cls(bytes(seed), pk, kem, x)

    @classmethod
    def generate(cls, backend: str | Backend | None = None) -> XWingPrivateKey:
        return cls.from_seed(os.urandom(XWING_SEED_SIZE), backend)

    def decapsulate(self, ciphertext: bytes) -> bytes:
        """Section 5.5. A wrong-length ciphertext or low-order X25519 share is :class:`TamperedError`."""
        if len(ciphertext) != XWING_CIPHERTEXT_SIZE:
            raise TamperedError(f"X-Wing ciphertext must be {XWING_CIPHERTEXT_SIZE} bytes, got {len(ciphertext)}")
        ct_x = ciphertext[MLKEM768_CIPHERTEXT_SIZE:]
        ss_m = self._kem.decapsulate(ciphertext[:MLKEM768_CIPHERTEXT_SIZE])
        ss_x = _exchange(self._x, X25519PublicKey.from_public_bytes(ct_x))
        return combiner(ss_m, ss_x, ct_x, self.public_bytes[MLKEM768_PUBLIC_KEY_SIZE:])


def _exchange(priv: X25519PrivateKey, pub: X25519PublicKey) -> bytes:
    try:
        return priv.exchange(pub)
    except ValueError:  # all-zero output: the peer sent a low-order point
        raise TamperedError("X25519 share is a low-order point") from None


def xwing_generate(backend: str | Backend | None = None) -> XWingPrivateKey:
    return XWingPrivateKey.generate(backend)


def xwing_encapsulate(public_key: bytes | XWingPublicKey, backend: str | Backend | None = None) -> tuple[bytes, bytes]:
    """``(shared_secret, ciphertext)``; raw keys get the ML-KEM §7.2 check (:class:`InvalidKeyError`)."""
    if not isinstance(public_key, XWingPublicKey):
        public_key = XWingPublicKey.from_bytes(public_key, backend)
    return public_key.encapsulate()


def xwing_decapsulate(private_key: XWingPrivateKey, ciphertext: bytes) -> bytes:
    return private_key.decapsulate(ciphertext)
