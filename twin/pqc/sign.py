"""ML-DSA-65 (FIPS 204) entry points, key identifiers, and key files.

Signatures are *pure* ML-DSA (no pre-hash) with a context string. Every signed structure in
this package uses its own context (``meshtwin/action/v1``, ``meshtwin/idoc/v1`` ...), so a
signature made for one purpose can never be replayed as another even if the bytes happened to
parse; the FIPS 204 context is the standard place for that domain separation.

Signed structures use :func:`pack_fields` (u32 length prefixes), which is unambiguous to sign.
Key files are PEM-style text ("-----BEGIN ML-DSA-65 PRIVATE KEY-----", a few ``Name: value``
header lines, base64 body). They are written atomically (temp file in the same directory,
fsync, ``os.replace``) with mode 0600 set on the temp file *before* any secret byte is written,
so a crash never leaves a truncated key and a key is never world-readable, whatever the umask.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from pathlib import Path

from twin.atomic import write_bytes

from .backends import Backend, get_backend
from .backends.base import (
    MLDSA65_PUBLIC_KEY_SIZE,
    MLDSA65_SEED_SIZE,
    MLDSA65_SIGNATURE_SIZE,
    InvalidKeyError,
    SigPrivateKey,
    SigPublicKey,
    TamperedError,
)

__all__ = [
    "KEY_ID_SIZE",
    "MLDSA65_PUBLIC_KEY_SIZE",
    "MLDSA65_SEED_SIZE",
    "MLDSA65_SIGNATURE_SIZE",
    "atomic_write",
    "generate_signing_key",
    "key_id",
    "load_private_key",
    "load_public_key",
    "load_verify_key",
    "pack_fields",
    "read_pem",
    "save_private_key",
    "save_public_key",
    "sign",
    "signing_key_from_seed",
    "unpack_fields",
    "verify",
    "write_pem",
]

#: bytes of SHA-256(public key) used as a key identifier. It is only a lookup hint (the
#: signature is what binds), so 128 bits is plenty and saves bytes on the wire.
KEY_ID_SIZE = 16
_U32 = struct.Struct(">I")


def generate_signing_key(backend: str | Backend | None = None) -> SigPrivateKey:
    return get_backend(backend).sig_generate()


def signing_key_from_seed(seed: bytes, backend: str | Backend | None = None) -> SigPrivateKey:
    """ML-DSA.KeyGen_internal(xi) with the 32-byte ``xi``, as FIPS 204 Algorithm 6."""
    return get_backend(backend).sig_from_seed(seed)


def load_verify_key(raw: bytes, backend: str | Backend | None = None) -> SigPublicKey:
    return get_backend(backend).sig_public_from_bytes(raw)


def key_id(public_key: bytes | SigPublicKey) -> bytes:
    """First :data:`KEY_ID_SIZE` bytes of SHA-256 of the raw public key."""
    raw = public_key.public_bytes() if isinstance(public_key, SigPublicKey) else public_key
    return hashlib.sha256(raw).digest()[:KEY_ID_SIZE]


def sign(private_key: SigPrivateKey, message: bytes, context: bytes = b"") -> bytes:
    return private_key.sign(message, context)


def verify(public_key: SigPublicKey, signature: bytes, message: bytes, context: bytes = b"") -> bool:
    return public_key.verify(signature, message, context)


# -- encoding of signed structures -----------------------------------------------------------------------------------


def pack_fields(*fields: bytes) -> bytes:
    """Length-prefixed (u32 big-endian) concatenation: unambiguous, so safe to sign."""
    return b"".join(_U32.pack(len(f)) + f for f in fields)


def unpack_fields(raw: bytes, count: int | None = None, what: str = "structure") -> list[bytes]:
    """Inverse of :func:`pack_fields`; :class:`TamperedError` on truncation or trailing bytes."""
    out, off, n = [], 0, len(raw)
    while off < n:
        if off + 4 > n:
            raise TamperedError(f"truncated {what}")
        (ln,) = _U32.unpack_from(raw, off)
        off += 4
        if off + ln > n:
            raise TamperedError(f"truncated {what}")
        out.append(bytes(raw[off : off + ln]))
        off += ln
    if count is not None and len(out) != count:
        raise TamperedError(f"malformed {what}: {len(out)} fields, expected {count}")
    return out


# -- files ------------------------------------------------------------------------------------


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> Path:
    """Write ``data`` to ``path`` atomically with permissions ``mode`` (set before any secret byte
    is written); returns the path."""
    return write_bytes(path, data, mode=mode)


def encode_pem(label: str, data: bytes, headers: dict[str, str] | None = None) -> bytes:
    b64 = base64.b64encode(data).decode()
    lines = [f"-----BEGIN {label}-----"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if headers:
        lines.append("")
    lines += [b64[i : i + 64] for i in range(0, len(b64), 64)]
    lines.append(f"-----END {label}-----")
    return ("\n".join(lines) + "\n").encode()


def decode_pem(text: bytes, label: str) -> tuple[bytes, dict[str, str]]:
    """Inverse of :func:`encode_pem`; :class:`InvalidKeyError` if the armour is not ``label``."""
    lines = text.decode("ascii", errors="replace").strip().splitlines()
    if len(lines) < 2 or lines[0] != f"-----BEGIN {label}-----" or lines[-1] != f"-----END {label}-----":
        raise InvalidKeyError(f"not a {label} file")
    headers: dict[str, str] = {}
    body = lines[1:-1]
    if "" in body:
        cut = body.index("")
        for line in body[:cut]:
            k, _, v = line.partition(": ")
            headers[k] = v
        body = body[cut + 1 :]
    try:
        return base64.b64decode("".join(body), validate=True), headers
    except ValueError as e:
        raise InvalidKeyError(f"corrupt base64 in {label} file: {e}") from None


def write_pem(
    path: str | os.PathLike[str], label: str, data: bytes, headers: dict[str, str] | None = None, mode: int = 0o600
) -> Path:
    return atomic_write(path, encode_pem(label, data, headers), mode)


def read_pem(path: str | os.PathLike[str], label: str) -> tuple[bytes, dict[str, str]]:
    return decode_pem(Path(path).read_bytes(), label)


_PRIV_LABEL = "ML-DSA-65 PRIVATE KEY"
_PUB_LABEL = "ML-DSA-65 PUBLIC KEY"


def save_private_key(path: str | os.PathLike[str], key: SigPrivateKey, backend: str | Backend | None = None) -> Path:
    """Write an ML-DSA-65 private key (seed form on the cryptography backend), mode 0600."""
    be = get_backend(backend)
    raw = key.private_bytes()
    fmt = "seed" if len(raw) == MLDSA65_SEED_SIZE else "expanded"
    return write_pem(path, _PRIV_LABEL, raw, {"Backend": be.name, "Format": fmt})


def load_private_key(path: str | os.PathLike[str], backend: str | Backend | None = None) -> SigPrivateKey:
    raw, headers = read_pem(path, _PRIV_LABEL)
    be = get_backend(backend if backend is not None else headers.get("Backend"))
    return be.sig_private_from_bytes(raw)


def save_public_key(path: str | os.PathLike[str], key: SigPublicKey, mode: int = 0o600) -> Path:
    """Public keys are not secret, but 0600 by default keeps every key file under one rule."""
    return write_pem(path, _PUB_LABEL, key.public_bytes(), mode=mode)


def load_public_key(path: str | os.PathLike[str], backend: str | Backend | None = None) -> SigPublicKey:
    raw, _ = read_pem(path, _PUB_LABEL)
    return load_verify_key(raw, backend)
