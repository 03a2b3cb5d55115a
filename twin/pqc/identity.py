"""SPIFFE-style node identities bound to ML-DSA-65 keys by a mesh CA, trust bundles, revocation.

An identity is ``spiffe://<mesh>/node/<id>``. A mesh CA (an ML-DSA-65 key) signs an
:class:`IdentityDocument` binding that id to the node's ML-DSA-65 public key for a validity
period. A :class:`TrustBundle` is what a verifier trusts: CA public keys, identity documents it
has verified against them, and the CA-signed :class:`RevocationList`. We do not use X.509:
ML-DSA certificates are not yet supported end to end by the libraries we target, and a
fixed, small binary format keeps wire sizes predictable for the simulator.

The bundle parses and verifies each document once and keeps the parsed public-key object,
so the per-envelope cost of "who signed this, are they still trusted?" is two dict lookups.
Failures are typed: unknown id or a document not signed by a trusted CA is
:class:`ForgedError`, a revoked id is :class:`RevokedError`, a document outside its validity
is :class:`ExpiredError`.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from .backends import Backend, get_backend
from .backends.base import (
    ExpiredError,
    ForgedError,
    RevokedError,
    SigPrivateKey,
    SigPublicKey,
    TamperedError,
)
from .sign import KEY_ID_SIZE, key_id, pack_fields, read_pem, unpack_fields, write_pem

CTX_IDENTITY = b"meshtwin/idoc/v1"
CTX_REVOCATION = b"meshtwin/crl/v1"
_IDOC_NUMS = struct.Struct(">Qdd")  # serial, not_before, not_after
_CRL_NUMS = struct.Struct(">Qd")  # sequence, issued_at
_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]{1,255}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
DEFAULT_IDENTITY_TTL_S = 365 * 86400.0


# -- SPIFFE ids ---------------------------------------------------------------------------------


def spiffe_id(mesh: str, node_id: str) -> str:
    """``spiffe://<mesh>/node/<node_id>``, validated against the SPIFFE character rules."""
    if not _TRUST_DOMAIN.match(mesh):
        raise ValueError(f"invalid SPIFFE trust domain {mesh!r} (lowercase letters, digits, . _ -)")
    if not _SEGMENT.match(node_id) or node_id in (".", ".."):
        raise ValueError(f"invalid node id {node_id!r} (letters, digits, . _ -)")
    return f"spiffe://{mesh}/node/{node_id}"


def parse_spiffe_id(sid: str) -> tuple[str, str]:
    """``(mesh, node_id)`` of a node SPIFFE id; ValueError if it is not one."""
    m = re.match(r"^spiffe://([^/]+)/node/([^/]+)$", sid)
    if not m:
        raise ValueError(f"not a node SPIFFE id: {sid!r}")
    spiffe_id(m.group(1), m.group(2))
    return m.group(1), m.group(2)


# -- documents ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdentityDocument:
    """CA-signed binding of ``spiffe_id`` to an ML-DSA-65 public key for a validity period."""

    spiffe_id: str
    public_key: bytes
    issuer: bytes  # key id of the signing CA
    serial: int
    not_before: float
    not_after: float
    signature: bytes = b""

    def tbs(self) -> bytes:
        """The signed part ("to be signed")."""
        nums = _IDOC_NUMS.pack(self.serial, self.not_before, self.not_after)
        return pack_fields(b"MTID1", self.spiffe_id.encode(), self.public_key, self.issuer, nums)

    def to_bytes(self) -> bytes:
        return pack_fields(self.tbs(), self.signature)

    @classmethod
    def from_bytes(cls, raw: bytes) -> IdentityDocument:
        tbs, sig = unpack_fields(raw, 2, "identity document")
        magic, sid, pk, issuer, nums = unpack_fields(tbs, 5, "identity document")
        if magic != b"MTID1" or len(nums) != _IDOC_NUMS.size or len(issuer) != KEY_ID_SIZE:
            raise TamperedError("malformed identity document")
        serial, nb, na = _IDOC_NUMS.unpack(nums)
        try:
            sid_s = sid.decode()
        except UnicodeDecodeError:
            raise TamperedError("identity document SPIFFE id is not UTF-8") from None
        return cls(sid_s, pk, issuer, serial, nb, na, sig)

    @property
    def key_id(self) -> bytes:
        return key_id(self.public_key)


