"""SPIFFE identities, CA-issued documents, trust bundles and revocation."""

from __future__ import annotations

import pytest

from twin.pqc import (
    ExpiredError,
    ForgedError,
    IdentityDocument,
    MeshCA,
    NodeIdentity,
    RevocationList,
    RevokedError,
    TamperedError,
    TrustBundle,
    parse_spiffe_id,
    spiffe_id,
)

T0 = 1_000.0


@pytest.fixture
def mesh(backend):
    ca = MeshCA.generate("lab-mesh", backend)
    node = ca.new_identity("n001", now=T0, ttl_s=3600)
    bundle = ca.trust_bundle()
    return ca, node, bundle


def test_spiffe_ids():
    assert spiffe_id("lab-mesh", "n001") == "spiffe://lab-mesh/node/n001"
    assert parse_spiffe_id("spiffe://lab-mesh/node/n001") == ("lab-mesh", "n001")
    for bad_mesh, bad_node in [("Lab", "n1"), ("m", "a/b"), ("m", ".."), ("", "n"), ("m", "")]:
        with pytest.raises(ValueError):
            spiffe_id(bad_mesh, bad_node)
    for bad in ["spiffe://m/ca", "http://m/node/n", "spiffe://m/node/a/b", "spiffe://M/node/n"]:
        with pytest.raises(ValueError):
            parse_spiffe_id(bad)


def test_issue_and_lookup(mesh):
    ca, node, bundle = mesh
    v = bundle.add_identity(node.document.to_bytes())
    assert v.spiffe_id == "spiffe://lab-mesh/node/n001"
    assert v.key.public_bytes() == node.key.public_key().public_bytes()
    assert bundle.lookup(node.spiffe_id, node.key_id, T0 + 1).key_id == node.key_id
    assert bundle.add_identity(node.document_bytes) is v  # cached: same bytes, no re-verification
    doc = IdentityDocument.from_bytes(node.document_bytes)
    assert doc == node.document and doc.issuer == ca.key_id


def test_unknown_and_foreign_identities_are_forged(mesh, backend):
    ca, node, bundle = mesh
    with pytest.raises(ForgedError, match="unknown signer"):
        bundle.lookup(node.spiffe_id)
    rogue = MeshCA.generate("lab-mesh", backend)  # same mesh name, untrusted key
    fake = rogue.new_identity("n001", now=T0)
    with pytest.raises(ForgedError, match="unknown CA"):
        bundle.add_identity(fake.document)
    other_mesh = MeshCA.generate("other", backend)
    bundle.add_ca(other_mesh.public_key)
    with pytest.raises(ForgedError, match="not in trust domain"):
        bundle.add_identity(other_mesh.new_identity("n001", now=T0).document)
    bundle.add_identity(node.document)
    with pytest.raises(ForgedError, match="not bound to"):
        bundle.lookup(node.spiffe_id, fake.key_id)


