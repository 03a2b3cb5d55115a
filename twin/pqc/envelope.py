"""Signed envelopes for control-plane actions and telemetry, and their verifier.

Wire format (big-endian), signature last so the signed part is one contiguous prefix::

    "MTEV" | ver u8 | kind u8 | nonce[16] | issued_at f64 | expires_at f64 | id_len u16
    | signer SPIFFE id | signer key id[16] | payload_len u32 | payload | ML-DSA-65 signature[3309]

The signature is pure ML-DSA-65 over everything before it with a per-kind FIPS 204 context
(``meshtwin/action/v1`` / ``meshtwin/telemetry/v1``), so an action envelope can never be
accepted as telemetry or vice versa. Times are caller-supplied ``now`` floats (seconds), so the
simulator can run this on simulated time and the live harness on wall time.

The verifier's checks run cheapest-first and every rejection has its own type:
malformed -> :class:`TamperedError`; unknown signer / key not bound by a trusted CA ->
:class:`ForgedError`; revoked -> :class:`RevokedError`; outside validity or older than the
replay window -> :class:`ExpiredError`; nonce seen -> :class:`ReplayError`; bad signature ->
:class:`TamperedError`. A nonce is remembered only *after* its signature verified, so forged
traffic cannot poison the replay cache.
"""

from __future__ import annotations

import heapq
import math
import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .backends.base import (
    MLDSA65_SIGNATURE_SIZE,
    ExpiredError,
    ReplayError,
    TamperedError,
)
from .identity import NodeIdentity, TrustBundle
from .sign import KEY_ID_SIZE

if TYPE_CHECKING:
    from twin.adapter import Action, SignedAction

MAGIC = b"MTEV"
VERSION = 1
KIND_ACTION = 1
KIND_TELEMETRY = 2
_KIND_NAMES = {KIND_ACTION: "action", KIND_TELEMETRY: "telemetry"}
_CONTEXTS = {KIND_ACTION: b"meshtwin/action/v1", KIND_TELEMETRY: b"meshtwin/telemetry/v1"}
NONCE_SIZE = 16
_HDR = struct.Struct(">4sBB16sddH")
_U32 = struct.Struct(">I")
_SIG = MLDSA65_SIGNATURE_SIZE
#: bytes an envelope adds around the payload, excluding the signer id
ENVELOPE_FIXED_OVERHEAD = _HDR.size + KEY_ID_SIZE + _U32.size + _SIG


def envelope_size(payload_len: int, signer_id_len: int) -> int:
    """Exact envelope length for a payload and a (UTF-8) signer id of the given lengths."""
    return ENVELOPE_FIXED_OVERHEAD + signer_id_len + payload_len


@dataclass(frozen=True, slots=True)
class VerifiedAction:
    """What a successful verification returns: the payload and who vouched for it, when."""

    signer: str
    payload: bytes
    nonce: bytes
    issued_at: float
    expires_at: float
    kind: str = "action"

    def action(self) -> Action:
        """The payload decoded as a :class:`twin.adapter.Action`."""
        from twin.adapter import Action

        return Action.from_bytes(self.payload)


def _seal(kind: int, signer: NodeIdentity, payload: bytes, ttl_s: float, now: float) -> bytes:
    if not (ttl_s > 0 and math.isfinite(ttl_s) and math.isfinite(now)):
        raise ValueError(f"ttl_s must be a positive finite number and now finite (ttl_s={ttl_s}, now={now})")
    sid = signer.spiffe_id.encode()
    body = b"".join(
        (
            _HDR.pack(MAGIC, VERSION, kind, os.urandom(NONCE_SIZE), now, now + ttl_s, len(sid)),
            sid,
            signer.key_id,
            _U32.pack(len(payload)),
            payload,
        )
    )
    return body + signer.key.sign(body, _CONTEXTS[kind])


def _as_bytes(payload: bytes | Action) -> bytes:
    return payload if isinstance(payload, bytes | bytearray | memoryview) else payload.to_bytes()


def sign_action(
    signer_identity: NodeIdentity, action_bytes: bytes | Action, *, ttl_s: float = 30.0, now: float
) -> bytes:
    """Envelope for an action (``Action.to_bytes()``, or the Action itself), valid ``ttl_s`` from ``now``."""
    return _seal(KIND_ACTION, signer_identity, bytes(_as_bytes(action_bytes)), ttl_s, now)


def sign_telemetry(signer_identity: NodeIdentity, telemetry_bytes: bytes, *, ttl_s: float = 30.0, now: float) -> bytes:
    """Envelope for a telemetry report, so a tampered report is detected like a tampered action."""
    return _seal(KIND_TELEMETRY, signer_identity, bytes(telemetry_bytes), ttl_s, now)


def make_signed_action(
    signer_identity: NodeIdentity, action: Action, *, ttl_s: float = 30.0, now: float
) -> SignedAction:
    """A :class:`twin.adapter.SignedAction` ready for ``MeshAdapter.apply``."""
    from twin.adapter import SignedAction

    return SignedAction(action, sign_action(signer_identity, action.to_bytes(), ttl_s=ttl_s, now=now))


