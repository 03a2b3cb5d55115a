"""The live control channel on the wire: length-prefixed frames, the post-quantum handshake of
:mod:`twin.pqc.handshake`, then an AEAD record layer keyed from its session key.

Why not TLS 1.3 to carry the session: the standard library's ``ssl`` links the system OpenSSL
(3.0 on Debian 12), which offers neither an X25519+ML-KEM-768 key exchange nor ML-DSA
certificates, so a TLS session would be classical and the node identities (SPIFFE ids bound to
ML-DSA-65 keys by the mesh CA) could not be its certificates. The handshake the project already
has is mutual, transcript-signed with ML-DSA-65 and keyed by the X-Wing hybrid KEM; all this
module adds is the record layer: ChaCha20-Poly1305 from ``cryptography``, one key per direction
(HKDF-SHA256 from the session key), the 96-bit nonce a per-direction counter that must be exactly
the next one (TCP keeps order, so a replayed, dropped or reordered record fails), and the
handshake transcript hash as associated data.

A record's plaintext is ``u32 header length | JSON header | binary blob``: headers are small
and readable in the audit log, signed envelopes travel unchanged as the blob.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from twin.pqc import HandshakeClient, HandshakeServer, NodeIdentity, PQCError, SessionKeys, TrustBundle

MAX_FRAME = 1 << 20  # 1 MiB: a telemetry report of a 1000-originator table is ~150 kB
_LEN = struct.Struct(">I")
_NONCE_PREFIX = b"\x00\x00\x00\x00"


class ChannelError(Exception):
    """The peer broke the protocol, the record did not authenticate, or the connection closed."""


async def read_frame(reader: asyncio.StreamReader, timeout_s: float) -> bytes:
    try:
        head = await asyncio.wait_for(reader.readexactly(4), timeout_s)
        (n,) = _LEN.unpack(head)
        if n > MAX_FRAME:
            raise ChannelError(f"frame of {n} bytes exceeds the {MAX_FRAME}-byte limit")
        return await asyncio.wait_for(reader.readexactly(n), timeout_s)
    except asyncio.IncompleteReadError as err:
        raise ChannelError("connection closed by peer") from err
    except TimeoutError as err:
        raise ChannelError(f"no frame within {timeout_s:g}s") from err


def write_frame(writer: asyncio.StreamWriter, data: bytes) -> None:
    if len(data) > MAX_FRAME:
        raise ChannelError(f"frame of {len(data)} bytes exceeds the {MAX_FRAME}-byte limit")
    writer.write(_LEN.pack(len(data)) + data)


def pack(header: dict, blob: bytes = b"") -> bytes:
    h = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    return _LEN.pack(len(h)) + h + blob


def unpack(plain: bytes) -> tuple[dict, bytes]:
    if len(plain) < 4:
        raise ChannelError("record too short")
    (n,) = _LEN.unpack_from(plain)
    if 4 + n > len(plain):
        raise ChannelError("record header length exceeds the record")
    try:
        header = json.loads(plain[4 : 4 + n])
    except ValueError as err:
        raise ChannelError("record header is not JSON") from err
    if not isinstance(header, dict):
        raise ChannelError("record header is not an object")
    return header, plain[4 + n :]


def _direction_key(session: SessionKeys, label: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, session.transcript_hash, b"meshtwin/live/v1 " + label).derive(session.key)


@dataclass
class SecureChannel:
    """One authenticated, encrypted connection; ``peer`` is the SPIFFE id the handshake proved."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    session: SessionKeys
    timeout_s: float = 5.0
    _tx: ChaCha20Poly1305 = field(init=False, repr=False)
    _rx: ChaCha20Poly1305 = field(init=False, repr=False)
    _tx_n: int = 0
    _rx_n: int = 0

    def __post_init__(self) -> None:
        c2s = ChaCha20Poly1305(_direction_key(self.session, b"client->server"))
        s2c = ChaCha20Poly1305(_direction_key(self.session, b"server->client"))
        self._tx, self._rx = (c2s, s2c) if self.session.role == "client" else (s2c, c2s)

    @property
    def peer(self) -> str:
        return self.session.peer

    async def send(self, header: dict, blob: bytes = b"") -> None:
        nonce = _NONCE_PREFIX + self._tx_n.to_bytes(8, "big")
        self._tx_n += 1
        write_frame(self.writer, self._tx.encrypt(nonce, pack(header, blob), self.session.transcript_hash))
        await self.writer.drain()

    async def recv(self, timeout_s: float | None = None) -> tuple[dict, bytes]:
        data = await read_frame(self.reader, self.timeout_s if timeout_s is None else timeout_s)
        nonce = _NONCE_PREFIX + self._rx_n.to_bytes(8, "big")
        try:
            plain = self._rx.decrypt(nonce, data, self.session.transcript_hash)
        except InvalidTag as err:
            raise ChannelError("record failed authentication (tampered, replayed or out of order)") from err
        self._rx_n += 1
        return unpack(plain)

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)
        except (OSError, TimeoutError):
            pass


async def client_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, identity: NodeIdentity,
                           bundle: TrustBundle, expected_server: str | None, timeout_s: float) -> SecureChannel:
    """Controller side: send ClientHello, check the ServerHello proves ``expected_server``."""
    hc = HandshakeClient(identity, bundle, expected_server=expected_server)
    write_frame(writer, hc.start(time.time()).to_bytes())
    await writer.drain()
    raw = await read_frame(reader, timeout_s)
    if raw.startswith(b"{"):  # a refusal the server explains in clear before closing
        raise ChannelError(f"refused by server: {json.loads(raw).get('refused', '?')}")
    try:
        keys = hc.finish(raw, time.time())
    except PQCError as err:
        raise ChannelError(f"server failed authentication: {type(err).__name__}: {err}") from err
    return SecureChannel(reader, writer, keys, timeout_s)


async def server_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: HandshakeServer,
                           timeout_s: float) -> SecureChannel:
    """Agent side; raises :class:`PQCError` (the caller audits and refuses) or :class:`ChannelError`."""
    raw = await read_frame(reader, timeout_s)
    sh, keys = server.respond(raw, time.time())
    write_frame(writer, sh.to_bytes())
    await writer.drain()
    return SecureChannel(reader, writer, keys, timeout_s)


def refuse(writer: asyncio.StreamWriter, why: str) -> None:
    """Tell a refused peer why in one clear frame (no session exists, so nothing secret is said)."""
    try:
        write_frame(writer, json.dumps({"refused": why[:300]}).encode())
    except (OSError, ChannelError):
        pass