@dataclass(frozen=True)
class RevocationList:
    """A CA's complete list of revoked identities; a higher ``sequence`` replaces a lower one.

    ``entries`` maps SPIFFE id to ``(key_id, reason)``; an empty key id revokes every key of
    that id, a non-empty one only that key (so a node can be re-keyed without a new name).
    """

    issuer: bytes
    sequence: int
    issued_at: float
    entries: Mapping[str, tuple[bytes, str]]
    signature: bytes = b""

    def tbs(self) -> bytes:
        body = pack_fields(*(pack_fields(s.encode(), k, r.encode()) for s, (k, r) in sorted(self.entries.items())))
        return pack_fields(b"MTCRL1", self.issuer, _CRL_NUMS.pack(self.sequence, self.issued_at), body)

    def to_bytes(self) -> bytes:
        return pack_fields(self.tbs(), self.signature)

    @classmethod
    def from_bytes(cls, raw: bytes) -> RevocationList:
        tbs, sig = unpack_fields(raw, 2, "revocation list")
        magic, issuer, nums, body = unpack_fields(tbs, 4, "revocation list")
        if magic != b"MTCRL1" or len(nums) != _CRL_NUMS.size:
            raise TamperedError("malformed revocation list")
        seq, at = _CRL_NUMS.unpack(nums)
        entries = {}
        for item in unpack_fields(body, None, "revocation list"):
            s, k, r = unpack_fields(item, 3, "revocation entry")
            entries[s.decode(errors="replace")] = (k, r.decode(errors="replace"))
        return cls(issuer, seq, at, entries, sig)


@dataclass(frozen=True)
class NodeIdentity:
    """What a node (or the controller) holds: its signing key and its CA-issued document."""

    document: IdentityDocument
    key: SigPrivateKey = field(repr=False)
    key_id: bytes = b""
    #: ``document.to_bytes()``, computed once because hellos carry it on every handshake
    document_bytes: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if not self.key_id:
            object.__setattr__(self, "key_id", self.document.key_id)
        if not self.document_bytes:
            object.__setattr__(self, "document_bytes", self.document.to_bytes())

    @property
    def spiffe_id(self) -> str:
        return self.document.spiffe_id

    def save(self, path: str | os.PathLike[str], backend: str | Backend | None = None) -> Path:
        """Key + document in one PEM file, written atomically with mode 0600."""
        body = pack_fields(self.key.private_bytes(), self.document.to_bytes())
        return write_pem(
            path, "MESHTWIN NODE IDENTITY", body, {"Backend": get_backend(backend).name, "Id": self.spiffe_id}
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], backend: str | Backend | None = None) -> NodeIdentity:
        raw, headers = read_pem(path, "MESHTWIN NODE IDENTITY")
        priv, doc = unpack_fields(raw, 2, "node identity file")
        be = get_backend(backend if backend is not None else headers.get("Backend"))
        return cls(IdentityDocument.from_bytes(doc), be.sig_private_from_bytes(priv))


# -- CA -----------------------------------------------------------------------------------------


