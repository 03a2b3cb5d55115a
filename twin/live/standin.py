"""A stand-in lab of real batman-adv kernels: User-Mode Linux nodes (:mod:`twin.emu.uml`), each
running the real node agent (``twin agent``) as a process inside the node, reading and writing
its kernel's batman-adv over real netlink, reached on a second (management) interface.

This is what a lab looks like to the controller, without a lab: an inventory whose ``mgmt``
addresses are the nodes' management interfaces and whose ``inband`` addresses are their bat0
addresses. Used by the ``live``-marked tests and ``bench/live_channel.py``; needs root.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import yaml

from twin.live.inventory import AGENT_ACTIONS

ROOT = Path(__file__).resolve().parents[2]
#: guest RAM: the agent (Python with cryptography, pyroute2, numpy, pydantic) needs more than the
#: emulation's stdlib-only guest agent
AGENT_GUEST_MEM_MB = 256
AGENT_PORT = 7443


def _lab_class():
    from twin.emu.uml.lab import UmlLab

    class AgentLab(UmlLab):
        def _argv(self, n):  # more guest RAM for a Python agent; everything else as the emulation boots
            return [f"mem={AGENT_GUEST_MEM_MB}M" if a.startswith("mem=") else a for a in super()._argv(n)]

    return AgentLab


@dataclass
class StandinLab:
    graph: nx.Graph
    root: Path
    allow_faults: list[str] = field(default_factory=lambda: ["node_crash", "node_recover"])
    safety: dict = field(default_factory=dict)
    lab: object = None
    medium: object = None
    state: object = None
    inventory: Path | None = None
    agent_pids: dict[str, int] = field(default_factory=dict)
    revoked_controller: bool = False  # also provision a controller identity and revoke it (refusal tests)

    def start(self, timeout_s: float = 300.0) -> Path:
        """Boot the nodes, provision identities, start an agent in every node; returns the inventory."""
        from twin.emu.cleanup import RunState
        from twin.emu.uml.kernel import find_kernel
        from twin.emu.uml.lab import bat_ip
        from twin.emu.uml.medium import Medium
        from twin.live.inventory import load
        from twin.live.keys import provision

        names = [str(n) for n in self.graph.nodes]
        self.state = RunState.create()
        self.medium = Medium(self.state.prefix, names, [(str(a), str(b)) for a, b in self.graph.edges])
        self.lab = _lab_class()(find_kernel(), self.medium, names, self.state.prefix, self.state.dir / "uml",
                                self.root / "consoles")
        self.state.save(backend="uml", cgroup=str(self.lab.cgroup) if self.lab.cgroup else None)
        self.medium.create()
        self.lab.create_mgmt()
        self.lab.boot_all(timeout_s=timeout_s)
        inv = {"mesh": "standin",
               "controller": {"identity": "keys/controller.id", "trust_bundle": "keys/bundle.pem",
                              "state_dir": "state"},
               "channel": {"transport": "oob", "port": AGENT_PORT, "poll_timeout": "1s", "connect_timeout": "3s",
                           "reconnect_backoff": "500ms", "converge_timeout": "60s"},
               "safety": self.safety,
               "nodes": [{"name": n, "mgmt": self.lab.nodes[n].mgmt_ip, "inband": bat_ip(self.lab.nodes[n].index),
                          "mesh_if": "bat0", "hardifs": ["vec0"], "allow_actions": list(AGENT_ACTIONS),
                          "allow_faults": self.allow_faults} for n in names]}
        self.root.mkdir(parents=True, exist_ok=True)
        self.inventory = self.root / "inventory.yaml"
        self.inventory.write_text(yaml.safe_dump(inv, sort_keys=False))
        cfgs = provision(load(self.inventory), self.root / "keys", audit_dir="/run/meshtwin")
        revoked = self._revoke() if self.revoked_controller else None
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/run",
               "PYTHONDONTWRITEBYTECODE": "1"}
        for n in names:
            cfg = yaml.safe_load(cfgs[n].read_text())
            cfg.update(listen=self.lab.nodes[n].mgmt_ip, probe_host="0.0.0.0")
            if revoked:
                cfg["controllers"].append(revoked)
            cfgs[n].write_text(yaml.safe_dump(cfg, sort_keys=False))
            c = self.lab.client(n)
            c.exec(["mkdir", "-p", "/run/meshtwin"])
            rep = c.call("spawn", argv=[sys.executable, "-m", "twin.cli", "agent", "--config", str(cfgs[n])],
                         env=env, log="/run/meshtwin/agent.log")
            self.agent_pids[n] = int(rep["pid"])
        self.wait_agents(names, timeout_s)
        return self.inventory

    def _revoke(self) -> str:
        """An 'old-controller' identity the agents list as a controller, then revoked in their bundle."""
        from twin.live.keys import _load_or_new_ca
        from twin.pqc import TrustBundle

        keys = self.root / "keys"
        ca = _load_or_new_ca(keys / "ca.id", "standin")
        old = ca.new_identity("old-controller", now=time.time() - 60)
        old.save(keys / "old-controller.id")
        bundle = TrustBundle.load(keys / "bundle.pem")
        bundle.add_identity(old.document)
        bundle.apply_revocations(ca.revoke({old.spiffe_id: "key compromised"}, now=time.time()))
        for d in (keys / "nodes").iterdir():
            bundle.save(d / "bundle.pem")
        return old.spiffe_id

    def wait_agents(self, names: list[str], timeout_s: float) -> None:
        import socket

        deadline = time.monotonic() + timeout_s
        for n in names:
            ip = self.lab.nodes[n].mgmt_ip
            while True:
                try:
                    socket.create_connection((ip, AGENT_PORT), 1.0).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        log = self.lab.client(n).exec(["cat", "/run/meshtwin/agent.log"], check=False)
                        raise RuntimeError(f"agent on {n} not listening after {timeout_s:.0f}s; log:\n"
                                           f"{log[-2000:]}") from None
                    time.sleep(0.5)

    def settings(self, node: str) -> dict:
        """The node's batman-adv settings as its kernel reports them (netlink, through the emulation's
        guest relay: independent of the agent under test)."""
        c = self.lab.client(node)
        m = c.batadv().mesh("bat0")
        master = c.exec(["cat", "/sys/class/net/vec0/master/uevent"], check=False)
        return {"orig_interval_ms": m.orig_interval_ms, "hop_penalty": m.hop_penalty,
                "aggregated_ogms": m.aggregated_ogms, "vec0_in_bat0": "INTERFACE=bat0" in master}

    def audit(self, node: str) -> list[dict]:
        import json

        text = self.lab.client(node).exec(["cat", f"/run/meshtwin/{node}.audit.jsonl"], check=False)
        return [json.loads(ln) for ln in text.splitlines() if ln.strip()]

    def close(self) -> list[str]:
        errors: list[str] = []
        if self.lab is not None:
            errors += self.lab.close()
        if self.medium is not None:
            errors += self.medium.close()
        if self.state is not None:
            shutil.rmtree(self.state.dir, ignore_errors=True)
        return errors
