"""Live mode on a stand-in lab of real batman-adv kernels: User-Mode Linux nodes, each running the
real agent as a process inside it (real netlink to batman-adv 2022.3), reached over a management
interface. The kernel's state is always read back independently of the agent under test (netlink
through the emulation's guest relay).

Needs root, /dev/net/tun and Debian's user-mode-linux (setup.sh installs them); CI runs as root.
One 6-node lab serves the module; the end-to-end test also runs the same scenario file in ``sim``
and ``emu`` (its own UML nodes).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from twin.adapter import Action
from twin.live.client import AgentClient, AgentUnavailable
from twin.live.loopback import controller_of
from twin.pqc import MeshCA, NodeIdentity, sign_action

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "live-relay-crash.yaml"
pytestmark = [pytest.mark.live, pytest.mark.skipif(os.geteuid() != 0, reason="UML nodes need root")]
PRE = {"orig_interval_ms": 1000, "hop_penalty": 30, "aggregated_ogms": True, "vec0_in_bat0": True}


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    import networkx as nx

    from twin.emu.uml.kernel import find_kernel
    from twin.live.standin import StandinLab
    from twin.scenario import load
    from twin.world import resolve

    if find_kernel() is None:
        pytest.fail("user-mode-linux is not installed (setup.sh installs it as root)")
    g = resolve(load(SCENARIO)).graph
    lab = StandinLab(nx.Graph(g), tmp_path_factory.mktemp("standin"), revoked_controller=True,
                     safety={"max_changed_fraction": 1.0, "rate_fleet": 120, "rate_per_node": 30,
                             "health_check_after": "2s"})
    try:
        inv = lab.start()
        yield lab, inv
    finally:
        errors = lab.close()
        assert not errors, errors


def _call(inv_path: Path, node: str, header: dict, blob: bytes = b"", identity=None, bundle=None,
          confirm: bool = False) -> dict:
    """One request in its own session (``confirm``: and confirm the change it made, same session)."""
    inv, ident, bnd = controller_of(inv_path)
    n = inv.node(node)
    c = AgentClient(node, *inv.address(n), identity or ident, bundle or bnd, inv.spiffe(n), connect_timeout_s=5)

    async def go():
        try:
            h = (await c.request(header, blob, timeout_s=10))[0]
            if confirm and h.get("verdict") == "applied":
                h["confirmed"] = (await c.request({"op": "confirm", "change": h["change"]}, timeout_s=10))[0]["ok"]
            return h
        finally:
            await c.close()

    return asyncio.run(go())


def test_relay_crash_end_to_end_in_sim_emu_and_live_with_the_same_loop(request, tmp_path):
    """First in the module: sim and emu (its own 6 UML nodes) run before the stand-in lab boots, so
    the emulation is not measured on a host already running six more kernels (its load guard would
    rightly call that run invalid)."""
    runs = {}

    def run(mode: str, *extra: str) -> None:
        p = _twin("run", str(SCENARIO), "--mode", mode, "-o", str(tmp_path / mode), "--json", "-q",
                  "--duration", "32s", *extra)  # the relay crashes at 15 s
        out, err = p.communicate(timeout=600)
        # emu may exit 4: its load guard marks a run on a saturated host invalid (the summary still comes)
        assert p.returncode in ((0, 1, 4) if mode == "emu" else (0, 1)), f"{mode}: {err[-2000:]}"
        runs[mode] = json.loads(out)

    run("sim")
    run("emu")
    lab, inv = request.getfixturevalue("standin")
    run("live", "--apply", "-i", str(inv))
    keys = {m: set(s) for m, s in runs.items()}
    assert keys["sim"] == keys["live"] == keys["emu"], keys
    live = runs["live"]
    f = live["faults"][0]
    assert f["diagnosis"] == "dead_relay" and f["detected_s"] is not None and f["mttr_s"] is not None, f
    assert live["loop_stats"]["actions"] > 0
    for n in lab.lab.names:  # the crashed relay is back in the mesh and every setting is as before
        assert lab.settings(n) == PRE, (n, lab.settings(n))


def test_every_bad_command_over_the_socket_is_refused_audited_and_leaves_the_kernel_alone(standin):
    lab, inv = standin
    _, ident, bundle = controller_of(inv)
    keys = lab.root / "keys"
    from twin.live.keys import _load_or_new_ca

    ca: MeshCA = _load_or_new_ca(keys / "ca.id", "standin")
    now = time.time()
    ok = Action("set_orig_interval", "n2", {"ms": 250})
    bad = {
        "forged": (sign_action(MeshCA.generate("standin").new_identity("controller", now=now - 9), ok, now=now),
                   "forged"),
        "unknown_identity": (sign_action(ca.new_identity("stranger", now=now - 9), ok, now=now), "forged"),
        "revoked": (sign_action(NodeIdentity.load(keys / "old-controller.id"), ok, now=now), "revoked"),
        "expired": (sign_action(ident, ok, now=now - 120), "expired"),
        "out_of_range": (sign_action(ident, Action("set_orig_interval", "n2", {"ms": 20}), now=now), "out_of_range"),
        "hop_penalty_range": (sign_action(ident, Action("set_hop_penalty", "n2", {"value": 300}), now=now),
                              "out_of_range"),
        "not_allow_listed": (sign_action(ident, Action("quarantine", "n2", {}), now=now), "not_allowed"),
    }
    for name, (env, verdict) in bad.items():
        r = _call(inv, "n2", {"op": "apply", "dry_run": False, "confirm_within_s": 30}, env)
        assert r["verdict"] == verdict, (name, r)
        assert lab.settings("n2") == PRE, name
    # replay: applied once (then reverted), refused the second time, kernel untouched by the replay
    env = sign_action(ident, Action("set_hop_penalty", "n2", {"value": 77}), now=time.time())
    first = _call(inv, "n2", {"op": "apply", "dry_run": False, "confirm_within_s": 30}, env)
    assert first["verdict"] == "applied"
    deadline = time.time() + 10  # the session closed unconfirmed: the agent reverts
    while lab.settings("n2") != PRE and time.time() < deadline:
        time.sleep(0.2)
    assert lab.settings("n2") == PRE
    again = _call(inv, "n2", {"op": "apply", "dry_run": False, "confirm_within_s": 30}, env)
    assert again["verdict"] == "replay" and lab.settings("n2") == PRE
    # a connection from outside the bundle gets no session at all
    rogue_ca = MeshCA.generate("standin")
    rb = rogue_ca.trust_bundle()
    rb.add_ca(ca.public_key)
    with pytest.raises(AgentUnavailable, match="refused"):
        _call(inv, "n2", {"op": "poll"}, identity=rogue_ca.new_identity("controller", now=now - 9), bundle=rb)
    log = lab.audit("n2")
    verdicts = [e["verdict"] for e in log if e["event"] == "action"]
    for _name, (_env, verdict) in bad.items():
        assert verdict in verdicts
    assert "replay" in verdicts
    assert any(e["event"] == "connect" and e["verdict"] == "refused" and "ForgedError" in e["why"] for e in log)


def test_an_unconfirmed_action_reverts_on_the_node_by_itself(standin):
    lab, inv = standin
    _, ident, _ = controller_of(inv)
    loop = asyncio.new_event_loop()
    i, _id, bnd = controller_of(inv)
    n = i.node("n4")
    c = AgentClient("n4", *i.address(n), ident, bnd, i.spiffe(n), connect_timeout_s=5)
    try:  # keep the session open: only the deadline may revert
        env = sign_action(ident, Action("hardif_down", "n4", {"ifname": "vec0"}), now=time.time())
        h, _ = loop.run_until_complete(c.request({"op": "apply", "dry_run": False, "confirm_within_s": 3}, env,
                                                 timeout_s=10))
        assert h["verdict"] == "applied"
        assert lab.settings("n4")["vec0_in_bat0"] is False
        time.sleep(4.5)
        assert lab.settings("n4") == PRE
    finally:
        loop.run_until_complete(c.close())
        loop.close()
    assert any(e["event"] == "revert" and e["why"] == "not confirmed before its deadline" for e in lab.audit("n4"))


def _twin(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "twin.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def test_ctrl_c_during_a_live_run_leaves_every_node_at_its_pre_run_settings(standin, tmp_path):
    lab, inv = standin
    p = _twin("run", str(SCENARIO), "--mode", "live", "--apply", "-i", str(inv), "-o", str(tmp_path), "-q",
              "--duration", "120s")
    status = inv.parent / "state" / "status.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        if status.exists() and json.loads(status.read_text()).get("state") == "running":
            break
        assert p.poll() is None, p.communicate()
        time.sleep(0.5)
    # mid-run, a confirmed change (so no deadline would undo it) on two nodes from a second session
    _, ident, _ = controller_of(inv)
    for node, act in (("n1", Action("set_hop_penalty", "n1", {"value": 120})),
                      ("n3", Action("set_orig_interval", "n3", {"ms": 300}))):
        h = _call(inv, node, {"op": "apply", "dry_run": False, "confirm_within_s": 60},
                  sign_action(ident, act, now=time.time()), confirm=True)
        assert h["verdict"] == "applied" and h["confirmed"], h
    assert lab.settings("n1")["hop_penalty"] == 120 and lab.settings("n3")["orig_interval_ms"] == 300
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 4 and "interrupted" in err, err  # exit 4: the run failed (interrupted)
    for n in lab.lab.names:
        assert lab.settings(n) == PRE, (n, lab.settings(n))
    assert all(any(e["event"] == "end_run" for e in lab.audit(n)) for n in lab.lab.names)
