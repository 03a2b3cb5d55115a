"""Signed action / telemetry envelopes: each attack is rejected with its own error type."""

from __future__ import annotations

import dataclasses
import math

import pytest

from twin.adapter import Action, SignedAction
from twin.pqc import (
    EnvelopeVerifier,
    ExpiredError,
    ForgedError,
    MeshCA,
    PQCError,
    ReplayCache,
    ReplayError,
    RevokedError,
    TamperedError,
    envelope_size,
    make_signed_action,
    sign_action,
    sign_telemetry,
    verify_telemetry,
)

T0 = 5_000.0
ACTION = Action("set_hop_penalty", "n003", {"value": 255}, reason="flapping link")


@pytest.fixture
def world(backend):
    ca = MeshCA.generate("mesh", backend)
    ctl = ca.new_identity("controller", now=0.0)
    node = ca.new_identity("n003", now=0.0)
    bundle = ca.trust_bundle()
    bundle.add_identity(ctl.document)
    bundle.add_identity(node.document)
    return ca, ctl, node, bundle


def test_valid_envelope(world):
    ca, ctl, node, bundle = world
    env = sign_action(ctl, ACTION.to_bytes(), ttl_s=10, now=T0)
    assert len(env) == envelope_size(len(ACTION.to_bytes()), len(ctl.spiffe_id))
    va = EnvelopeVerifier(bundle, replay_window_s=30).verify(env, T0 + 1)
    assert va.signer == "spiffe://mesh/node/controller"
    assert va.action() == ACTION
    assert (va.issued_at, va.expires_at, len(va.nonce)) == (T0, T0 + 10, 16)


def test_forged_unknown_signer_and_unknown_key(world, backend):
    ca, ctl, node, bundle = world
    verifier = EnvelopeVerifier(bundle)
    stranger = MeshCA.generate("mesh", backend).new_identity("intruder", now=0.0)
    with pytest.raises(ForgedError, match="unknown signer spiffe://mesh/node/intruder"):
        verifier.verify(sign_action(stranger, ACTION, ttl_s=10, now=T0), T0)
    impostor = MeshCA.generate("mesh", backend).new_identity("controller", now=0.0)  # claims our id
    with pytest.raises(ForgedError, match="not bound to spiffe://mesh/node/controller"):
        verifier.verify(sign_action(impostor, ACTION, ttl_s=10, now=T0), T0)
    # impostor copying the genuine key id: the signature does not verify
    spoof = dataclasses.replace(impostor, key_id=ctl.key_id)
    with pytest.raises(TamperedError, match="does not verify"):
        verifier.verify(sign_action(spoof, ACTION, ttl_s=10, now=T0), T0)
    assert len(verifier.replay) == 0  # nothing forged got into the replay cache


def test_replay(world):
    ca, ctl, node, bundle = world
    verifier = EnvelopeVerifier(bundle, replay_window_s=30)
    env = sign_action(ctl, ACTION, ttl_s=10, now=T0)
    verifier.verify(env, T0 + 1)
    with pytest.raises(ReplayError, match="already accepted"):
        verifier.verify(env, T0 + 2)
    # a second verifier (another node) has its own cache
    EnvelopeVerifier(bundle).verify(env, T0 + 2)


def test_expired(world):
    ca, ctl, node, bundle = world
    verifier = EnvelopeVerifier(bundle, replay_window_s=30, max_clock_skew_s=2)
    env = sign_action(ctl, ACTION, ttl_s=10, now=T0)
    with pytest.raises(ExpiredError, match="expired at"):
        verifier.verify(env, T0 + 10)
    with pytest.raises(ExpiredError, match="in the future"):
        verifier.verify(env, T0 - 3)
    # ttl longer than the replay window: refused once older than the window (cannot rule out replay)
    long = sign_action(ctl, ACTION, ttl_s=100, now=T0)
    with pytest.raises(ExpiredError, match="replay window"):
        verifier.verify(long, T0 + 31)
    verifier.verify(long, T0 + 29)


def test_revoked(world):
    ca, ctl, node, bundle = world
    verifier = EnvelopeVerifier(bundle)
    env = sign_action(ctl, ACTION, ttl_s=10, now=T0)
    bundle.apply_revocations(ca.revoke({ctl.spiffe_id: "controller host compromised"}, now=T0))
    with pytest.raises(RevokedError, match="controller host compromised"):
        verifier.verify(env, T0 + 1)


