"""Mutually authenticated X-Wing + ML-DSA-65 handshake."""

from __future__ import annotations

import pytest

from twin.pqc import (
    ClientHello,
    ExpiredError,
    ForgedError,
    HandshakeClient,
    HandshakeError,
    HandshakeServer,
    MeshCA,
    PQCError,
    ReplayError,
    RevokedError,
    ServerHello,
    TamperedError,
    run_handshake,
)

T0 = 100.0


@pytest.fixture
def world(backend):
    ca = MeshCA.generate("mesh", backend)
    ctl = ca.new_identity("controller", now=0.0)
    node = ca.new_identity("n005", now=0.0)
    # each side starts with only the CA key: identity documents travel in the hellos
    return ca, ctl, node, ca.trust_bundle(), ca.trust_bundle()


def test_full_handshake_same_key_and_real_sizes(world, backend):
    ca, ctl, node, cb, sb = world
    r = run_handshake(ctl, node, client_bundle=cb, server_bundle=sb, now=T0, backend=backend)
    assert r.client_key == r.server_key and len(r.client_key) == 32
    assert r.sizes["client_hello"] == len(r.client_hello.to_bytes())
    assert r.sizes["server_hello"] == len(r.server_hello.to_bytes())
    assert r.sizes["total"] == r.sizes["client_hello"] + r.sizes["server_hello"]
    # public material: X-Wing pk 1216 + signature 3309 + identity document > 9 kB
    assert r.sizes["client_hello"] > 1216 + 3309 + len(ctl.document_bytes)
    r2 = run_handshake(ctl, node, client_bundle=cb, server_bundle=sb, now=T0, backend=backend)
    assert r2.client_key == r2.server_key != r.client_key  # fresh ephemeral keys every time
    # pre-provisioned peers can leave the documents out (bundles learnt them above)
    lean = run_handshake(ctl, node, client_bundle=cb, server_bundle=sb, now=T0, send_identity_doc=False)
    assert lean.client_key == lean.server_key
    assert lean.sizes["client_hello"] == r.sizes["client_hello"] - len(ctl.document_bytes)


def test_messages_roundtrip_bytes(world):
    ca, ctl, node, cb, sb = world
    client = HandshakeClient(ctl, cb)
    ch = client.start(T0)
    parsed = ClientHello.from_bytes(ch.to_bytes())
    assert parsed == ch and parsed.to_bytes() == ch.to_bytes()
    sh, _ = HandshakeServer(node, sb).respond(parsed, T0)
    assert ServerHello.from_bytes(sh.to_bytes()) == sh
    with pytest.raises(TamperedError):
        ServerHello.from_bytes(ch.to_bytes())  # a ClientHello is not a ServerHello


def _positions(n: int, doc_len: int) -> list[int]:
    # header, id, key id, KEM material, document (incl. its CA signature), own signature, last byte
    return sorted(
        {
            0,
            3,
            4,
            5,
            20,
            37,
            40,
            45,
            47,
            60,
            70,
            100,
            700,
            1300,
            1400,
            2000,
            3000,
            n - 3309 - doc_len - 2,
            n - 3309 - doc_len + 50,
            n - 3309 - 100,
            n - 3309 - 1,
            n - 3309,
            n - 1700,
            n - 2,
            n - 1,
        }
    )


def test_tampered_client_hello_detected(world):
    ca, ctl, node, cb, sb = world
    ch = HandshakeClient(ctl, cb).start(T0).to_bytes()
    for pos in _positions(len(ch), len(ctl.document_bytes)):
        bad = bytearray(ch)
        bad[pos] ^= 0x10
        with pytest.raises(PQCError):
            HandshakeServer(node, sb).respond(bytes(bad), T0)
    HandshakeServer(node, sb).respond(ch, T0)  # the original still works


def test_tampered_server_hello_detected(world):
    ca, ctl, node, cb, sb = world
    client = HandshakeClient(ctl, cb)
    ch = client.start(T0)
    sh, skeys = HandshakeServer(node, sb).respond(ch.to_bytes(), T0)
    raw = sh.to_bytes()
    ct_start = raw.index(sh.body)
    positions = _positions(len(raw), len(node.document_bytes)) + [ct_start, ct_start + 1087, ct_start + 1119]
    for pos in positions:
        bad = bytearray(raw)
        bad[pos] ^= 0x10
        with pytest.raises(PQCError):
            HandshakeClient.finish(_clone(client), bytes(bad), T0)
    assert client.finish(raw, T0).key == skeys.key


def _clone(client: HandshakeClient) -> HandshakeClient:
    c = HandshakeClient(client.identity, client.bundle, expected_server=client.expected_server)
    c._eph, c._transcript = client._eph, client._transcript.copy()
    return c


def test_unknown_or_unexpected_peers(world, backend):
    ca, ctl, node, cb, sb = world
    rogue = MeshCA.generate("mesh", backend).new_identity("n005", now=0.0)
    with pytest.raises(ForgedError, match="unknown CA"):
        HandshakeServer(node, sb).respond(HandshakeClient(rogue, cb).start(T0).to_bytes(), T0)
    # without documents, a peer the bundle has never seen is unknown
    lean = HandshakeClient(ca.new_identity("n099", now=0.0), cb, send_identity_doc=False)
    with pytest.raises(ForgedError, match="unknown signer"):
        HandshakeServer(node, sb).respond(lean.start(T0), T0)
    client = HandshakeClient(ctl, cb, expected_server="spiffe://mesh/node/n777")
    sh, _ = HandshakeServer(node, sb).respond(client.start(T0), T0)
    with pytest.raises(ForgedError, match="expected server"):
        client.finish(sh, T0)


def test_revoked_client_rejected(world):
    ca, ctl, node, cb, sb = world
    sb.apply_revocations(ca.revoke({ctl.spiffe_id: "decommissioned"}, now=T0))
    with pytest.raises(RevokedError, match="decommissioned"):
        HandshakeServer(node, sb).respond(HandshakeClient(ctl, cb).start(T0), T0)


def test_replay_and_freshness(world):
    ca, ctl, node, cb, sb = world
    server = HandshakeServer(node, sb, max_clock_skew_s=10)
    ch = HandshakeClient(ctl, cb).start(T0).to_bytes()
    server.respond(ch, T0 + 1)
    with pytest.raises(ReplayError):
        server.respond(ch, T0 + 2)
    stale = HandshakeClient(ctl, cb).start(T0).to_bytes()
    with pytest.raises(ExpiredError, match="max skew"):
        HandshakeServer(node, sb, max_clock_skew_s=10).respond(stale, T0 + 11)


def test_state_machine(world):
    ca, ctl, node, cb, sb = world
    client = HandshakeClient(ctl, cb)
    with pytest.raises(HandshakeError):
        client.finish(b"", T0)
    ch = client.start(T0)
    with pytest.raises(HandshakeError):
        client.start(T0)
    sh, _ = HandshakeServer(node, sb).respond(ch, T0)
    client.finish(sh, T0)
    with pytest.raises(HandshakeError):
        client.finish(sh, T0)  # ephemeral key is gone after use