@dataclass
class MeshCA:
    """The mesh's signing authority: issues identity documents and revocation lists."""

    mesh: str
    key: SigPrivateKey = field(repr=False)
    backend: Backend = field(repr=False)
    next_serial: int = 1
    crl_sequence: int = 0
    revoked: dict[str, tuple[bytes, str]] = field(default_factory=dict)

    @classmethod
    def generate(cls, mesh: str, backend: str | Backend | None = None, seed: bytes | None = None) -> MeshCA:
        spiffe_id(mesh, "ca")  # validates the trust domain
        be = get_backend(backend)
        return cls(mesh, be.sig_from_seed(seed) if seed is not None else be.sig_generate(), be)

    @property
    def public_key(self) -> SigPublicKey:
        return self.key.public_key()

    @property
    def key_id(self) -> bytes:
        return key_id(self.public_key.public_bytes())

    def issue(
        self, node_id: str, public_key: bytes | SigPublicKey, *, now: float, ttl_s: float = DEFAULT_IDENTITY_TTL_S
    ) -> IdentityDocument:
        """Sign a document binding ``spiffe://<mesh>/node/<node_id>`` to ``public_key``."""
        pk = public_key.public_bytes() if isinstance(public_key, SigPublicKey) else bytes(public_key)
        doc = IdentityDocument(spiffe_id(self.mesh, node_id), pk, self.key_id, self.next_serial, now, now + ttl_s)
        self.next_serial += 1
        return replace(doc, signature=self.key.sign(doc.tbs(), CTX_IDENTITY))

    def new_identity(
        self, node_id: str, *, now: float, ttl_s: float = DEFAULT_IDENTITY_TTL_S, seed: bytes | None = None
    ) -> NodeIdentity:
        """Generate a node key pair and issue its document."""
        key = self.backend.sig_from_seed(seed) if seed is not None else self.backend.sig_generate()
        return NodeIdentity(self.issue(node_id, key.public_key(), now=now, ttl_s=ttl_s), key)

    def revoke(
        self, ids: Iterable[str] | Mapping[str, str], *, now: float, key_ids: Mapping[str, bytes] | None = None
    ) -> RevocationList:
        """Add ``ids`` (SPIFFE ids, optionally ``{id: reason}``) and sign the full new list."""
        reasons = ids if isinstance(ids, Mapping) else {i: "revoked" for i in ids}
        for sid, why in reasons.items():
            parse_spiffe_id(sid)
            self.revoked[sid] = ((key_ids or {}).get(sid, b""), why)
        self.crl_sequence += 1
        crl = RevocationList(self.key_id, self.crl_sequence, now, dict(self.revoked))
        return replace(crl, signature=self.key.sign(crl.tbs(), CTX_REVOCATION))

    def trust_bundle(self) -> TrustBundle:
        b = TrustBundle(self.mesh, self.backend)
        b.add_ca(self.public_key)
        return b


# -- trust bundle -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedIdentity:
    """An identity document whose CA signature has been checked, with its parsed key."""

    spiffe_id: str
    key: SigPublicKey
    key_id: bytes
    document: IdentityDocument
    raw: bytes