def test_tampered_any_byte(world):
    ca, ctl, node, bundle = world
    env = sign_action(ctl, ACTION, ttl_s=10, now=T0)
    n = len(env)
    positions = sorted(
        {
            0,
            4,
            5,
            6,
            21,
            30,
            38,
            39,
            45,
            60,
            70,
            75,
            n - 3309 - 5,
            n - 3309 - 1,
            n - 3309,
            n - 2000,
            n - 1,
            *range(7, n, 211),
        }
    )
    for pos in positions:
        bad = bytearray(env)
        bad[pos] ^= 0x20
        with pytest.raises(PQCError) as ei:
            EnvelopeVerifier(bundle).verify(bytes(bad), T0 + 1)
        assert not isinstance(ei.value, ReplayError), pos
    # payload and signature bytes specifically are TamperedError
    body_end = n - 3309
    for pos in (body_end - 1, body_end - 40, body_end, body_end + 1500, n - 1):
        bad = bytearray(env)
        bad[pos] ^= 0x01
        with pytest.raises(TamperedError):
            EnvelopeVerifier(bundle).verify(bytes(bad), T0 + 1)
    for cut in (0, 10, n - 1):
        with pytest.raises(TamperedError):
            EnvelopeVerifier(bundle).verify(env[:cut], T0 + 1)
    with pytest.raises(TamperedError):
        EnvelopeVerifier(bundle).verify(env + b"\x00", T0 + 1)
    EnvelopeVerifier(bundle).verify(env, T0 + 1)  # the untouched one is fine


def test_signed_action_must_carry_its_action(world):
    ca, ctl, node, bundle = world
    verifier = EnvelopeVerifier(bundle)
    sa = make_signed_action(ctl, ACTION, ttl_s=10, now=T0)
    assert verifier.verify_signed_action(sa, T0).action() == ACTION
    other = Action("quarantine", "n003")
    swapped = SignedAction(other, make_signed_action(ctl, ACTION, ttl_s=10, now=T0).envelope)
    with pytest.raises(TamperedError, match="does not carry this action"):
        verifier.verify_signed_action(swapped, T0)
    with pytest.raises(TamperedError, match="not signed"):
        verifier.verify_signed_action(SignedAction(ACTION), T0)


def test_telemetry_and_domain_separation(world):
    ca, ctl, node, bundle = world
    verifier = EnvelopeVerifier(bundle)
    report = b'{"t": 12.5, "tx": [1, 2, 3]}'
    tel = sign_telemetry(node, report, ttl_s=5, now=T0)
    got = verify_telemetry(verifier, tel, T0 + 1)
    assert (got.payload, got.signer, got.kind) == (report, node.spiffe_id, "telemetry")
    with pytest.raises(TamperedError, match="expected a action envelope"):
        verifier.verify(sign_telemetry(node, ACTION.to_bytes(), ttl_s=5, now=T0), T0)
    bad = bytearray(sign_telemetry(node, report, ttl_s=5, now=T0))
    bad[len(bad) - 3309 - 3] ^= 1  # inside the report
    with pytest.raises(TamperedError):
        verifier.verify_telemetry(bytes(bad), T0)
    # re-labelling telemetry as an action does not verify: different kind byte and FIPS 204 context
    relabel = bytearray(sign_telemetry(node, ACTION.to_bytes(), ttl_s=5, now=T0))
    relabel[5] = 1
    with pytest.raises(TamperedError, match="does not verify"):
        verifier.verify(bytes(relabel), T0)


def test_bad_sign_arguments(world):
    ca, ctl, node, bundle = world
    for ttl, now in [(0, T0), (-1, T0), (math.inf, T0), (1, math.nan)]:
        with pytest.raises(ValueError):
            sign_action(ctl, ACTION, ttl_s=ttl, now=now)


def test_replay_cache_is_bounded_in_time():
    rc = ReplayCache(window_s=10)
    for i in range(100):
        t = float(i)
        rc.check(b"%d" % i, t, t)
        rc.add(b"%d" % i, t)
        assert len(rc) <= 11
    with pytest.raises(ReplayError):
        rc.check(b"99", 99.0, 99.5)
    with pytest.raises(ExpiredError):
        rc.check(b"0", 0.0, 99.5)  # evicted, but too old to be accepted anyway


def test_replay_cache_overflow_fails_closed():
    rc = ReplayCache(window_s=100, max_entries=3)
    for i in range(5):
        rc.add(b"%d" % i, float(i))
    assert len(rc) == 3
    # 0 and 1 were evicted early: anything issued at or before 1.0 is now refused as a possible replay
    with pytest.raises(ReplayError, match="overflowed"):
        rc.check(b"0", 0.0, 5.0)
    with pytest.raises(ReplayError, match="overflowed"):
        rc.check(b"new", 1.0, 5.0)
    rc.check(b"new", 1.5, 5.0)


def test_verifier_cache_evicts(world):
    ca, ctl, node, bundle = world
    verifier = EnvelopeVerifier(bundle, replay_window_s=5)
    for k in range(4):
        verifier.verify(sign_action(ctl, ACTION, ttl_s=2, now=T0 + 3 * k), T0 + 3 * k)
    assert len(verifier.replay) <= 2
