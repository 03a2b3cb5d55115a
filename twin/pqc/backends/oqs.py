"""Optional backend: liboqs through liboqs-python, used only when the shared library is present.

``import oqs`` is dangerous on a machine without liboqs: liboqs-python then prints a 5 s
countdown, tries to ``git clone`` and build liboqs, and finally calls ``sys.exit`` -- a
``SystemExit`` that ``except Exception`` does not catch. So :func:`library_path` looks for the
library first (``$OQS_INSTALL_PATH/lib*``, then ``ctypes.util.find_library("oqs")``) and
:func:`load` never imports ``oqs`` unless it found one. Even then the import is guarded with
``except BaseException`` so a broken install degrades to "backend unavailable".

Differences from the cryptography backend, all surfaced as :class:`UnsupportedError` rather
than silently different behaviour:

* ML-KEM keygen from seed needs ``OQS_KEM_keypair_derand`` (liboqs >= 0.11); it is called
  through ``oqs.native()``. Private ML-KEM keys are then stored as the 64-byte seed.
* liboqs has no ML-DSA keygen from seed, so ``sig_from_seed`` is unsupported and ML-DSA
  private keys serialise as liboqs' expanded 4032-byte secret key followed by the public key.
* Context strings need ``sign_with_ctx_str`` (liboqs-python >= 0.12).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib.util
import os
from typing import Any

from .base import (
    MLDSA65_PUBLIC_KEY_SIZE,
    MLKEM768_CIPHERTEXT_SIZE,
    MLKEM768_PUBLIC_KEY_SIZE,
    MLKEM768_SEED_SIZE,
    Backend,
    InvalidKeyError,
    KemPrivateKey,
    KemPublicKey,
    SigPrivateKey,
    SigPublicKey,
    TamperedError,
    UnsupportedError,
    check_context,
    check_mlkem_public_bytes,
)

KEM_ALG = "ML-KEM-768"
SIG_ALG = "ML-DSA-65"
_MLKEM768_EXPANDED_SK = 2400
_MLDSA65_EXPANDED_SK = 4032

_oqs: Any = None
_load_error: str | None = None


def library_path() -> str | None:
    """Where liboqs is, without importing ``oqs`` (see module docstring for why)."""
    root = os.environ.get("OQS_INSTALL_PATH")
    if root:
        for sub in ("lib", "lib64", "bin"):
            for pat in ("liboqs.so*", "liboqs*.dylib", "oqs.dll"):
                hits = sorted(glob.glob(os.path.join(root, sub, pat)))
                if hits:
                    return hits[0]
    return ctypes.util.find_library("oqs")


def load() -> Any | None:
    """Import and return the ``oqs`` module if liboqs and the bindings are usable, else None."""
    global _oqs, _load_error
    if _oqs is not None or _load_error is not None:
        return _oqs
    if library_path() is None:
        _load_error = "liboqs shared library not found (OQS_INSTALL_PATH, ctypes.util.find_library)"
        return None
    if importlib.util.find_spec("oqs") is None:
        _load_error = "liboqs present but the liboqs-python bindings are not installed"
        return None
    try:
        import oqs  # noqa: PLC0415 - deliberately lazy, see module docstring
    except BaseException as e:  # SystemExit from the bindings' auto-installer included
        _load_error = f"import oqs failed: {e!r}"
        return None
    try:
        if not (oqs.is_kem_enabled(KEM_ALG) and oqs.is_sig_enabled(SIG_ALG)):
            _load_error = f"liboqs lacks {KEM_ALG} or {SIG_ALG}"
            return None
    except Exception as e:  # very old bindings
        _load_error = f"cannot query liboqs mechanisms: {e!r}"
        return None
    _oqs = oqs
    return _oqs


def unavailable_reason() -> str | None:
    load()
    return _load_error


class _KemPub(KemPublicKey):
    __slots__ = ("_raw", "_kem")

    def __init__(self, raw: bytes, kem: Any) -> None:
        self._raw = raw
        self._kem = kem

    def encapsulate(self) -> tuple[bytes, bytes]:
        try:
            ct, ss = self._kem.encap_secret(self._raw)
        except Exception as e:  # newer bindings raise instead of returning 0
            raise InvalidKeyError(f"liboqs rejected the ML-KEM-768 encapsulation key: {e}") from None
        if not isinstance(ss, bytes | bytearray) or len(ct) != MLKEM768_CIPHERTEXT_SIZE:
            raise InvalidKeyError("liboqs rejected the ML-KEM-768 encapsulation key")
        return bytes(ss), bytes(ct)

    def public_bytes(self) -> bytes:
        return self._raw


class _KemPriv(KemPrivateKey):
    __slots__ = ("_kem", "_pk", "_stored")

    def __init__(self, kem: Any, pk: bytes, stored: bytes) -> None:
        self._kem = kem
        self._pk = pk
        self._stored = stored

    def decapsulate(self, ciphertext: bytes) -> bytes:
        if len(ciphertext) != MLKEM768_CIPHERTEXT_SIZE:
            raise TamperedError(
                f"ML-KEM-768 ciphertext must be {MLKEM768_CIPHERTEXT_SIZE} bytes, got {len(ciphertext)}"
            )
        ss = self._kem.decap_secret(bytes(ciphertext))
        if not isinstance(ss, bytes | bytearray):
            raise TamperedError("liboqs failed to decapsulate")
        return bytes(ss)

    def public_key(self) -> KemPublicKey:
        return _KemPub(self._pk, _oqs.KeyEncapsulation(KEM_ALG))

    def private_bytes(self) -> bytes:
        return self._stored


class _SigPub(SigPublicKey):
    __slots__ = ("_raw", "_sig")

    def __init__(self, raw: bytes, sig: Any) -> None:
        self._raw = raw
        self._sig = sig

    def verify(self, signature: bytes, message: bytes, context: bytes = b"") -> bool:
        signature, message = bytes(signature), bytes(message)  # ctypes wants bytes, callers may pass views
        if context:
            check_context(context)
            if not hasattr(self._sig, "verify_with_ctx_str"):
                raise UnsupportedError("these liboqs-python bindings have no ML-DSA context strings")
            return bool(self._sig.verify_with_ctx_str(message, signature, context, self._raw))
        return bool(self._sig.verify(message, signature, self._raw))

    def public_bytes(self) -> bytes:
        return self._raw


class _SigPriv(SigPrivateKey):
    __slots__ = ("_sig", "_pk")

    def __init__(self, sig: Any, pk: bytes) -> None:
        self._sig = sig
        self._pk = pk

    def sign(self, message: bytes, context: bytes = b"") -> bytes:
        message = bytes(message)
        if context:
            check_context(context)
            if not hasattr(self._sig, "sign_with_ctx_str"):
                raise UnsupportedError("these liboqs-python bindings have no ML-DSA context strings")
            return bytes(self._sig.sign_with_ctx_str(message, context))
        return bytes(self._sig.sign(message))

    def public_key(self) -> SigPublicKey:
        return _SigPub(self._pk, _oqs.Signature(SIG_ALG))

    def private_bytes(self) -> bytes:
        # liboqs' expanded secret key does not contain t1, so keep the public key next to it.
        return bytes(self._sig.export_secret_key()) + self._pk


class OqsBackend(Backend):
    """liboqs via liboqs-python; construct only after :func:`load` returned a module."""

    name = "oqs"

    def __init__(self) -> None:
        oqs = load()
        if oqs is None:
            raise UnsupportedError(f"oqs backend unavailable: {_load_error}")
        self._oqs = oqs
        try:
            self.version = f"liboqs-{oqs.oqs_version()}"
        except Exception:
            self.version = "liboqs-unknown"

    # -- ML-KEM-768 ---------------------------------------------------------------------------
    def _kem_derand(self, seed: bytes) -> KemPrivateKey:
        kem = self._oqs.KeyEncapsulation(KEM_ALG)
        fn = getattr(self._oqs.native(), "OQS_KEM_keypair_derand", None)
        if fn is None or not hasattr(kem, "_kem"):
            raise UnsupportedError("liboqs < 0.11 has no OQS_KEM_keypair_derand (ML-KEM keygen from seed)")
        pk = ctypes.create_string_buffer(MLKEM768_PUBLIC_KEY_SIZE)
        sk = ctypes.create_string_buffer(_MLKEM768_EXPANDED_SK)
        rv = fn(kem._kem, ctypes.byref(pk), ctypes.byref(sk), bytes(seed))
        if rv != 0:
            raise InvalidKeyError("liboqs OQS_KEM_keypair_derand failed")
        kem.secret_key = sk
        return _KemPriv(kem, bytes(pk), bytes(seed))

    def kem_generate(self) -> KemPrivateKey:
        return self._kem_derand(os.urandom(MLKEM768_SEED_SIZE))

    def kem_from_seed(self, seed: bytes) -> KemPrivateKey:
        if len(seed) != MLKEM768_SEED_SIZE:
            raise InvalidKeyError(f"ML-KEM-768 seed (d||z) must be {MLKEM768_SEED_SIZE} bytes, got {len(seed)}")
        return self._kem_derand(seed)

    def kem_public_from_bytes(self, raw: bytes) -> KemPublicKey:
        raw = bytes(raw)
        check_mlkem_public_bytes(raw)  # do not rely on the liboqs version doing §7.2
        return _KemPub(raw, self._oqs.KeyEncapsulation(KEM_ALG))

    def kem_private_from_bytes(self, raw: bytes) -> KemPrivateKey:
        if len(raw) == MLKEM768_SEED_SIZE:
            return self._kem_derand(raw)
        raise InvalidKeyError(f"oqs backend stores ML-KEM-768 private keys as {MLKEM768_SEED_SIZE}-byte seeds")

    # -- ML-DSA-65 ----------------------------------------------------------------------------
    def sig_generate(self) -> SigPrivateKey:
        sig = self._oqs.Signature(SIG_ALG)
        pk = sig.generate_keypair()
        return _SigPriv(sig, bytes(pk))

    def sig_from_seed(self, seed: bytes) -> SigPrivateKey:
        raise UnsupportedError("liboqs has no ML-DSA-65 keygen from a 32-byte seed")

    def sig_public_from_bytes(self, raw: bytes) -> SigPublicKey:
        raw = bytes(raw)
        if len(raw) != MLDSA65_PUBLIC_KEY_SIZE:
            raise InvalidKeyError(f"ML-DSA-65 public key must be {MLDSA65_PUBLIC_KEY_SIZE} bytes, got {len(raw)}")
        return _SigPub(raw, self._oqs.Signature(SIG_ALG))

    def sig_private_from_bytes(self, raw: bytes) -> SigPrivateKey:
        if len(raw) != _MLDSA65_EXPANDED_SK + MLDSA65_PUBLIC_KEY_SIZE:
            raise InvalidKeyError(
                f"oqs ML-DSA-65 private keys are expanded sk || pk "
                f"({_MLDSA65_EXPANDED_SK + MLDSA65_PUBLIC_KEY_SIZE} bytes), got {len(raw)}"
            )
        sk, pk = bytes(raw[:_MLDSA65_EXPANDED_SK]), bytes(raw[_MLDSA65_EXPANDED_SK:])
        return _SigPriv(self._oqs.Signature(SIG_ALG, secret_key=sk), pk)