class ReplayCache:
    """Nonces accepted within the last ``window_s`` seconds; bounded in time and in size.

    An entry is dropped once its envelope is older than the window, because such envelopes are
    rejected as too old anyway: together the two rules make replay impossible with finite
    memory. If more than ``max_entries`` are live (a flood), the earliest are dropped and a
    floor is raised so anything issued at or before them is refused -- degrading to "reject
    some fresh envelopes", never to "accept a replay".
    """

    def __init__(self, window_s: float, max_entries: int = 100_000) -> None:
        if not window_s > 0:
            raise ValueError("replay window must be positive")
        self.window_s = float(window_s)
        self.max_entries = int(max_entries)
        self._seen: dict[bytes, float] = {}
        self._heap: list[tuple[float, bytes]] = []
        self._floor = -math.inf

    def __len__(self) -> int:
        return len(self._seen)

    def _evict(self, now: float) -> None:
        heap, seen = self._heap, self._seen
        while heap and heap[0][0] <= now:
            until, key = heapq.heappop(heap)
            if seen.get(key) == until:
                del seen[key]

    def check(self, key: bytes, issued_at: float, now: float) -> None:
        """Raise if ``key`` issued at ``issued_at`` must be refused at ``now``; does not record it."""
        if not (issued_at > now - self.window_s):
            raise ExpiredError(f"issued {now - issued_at:.3f}s ago, older than the {self.window_s:g}s replay window")
        if issued_at <= self._floor:
            raise ReplayError("replay cache overflowed; cannot rule out a replay of an envelope this old")
        if self._heap and self._heap[0][0] <= now:
            self._evict(now)
        if key in self._seen:
            raise ReplayError(f"nonce {key.hex()} already accepted within the {self.window_s:g}s window")

    def add(self, key: bytes, issued_at: float) -> None:
        until = issued_at + self.window_s
        self._seen[key] = until
        heapq.heappush(self._heap, (until, key))
        while len(self._seen) > self.max_entries:
            until0, k0 = heapq.heappop(self._heap)
            if self._seen.get(k0) == until0:
                del self._seen[k0]
                self._floor = max(self._floor, until0 - self.window_s)


class EnvelopeVerifier:
    """Verifies envelopes against a :class:`TrustBundle`, with a bounded replay cache.

    ``replay_window_s`` bounds how old an envelope may be (its issue time, not its expiry), and
    thereby how long nonces are kept; ``max_clock_skew_s`` tolerates signers whose clock is
    ahead. Use one verifier per enforcement point (per node agent): replay is per receiver.
    """

    def __init__(
        self,
        trust_bundle: TrustBundle,
        *,
        replay_window_s: float = 60.0,
        max_clock_skew_s: float = 5.0,
        max_entries: int = 100_000,
    ) -> None:
        self.bundle = trust_bundle
        self.max_clock_skew_s = float(max_clock_skew_s)
        self.replay = ReplayCache(replay_window_s, max_entries)

    @property
    def replay_window_s(self) -> float:
        return self.replay.window_s

    def _verify(self, env: bytes, now: float, kind: int) -> VerifiedAction:
        if type(env) is not bytes:
            env = bytes(env)
        n = len(env)
        if n < _HDR.size + KEY_ID_SIZE + 4 + _SIG:
            raise TamperedError(f"envelope truncated ({n} bytes)")
        magic, ver, k, nonce, iat, exp, slen = _HDR.unpack_from(env)
        if magic != MAGIC or ver != VERSION:
            raise TamperedError("not a meshtwin envelope (bad magic or version)")
        if k != kind:
            raise TamperedError(f"expected a {_KIND_NAMES[kind]} envelope, got kind {k}")
        off = _HDR.size + slen
        kid = env[off : off + KEY_ID_SIZE]
        off += KEY_ID_SIZE
        if off + 4 > n:
            raise TamperedError("envelope truncated")
        (plen,) = _U32.unpack_from(env, off)
        off += 4
        if off + plen + _SIG != n:
            raise TamperedError("envelope length fields do not match its size")
        try:
            signer = env[_HDR.size : _HDR.size + slen].decode()
        except UnicodeDecodeError:
            raise TamperedError("signer id is not UTF-8") from None
        ident = self.bundle.lookup(signer, kid, now)  # Forged / Revoked / Expired (document)
        if not (now < exp):
            raise ExpiredError(f"envelope from {signer} expired at {exp:.3f}, now {now:.3f}")
        if not (iat <= now + self.max_clock_skew_s) or not (exp > iat):
            raise ExpiredError(f"envelope from {signer} issued at {iat:.3f}, in the future of {now:.3f}")
        self.replay.check(nonce, iat, now)
        body_end = n - _SIG
        if not ident.key.verify(env[body_end:], env[:body_end], _CONTEXTS[kind]):
            raise TamperedError(f"signature of {signer} does not verify: envelope altered or forged")
        self.replay.add(nonce, iat)
        return VerifiedAction(signer, env[off : off + plen], nonce, iat, exp, _KIND_NAMES[kind])

    def verify(self, envelope_bytes: bytes, now: float) -> VerifiedAction:
        """Verify an action envelope at time ``now``; raises a :class:`PQCError` subclass on rejection."""
        return self._verify(envelope_bytes, now, KIND_ACTION)

    def verify_telemetry(self, envelope_bytes: bytes, now: float) -> VerifiedAction:
        return self._verify(envelope_bytes, now, KIND_TELEMETRY)

    def verify_signed_action(self, signed: SignedAction, now: float) -> VerifiedAction:
        """Verify ``signed.envelope`` *and* that it carries exactly ``signed.action``."""
        if signed.envelope is None:
            raise TamperedError("action is not signed")
        va = self.verify(signed.envelope, now)
        if va.payload != signed.action.to_bytes():
            raise TamperedError("signed envelope does not carry this action")
        return va


def verify_action(verifier: EnvelopeVerifier, envelope_bytes: bytes, now: float) -> VerifiedAction:
    return verifier.verify(envelope_bytes, now)


def verify_telemetry(verifier: EnvelopeVerifier, envelope_bytes: bytes, now: float) -> VerifiedAction:
    return verifier.verify_telemetry(envelope_bytes, now)