class TrustBundle:
    """CA keys + verified identity documents + revocations: everything a verifier trusts."""

    def __init__(self, mesh: str, backend: str | Backend | None = None) -> None:
        spiffe_id(mesh, "ca")
        self.mesh = mesh
        self.backend = get_backend(backend)
        self._cas: dict[bytes, SigPublicKey] = {}
        self._ids: dict[str, dict[bytes, VerifiedIdentity]] = {}
        self._crls: dict[bytes, RevocationList] = {}
        self._revoked: dict[str, list[tuple[bytes, str, RevocationList]]] = {}

    # building
    def add_ca(self, public_key: bytes | SigPublicKey) -> bytes:
        pk = public_key if isinstance(public_key, SigPublicKey) else self.backend.sig_public_from_bytes(public_key)
        kid = key_id(pk.public_bytes())
        self._cas[kid] = pk
        return kid

    @property
    def ca_key_ids(self) -> list[bytes]:
        return list(self._cas)

    def add_identity(self, doc: IdentityDocument | bytes, claimed_id: str | None = None) -> VerifiedIdentity:
        """Verify ``doc`` against the trusted CAs and remember it; :class:`ForgedError` if it is not theirs.

        Re-adding the exact same bytes is a cache hit (no parsing, no signature check), which is
        what makes carrying the document in every handshake cheap; ``claimed_id`` (the id the
        sender claims) lets the hit be found with one dict lookup and a memcmp.
        """
        raw = bytes(doc) if isinstance(doc, bytes | bytearray | memoryview) else doc.to_bytes()
        if claimed_id is not None:
            for v in self._ids.get(claimed_id, {}).values():
                if v.raw == raw:
                    return v
        parsed = doc if isinstance(doc, IdentityDocument) else IdentityDocument.from_bytes(raw)
        for v in self._ids.get(parsed.spiffe_id, {}).values():
            if v.raw == raw:
                return v
        try:
            mesh, _ = parse_spiffe_id(parsed.spiffe_id)
        except ValueError as e:
            raise ForgedError(f"identity document names an invalid id: {e}") from None
        if mesh != self.mesh:
            raise ForgedError(f"{parsed.spiffe_id} is not in trust domain {self.mesh!r}")
        ca = self._cas.get(parsed.issuer)
        if ca is None:
            raise ForgedError(f"identity document for {parsed.spiffe_id} issued by unknown CA {parsed.issuer.hex()}")
        if not ca.verify(parsed.signature, parsed.tbs(), CTX_IDENTITY):
            raise ForgedError(f"identity document for {parsed.spiffe_id} has an invalid CA signature")
        pk = self.backend.sig_public_from_bytes(parsed.public_key)
        v = VerifiedIdentity(parsed.spiffe_id, pk, parsed.key_id, parsed, raw)
        self._ids.setdefault(parsed.spiffe_id, {})[v.key_id] = v
        return v

    def apply_revocations(self, crl: RevocationList | bytes) -> bool:
        """Install a CA-signed revocation list; returns False if an equal/newer one is installed.

        Older sequence numbers are ignored so an attacker cannot roll revocations back by
        replaying an old list.
        """
        if not isinstance(crl, RevocationList):
            crl = RevocationList.from_bytes(crl)
        ca = self._cas.get(crl.issuer)
        if ca is None:
            raise ForgedError(f"revocation list issued by unknown CA {crl.issuer.hex()}")
        if not ca.verify(crl.signature, crl.tbs(), CTX_REVOCATION):
            raise ForgedError("revocation list has an invalid CA signature")
        cur = self._crls.get(crl.issuer)
        if cur is not None and cur.sequence >= crl.sequence:
            return False
        self._crls[crl.issuer] = crl
        self._revoked = {}
        for lst in self._crls.values():
            for sid, (kid, why) in lst.entries.items():
                self._revoked.setdefault(sid, []).append((kid, why, lst))
        return True

    # queries (hot path)
    def lookup(self, sid: str, key_id: bytes | None = None, now: float | None = None) -> VerifiedIdentity:
        """The trusted identity ``sid`` (with key ``key_id`` if given), or a typed error saying why not."""
        keys = self._ids.get(sid)
        if not keys:
            raise ForgedError(f"unknown signer {sid}: no identity document from a trusted CA")
        if key_id is None:
            v = max(keys.values(), key=lambda x: x.document.not_before)
        else:
            v = keys.get(key_id)
            if v is None:
                raise ForgedError(f"signed with key {key_id.hex()} which is not bound to {sid} by a trusted CA")
        rev = self._revoked.get(sid)
        if rev is not None:
            for kid, why, lst in rev:
                if not kid or kid == v.key_id:
                    raise RevokedError(
                        f"{sid} is revoked ({why}) by CA {lst.issuer.hex()} revocation list #{lst.sequence}"
                    )
        if now is not None and not (v.document.not_before <= now <= v.document.not_after):
            raise ExpiredError(
                f"identity document of {sid} valid {v.document.not_before:.3f}..{v.document.not_after:.3f}, "
                f"now {now:.3f}"
            )
        return v

    def revocation_reason(self, sid: str) -> str | None:
        rev = self._revoked.get(sid)
        return rev[0][1] if rev else None

    def identities(self) -> list[str]:
        return sorted(self._ids)

    # persistence
    def to_bytes(self) -> bytes:
        cas = pack_fields(*(pk.public_bytes() for pk in self._cas.values()))
        docs = pack_fields(*(v.raw for keys in self._ids.values() for v in keys.values()))
        crls = pack_fields(*(c.to_bytes() for c in self._crls.values()))
        return pack_fields(b"MTTB1", self.mesh.encode(), cas, docs, crls)

    @classmethod
    def from_bytes(cls, raw: bytes, backend: str | Backend | None = None) -> TrustBundle:
        """Rebuild and *re-verify* everything: only the CA keys are taken on trust."""
        magic, mesh, cas, docs, crls = unpack_fields(raw, 5, "trust bundle")
        if magic != b"MTTB1":
            raise TamperedError("not a trust bundle")
        b = cls(mesh.decode(), backend)
        for pk in unpack_fields(cas, None, "trust bundle"):
            b.add_ca(pk)
        for d in unpack_fields(docs, None, "trust bundle"):
            b.add_identity(d)
        for c in unpack_fields(crls, None, "trust bundle"):
            b.apply_revocations(c)
        return b

    def save(self, path: str | os.PathLike[str]) -> Path:
        return write_pem(path, "MESHTWIN TRUST BUNDLE", self.to_bytes(), {"Mesh": self.mesh})

    @classmethod
    def load(cls, path: str | os.PathLike[str], backend: str | Backend | None = None) -> TrustBundle:
        raw, _ = read_pem(path, "MESHTWIN TRUST BUNDLE")
        return cls.from_bytes(raw, backend)
