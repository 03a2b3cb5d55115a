"""Capability probing must agree with doing the thing directly, and fail clearly without root."""

from __future__ import annotations

import os
import subprocess
import uuid

import networkx as nx
import pytest

from twin.emu import capabilities as capmod
from twin.emu.capabilities import EmuError, probe_capabilities, require

pytestmark = pytest.mark.emu
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="emu tests need root")


def _direct(argvs: list[list[str]]) -> bool:
    """Run commands in a fresh namespace; True if all succeed."""
    ns = f"mtwcap{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for argv in argvs:
            argv = [a.replace("NS", ns) for a in argv]
            if subprocess.run(argv, capture_output=True).returncode != 0:
                return False
        return True
    finally:
        subprocess.run(["ip", "netns", "del", ns])


@needs_root
def test_probe_matches_direct_checks() -> None:
    caps = probe_capabilities(refresh=True)
    assert caps["root"] is True and caps["netns"] is True and caps["veth"] is True
    veth = [["ip", "-n", "NS", "link", "add", "va", "type", "veth", "peer", "name", "vb"]]
    assert caps["netem"] == _direct(veth + [["tc", "-n", "NS", "qdisc", "add", "dev", "va", "root", "netem",
                                             "loss", "5%"]])
    assert caps["batman_adv"] == _direct([["ip", "-n", "NS", "link", "add", "bat0", "type", "batadv"]])
    assert caps["nftables"] == _direct([["ip", "netns", "exec", "NS", "nft", "add", "table", "inet", "t"]])
    assert caps["tbf"] == _direct(veth + [["tc", "-n", "NS", "qdisc", "add", "dev", "va", "root", "tbf", "rate",
                                           "1mbit", "burst", "32kbit", "latency", "50ms"]])
    for binary in ("babeld", "yggdrasil", "batctl"):
        assert caps[binary] == (subprocess.run(["which", binary], capture_output=True).returncode == 0)
    assert probe_capabilities() == caps  # cached


@needs_root
def test_require_names_what_is_missing() -> None:
    caps = dict(probe_capabilities())
    caps["netem"] = False
    with pytest.raises(EmuError, match=r"netem: per-link delay needs the netem qdisc"):
        require(caps, {"root", "netem"}, "a delay scenario")
    require(caps, {"root", "netns"})  # present: no error


def test_non_root_gets_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from twin.emu.runner import run_emu

    monkeypatch.setattr(capmod, "is_root", lambda: False)
    try:
        caps = probe_capabilities(refresh=True)
        assert caps["root"] is False and caps["netns"] is False
        with pytest.raises(EmuError, match=r"^emu mode needs root: "):
            run_emu(nx.path_graph(["n0", "n1"]), [], [("n0", "n1")], duration_s=1.0)
    finally:
        monkeypatch.undo()
        probe_capabilities(refresh=True)


def test_node_addresses_round_trip_in_canonical_form(tmp_path) -> None:
    """Run id 07aa: babeld prints fd6d:7477:7aa::2, which must still map back to the node."""
    from twin.emu.cleanup import RunState
    from twin.emu.network import EmuNetwork

    net = EmuNetwork(nx.path_graph(["a", "b"]), RunState("07aa", tmp_path))
    net.nodes, net.index = ["a", "b"], {"a": 0, "b": 1}
    assert net.addr("b") == "fd6d:7477:7aa::2" and net.addr_prefix == "fd6d:7477:7aa::/64"
    assert net.node_of_addr("fd6d:7477:7aa::2/128") == "b"
    assert net.node_of_addr("fd6d:7477:07aa:0::1") == "a"
    assert net.node_of_addr("fd6d:7477:7aa::3") is None and net.node_of_addr("fe80::1") is None
