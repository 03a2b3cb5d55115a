"""The lab kit in live/ stays valid: the example inventory loads, the unit runs the agent with
CAP_NET_ADMIN only."""

from __future__ import annotations

from pathlib import Path

from twin.live.inventory import load

LIVE = Path(__file__).resolve().parents[1] / "live"


def test_example_inventory_is_valid():
    inv = load(LIVE / "inventory.example.yaml")
    assert [n.name for n in inv.nodes] == ["n0", "n1", "n2"] and inv.channel.transport == "oob"
    assert inv.nodes[0].allow_faults == ["node_crash", "node_recover"] and inv.nodes[1].allow_faults == []


def test_service_unit_runs_the_agent_with_net_admin_only():
    unit = (LIVE / "meshtwin-agent.service").read_text()
    assert "ExecStart=/opt/meshtwin/.venv/bin/twin agent --config /etc/meshtwin/agent.yaml" in unit
    assert "AmbientCapabilities=CAP_NET_ADMIN\n" in unit and "CapabilityBoundingSet=CAP_NET_ADMIN\n" in unit
    assert "DynamicUser=yes" in unit and "User=root" not in unit
