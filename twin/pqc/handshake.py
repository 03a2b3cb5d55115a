"""Mutually authenticated controller <-> node session handshake (X-Wing + ML-DSA-65), 1 round trip.

::

    client (controller)                                   server (node)
    ClientHello = id, key id, nonce, time, X-Wing ephemeral pk, [identity doc], sig_C
                   ---------------------------------------------------------->
                   sig_C = ML-DSA(sk_C, H(CH without sig_C), ctx "meshtwin/hs/client/v1")
    ServerHello = id, key id, nonce, time, X-Wing ciphertext, [identity doc], sig_S
                   <----------------------------------------------------------
                   sig_S = ML-DSA(sk_S, H(CH || SH without sig_S), ctx "meshtwin/hs/server/v1")
    both: session_key = HKDF-SHA256(ikm = X-Wing ss, salt = H(CH || SH), info = "meshtwin/hs/v1 session")

Why this shape: it is the SIGMA-style "sign the transcript" pattern of TLS 1.3
CertificateVerify, reduced to one round trip. Each side signs everything it has seen,
including the peer's nonce and the ephemeral KEM material, so a man in the middle cannot
splice messages from different runs; the ephemeral X-Wing key gives forward secrecy and the
hybrid keeps the session safe if either X25519 or ML-KEM-768 falls. The KDF is plain
RFC 5869 HKDF from pyca/cryptography; the transcript hash is SHA-256 (H above).

Identity documents are carried in the hellos by default (first contact needs them); a
receiver's :class:`TrustBundle` verifies a document once and afterwards recognises the same
bytes without a signature check. Pass ``send_identity_doc=False`` when peers are pre-provisioned
(smaller messages; sizes for both are in :func:`twin.pqc.calibrate.sizes`).
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
from dataclasses import dataclass, field
from typing import ClassVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .backends import Backend
from .backends.base import MLDSA65_SIGNATURE_SIZE, ExpiredError, ForgedError, HandshakeError, TamperedError
from .envelope import ReplayCache
from .hybrid import XWING_CIPHERTEXT_SIZE, XWING_PUBLIC_KEY_SIZE, XWingPrivateKey, XWingPublicKey
from .identity import NodeIdentity, TrustBundle
from .sign import KEY_ID_SIZE

_MAGIC = b"MTHS"
_HDR = struct.Struct(">4sB32sdH")  # magic, type, nonce, timestamp, id_len
_U32 = struct.Struct(">I")
_SIG = MLDSA65_SIGNATURE_SIZE
CTX_CLIENT = b"meshtwin/hs/client/v1"
CTX_SERVER = b"meshtwin/hs/server/v1"
_TRANSCRIPT_PREFIX = b"meshtwin/hs/v1 transcript"
_SESSION_INFO = b"meshtwin/hs/v1 session"
SESSION_KEY_SIZE = 32


@dataclass(frozen=True)
class _Hello:
    TYPE: ClassVar[int] = 0
    BODY: ClassVar[int] = 0

    spiffe_id: str
    key_id: bytes
    nonce: bytes
    timestamp: float
    body: bytes  # X-Wing public key (ClientHello) or ciphertext (ServerHello)
    identity_doc: bytes = b""
    signature: bytes = b""
    _raw: bytes | None = field(default=None, repr=False, compare=False)

    def unsigned_bytes(self) -> bytes:
        return self._encode(
            self.spiffe_id.encode(), self.key_id, self.nonce, self.timestamp, self.body, self.identity_doc
        )

    @classmethod
    def _encode(cls, sid: bytes, kid: bytes, nonce: bytes, ts: float, body: bytes, doc: bytes) -> bytes:
        return b"".join((_HDR.pack(_MAGIC, cls.TYPE, nonce, ts, len(sid)), sid, kid, body, _U32.pack(len(doc)), doc))

    def to_bytes(self) -> bytes:
        """Wire encoding; ``len(to_bytes())`` is the real message size."""
        return self._raw if self._raw is not None else self.unsigned_bytes() + self.signature

    @classmethod
    def from_bytes(cls, raw: bytes):  # -> Self
        raw = bytes(raw)
        n = len(raw)
        if n < _HDR.size + KEY_ID_SIZE + cls.BODY + 4 + _SIG:
            raise TamperedError(f"{cls.__name__} truncated ({n} bytes)")
        magic, typ, nonce, ts, slen = _HDR.unpack_from(raw)
        if magic != _MAGIC or typ != cls.TYPE:
            raise TamperedError(f"not a {cls.__name__} (bad magic or type)")
        off = _HDR.size + slen
        kid = raw[off : off + KEY_ID_SIZE]
        body = raw[off + KEY_ID_SIZE : off + KEY_ID_SIZE + cls.BODY]
        off += KEY_ID_SIZE + cls.BODY
        if off + 4 > n:
            raise TamperedError(f"{cls.__name__} truncated")
        (dlen,) = _U32.unpack_from(raw, off)
        off += 4
        if off + dlen + _SIG != n:
            raise TamperedError(f"{cls.__name__} length fields do not match its size")
        try:
            sid = raw[_HDR.size : _HDR.size + slen].decode()
        except UnicodeDecodeError:
            raise TamperedError("peer id is not UTF-8") from None
        return cls(sid, kid, nonce, ts, body, raw[off : off + dlen], raw[off + dlen :], raw)


@dataclass(frozen=True)
class ClientHello(_Hello):
    TYPE: ClassVar[int] = 1
    BODY: ClassVar[int] = XWING_PUBLIC_KEY_SIZE


@dataclass(frozen=True)
class ServerHello(_Hello):
    TYPE: ClassVar[int] = 2
    BODY: ClassVar[int] = XWING_CIPHERTEXT_SIZE


@dataclass(frozen=True)
class SessionKeys:
    """Result of one side of the handshake."""

    key: bytes = field(repr=False)
    transcript_hash: bytes
    peer: str
    role: str


def _derive(ss: bytes, transcript_hash: bytes) -> bytes:
    return HKDF(hashes.SHA256(), SESSION_KEY_SIZE, transcript_hash, _SESSION_INFO).derive(ss)


class _Party:
    def __init__(
        self,
        identity: NodeIdentity,
        bundle: TrustBundle,
        *,
        send_identity_doc: bool,
        max_clock_skew_s: float,
        backend: str | Backend | None,
    ) -> None:
        self.identity = identity
        self.bundle = bundle
        self.send_identity_doc = send_identity_doc
        self.max_clock_skew_s = float(max_clock_skew_s)
        self.backend = backend if backend is not None else bundle.backend
        self._doc = identity.document_bytes if send_identity_doc else b""
        self._sid = identity.spiffe_id.encode()

    def _hello(self, cls: type[_Hello], body: bytes, now: float, transcript: hashlib._Hash, ctx: bytes) -> _Hello:
        if not math.isfinite(now):
            raise ValueError("now must be finite")
        ident, nonce = self.identity, os.urandom(32)
        unsigned = cls._encode(self._sid, ident.key_id, nonce, now, body, self._doc)
        transcript.update(unsigned)
        sig = ident.key.sign(transcript.copy().digest(), ctx)
        transcript.update(sig)
        return cls(ident.spiffe_id, ident.key_id, nonce, now, body, self._doc, sig, unsigned + sig)

    def _authenticate(self, msg: _Hello, now: float, transcript: hashlib._Hash, ctx: bytes):
        """Check freshness, identity and signature of a received hello; feeds it to ``transcript``."""
        if not (abs(now - msg.timestamp) <= self.max_clock_skew_s):
            raise ExpiredError(
                f"{type(msg).__name__} from {msg.spiffe_id} timestamped {msg.timestamp:.3f}, "
                f"now {now:.3f} (max skew {self.max_clock_skew_s:g}s)"
            )
        if msg.identity_doc:
            v = self.bundle.add_identity(msg.identity_doc, msg.spiffe_id)  # ForgedError if not from a trusted CA
            if v.spiffe_id != msg.spiffe_id:
                raise ForgedError(f"identity document is for {v.spiffe_id}, hello claims {msg.spiffe_id}")
        ident = self.bundle.lookup(msg.spiffe_id, msg.key_id, now)  # Forged / Revoked / Expired
        raw = memoryview(msg.to_bytes())  # no copies of the ~10 kB message
        sig = raw[-_SIG:]
        transcript.update(raw[:-_SIG])
        if not ident.key.verify(sig, transcript.copy().digest(), ctx):
            raise TamperedError(f"{type(msg).__name__} signature of {msg.spiffe_id} does not verify")
        transcript.update(sig)
        return ident


class HandshakeClient(_Party):
    """Initiator (normally the controller). ``start`` then ``finish``; one use per instance."""

    def __init__(
        self,
        identity: NodeIdentity,
        bundle: TrustBundle,
        *,
        expected_server: str | None = None,
        send_identity_doc: bool = True,
        max_clock_skew_s: float = 30.0,
        backend: str | Backend | None = None,
    ) -> None:
        super().__init__(
            identity, bundle, send_identity_doc=send_identity_doc, max_clock_skew_s=max_clock_skew_s, backend=backend
        )
        self.expected_server = expected_server
        self._eph: XWingPrivateKey | None = None
        self._transcript: hashlib._Hash | None = None

    def start(self, now: float) -> ClientHello:
        if self._eph is not None:
            raise HandshakeError("handshake already started")
        self._eph = XWingPrivateKey.generate(self.backend)
        self._transcript = hashlib.sha256(_TRANSCRIPT_PREFIX)
        return self._hello(ClientHello, self._eph.public_bytes, now, self._transcript, CTX_CLIENT)

    def finish(self, server_hello: ServerHello | bytes, now: float) -> SessionKeys:
        if self._eph is None or self._transcript is None:
            raise HandshakeError("finish() before start() or after a completed handshake")
        sh = server_hello if isinstance(server_hello, ServerHello) else ServerHello.from_bytes(server_hello)
        if self.expected_server is not None and sh.spiffe_id != self.expected_server:
            raise ForgedError(f"expected server {self.expected_server}, got {sh.spiffe_id}")
        t = self._transcript.copy()
        self._authenticate(sh, now, t, CTX_SERVER)
        ss = self._eph.decapsulate(sh.body)
        self._eph = self._transcript = None  # forward secrecy: drop the ephemeral key
        th = t.digest()
        return SessionKeys(_derive(ss, th), th, sh.spiffe_id, "client")


class HandshakeServer(_Party):
    """Responder (normally the node agent); stateless apart from a ClientHello replay cache."""

    def __init__(
        self,
        identity: NodeIdentity,
        bundle: TrustBundle,
        *,
        send_identity_doc: bool = True,
        max_clock_skew_s: float = 30.0,
        backend: str | Backend | None = None,
    ) -> None:
        super().__init__(
            identity, bundle, send_identity_doc=send_identity_doc, max_clock_skew_s=max_clock_skew_s, backend=backend
        )
        self.replay = ReplayCache(2 * self.max_clock_skew_s + 1.0)

    def respond(self, client_hello: ClientHello | bytes, now: float) -> tuple[ServerHello, SessionKeys]:
        ch = client_hello if isinstance(client_hello, ClientHello) else ClientHello.from_bytes(client_hello)
        t = hashlib.sha256(_TRANSCRIPT_PREFIX)
        self.replay.check(ch.nonce, ch.timestamp + self.max_clock_skew_s, now)
        self._authenticate(ch, now, t, CTX_CLIENT)
        ss, ct = XWingPublicKey.from_bytes(ch.body, self.backend).encapsulate()
        sh = self._hello(ServerHello, ct, now, t, CTX_SERVER)
        self.replay.add(ch.nonce, ch.timestamp + self.max_clock_skew_s)
        th = t.digest()
        return sh, SessionKeys(_derive(ss, th), th, ch.spiffe_id, "server")


@dataclass(frozen=True)
class HandshakeResult:
    """Both ends of an in-process handshake; ``sizes`` are real ``len(to_bytes())`` values."""

    client_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)
    transcript_hash: bytes
    client_hello: ClientHello = field(repr=False)
    server_hello: ServerHello = field(repr=False)
    sizes: dict[str, int] = field(default_factory=dict)


def run_handshake(
    client_identity: NodeIdentity,
    server_identity: NodeIdentity,
    *,
    client_bundle: TrustBundle,
    server_bundle: TrustBundle | None = None,
    now: float,
    send_identity_doc: bool = True,
    backend: str | Backend | None = None,
) -> HandshakeResult:
    """Full mutual handshake in-process (both sides), returning both session keys and message sizes."""
    client = HandshakeClient(
        client_identity,
        client_bundle,
        expected_server=server_identity.spiffe_id,
        send_identity_doc=send_identity_doc,
        backend=backend,
    )
    server = HandshakeServer(
        server_identity, server_bundle or client_bundle, send_identity_doc=send_identity_doc, backend=backend
    )
    ch = client.start(now)
    sh, skeys = server.respond(ch.to_bytes(), now)
    ckeys = client.finish(sh.to_bytes(), now)
    c, s = len(ch.to_bytes()), len(sh.to_bytes())
    return HandshakeResult(
        ckeys.key, skeys.key, ckeys.transcript_hash, ch, sh, {"client_hello": c, "server_hello": s, "total": c + s}
    )