def test_tampered_document_rejected(mesh):
    ca, node, bundle = mesh
    raw = node.document_bytes
    for pos in (0, 3, 40, len(raw) // 2, len(raw) - 3310, len(raw) - 1):
        bad = bytearray(raw)
        bad[pos] ^= 0x04
        with pytest.raises((ForgedError, TamperedError)):
            bundle.add_identity(bytes(bad))
    # re-binding the id to another key without the CA is caught by the signature
    swapped = IdentityDocument(
        node.spiffe_id,
        MeshCA.generate("lab-mesh").public_key.public_bytes(),
        node.document.issuer,
        1,
        T0,
        T0 + 10,
        node.document.signature,
    )
    with pytest.raises(ForgedError, match="invalid CA signature"):
        bundle.add_identity(swapped)


def test_document_validity_period(mesh):
    ca, node, bundle = mesh
    bundle.add_identity(node.document)
    bundle.lookup(node.spiffe_id, now=T0 + 3600)
    with pytest.raises(ExpiredError, match="identity document"):
        bundle.lookup(node.spiffe_id, now=T0 + 3601)
    with pytest.raises(ExpiredError):
        bundle.lookup(node.spiffe_id, now=T0 - 1)


def test_revocation(mesh, backend):
    ca, node, bundle = mesh
    other = ca.new_identity("n002", now=T0)
    bundle.add_identity(node.document)
    bundle.add_identity(other.document)
    crl1 = ca.revoke({node.spiffe_id: "key stolen from n001"}, now=T0 + 5)
    assert bundle.apply_revocations(crl1.to_bytes())
    with pytest.raises(RevokedError, match=r"spiffe://lab-mesh/node/n001 is revoked \(key stolen from n001\)"):
        bundle.lookup(node.spiffe_id, now=T0 + 6)
    assert bundle.lookup(other.spiffe_id, now=T0 + 6).spiffe_id == other.spiffe_id
    assert bundle.revocation_reason(node.spiffe_id) == "key stolen from n001"
    # a newer list keeps n001 and adds n002; an old list cannot roll it back
    crl2 = ca.revoke([other.spiffe_id], now=T0 + 7)
    assert bundle.apply_revocations(crl2)
    assert not bundle.apply_revocations(crl1)
    with pytest.raises(RevokedError):
        bundle.lookup(other.spiffe_id)
    with pytest.raises(RevokedError):
        bundle.lookup(node.spiffe_id)
    # a list not signed by a trusted CA, or altered, is refused
    rogue = MeshCA.generate("lab-mesh", backend)
    with pytest.raises(ForgedError, match="unknown CA"):
        bundle.apply_revocations(rogue.revoke([], now=T0))
    forged = RevocationList(crl2.issuer, crl2.sequence + 1, crl2.issued_at, {}, crl2.signature)
    with pytest.raises(ForgedError, match="invalid CA signature"):
        bundle.apply_revocations(forged)


def test_revoking_one_key_allows_rekey(mesh):
    ca, node, bundle = mesh
    bundle.add_identity(node.document)
    rekeyed = ca.new_identity("n001", now=T0 + 10)
    bundle.add_identity(rekeyed.document)
    bundle.apply_revocations(ca.revoke([node.spiffe_id], now=T0 + 11, key_ids={node.spiffe_id: node.key_id}))
    with pytest.raises(RevokedError):
        bundle.lookup(node.spiffe_id, node.key_id)
    assert bundle.lookup(node.spiffe_id, rekeyed.key_id).key_id == rekeyed.key_id
    assert bundle.lookup(node.spiffe_id).key_id == rekeyed.key_id  # newest by default


def test_bundle_roundtrip_reverifies(mesh, backend, tmp_path):
    ca, node, bundle = mesh
    bundle.add_identity(node.document)
    bundle.apply_revocations(ca.revoke(["spiffe://lab-mesh/node/n009"], now=T0))
    path = bundle.save(tmp_path / "bundle.pem")
    assert path.stat().st_mode & 0o777 == 0o600
    again = TrustBundle.load(path, backend)
    assert again.identities() == [node.spiffe_id]
    assert again.lookup(node.spiffe_id).key_id == node.key_id
    assert again.revocation_reason("spiffe://lab-mesh/node/n009") == "revoked"
    # flipping a byte inside a stored document breaks loading (only CA keys are taken on trust)
    raw = bytearray(bundle.to_bytes())
    idx = raw.find(node.document.signature[:32])
    raw[idx + 5] ^= 1
    with pytest.raises((ForgedError, TamperedError)):
        TrustBundle.from_bytes(bytes(raw), backend)


def test_node_identity_file(mesh, backend, tmp_path):
    ca, node, _ = mesh
    path = node.save(tmp_path / "id" / "n001.pem", backend)
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = NodeIdentity.load(path)
    assert loaded.spiffe_id == node.spiffe_id and loaded.key_id == node.key_id
    assert loaded.key.public_key().public_bytes() == node.key.public_key().public_bytes()


def test_malformed_structures():
    with pytest.raises(TamperedError):
        IdentityDocument.from_bytes(b"\x00\x00\x00\x05abc")
    with pytest.raises(TamperedError):
        RevocationList.from_bytes(b"")
    with pytest.raises(TamperedError):
        TrustBundle.from_bytes(b"\x00\x00\x00\x01X")
