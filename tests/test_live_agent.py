"""The node agent over real sockets: who may connect, which commands it refuses, commit-confirmed.

Agents run in-process on loopback with the stand-in kernel of :mod:`twin.live.kernel` (this
host's kernel has no batman-adv); every refusal is checked three ways: the answer, the audit
log, and that the kernel saw no write. ``test_live_uml.py`` repeats the refusals on real
batman-adv kernels.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from twin.adapter import Action
from twin.live import audit
from twin.live.client import AgentClient, AgentUnavailable
from twin.live.keys import _load_or_new_ca
from twin.live.loopback import AgentsThread, controller_of, write_lab
from twin.pqc import MeshCA, NodeIdentity, sign_action


@pytest.fixture()
def lab(tmp_path):
    inv_path, cfgs = write_lab(tmp_path, 2, allow_actions=["set_orig_interval", "set_hop_penalty"])
    agents = AgentsThread(cfgs)
    inv, ident, bundle = controller_of(inv_path)
    ca = _load_or_new_ca(tmp_path / "keys" / "ca.id", "lab")
    yield {"inv": inv, "id": ident, "bundle": bundle, "agents": agents, "ca": ca, "root": tmp_path}
    agents.close()


def _client(lab, name="n0", identity=None, bundle=None) -> AgentClient:
    inv = lab["inv"]
    n = inv.node(name)
    return AgentClient(name, *inv.address(n), identity or lab["id"], bundle or lab["bundle"], inv.spiffe(n),
                       backoff_s=0.0)


def _ask(lab, client: AgentClient, header: dict, blob: bytes = b"") -> dict:
    async def go():
        try:
            return (await client.request(header, blob, timeout_s=3.0))[0]
        finally:
            await client.close()

    return lab["agents"].call(go())


def _audit(lab, node="n0") -> list[dict]:
    return audit.read(lab["root"] / "audit" / f"{node}.audit.jsonl")


def _env(ident: NodeIdentity, action: Action, now: float | None = None) -> bytes:
    return sign_action(ident, action, ttl_s=30.0, now=time.time() if now is None else now)


def test_valid_command_applies_and_unconfirmed_change_reverts_by_itself(lab):
    k = lab["agents"].kernels["n0"]
    a = Action("set_orig_interval", "n0", {"ms": 40})
    r = _ask(lab, _client(lab), {"op": "apply", "dry_run": False, "confirm_within_s": 60}, _env(lab["id"], a))
    assert r["verdict"] == "applied" and r["settings"]["orig_interval_ms"] == 40
    assert k.writes[0].orig_interval_ms == 40
    # the session closed without a confirm: the change reverted
    deadline = time.time() + 5
    while k.current.orig_interval_ms != 1000 and time.time() < deadline:
        time.sleep(0.05)
    assert k.current.orig_interval_ms == 1000
    # and one kept open but never confirmed reverts at its deadline
    c = _client(lab)

    async def keep_open():
        h, _ = await c.request({"op": "apply", "dry_run": False, "confirm_within_s": 0.4},
                               _env(lab["id"], Action("set_hop_penalty", "n0", {"value": 200})))
        assert h["verdict"] == "applied" and k.current.hop_penalty == 200
        await asyncio.sleep(0.9)
        hp = k.current.hop_penalty
        await c.close()
        return hp

    assert lab["agents"].call(keep_open()) == 30
    reasons = [e["why"] for e in _audit(lab) if e["event"] == "revert"]
    assert "controller session closed" in reasons and "not confirmed before its deadline" in reasons


def test_confirmed_change_stays(lab):
    k = lab["agents"].kernels["n0"]
    c = _client(lab)

    async def go():
        h, _ = await c.request({"op": "apply", "dry_run": False, "confirm_within_s": 0.5},
                               _env(lab["id"], Action("set_hop_penalty", "n0", {"value": 90})))
        h2, _ = await c.request({"op": "confirm", "change": h["change"]})
        await asyncio.sleep(0.8)
        await c.close()
        return h2["ok"]

    assert lab["agents"].call(go()) is True
    assert k.current.hop_penalty == 90


def _bad_envelopes(lab) -> dict[str, tuple[bytes, str]]:
    ca: MeshCA = lab["ca"]
    ok = Action("set_orig_interval", "n0", {"ms": 250})
    rogue = MeshCA.generate("lab").new_identity("controller", now=time.time() - 10)
    stranger = ca.new_identity("stranger", now=time.time() - 10)
    old = ca.new_identity("old-controller", now=time.time() - 10)
    agent = lab["agents"].agents["n0"]
    agent.bundle.add_identity(old.document)
    agent.cfg.controllers.append(old.spiffe_id)
    agent.bundle.apply_revocations(ca.revoke({old.spiffe_id: "key compromised"}, now=time.time()))
    node_id = NodeIdentity.load(lab["root"] / "keys" / "nodes" / "n1" / "node.id")
    return {
        "forged": (_env(rogue, ok), "forged"),
        "unknown_identity": (_env(stranger, ok), "forged"),
        "revoked": (_env(old, ok), "revoked"),
        "expired": (_env(lab["id"], ok, now=time.time() - 120), "expired"),
        "not_controller": (_env(node_id, ok), "not_controller"),
        "out_of_range_interval": (_env(lab["id"], Action("set_orig_interval", "n0", {"ms": 39})), "out_of_range"),
        "out_of_range_penalty": (_env(lab["id"], Action("set_hop_penalty", "n0", {"value": 256})), "out_of_range"),
        "not_allow_listed": (_env(lab["id"], Action("hardif_down", "n0", {"ifname": "eth1"})), "not_allowed"),
        "other_node": (_env(lab["id"], Action("set_hop_penalty", "n1", {"value": 10})), "wrong_node"),
        "tampered": (bytearray(_env(lab["id"], ok)), "tampered"),
    }


def test_every_bad_command_is_refused_audited_and_changes_nothing(lab):
    k = lab["agents"].kernels["n0"]
    before = k.current
    bad = _bad_envelopes(lab)
    bad["tampered"][0][200] ^= 1
    for name, (env, verdict) in bad.items():
        r = _ask(lab, _client(lab), {"op": "apply", "dry_run": False, "confirm_within_s": 30}, bytes(env))
        assert r["verdict"] == verdict, (name, r)
    # replay: the first copy applies, the second is refused
    env = _env(lab["id"], Action("set_hop_penalty", "n0", {"value": 60}))
    c = _client(lab)

    async def replay():
        h1, _ = await c.request({"op": "apply", "dry_run": False, "confirm_within_s": 30}, env)
        await c.request({"op": "revert"})
        h2, _ = await c.request({"op": "apply", "dry_run": False, "confirm_within_s": 30}, env)
        await c.close()
        return h1["verdict"], h2["verdict"]

    assert lab["agents"].call(replay()) == ("applied", "replay")
    assert k.current == before
    assert k.writes == [k.writes[0], before]  # the one valid apply and its revert, nothing else
    log = _audit(lab)
    verdicts = [e["verdict"] for e in log if e["event"] == "action"]
    for _name, (_e, v) in bad.items():
        assert v in verdicts
    assert "replay" in verdicts
    assert audit.verify_chain(lab["root"] / "audit" / "n0.audit.jsonl") is None


def test_dry_run_checks_but_never_writes(lab):
    k = lab["agents"].kernels["n0"]
    r = _ask(lab, _client(lab), {"op": "apply", "dry_run": True},
             _env(lab["id"], Action("set_orig_interval", "n0", {"ms": 100})))
    assert r["verdict"] == "dry_run" and "1000->100" in r["why"]
    assert k.writes == []


def test_rate_budget_on_the_agent(lab):
    agent = lab["agents"].agents["n0"]
    agent.bucket.rate_per_min, agent.bucket.burst, agent.bucket._tokens = 0.001, 2, 2
    c = _client(lab)

    async def go():
        out = []
        for v in (40, 41, 42):
            h, _ = await c.request({"op": "apply", "dry_run": False, "confirm_within_s": 30},
                                   _env(lab["id"], Action("set_hop_penalty", "n0", {"value": v})))
            out.append(h["verdict"])
        await c.close()
        return out

    assert lab["agents"].call(go()) == ["applied", "applied", "rate_limited"]


def test_connection_from_outside_the_bundle_is_refused_before_any_state_is_read(lab):
    rogue_ca = MeshCA.generate("lab")
    rogue = rogue_ca.new_identity("controller", now=time.time() - 10)
    rogue_bundle = rogue_ca.trust_bundle()
    rogue_bundle.add_ca(lab["ca"].public_key)  # it can check the node, the node cannot check it
    with pytest.raises(AgentUnavailable, match="refused"):
        _ask(lab, _client(lab, identity=rogue, bundle=rogue_bundle), {"op": "info"})
    # a CA-issued identity that is not a controller gets no session either
    node1 = NodeIdentity.load(lab["root"] / "keys" / "nodes" / "n1" / "node.id")
    with pytest.raises(AgentUnavailable):
        _ask(lab, _client(lab, identity=node1), {"op": "poll"})
    log = _audit(lab)
    refused = [e for e in log if e["event"] == "connect" and e["verdict"] == "refused"]
    assert len(refused) == 2 and "ForgedError" in refused[0]["why"] and "not a controller" in refused[1]["why"]
    assert not any(e["event"] in ("action", "poll") for e in log)
    assert lab["agents"].kernels["n0"].writes == []


def test_telemetry_is_signed_by_the_node(lab):
    from twin.pqc import EnvelopeVerifier

    c = _client(lab)

    async def go():
        snap = await c.poll(EnvelopeVerifier(lab["bundle"]), 2.0)
        _h, blob = await c.request({"op": "poll"})
        await c.close()
        return snap, blob

    snap, blob = lab["agents"].call(go())
    assert snap["node"] == "n0" and snap["orig_interval_ms"] == 1000
    from twin.pqc import PQCError, TamperedError

    bad = bytearray(blob)
    bad[len(bad) // 2] ^= 1  # inside the payload: the node's signature no longer verifies
    with pytest.raises(TamperedError):
        EnvelopeVerifier(lab["bundle"]).verify_telemetry(bytes(bad), time.time())
    bad = bytearray(blob)
    bad[60] ^= 1  # inside the signer's key id
    with pytest.raises(PQCError):
        EnvelopeVerifier(lab["bundle"]).verify_telemetry(bytes(bad), time.time())
    assert json.loads(EnvelopeVerifier(lab["bundle"]).verify_telemetry(blob, time.time()).payload)["node"] == "n0"


def test_audit_chain_detects_an_edited_line(lab, tmp_path):
    log = audit.AuditLog(tmp_path / "a.jsonl")
    for i in range(3):
        log.write("action", "applied", i=i)
    log.close()
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert audit.verify_chain(tmp_path / "a.jsonl") is None
    lines[1] = lines[1].replace('"applied"', '"refused"')
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    assert audit.verify_chain(tmp_path / "a.jsonl") == 3


def test_the_agent_reports_yggdrasil_from_its_admin_socket(tmp_path):
    """A real yggdrasil (no TUN, no peers) on a private admin socket; the agent's snapshot names its
    overlay address, and a node without the socket reports none."""
    import shutil
    import subprocess

    from twin.live import ygg

    exe = shutil.which("yggdrasil")
    if exe is None:
        pytest.fail("yggdrasil is not installed (setup.sh installs it as root)")
    conf = json.loads(subprocess.run([exe, "-genconf", "-json"], capture_output=True, text=True, check=True).stdout)
    sock = tmp_path / "admin.sock"
    conf.update(AdminListen=f"unix://{sock}", IfName="none", Listen=[], Peers=[], MulticastInterfaces=[])
    (tmp_path / "y.json").write_text(json.dumps(conf))
    p = subprocess.Popen([exe, "-useconffile", str(tmp_path / "y.json")], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while not sock.exists() and time.time() < deadline:
            time.sleep(0.05)
        rep = ygg.read(str(sock))
        assert rep is not None and rep["peers"] == 0 and rep["address"].startswith("2")
        assert ygg.read(str(tmp_path / "missing.sock")) is None
    finally:
        p.terminate()
        p.wait(5)
